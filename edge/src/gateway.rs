//! Gateway mode: pass an allowed request on to the origin, as it came, minus the credential and any
//! identity headers the client made up, plus the identity keygate verified. The origin's response
//! goes back as the very object fetch returned: no copy, no re-wrapping of its body.
//!
//! This runs on every request, and its cost is mostly strings crossing between wasm and JS, so it
//! crosses as few as it can: one call copies all headers, only names are read back, and the
//! identity headers of a key are JS strings made once per cached record.

use keygate_shared::Identity;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Headers, Request, Result, js_sys, web_sys};

use crate::config::Config;

/// Headers keygate sets for the origin; any a client sends are dropped first.
const IDENTITY_PREFIX: &str = "x-keygate-";

#[wasm_bindgen]
extern "C" {
    /// The JS `Headers` class, for an `append` that takes JS strings already on the JS side
    /// (web-sys's takes `&str`, which is copied out of wasm memory on every call).
    #[wasm_bindgen(js_name = Headers)]
    type JsHeaders;

    // `append`, not `set`: every x-keygate-* header is deleted before, so there is none to replace.
    #[wasm_bindgen(method, catch, js_name = append)]
    fn append(
        this: &JsHeaders,
        name: &js_sys::JsString,
        value: &js_sys::JsString,
    ) -> std::result::Result<(), JsValue>;
}

/// The identity headers of one key, as JS strings.
#[derive(Debug)]
pub(crate) struct IdentityHeaders(Vec<(js_sys::JsString, js_sys::JsString)>);

impl IdentityHeaders {
    pub(crate) fn new(identity: &Identity<'_>) -> Self {
        let permissions: Vec<String> = identity
            .permissions
            .iter()
            .map(ToString::to_string)
            .collect();
        let mut pairs = vec![
            ("x-keygate-key-id", identity.key_id.as_str().to_owned()),
            ("x-keygate-owner-id", identity.owner_id.as_str().to_owned()),
            (
                "x-keygate-environment",
                identity.environment.name().to_owned(),
            ),
            ("x-keygate-permissions", permissions.join(",")),
        ];
        if let Some(customer) = identity.customer_id {
            pairs.push(("x-keygate-customer-id", customer.as_str().to_owned()));
        }
        Self(
            pairs
                .into_iter()
                .map(|(name, value)| (name.into(), value.as_str().into()))
                .collect(),
        )
    }
}

/// What to forward with: nothing extra (a public route), or the verified identity.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Caller<'a> {
    Anonymous,
    /// `strip_authorization`: the key came in `Authorization` (Bearer/Basic), not in `X-API-Key`.
    Verified {
        identity: &'a IdentityHeaders,
        strip_authorization: bool,
    },
}

pub(crate) async fn forward(
    request: &Request,
    config: &Config,
    caller: Caller<'_>,
    request_id: &str,
) -> Result<web_sys::Response> {
    // The request's own serialised path and query, appended to the origin as they are: no URL
    // parse per request, and no re-encoding that could change what the origin sees.
    let url = request.inner().url();
    let target = format!("{}{}", config.origin, path_and_query(&url));

    // One copy of all headers in a single call, then delete the few that must not pass (collected
    // first: deleting while iterating a Headers skips entries).
    let headers = Headers(web_sys::Headers::new_with_headers(
        request.inner().headers().as_ref(),
    )?);
    let verified = matches!(caller, Caller::Verified { .. });
    let strip_authorization = matches!(
        caller,
        Caller::Verified {
            strip_authorization: true,
            ..
        }
    );
    let doomed: Vec<String> = headers
        .keys()
        .filter(|name| {
            name == "host"
                || name.starts_with(IDENTITY_PREFIX)
                || (verified && name == "x-api-key")
                || (strip_authorization && name == "authorization")
        })
        .collect();
    for name in doomed {
        headers.delete(&name)?;
    }
    headers.set("x-keygate-request-id", request_id)?;
    if let Caller::Verified { identity, .. } = caller {
        let target: &JsHeaders = headers.0.unchecked_ref();
        for (name, value) in &identity.0 {
            target.append(name, value)?;
        }
    }

    let init = web_sys::RequestInit::new();
    init.set_method(request.inner().method().as_str());
    init.set_headers(headers.0.as_ref());
    init.set_redirect(web_sys::RequestRedirect::Manual);
    if let Some(body) = request.inner().body() {
        init.set_body(body.as_ref());
    }
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let response = JsFuture::from(scope.fetch_with_str_and_init(&target, &init)).await?;
    Ok(response.dyn_into()?)
}

/// `/path?query` of a serialised absolute URL (the first `/` after `scheme://host`; a serialised
/// http(s) URL always has one, and percent-encodes any `?` or `#` inside its path).
fn path_and_query(url: &str) -> &str {
    url.find("://")
        .and_then(|scheme| url[scheme + 3..].find('/').map(|path| scheme + 3 + path))
        .map_or("/", |at| &url[at..])
}

#[cfg(test)]
mod tests {
    use super::path_and_query;

    #[test]
    fn path_and_query_are_taken_verbatim() {
        assert_eq!(
            path_and_query("https://edge.example.com/v1/a%20b?x=1&y=%2F"),
            "/v1/a%20b?x=1&y=%2F"
        );
        assert_eq!(path_and_query("http://127.0.0.1:8787/"), "/");
        assert_eq!(path_and_query("http://127.0.0.1:8787/?q"), "/?q");
        assert_eq!(path_and_query("http://user@host:1/p//q"), "/p//q");
        assert_eq!(path_and_query("not a url"), "/");
    }
}
