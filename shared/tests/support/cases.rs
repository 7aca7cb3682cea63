//! The conformance cases: inputs chosen by hand, expected results computed by the library and
//! committed, so any change in behaviour (or a disagreement between wasm32 and native) shows up as a
//! diff. Each decision case also names the reason it was written to reach; generation fails if the
//! library gives another, so a vector cannot silently encode a wrong answer.

use base64::Engine as _;
use keygate_shared::{
    CustomerId, Environment, Grants, IpAllowlist, PreviousDigest, RateLimit, RecordState,
    SnapshotRecord, Status,
};
use serde_json::{Value, json};

use super::{
    DecisionVector, KeyVector, NOW, RecordVector, SignedVector, evaluate_decision, evaluate_key,
    evaluate_record, evaluate_signed, key, present, record_for, regenerate,
};

pub const KEYS_FILE: &str = "keys.json";
pub const DECISIONS_FILE: &str = "decisions.json";
pub const RECORDS_FILE: &str = "records.json";
pub const SIGNED_FILE: &str = "signed_records.json";

/// Every vector file, name and pretty-printed contents.
pub fn files() -> Vec<(&'static str, String)> {
    let pretty = |value: Value| serde_json::to_string_pretty(&value).expect("json") + "\n";
    vec![
        (KEYS_FILE, pretty(json!(keys()))),
        (DECISIONS_FILE, pretty(json!(decisions()))),
        (RECORDS_FILE, pretty(json!(records()))),
        (SIGNED_FILE, pretty(json!(signed_records()))),
    ]
}

fn keys() -> Vec<KeyVector> {
    let mut inputs: Vec<String> = Vec::new();
    for (seed, env) in Environment::ALL.into_iter().cycle().take(9).enumerate() {
        inputs.push(key(env, seed as u64).expose_secret().to_owned());
    }
    let base = key(Environment::Production, 100);
    let text = base.expose_secret();
    let id = base.key_id();
    let tail = &text[text.len() - 49..];
    let secret = &tail[..43];
    let with_checksum = |body: String| {
        let sum = crc32fast_checksum(&body);
        body + &sum
    };
    inputs.extend([
        String::new(),
        " ".into(),
        "kg".into(),
        "kg_".into(),
        "kg_live".into(),
        "kg_live_".into(),
        format!("kg_live_{}", &id.as_str()[..10]),
        format!("kg_live_{id}"),
        format!("kg_live_{id}_"),
        format!("kg_live_{id}_{}", &secret[..20]),
        format!("kg_live_{id}_{secret}"),
        format!("kg_live_{id}_{secret}abc"),
        format!("{text}0"),
        format!("{text} "),
        format!(" {text}"),
        text.to_uppercase(),
        text.replacen("kg_", "sk_", 1),
        text.replacen("kg_", "acme_", 1),
        text.replacen("_live_", "_prod_", 1),
        text.replacen("_live_", "_test_", 1),
        text.replacen("_live_", "_dev_", 1),
        text.replacen('_', "-", 1),
        format!("kg_live_{id}-{tail}"),
        format!("kg_live_{id}_{secret}000000"),
        format!("kg_live_{id}_{secret}zzzzzz"),
        with_checksum(format!(
            "kg_live_{}!{}_{secret}",
            &id.as_str()[..3],
            &id.as_str()[4..]
        )),
        with_checksum(format!("kg_live_{id}_{}é{}", &secret[..3], &secret[5..])),
        "k".repeat(200),
        "kg_live_".to_owned() + &"A".repeat(300),
    ]);
    // One substitution at every position of one key: each must fail.
    for at in 0..text.len() {
        let mut bytes = text.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
        inputs.push(String::from_utf8(bytes).expect("ascii"));
    }
    inputs
        .into_iter()
        .map(|input| KeyVector {
            expected: evaluate_key(&input),
            input,
        })
        .collect()
}

