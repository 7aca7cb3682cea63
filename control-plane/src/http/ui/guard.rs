//! What every `/ui` response carries, and the cross-site request check every state-changing
//! `/ui` request passes first.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::http::ApiError;

/// No inline script or style, nothing from elsewhere, never framed.
const CSP: &str = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; \
                   base-uri 'none'; object-src 'none'";

/// Sets the security headers on every `/ui` response, and refuses a cross-origin request that
/// would change something before it reaches a handler.
pub(super) async fn guard(request: Request, next: Next) -> Response {
    let mut response = if is_cross_origin(request.method(), request.headers()) {
        super::page::failure(&ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "Cross-origin request refused: the dashboard takes changes only from its own pages.",
        ))
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Go 1.25's `CrossOriginProtection`: a request that may change something is refused when the
/// browser says it came from another site (`Sec-Fetch-Site`), or, from a browser too old to say,
/// when its `Origin` is not this host. A request with neither header did not come from a browser
/// page, so it carries no ambient cookie a page could abuse (and the cookie is `SameSite=Strict`).
fn is_cross_origin(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .map(|(_, host)| host.as_bytes());
    origin_host.is_none() || origin_host != host
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    header::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn reads_pass_whatever_their_origin() {
        let from_elsewhere = headers(&[("sec-fetch-site", "cross-site")]);
        assert!(!is_cross_origin(&Method::GET, &from_elsewhere));
        assert!(!is_cross_origin(&Method::HEAD, &from_elsewhere));
    }

    #[test]
    fn a_change_passes_only_from_the_same_origin() {
        let post = Method::POST;
        for (pairs, refused) in [
            (&[("sec-fetch-site", "same-origin")][..], false),
            (&[("sec-fetch-site", "none")][..], false),
            (&[("sec-fetch-site", "same-site")][..], true),
            (&[("sec-fetch-site", "cross-site")][..], true),
            // Sec-Fetch-Site decides when present, whatever Origin says.
            (
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "http://keygate.test"),
                    ("host", "keygate.test"),
                ][..],
                true,
            ),
            (
                &[("origin", "http://keygate.test"), ("host", "keygate.test")][..],
                false,
            ),
            (
                &[("origin", "https://evil.test"), ("host", "keygate.test")][..],
                true,
            ),
            (
                &[
                    ("origin", "http://keygate.test:81"),
                    ("host", "keygate.test"),
                ][..],
                true,
            ),
            (&[("origin", "null"), ("host", "keygate.test")][..], true),
            // Not from a browser page.
            (&[("host", "keygate.test")][..], false),
        ] {
            assert_eq!(
                is_cross_origin(&post, &headers(pairs)),
                refused,
                "{pairs:?}"
            );
        }
        let delete = headers(&[("sec-fetch-site", "cross-site")]);
        assert!(is_cross_origin(&Method::DELETE, &delete));
        assert!(is_cross_origin(&Method::PUT, &delete));
    }
}
