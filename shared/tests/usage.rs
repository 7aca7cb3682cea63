//! The usage contract: what the edge's hand-written encoder writes is what the control plane's
//! decoder and checks read, for every outcome; and which denials are logged under a key id.
#![cfg(not(target_arch = "wasm32"))]

#[path = "support/mod.rs"]
mod support;

use keygate_shared::{
    Denial, Environment, KeyError, MAX_ROUTE_LEN, Outcome, Permission, UsageEvent, WireOutcome,
};

const NOW_MS: i64 = support::NOW * 1000;

fn event(outcome: Outcome, route: &str) -> UsageEvent {
    let key_id = support::key(Environment::Production, 7).key_id();
    UsageEvent {
        event_id: "8f1c2a-9_x".into(),
        key_id: key_id.as_str().into(),
        occurred_at_ms: NOW_MS - 1_500,
        method: "get".into(),
        route: UsageEvent::route_of(route).into(),
        outcome: outcome.into(),
        status: 200,
        colo: "AMS".into(),
        latency_ms: 3,
    }
}

#[test]
fn every_outcome_the_edge_encodes_is_decoded_and_accepted_as_it_was_sent() {
    for outcome in Outcome::ALL {
        // Quotes, backslashes and non-ASCII in the strings go through the escaping too.
        let sent = event(outcome, "/v1/customers/cus_\"1\"/caf\u{e9}\\x");
        let wire = sent.to_json();
        let decoded: UsageEvent = serde_json::from_str(&wire).expect("the control plane decodes");
        assert_eq!(decoded, sent, "{wire}");
        let checked = decoded
            .check(NOW_MS, NOW_MS - 86_400_000, 300_000)
            .expect("and accepts it");
        assert_eq!(checked.outcome, outcome);
        assert_eq!(checked.key_id.as_str(), sent.key_id);
        assert_eq!(checked.method, "GET");
        assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
        assert_eq!(
            serde_json::to_value(outcome).unwrap(),
            serde_json::json!(outcome.as_str())
        );
    }
}

#[test]
fn a_long_route_is_cut_to_what_the_control_plane_keeps_and_still_accepted() {
    let sent = event(Outcome::Ok, &format!("/{}", "a".repeat(2 * MAX_ROUTE_LEN)));
    assert_eq!(sent.route.len(), MAX_ROUTE_LEN);
    let decoded: UsageEvent = serde_json::from_str(&sent.to_json()).unwrap();
    assert!(decoded.check(NOW_MS, 0, 300_000).is_ok());
}

#[test]
fn an_outcome_from_a_newer_edge_refuses_that_event_only() {
    let mut wire: serde_json::Value =
        serde_json::from_str(&event(Outcome::Ok, "/").to_json()).unwrap();
    wire["outcome"] = "stale_record".into();
    let decoded: UsageEvent = serde_json::from_value(wire).expect("the batch still decodes");
    assert_eq!(decoded.outcome, WireOutcome::Unknown("stale_record".into()));
    let refused = decoded.check(NOW_MS, 0, 300_000).unwrap_err();
    assert!(refused.contains("outcome"), "{refused}");
}

#[test]
fn checks_name_the_field_and_never_echo_its_value() {
    let secretish = "kg_live_not_a_key_id_at_all";
    let mut bad = event(Outcome::Ok, "/");
    bad.key_id = secretish.into();
    let message = bad.check(NOW_MS, 0, 300_000).unwrap_err();
    assert!(
        message.contains("key_id") && !message.contains(secretish),
        "{message}"
    );
    let mut late = event(Outcome::Ok, "/");
    late.occurred_at_ms = NOW_MS + 300_001;
    assert!(late.check(NOW_MS, 0, 300_000).is_err());
    let mut status = event(Outcome::Ok, "/");
    status.status = 99;
    assert!(
        status
            .check(NOW_MS, 0, 300_000)
            .unwrap_err()
            .contains("status")
    );
}

#[test]
fn only_denials_after_the_secret_matched_are_logged_under_the_key_id() {
    let required = Permission::parse("customer:read").unwrap();
    let cases = [
        (Denial::MissingCredential, None),
        (Denial::Malformed(KeyError::ChecksumMismatch), None),
        (
            Denial::WrongEnvironment {
                presented: Environment::Staging,
            },
            None,
        ),
        (Denial::UnknownKey, None),
        (Denial::SecretMismatch, None),
        (Denial::Revoked, Some(Outcome::Revoked)),
        (Denial::Disabled, Some(Outcome::Disabled)),
        (Denial::Expired, Some(Outcome::Expired)),
        (Denial::NotYetValid, Some(Outcome::NotYetValid)),
        (Denial::IpNotAllowed, Some(Outcome::IpNotAllowed)),
        (Denial::CustomerMismatch, Some(Outcome::CustomerMismatch)),
        (Denial::CustomerRequired, Some(Outcome::CustomerRequired)),
        (
            Denial::InsufficientPermissions { required },
            Some(Outcome::InsufficientPermissions),
        ),
        (
            Denial::RateLimited {
                retry_after_seconds: 1,
            },
            Some(Outcome::RateLimited),
        ),
    ];
    for (denial, outcome) in cases {
        assert_eq!(denial.usage_outcome(), outcome, "{denial:?}");
        // A logged denial is logged under the code the caller was answered with.
        if let Some(outcome) = outcome {
            assert_eq!(outcome.as_str(), denial.code());
        }
    }
}