fn crc32fast_checksum(body: &str) -> String {
    // Recomputed here rather than exposed by the library: a test should not need a back door.
    let mut value = crc32fast::hash(body.as_bytes());
    let alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = alphabet[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(out.to_vec()).expect("ascii")
}

struct Case {
    reaches: &'static str,
    vector: DecisionVector,
}

fn base_case(
    name: &str,
    key: &keygate_shared::ApiKey,
    record: Option<SnapshotRecord>,
) -> DecisionVector {
    DecisionVector {
        name: name.to_owned(),
        deployment: Environment::Production,
        authorization: Some(format!("Bearer {}", key.expose_secret())),
        x_api_key: None,
        record,
        now: NOW,
        client_ip: None,
        required: super::permissions(&["customer:read"]),
        customer_id: None,
        customer_keys: false,
        expected: Value::Null,
    }
}

fn decisions() -> Vec<DecisionVector> {
    let live = key(Environment::Production, 1);
    let record = record_for(&live);
    let with = |change: &dyn Fn(&mut SnapshotRecord)| {
        let mut changed = record.clone();
        change(&mut changed);
        Some(changed)
    };
    let ok = |name: &str, vector: DecisionVector| Case {
        reaches: "ok",
        vector: DecisionVector {
            name: name.into(),
            ..vector
        },
    };
    let case = |reaches: &'static str, name: &str, vector: DecisionVector| Case {
        reaches,
        vector: DecisionVector {
            name: name.into(),
            ..vector
        },
    };
    let base = || base_case("", &live, Some(record.clone()));
    let text = live.expose_secret();
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let rotated = regenerate(&live, 77);
    let rotation = {
        let mut changed = record_for(&rotated);
        present(&mut changed).previous = Some(PreviousDigest {
            digest: live.digest(),
            expires_at: NOW + 60,
        });
        changed.version = 2;
        changed
    };
    let staging = key(Environment::Staging, 2);
    let development = key(Environment::Development, 3);

    let cases = vec![
        ok("bearer", base()),
        ok(
            "x_api_key",
            DecisionVector {
                authorization: None,
                x_api_key: Some(text.into()),
                ..base()
            },
        ),
        ok(
            "bearer_case_and_spaces",
            DecisionVector {
                authorization: Some(format!("BEARER   {text} ")),
                ..base()
            },
        ),
        ok(
            "other_scheme_falls_back_to_x_api_key",
            DecisionVector {
                authorization: Some("Digest realm=x".into()),
                x_api_key: Some(text.into()),
                ..base()
            },
        ),
        ok(
            "basic_bare_key_id",
            DecisionVector {
                authorization: Some(format!(
                    "Basic {}",
                    b64(format!("{}:{}", live.key_id(), &text[text.len() - 49..]))
                )),
                ..base()
            },
        ),
        ok(
            "basic_full_key_id",
            DecisionVector {
                authorization: Some(format!(
                    "Basic {}",
                    b64(format!(
                        "{}:{}",
                        &text[..text.len() - 50],
                        &text[text.len() - 49..]
                    ))
                )),
                ..base()
            },
        ),
        case(
            "missing_credential",
            "no_headers",
            DecisionVector {
                authorization: None,
                ..base()
            },
        ),
        case(
            "missing_credential",
            "empty_bearer",
            DecisionVector {
                authorization: Some("Bearer ".into()),
                ..base()
            },
        ),
        case(
            "malformed",
            "basic_not_base64",
            DecisionVector {
                authorization: Some("Basic %%%".into()),
                ..base()
            },
        ),
        case(
            "malformed",
            "basic_without_colon",
            DecisionVector {
                authorization: Some(format!("Basic {}", b64(live.key_id().to_string()))),
                ..base()
            },
        ),
        case(
            "malformed",
            "truncated",
            DecisionVector {
                authorization: Some(format!("Bearer {}", &text[..50])),
                ..base()
            },
        ),
        case(
            "malformed",
            "wrong_prefix",
            DecisionVector {
                authorization: Some(format!("Bearer {}", text.replacen("kg_", "sk_", 1))),
                ..base()
            },
        ),
        case(
            "malformed",
            "bad_checksum",
            DecisionVector {
                authorization: Some(format!("Bearer {}000000", &text[..text.len() - 6])),
                ..base()
            },
        ),
        case(
            "wrong_environment",
            "staging_key_on_production",
            base_case("", &staging, Some(record_for(&staging))),
        ),
        case(
            "wrong_environment",
            "development_key_on_production",
            base_case("", &development, None),
        ),
        ok(
            "staging_key_on_staging",
            DecisionVector {
                deployment: Environment::Staging,
                ..base_case("", &staging, Some(record_for(&staging)))
            },
        ),
        case(
            "unknown_key",
            "no_record",
            DecisionVector {
                record: None,
                ..base()
            },
        ),
        case(
            "unknown_key",
            "tombstone",
            DecisionVector {
                record: with(&|r| r.state = RecordState::Deleted),
                ..base()
            },
        ),
        case(
            "unknown_key",
            "record_of_other_environment",
            DecisionVector {
                record: with(&|r| present(r).environment = Environment::Staging),
                ..base()
            },
        ),
        case(
            "secret_mismatch",
            "wrong_secret",
            base_case("", &regenerate(&live, 5), Some(record.clone())),
        ),
        case(
            "secret_mismatch",
            "wrong_secret_on_revoked_key",
            base_case(
                "",
                &regenerate(&live, 5),
                with(&|r| present(r).status = Status::Revoked),
            ),
        ),
        case(
            "revoked",
            "revoked",
            DecisionVector {
                record: with(&|r| present(r).status = Status::Revoked),
                ..base()
            },
        ),
        case(
            "disabled",
            "disabled",
            DecisionVector {
                record: with(&|r| present(r).status = Status::Disabled),
                ..base()
            },
        ),
        case(
            "expired",
            "expired_at_now",
            DecisionVector {
                record: with(&|r| present(r).expires_at = Some(NOW)),
                ..base()
            },
        ),
        ok(
            "expires_in_one_second",
            DecisionVector {
                record: with(&|r| present(r).expires_at = Some(NOW + 1)),
                ..base()
            },
        ),
        case(
            "not_yet_valid",
            "not_before_in_future",
            DecisionVector {
                record: with(&|r| present(r).not_before = Some(NOW + 1)),
                ..base()
            },
        ),
        ok(
            "not_before_now",
            DecisionVector {
                record: with(&|r| present(r).not_before = Some(NOW)),
                ..base()
            },
        ),
        ok(
            "rotation_new_secret",
            base_case("", &rotated, Some(rotation.clone())),
        ),
        ok(
            "rotation_old_secret_in_grace",
            DecisionVector {
                record: Some(rotation.clone()),
                now: NOW + 59,
                ..base()
            },
        ),
        case(
            "secret_mismatch",
            "rotation_old_secret_after_grace",
            DecisionVector {
                record: Some(rotation.clone()),
                now: NOW + 60,
                ..base()
            },
        ),
        ok(
            "ip_allowed_v4",
            DecisionVector {
                record: with(&|r| {
                    present(r).ip_allowlist = IpAllowlist::parse(&["192.0.2.0/24"]).unwrap()
                }),
                client_ip: Some("192.0.2.10".parse().unwrap()),
                ..base()
            },
        ),
        ok(
            "ip_allowed_v6",
            DecisionVector {
                record: with(&|r| {
                    present(r).ip_allowlist = IpAllowlist::parse(&["2001:db8::/32"]).unwrap()
                }),
                client_ip: Some("2001:db8::10".parse().unwrap()),
                ..base()
            },
        ),
        ok(
            "ip_allowed_v4_mapped",
            DecisionVector {
                record: with(&|r| {
                    present(r).ip_allowlist = IpAllowlist::parse(&["192.0.2.0/24"]).unwrap()
                }),
                client_ip: Some("::ffff:192.0.2.10".parse().unwrap()),
                ..base()
            },
        ),
        case(
            "ip_not_allowed",
            "ip_outside_allowlist",
            DecisionVector {
                record: with(&|r| {
                    present(r).ip_allowlist = IpAllowlist::parse(&["192.0.2.0/24"]).unwrap()
                }),
                client_ip: Some("192.0.3.1".parse().unwrap()),
                ..base()
            },
        ),
        case(
            "ip_not_allowed",
            "ip_unknown_with_allowlist",
            DecisionVector {
                record: with(&|r| {
                    present(r).ip_allowlist = IpAllowlist::parse(&["192.0.2.0/24"]).unwrap()
                }),
                ..base()
            },
        ),
        ok(
            "customer_matches",
            DecisionVector {
                record: with(&|r| {
                    present(r).customer_id = Some(CustomerId::parse("cus_1").unwrap())
                }),
                customer_id: Some("cus_1".into()),
                ..base()
            },
        ),
        ok(
            "unscoped_key_any_customer",
            DecisionVector {
                customer_id: Some("cus_2".into()),
                ..base()
            },
        ),
        case(
            "customer_mismatch",
            "customer_differs",
            DecisionVector {
                record: with(&|r| {
                    present(r).customer_id = Some(CustomerId::parse("cus_1").unwrap())
                }),
                customer_id: Some("cus_2".into()),
                ..base()
            },
        ),
        case(
            "insufficient_permissions",
            "permission_missing",
            DecisionVector {
                required: super::permissions(&["customer:write"]),
                ..base()
            },
        ),
        case(
            "insufficient_permissions",
            "second_permission_missing",
            DecisionVector {
                required: super::permissions(&["customer:read", "license:manage"]),
                ..base()
            },
        ),
        ok(
            "resource_wildcard",
            DecisionVector {
                record: with(&|r| present(r).permissions = Grants::parse(&["license:*"]).unwrap()),
                required: super::permissions(&["license:manage"]),
                ..base()
            },
        ),
        case(
            "insufficient_permissions",
            "resource_wildcard_other_resource",
            DecisionVector {
                record: with(&|r| present(r).permissions = Grants::parse(&["license:*"]).unwrap()),
                ..base()
            },
        ),
        ok(
            "global_wildcard",
            DecisionVector {
                record: with(&|r| present(r).permissions = Grants::parse(&["*"]).unwrap()),
                required: super::permissions(&["telemetry:write", "license:manage"]),
                ..base()
            },
        ),
        ok(
            "no_permission_required",
            DecisionVector {
                record: with(&|r| present(r).permissions = Grants::default()),
                required: vec![],
                ..base()
            },
        ),
        ok(
            "identity_carries_limits",
            DecisionVector {
                record: with(&|r| {
                    present(r).rate_limit = Some(RateLimit::new(10, 60).unwrap());
                    present(r).customer_id = Some(CustomerId::parse("cus_7").unwrap());
                    present(r).expires_at = Some(NOW + 86_400);
                }),
                customer_id: Some("cus_7".into()),
                ..base()
            },
        ),
        case(
            "customer_required",
            "scoped_key_where_no_customer_is_named",
            DecisionVector {
                record: with(&|r| {
                    present(r).customer_id = Some(CustomerId::parse("cus_1").unwrap())
                }),
                ..base()
            },
        ),
        ok(
            "scoped_key_on_a_route_that_serves_scoped_keys",
            DecisionVector {
                record: with(&|r| {
                    present(r).customer_id = Some(CustomerId::parse("cus_1").unwrap())
                }),
                customer_keys: true,
                ..base()
            },
        ),
    ];
    cases
        .into_iter()
        .map(
            |Case {
                 reaches,
                 mut vector,
             }| {
                let expected = evaluate_decision(&vector);
                let reached = expected
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("ok");
                assert_eq!(
                    reached, reaches,
                    "case {} reaches {reached}, written for {reaches}",
                    vector.name
                );
                vector.expected = expected;
                vector
            },
        )
        .collect()
}

