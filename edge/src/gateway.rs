//! Gateway mode: pass an allowed request on to the origin, as it came, minus the credential and any
//! identity headers the client made up, plus the identity keygate verified. The origin's response
//! goes back as the very object fetch returned: no copy, no re-wrapping of its body. A request is
//! sent as soon as it is allowed, and the origin's promise returned as it is (a key's with its
//! RateLimit headers and usage report attached in one callback).
//!
//! This runs on every request, and its cost is mostly strings crossing between wasm and JS, so it
//! crosses as few as it can: one call copies all headers, only names are read back, and the
//! identity headers of a key are JS strings made once per cached record.

use keygate_shared::{ASSERTION_HEADER, Identity, Verifier};
use wasm_bindgen::prelude::{Closure, wasm_bindgen};
use wasm_bindgen::{JsCast, JsValue};
use worker::{Headers, Result, console_error, js_sys, web_sys};

use crate::config::Config;
use crate::respond;

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

    /// A promise, for `catch` and `then` that take plain functions (js-sys's take Rust closures).
    #[wasm_bindgen(js_name = Promise)]
    type JsPromise;

    #[wasm_bindgen(method, js_name = catch)]
    fn catch(this: &JsPromise, on_rejected: &js_sys::Function) -> js_sys::Promise;

    #[wasm_bindgen(method, js_name = then)]
    fn then(this: &JsPromise, on_fulfilled: &JsValue) -> js_sys::Promise;

    /// A function, for a `bind` that fixes one argument whatever the function's Rust type.
    #[wasm_bindgen(js_name = Function)]
    type JsFunction;

    #[wasm_bindgen(method, js_name = bind)]
    fn bind(this: &JsFunction, this_arg: &JsValue, first: &JsValue) -> js_sys::Function;
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

/// What to forward with: nothing extra (a public route), or the verified identity and, unless
/// the deployment turned it off, its signed assertion.
#[derive(Clone, Debug)]
pub(crate) enum Caller<'a> {
    Anonymous,
    Verified {
        identity: &'a IdentityHeaders,
        assertion: Option<js_sys::JsString>,
    },
}

/// Headers that belong to one connection (RFC 9110 section 7.6.1): never forwarded, whatever
/// `Connection` says.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a client's header may reach the origin. `name` is lower case (as `Headers` gives it).
/// Spellings an origin reads alike are judged alike: CGI, WSGI and Rack turn `x_keygate_owner_id`
/// and `x-keygate-owner-id` into one variable, so `_` is read as `-`.
pub(crate) fn passes(name: &str, authorization_carries_key: bool, connection: &[String]) -> bool {
    let read_as = name.replace('_', "-");
    !(read_as == "host"
        || read_as.starts_with(IDENTITY_PREFIX)
        || read_as == "x-api-key"
        || (read_as == "authorization" && authorization_carries_key)
        || HOP_BY_HOP.contains(&read_as.as_str())
        || connection.contains(&read_as))
}

/// Sends the request to the origin at the authorised `target` (canonical path and query), without
/// any keygate credential, any client header that reads as keygate's, or hop-by-hop headers, on
/// every route, public ones too: the promise of the origin's response.
pub(crate) fn send(
    request: &web_sys::Request,
    config: &Config,
    target: &str,
    caller: Caller<'_>,
    request_id: &str,
) -> Result<js_sys::Promise> {
    let url = format!("{}{target}", config.origin);

    // One copy of all headers in a single call, then delete the few that must not pass (collected
    // first: deleting while iterating a Headers skips entries).
    let headers = Headers(web_sys::Headers::new_with_headers(
        request.headers().as_ref(),
    )?);
    let carries_key = headers
        .get("authorization")?
        .is_some_and(|value| Verifier::carries_key(&value));
    let connection: Vec<String> = headers
        .get("connection")?
        .map(|value| {
            value
                .split(',')
                .map(|name| name.trim().to_ascii_lowercase().replace('_', "-"))
                .filter(|name| !name.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let doomed: Vec<String> = headers
        .keys()
        .filter(|name| !passes(name, carries_key, &connection))
        .collect();
    for name in doomed {
        headers.delete(&name)?;
    }
    headers.set("x-keygate-request-id", request_id)?;
    if let Caller::Verified {
        identity,
        assertion,
    } = caller
    {
        let target: &JsHeaders = headers.0.unchecked_ref();
        for (name, value) in &identity.0 {
            target.append(name, value)?;
        }
        if let Some(assertion) = assertion {
            target.append(&ASSERTION_HEADER.into(), &assertion)?;
        }
    }

    let init = web_sys::RequestInit::new();
    init.set_method(request.method().as_str());
    init.set_headers(headers.0.as_ref());
    init.set_redirect(web_sys::RequestRedirect::Manual);
    if let Some(body) = request.body() {
        init.set_body(body.as_ref());
    }
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    Ok(scope.fetch_with_str_and_init(&url, &init))
}

/// The 502 for a request whose origin could not be reached.
pub(crate) fn unreachable(error: &JsValue, request_id: &str) -> Result<web_sys::Response> {
    let error = worker::Error::from(error.clone());
    console_error!("{request_id} origin unreachable: {error}");
    respond::error(
        502,
        "origin_unavailable",
        "The origin could not be reached.",
        request_id,
    )
}

thread_local! {
    /// `(request_id, error) => the 502`, bound to each forwarded request's id: a public route's
    /// only call back into wasm, made only when its origin cannot be reached.
    static ON_UNREACHABLE: Closure<dyn Fn(JsValue, JsValue) -> std::result::Result<JsValue, JsValue>> =
        Closure::new(|request_id: JsValue, error: JsValue| {
            let request_id = request_id.as_string().unwrap_or_default();
            Ok(unreachable(&error, &request_id)?.into())
        });
}

/// `pending.then(on_answer)`: `on_answer` (a JS function) given the response when it comes.
pub(crate) fn then(pending: &js_sys::Promise, on_answer: &JsValue) -> js_sys::Promise {
    pending.unchecked_ref::<JsPromise>().then(on_answer)
}

/// The origin's response promise, answering the 502 instead if the origin cannot be reached.
pub(crate) fn or_unreachable(pending: &js_sys::Promise, request_id: &str) -> js_sys::Promise {
    ON_UNREACHABLE.with(|on_unreachable| {
        let on_unreachable: &JsFunction = on_unreachable.as_ref().unchecked_ref();
        let bound = on_unreachable.bind(&JsValue::NULL, &request_id.into());
        pending.unchecked_ref::<JsPromise>().catch(&bound)
    })
}

#[cfg(test)]
mod tests {
    use super::passes;

    #[test]
    fn credentials_forged_identity_and_hop_by_hop_headers_never_pass() {
        let none: Vec<String> = Vec::new();
        for name in [
            "host",
            "x-keygate-owner-id",
            "x_keygate_owner_id",
            "x-keygate_key-id",
            "x-api-key",
            "x_api_key",
            "connection",
            "keep-alive",
            "te",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "proxy_connection",
        ] {
            assert!(!passes(name, false, &none), "{name}");
        }
        assert!(!passes("authorization", true, &none));
        assert!(
            passes("authorization", false, &none),
            "the origin's own scheme"
        );
        for name in [
            "accept",
            "content-type",
            "x-request-id",
            "x-keygatex",
            "cookie",
        ] {
            assert!(passes(name, true, &none), "{name}");
        }
        let listed = vec!["x-internal".to_owned()];
        assert!(!passes("x-internal", false, &listed), "named in Connection");
        assert!(!passes("x_internal", false, &listed));
    }
}
