//! Gateway mode: pass an allowed request on to the origin, as it came, minus the credential and any
//! identity headers the client made up, plus the identity keygate verified.

use keygate_shared::Identity;
use worker::{Fetch, Headers, Request, RequestInit, RequestRedirect, Response, Result};

use crate::config::Config;

/// Headers keygate sets for the origin; any a client sends are dropped first.
const IDENTITY_PREFIX: &str = "x-keygate-";

pub(crate) async fn forward(
    request: &Request,
    config: &Config,
    identity: Option<&Identity<'_>>,
    request_id: &str,
) -> Result<Response> {
    let url = request.url()?;
    let mut target = config.origin.clone();
    let base = config.origin.path().trim_end_matches('/');
    target.set_path(&format!("{base}{}", url.path()));
    target.set_query(url.query());

    let headers = Headers::new();
    for (name, value) in request.headers().entries() {
        let credential = identity.is_some() && is_credential(&name, &value);
        if name == "host" || name.starts_with(IDENTITY_PREFIX) || credential {
            continue;
        }
        headers.append(&name, &value)?;
    }
    headers.set("x-keygate-request-id", request_id)?;
    if let Some(identity) = identity {
        headers.set("x-keygate-key-id", identity.key_id.as_str())?;
        headers.set("x-keygate-owner-id", identity.owner_id.as_str())?;
        headers.set("x-keygate-environment", identity.environment.name())?;
        let permissions: Vec<String> = identity
            .permissions
            .iter()
            .map(ToString::to_string)
            .collect();
        headers.set("x-keygate-permissions", &permissions.join(","))?;
        if let Some(customer) = identity.customer_id {
            headers.set("x-keygate-customer-id", customer.as_str())?;
        }
    }

    let mut init = RequestInit::new();
    init.with_method(request.method())
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual)
        .with_body(request.inner().body().map(Into::into));
    Fetch::Request(Request::new_with_init(target.as_str(), &init)?)
        .send()
        .await
}

/// The headers that can carry a keygate key: never passed on once keygate has checked the key.
fn is_credential(name: &str, value: &str) -> bool {
    match name {
        "x-api-key" => true,
        "authorization" => value
            .trim_start()
            .split_once(' ')
            .is_some_and(|(scheme, _)| {
                scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("basic")
            }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_credential;

    #[test]
    fn only_headers_that_carry_a_key_are_credentials() {
        assert!(is_credential("x-api-key", "anything"));
        assert!(is_credential("authorization", "Bearer kg_live_x"));
        assert!(is_credential("authorization", "basic abc"));
        assert!(!is_credential("authorization", "Digest realm=x"));
        assert!(!is_credential("x-other", "Bearer x"));
    }
}