fn records() -> Vec<RecordVector> {
    let live = key(Environment::Production, 1);
    let mut full = record_for(&live);
    full.version = 42;
    {
        let body = present(&mut full);
        body.previous = Some(PreviousDigest {
            digest: regenerate(&live, 3).digest(),
            expires_at: NOW + 60,
        });
        body.not_before = Some(NOW - 60);
        body.expires_at = Some(NOW + 3_600);
        body.permissions = Grants::parse(&["*", "customer:*", "license:read"]).unwrap();
        body.customer_id = Some(CustomerId::parse("cus_42").unwrap());
        body.rate_limit = Some(RateLimit::new(100, 60).unwrap());
        body.ip_allowlist = IpAllowlist::parse(&["192.0.2.0/24", "2001:db8::/32"]).unwrap();
    }
    let full_json: Value = serde_json::from_str(&full.encode()).expect("json");
    let tombstone = SnapshotRecord {
        key_id: live.key_id(),
        version: 43,
        state: RecordState::Deleted,
    };
    let edit = |change: &dyn Fn(&mut Value)| {
        let mut value = full_json.clone();
        change(&mut value);
        value.to_string()
    };
    let inputs: Vec<(&str, String)> = vec![
        ("full", full.encode()),
        ("minimal", record_for(&live).encode()),
        ("tombstone", tombstone.encode()),
        (
            "reordered_fields_and_whitespace",
            serde_json::to_string_pretty(&full_json).expect("json"),
        ),
        ("newer_format", edit(&|v| v["format"] = json!(2))),
        (
            "newer_format_with_new_field",
            edit(&|v| {
                v["format"] = json!(2);
                v["allowed_methods"] = json!(["GET"]);
            }),
        ),
        (
            "unknown_field",
            edit(&|v| v["allowed_methods"] = json!(["GET"])),
        ),
        (
            "missing_digest",
            edit(&|v| {
                v.as_object_mut().expect("object").remove("digest");
            }),
        ),
        ("tombstone_with_digest", {
            let mut v: Value = serde_json::from_str(&tombstone.encode()).expect("json");
            v["digest"] = full_json["digest"].clone();
            v.to_string()
        }),
        (
            "bad_permission",
            edit(&|v| v["permissions"] = json!(["Customer:Read"])),
        ),
        (
            "duplicate_permission",
            edit(&|v| v["permissions"] = json!(["a:b", "a:b"])),
        ),
        (
            "host_bits_in_cidr",
            edit(&|v| v["ip_allowlist"] = json!(["10.0.0.1/8"])),
        ),
        (
            "zero_rate_limit",
            edit(&|v| v["rate_limit"] = json!({"requests": 0, "window_seconds": 1})),
        ),
        ("bad_digest", edit(&|v| v["digest"] = json!("00"))),
        ("not_json", "{\"format\":1,".to_owned()),
        (
            "oversized",
            format!(
                "{}{}",
                full.encode(),
                " ".repeat(keygate_shared::MAX_RECORD_BYTES)
            ),
        ),
    ];
    inputs
        .into_iter()
        .map(|(name, encoded)| RecordVector {
            name: name.into(),
            expected: evaluate_record(&encoded),
            encoded,
        })
        .collect()
}

