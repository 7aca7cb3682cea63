//! Every branch of the decision order, with the answer written out by hand.
#![cfg(not(target_arch = "wasm32"))]

#[path = "support/mod.rs"]
mod support;

use base64::Engine as _;
use keygate_shared::{
    ApiKey, CustomerId, Decision, Denial, Environment, Grants, IpAllowlist, KeyError, Permission,
    PreviousDigest, RecordState, Request, SnapshotRecord, Status, Verifier,
};
use support::{NOW, format, key, permissions, present, record_for, regenerate};

fn production() -> Verifier {
    Verifier::new(format(), Environment::Production)
}

struct Call<'a> {
    key: &'a str,
    record: Option<&'a SnapshotRecord>,
    required: Vec<Permission>,
    client_ip: Option<&'a str>,
    customer_id: Option<&'a str>,
    customer_keys: bool,
    now: i64,
}

impl<'a> Call<'a> {
    fn new(key: &'a ApiKey, record: &'a SnapshotRecord) -> Self {
        Self {
            key: key.expose_secret(),
            record: Some(record),
            required: permissions(&["customer:read"]),
            client_ip: None,
            customer_id: None,
            customer_keys: false,
            now: NOW,
        }
    }

    #[track_caller]
    fn run(&self) -> Result<(), Denial> {
        let verifier = production();
        let bearer = format!("Bearer {}", self.key);
        let candidate = verifier.identify(Some(&bearer), None)?;
        let request = Request {
            now: self.now,
            client_ip: self.client_ip.map(|ip| ip.parse().unwrap()),
            required: &self.required,
            customer_id: self.customer_id,
            customer_keys: self.customer_keys,
        };
        match candidate.decide(self.record, &request) {
            Decision::Allowed(identity) => {
                assert_eq!(identity.key_id, candidate.key_id());
                Ok(())
            }
            Decision::Denied(denial) => Err(denial),
        }
    }
}

#[test]
fn a_valid_key_is_allowed_with_its_identity() {
    let key = key(Environment::Production, 1);
    let mut record = record_for(&key);
    present(&mut record).customer_id = Some(CustomerId::parse("cus_42").unwrap());
    present(&mut record).expires_at = Some(NOW + 60);
    let verifier = production();
    let header = format!("Bearer {}", key.expose_secret());
    let required = permissions(&["customer:read"]);
    let request = Request {
        now: NOW,
        client_ip: None,
        required: &required,
        customer_id: Some("cus_42"),
        customer_keys: false,
    };
    let Decision::Allowed(identity) =
        verifier.verify(Some(&header), None, |_| Some(&record), &request)
    else {
        panic!("denied");
    };
    assert_eq!(identity.key_id, key.key_id());
    assert_eq!(identity.owner_id.as_str(), "usr_1");
    assert_eq!(identity.customer_id.map(CustomerId::as_str), Some("cus_42"));
    assert_eq!(identity.expires_at, Some(NOW + 60));
    assert!(!identity.previous_secret);
}

#[test]
fn credentials_are_found_in_each_supported_header() {
    let key = key(Environment::Production, 1);
    let record = record_for(&key);
    let text = key.expose_secret();
    let (head, secret) = text.split_at(text.len() - 49);
    let head = head.trim_end_matches('_');
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let headers: Vec<(Option<String>, Option<&str>)> = vec![
        (Some(format!("Bearer {text}")), None),
        (Some(format!("bearer   {text}  ")), None),
        (None, Some(text)),
        (Some("Digest abc".into()), Some(text)),
        (
            Some(format!(
                "Basic {}",
                b64(format!("{}:{secret}", key.key_id()))
            )),
            None,
        ),
        (
            Some(format!("Basic {}", b64(format!("{head}:{secret}")))),
            None,
        ),
    ];
    let verifier = production();
    let required = permissions(&[]);
    let request = Request {
        now: NOW,
        client_ip: None,
        required: &required,
        customer_id: None,
        customer_keys: false,
    };
    for (authorization, x_api_key) in headers {
        let decision = verifier.verify(
            authorization.as_deref(),
            x_api_key,
            |key_id| (key_id == record.key_id).then_some(&record),
            &request,
        );
        assert!(
            matches!(decision, Decision::Allowed(_)),
            "{authorization:?} {x_api_key:?}"
        );
    }
}

