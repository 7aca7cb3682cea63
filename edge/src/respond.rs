//! Every answer the Worker makes itself: JSON, `Cache-Control: no-store`, the request id.

use keygate_shared::{Denial, ErrorBody};
use serde::Serialize;
use worker::{Headers, Response, Result, web_sys};

/// Seconds a client refused by the lookup limiter should wait; the limiter's period in
/// wrangler.toml (`[[ratelimits]] simple.period`).
pub(crate) const LOOKUP_RETRY_AFTER_SECONDS: u32 = 10;

pub(crate) fn json<T: Serialize>(
    status: u16,
    body: &T,
    request_id: &str,
) -> Result<web_sys::Response> {
    json_with(status, body, request_id, &[])
}

fn json_with<T: Serialize>(
    status: u16,
    body: &T,
    request_id: &str,
    extra: &[(&str, &str)],
) -> Result<web_sys::Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    headers.set("x-request-id", request_id)?;
    for (name, value) in extra {
        headers.set(name, value)?;
    }
    Ok(Response::from_json(body)?
        .with_status(status)
        .with_headers(headers)
        .into())
}

pub(crate) fn error(
    status: u16,
    code: &str,
    message: &str,
    request_id: &str,
) -> Result<web_sys::Response> {
    json(
        status,
        &ErrorBody::new(code, message, request_id),
        request_id,
    )
}

/// Public JSON that caches can keep for five minutes (the JWKS).
pub(crate) fn public_json(json: &str, request_id: &str) -> Result<web_sys::Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "public, max-age=300")?;
    headers.set("x-request-id", request_id)?;
    Ok(Response::ok(json)?.with_headers(headers).into())
}

/// 405 for a method outside the fixed set, with the set in `Allow`.
pub(crate) fn method_not_allowed(request_id: &str) -> Result<web_sys::Response> {
    let body = ErrorBody::new(
        "method_not_allowed",
        "keygate routes GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS only.",
        request_id,
    );
    json_with(
        405,
        &body,
        request_id,
        &[("allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")],
    )
}

/// 503 when a limited key's limiter cannot be reached and the deployment fails closed.
pub(crate) fn limiter_unavailable(request_id: &str) -> Result<web_sys::Response> {
    error(
        503,
        "unavailable",
        "The rate limiter is unavailable; try again shortly.",
        request_id,
    )
}

/// A refusal from the decision, with the headers its status calls for.
pub(crate) fn denial(denial: &Denial, request_id: &str) -> Result<web_sys::Response> {
    let retry_after;
    let challenge;
    let extra: &[(&str, &str)] = match denial {
        Denial::MissingCredential => &[("www-authenticate", r#"Bearer realm="keygate""#)],
        Denial::RateLimited {
            retry_after_seconds,
        } => {
            retry_after = retry_after_seconds.to_string();
            &[("retry-after", &retry_after)]
        }
        _ if denial.status() == 401 => {
            challenge = format!(
                r#"Bearer realm="keygate", error="invalid_token", error_description="{}""#,
                denial.code()
            );
            &[("www-authenticate", &challenge)]
        }
        _ => &[],
    };
    json_with(
        denial.status(),
        &denial.to_body(request_id),
        request_id,
        extra,
    )
}

/// 429 from a key's rate limit: `Retry-After` and the RateLimit headers.
pub(crate) fn rate_limited(
    admission: &keygate_shared::Admission,
    request_id: &str,
) -> Result<web_sys::Response> {
    let denial = Denial::RateLimited {
        retry_after_seconds: u32::try_from(admission.retry_after_seconds).unwrap_or(u32::MAX),
    };
    let retry_after = admission.retry_after_seconds.to_string();
    let limits = crate::limiter::headers_of(admission);
    let mut extra: Vec<(&str, &str)> = vec![("retry-after", &retry_after)];
    extra.extend(limits.iter().map(|(name, value)| (*name, value.as_str())));
    json_with(
        denial.status(),
        &denial.to_body(request_id),
        request_id,
        &extra,
    )
}
