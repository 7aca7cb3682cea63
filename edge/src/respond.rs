//! Every answer the Worker makes itself: JSON, `Cache-Control: no-store`, the request id.

use keygate_shared::{Denial, ErrorBody};
use serde::Serialize;
use worker::{Headers, Response, Result};

/// Seconds a client refused by the lookup limiter should wait; the limiter's period in
/// wrangler.toml (`[[ratelimits]] simple.period`).
pub(crate) const LOOKUP_RETRY_AFTER_SECONDS: u32 = 10;

pub(crate) fn json<T: Serialize>(status: u16, body: &T, request_id: &str) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    headers.set("x-request-id", request_id)?;
    Ok(Response::from_json(body)?
        .with_status(status)
        .with_headers(headers))
}

pub(crate) fn error(status: u16, code: &str, message: &str, request_id: &str) -> Result<Response> {
    json(
        status,
        &ErrorBody::new(code, message, request_id),
        request_id,
    )
}

/// A refusal from the decision, with the headers its status calls for.
pub(crate) fn denial(denial: &Denial, request_id: &str) -> Result<Response> {
    let response = json(denial.status(), &denial.to_body(request_id), request_id)?;
    let headers = response.headers();
    match denial {
        Denial::MissingCredential => {
            headers.set("www-authenticate", r#"Bearer realm="keygate""#)?
        }
        Denial::RateLimited {
            retry_after_seconds,
        } => headers.set("retry-after", &retry_after_seconds.to_string())?,
        _ if denial.status() == 401 => headers.set(
            "www-authenticate",
            &format!(
                r#"Bearer realm="keygate", error="invalid_token", error_description="{}""#,
                denial.code()
            ),
        )?,
        _ => {}
    }
    Ok(response)
}