#[test]
fn missing_and_unreadable_credentials_are_invalid_key_without_a_lookup() {
    let verifier = production();
    let cases: Vec<(Option<&str>, Option<&str>, Denial)> = vec![
        (None, None, Denial::MissingCredential),
        (Some("Bearer "), None, Denial::MissingCredential),
        (None, Some("  "), Denial::MissingCredential),
        (Some("Digest abc"), None, Denial::MissingCredential),
        (
            Some("Basic !!!"),
            None,
            Denial::Malformed(KeyError::BasicAuth),
        ),
        (
            Some("Basic a2V5aWQ="),
            None,
            Denial::Malformed(KeyError::BasicAuth),
        ), // "keyid", no ':'
    ];
    for (authorization, x_api_key, expected) in cases {
        let outcome = verifier.identify(authorization, x_api_key).map(|_| ());
        assert_eq!(outcome, Err(expected.clone()), "{authorization:?}");
        assert_eq!(expected.code(), "invalid_key");
        assert_eq!(expected.status(), 401);
    }
    let huge = format!("Basic {}", "A".repeat(400));
    assert_eq!(
        verifier.identify(Some(&huge), None).map(|_| ()),
        Err(Denial::Malformed(KeyError::TooLong))
    );
}

#[test]
fn malformed_keys_are_refused_before_any_lookup() {
    let key = key(Environment::Production, 1);
    let text = key.expose_secret();
    let mut typo = text.to_owned();
    typo.replace_range(40..41, if &text[40..41] == "a" { "b" } else { "a" });
    for (input, error) in [
        (typo.as_str(), KeyError::ChecksumMismatch),
        (
            &text[..60],
            KeyError::Truncated {
                field: keygate_shared::KeyField::Secret,
            },
        ),
        ("sk_live_abc", KeyError::WrongPrefix),
    ] {
        let verifier = production();
        assert_eq!(
            verifier.identify_key(input).err(),
            Some(Denial::Malformed(error))
        );
    }
}

#[test]
fn a_key_of_another_environment_is_refused_before_any_lookup() {
    let staging = key(Environment::Staging, 1);
    let verifier = production();
    let denial = verifier.identify_key(staging.expose_secret()).unwrap_err();
    assert_eq!(
        denial,
        Denial::WrongEnvironment {
            presented: Environment::Staging
        }
    );
    assert_eq!((denial.status(), denial.code()), (401, "wrong_environment"));
    assert!(denial.message().contains("staging"));
}

#[test]
fn unknown_key_and_wrong_secret_give_the_same_answer() {
    let key = key(Environment::Production, 1);
    let impostor = regenerate(&key, 9);
    let record = record_for(&key);
    let mut tombstone = record.clone();
    tombstone.state = RecordState::Deleted;
    let mut other_environment = record_for(&key);
    present(&mut other_environment).environment = Environment::Staging;
    let mut other_id = record_for(&support::key(Environment::Production, 2));
    present(&mut other_id).digest = key.digest();

    let unknown = Call {
        record: None,
        ..Call::new(&key, &record)
    }
    .run()
    .unwrap_err();
    let wrong_secret = Call::new(&impostor, &record).run().unwrap_err();
    assert_eq!(unknown, Denial::UnknownKey);
    assert_eq!(wrong_secret, Denial::SecretMismatch);
    for other in [&tombstone, &other_environment, &other_id] {
        assert_eq!(Call::new(&key, other).run(), Err(Denial::UnknownKey));
    }
    assert_eq!(unknown.status(), wrong_secret.status());
    assert_eq!(unknown.code(), wrong_secret.code());
    assert_eq!(unknown.message(), wrong_secret.message());
    assert_eq!(
        serde_json::to_string(&unknown.to_body("r")).unwrap(),
        serde_json::to_string(&wrong_secret.to_body("r")).unwrap()
    );
}