/// The record signing keys of the vectors: the current one, the one it replaced, and a stranger's.
fn signing_key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn public(key: &ed25519_dalek::SigningKey) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes())
}

fn signed_records() -> Vec<SignedVector> {
    use ed25519_dalek::Signer as _;
    let (current, retired, stranger) = (signing_key(1), signing_key(2), signing_key(3));
    let live = key(Environment::Production, 1);
    let id = live.key_id().to_string();
    let mut record = record_for(&live);
    record.version = 7;
    present(&mut record).permissions = Grants::parse(&["orders:read", "orders:write"]).unwrap();
    let tombstone = SnapshotRecord {
        key_id: live.key_id(),
        version: 8,
        state: RecordState::Deleted,
    };
    let seal = |record: &SnapshotRecord, kid: &str, key: &ed25519_dalek::SigningKey| {
        keygate_shared::seal(&record.encode(), kid, |input| key.sign(input).to_bytes())
    };
    let valid = seal(&record, "rec-2", &current);
    let after_rotation = [("rec-2".to_owned(), public(&current))];
    let during_rotation = [
        ("rec-1".to_owned(), public(&retired)),
        ("rec-2".to_owned(), public(&current)),
    ];
    let changed = |from: &str, to: &str| {
        assert!(valid.contains(from), "{from}");
        valid.replacen(from, to, 1)
    };
    let first_sig_char = valid.find("\"sig\":\"").unwrap() + "\"sig\":\"".len();
    let mut flipped_sig = valid.clone().into_bytes();
    flipped_sig[first_sig_char] = if flipped_sig[first_sig_char] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let widened = {
        let mut wider = record.clone();
        present(&mut wider).permissions = Grants::parse(&["*"]).unwrap();
        let forged = seal(&wider, "rec-2", &stranger);
        // The attacker's record, under the genuine signature.
        let genuine_sig =
            &valid[valid.find("\"sig\"").unwrap()..valid.find(",\"record\"").unwrap()];
        let forged_sig =
            &forged[forged.find("\"sig\"").unwrap()..forged.find(",\"record\"").unwrap()];
        forged.replacen(forged_sig, genuine_sig, 1)
    };
    let other_id = key(Environment::Production, 2).key_id().to_string();
    // (name, the keys the edge knows, the KV name read, the entry)
    type Case<'a> = (&'a str, &'a [(String, String)], &'a str, String);
    let cases: Vec<Case<'_>> = vec![
        ("valid", &after_rotation, &id, valid.clone()),
        (
            "valid_tombstone",
            &after_rotation,
            &id,
            seal(&tombstone, "rec-2", &current),
        ),
        (
            "retired_key_during_rotation",
            &during_rotation,
            &id,
            seal(&record, "rec-1", &retired),
        ),
        (
            "retired_key_after_rotation",
            &after_rotation,
            &id,
            seal(&record, "rec-1", &retired),
        ),
        (
            "wrong_kid",
            &after_rotation,
            &id,
            seal(&record, "rec-2", &stranger),
        ),
        (
            "unknown_kid",
            &after_rotation,
            &id,
            seal(&record, "rec-9", &current),
        ),
        (
            "one_byte_changed_in_a_grant",
            &after_rotation,
            &id,
            changed("orders:write", "orders:writf"),
        ),
        (
            "one_byte_changed_in_the_version",
            &after_rotation,
            &id,
            changed("\\\"version\\\":7", "\\\"version\\\":8"),
        ),
        (
            "one_byte_changed_in_the_signature",
            &after_rotation,
            &id,
            String::from_utf8(flipped_sig).unwrap(),
        ),
        (
            "widened_under_a_genuine_signature",
            &after_rotation,
            &id,
            widened,
        ),
        (
            "moved_to_another_key_id",
            &after_rotation,
            &other_id,
            valid.clone(),
        ),
        ("unsigned", &after_rotation, &id, record.encode()),
    ];
    cases
        .into_iter()
        .map(|(name, keys, read_under, entry)| {
            let mut vector = SignedVector {
                name: name.to_owned(),
                keys: keys.iter().cloned().collect(),
                read_under: read_under.to_owned(),
                entry,
                expected: Value::Null,
            };
            vector.expected = evaluate_signed(&vector);
            let trusted = vector.expected.get("record").is_some();
            let meant = matches!(
                name,
                "valid" | "valid_tombstone" | "retired_key_during_rotation"
            );
            assert_eq!(trusted, meant, "{name}: {}", vector.expected);
            vector
        })
        .collect()
}