#[test]
fn status_codes_come_only_after_the_secret_matched() {
    let key = key(Environment::Production, 1);
    let impostor = regenerate(&key, 9);
    for (status, denial) in [
        (Status::Revoked, Denial::Revoked),
        (Status::Disabled, Denial::Disabled),
    ] {
        let mut record = record_for(&key);
        present(&mut record).status = status;
        // Even an expired, IP-restricted revoked key says "revoked": status is step 4's first check.
        present(&mut record).expires_at = Some(NOW - 1);
        present(&mut record).ip_allowlist = IpAllowlist::parse(&["192.0.2.0/24"]).unwrap();
        assert_eq!(Call::new(&key, &record).run(), Err(denial.clone()));
        assert_eq!(denial.status(), 401);
        assert_eq!(
            Call::new(&impostor, &record).run(),
            Err(Denial::SecretMismatch)
        );
    }
}

#[test]
fn validity_window_is_half_open() {
    let key = key(Environment::Production, 1);
    let mut record = record_for(&key);
    present(&mut record).not_before = Some(NOW);
    present(&mut record).expires_at = Some(NOW + 10);
    let at = |now| {
        Call {
            now,
            ..Call::new(&key, &record)
        }
        .run()
    };
    assert_eq!(at(NOW - 1), Err(Denial::NotYetValid));
    assert_eq!(at(NOW), Ok(()));
    assert_eq!(at(NOW + 9), Ok(()));
    assert_eq!(at(NOW + 10), Err(Denial::Expired));
    assert_eq!(Denial::Expired.code(), "expired");
    assert_eq!(Denial::NotYetValid.code(), "not_yet_valid");
}

#[test]
fn rotation_grace_accepts_the_old_secret_until_it_ends() {
    let old = key(Environment::Production, 1);
    let new = regenerate(&old, 5);
    let mut record = record_for(&new);
    present(&mut record).previous = Some(PreviousDigest {
        digest: old.digest(),
        expires_at: NOW + 30,
    });
    let verifier = production();
    let required = permissions(&[]);
    let decide_at = |key: &ApiKey, now| {
        let request = Request {
            now,
            client_ip: None,
            required: &required,
            customer_id: None,
            customer_keys: false,
        };
        let candidate = verifier.identify_key(key.expose_secret()).unwrap();
        match candidate.decide(Some(&record), &request) {
            Decision::Allowed(identity) => Ok(identity.previous_secret),
            Decision::Denied(denial) => Err(denial),
        }
    };
    assert_eq!(decide_at(&new, NOW), Ok(false));
    assert_eq!(decide_at(&old, NOW + 29), Ok(true));
    assert_eq!(decide_at(&old, NOW + 30), Err(Denial::SecretMismatch));
    assert_eq!(decide_at(&new, NOW + 30), Ok(false));
}

#[test]
fn ip_allowlist_is_checked_after_status_and_fails_closed() {
    let key = key(Environment::Production, 1);
    let mut record = record_for(&key);
    present(&mut record).ip_allowlist =
        IpAllowlist::parse(&["192.0.2.0/24", "2001:db8::/32"]).unwrap();
    let from = |ip| {
        Call {
            client_ip: ip,
            ..Call::new(&key, &record)
        }
        .run()
    };
    assert_eq!(from(Some("192.0.2.77")), Ok(()));
    assert_eq!(from(Some("2001:db8::9")), Ok(()));
    assert_eq!(from(Some("198.51.100.1")), Err(Denial::IpNotAllowed));
    assert_eq!(from(None), Err(Denial::IpNotAllowed));
    assert_eq!(
        (Denial::IpNotAllowed.status(), Denial::IpNotAllowed.code()),
        (403, "ip_not_allowed")
    );
}

#[test]
fn customer_scope_binds_only_scoped_keys() {
    let key = key(Environment::Production, 1);
    let mut scoped = record_for(&key);
    present(&mut scoped).customer_id = Some(CustomerId::parse("cus_1").unwrap());
    let unscoped = record_for(&key);
    let call = |record, customer| {
        Call {
            customer_id: customer,
            ..Call::new(&key, record)
        }
        .run()
    };
    assert_eq!(call(&scoped, Some("cus_1")), Ok(()));
    assert_eq!(call(&scoped, Some("cus_2")), Err(Denial::CustomerMismatch));
    assert_eq!(
        call(&scoped, None),
        Err(Denial::CustomerRequired),
        "a route without a customer parameter refuses a scoped key: the scope fails closed"
    );
    let on_a_route_that_serves_scoped_keys = Call {
        customer_keys: true,
        ..Call::new(&key, &scoped)
    };
    assert_eq!(on_a_route_that_serves_scoped_keys.run(), Ok(()));
    assert_eq!(call(&unscoped, Some("cus_2")), Ok(()));
    assert_eq!(call(&unscoped, None), Ok(()));
    assert_eq!(Denial::CustomerMismatch.status(), 403);
    assert_eq!(
        (
            Denial::CustomerRequired.status(),
            Denial::CustomerRequired.code()
        ),
        (403, "customer_required")
    );
}

#[test]
fn missing_permission_names_the_permission() {
    let key = key(Environment::Production, 1);
    let mut record = record_for(&key);
    present(&mut record).permissions = Grants::parse(&["customer:read", "license:*"]).unwrap();
    let needs = |required: &[&str]| {
        Call {
            required: permissions(required),
            ..Call::new(&key, &record)
        }
        .run()
    };
    assert_eq!(needs(&["customer:read", "license:manage"]), Ok(()));
    assert_eq!(needs(&[]), Ok(()));
    let denial = needs(&["customer:read", "telemetry:write"]).unwrap_err();
    assert_eq!(
        denial,
        Denial::InsufficientPermissions {
            required: Permission::parse("telemetry:write").unwrap()
        }
    );
    let body = serde_json::to_value(denial.to_body("req_1")).unwrap();
    assert_eq!(body["error"]["code"], "insufficient_permissions");
    assert_eq!(body["error"]["required_permission"], "telemetry:write");
    assert_eq!(body["error"]["request_id"], "req_1");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("telemetry:write")
    );
}

#[test]
fn ip_is_checked_before_customer_and_customer_before_permissions() {
    let key = key(Environment::Production, 1);
    let mut record = record_for(&key);
    present(&mut record).ip_allowlist = IpAllowlist::parse(&["192.0.2.0/24"]).unwrap();
    present(&mut record).customer_id = Some(CustomerId::parse("cus_1").unwrap());
    let call = |ip, customer| {
        Call {
            client_ip: ip,
            customer_id: customer,
            required: permissions(&["x:y"]),
            ..Call::new(&key, &record)
        }
        .run()
    };
    assert_eq!(
        call(Some("198.51.100.1"), Some("cus_2")),
        Err(Denial::IpNotAllowed)
    );
    assert_eq!(
        call(Some("192.0.2.1"), Some("cus_2")),
        Err(Denial::CustomerMismatch)
    );
    assert!(matches!(
        call(Some("192.0.2.1"), Some("cus_1")),
        Err(Denial::InsufficientPermissions { .. })
    ));
}

#[test]
fn rate_limited_answers_429_with_retry_after_in_the_message() {
    let denial = Denial::RateLimited {
        retry_after_seconds: 7,
    };
    assert_eq!((denial.status(), denial.code()), (429, "rate_limited"));
    assert!(denial.message().contains('7'));
}

#[test]
fn no_public_answer_ever_contains_the_key() {
    let key = key(Environment::Production, 1);
    let text = key.expose_secret();
    let secret = &text[text.len() - 49..];
    let denials = [
        Denial::MissingCredential,
        Denial::Malformed(KeyError::ChecksumMismatch),
        Denial::WrongEnvironment {
            presented: Environment::Staging,
        },
        Denial::UnknownKey,
        Denial::SecretMismatch,
        Denial::Revoked,
    ];
    for denial in denials {
        let body = serde_json::to_string(&denial.to_body("r")).unwrap();
        assert!(
            !body.contains(secret) && !body.contains(key.key_id().as_str()),
            "{body}"
        );
        assert!(!format!("{denial:?}").contains(secret));
    }
}

#[test]
fn only_bearer_and_basic_authorization_carries_a_key() {
    assert!(Verifier::carries_key("Bearer kg_live_x"));
    assert!(Verifier::carries_key("  basic abc"));
    assert!(!Verifier::carries_key("Digest realm=x"));
    assert!(!Verifier::carries_key("Bearer"));
    assert!(!Verifier::carries_key("Bearer "));
}
