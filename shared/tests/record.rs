//! The snapshot record's encoding: strict, bounded, and the same bytes on both sides.
#![cfg(not(target_arch = "wasm32"))]

#[path = "support/mod.rs"]
mod support;

use keygate_shared::{
    CustomerId, Environment, Grants, IpAllowlist, MAX_GRANTS, MAX_NETWORKS, MAX_RECORD_BYTES,
    MAX_REFERENCE_LEN, OwnerId, PreviousDigest, RateLimit, RecordError, RecordState,
    SnapshotRecord, Status,
};
use serde_json::{Value, json};
use support::{NOW, key, present, record_for};

fn fields(record: &SnapshotRecord) -> Value {
    serde_json::from_str(&record.encode()).unwrap()
}

#[test]
fn an_active_record_round_trips_with_the_documented_fields() {
    let key = key(Environment::Production, 1);
    let mut record = record_for(&key);
    record.version = 7;
    let body = present(&mut record);
    body.customer_id = Some(CustomerId::parse("cus_9").unwrap());
    body.rate_limit = Some(RateLimit::new(100, 60).unwrap());
    body.expires_at = Some(NOW + 3600);
    body.ip_allowlist = IpAllowlist::parse(&["192.0.2.0/24"]).unwrap();
    body.previous = Some(PreviousDigest {
        digest: key.digest(),
        expires_at: NOW,
    });
    let encoded = record.encode();
    assert_eq!(SnapshotRecord::decode(encoded.as_bytes()).unwrap(), record);
    let value = fields(&record);
    assert_eq!(value["format"], 1);
    assert_eq!(value["version"], 7);
    assert_eq!(value["status"], "active");
    assert_eq!(value["key_id"], key.key_id().as_str());
    assert_eq!(value["digest"], key.digest().to_hex());
    assert_eq!(value["environment"], "production");
    assert_eq!(value["permissions"], json!(["customer:read"]));
    assert_eq!(
        value["rate_limit"],
        json!({"requests": 100, "window_seconds": 60})
    );
    assert_eq!(value["ip_allowlist"], json!(["192.0.2.0/24"]));
    assert!(
        !encoded.contains(&key.expose_secret()[30..]),
        "no secret in the record"
    );
}

#[test]
fn a_tombstone_carries_only_its_id_and_version() {
    let key = key(Environment::Production, 1);
    let tombstone = SnapshotRecord {
        key_id: key.key_id(),
        version: 9,
        state: RecordState::Deleted,
    };
    assert_eq!(
        fields(&tombstone),
        json!({"format": 1, "key_id": key.key_id(), "version": 9, "status": "deleted"})
    );
    assert_eq!(
        SnapshotRecord::decode(tombstone.encode().as_bytes()).unwrap(),
        tombstone
    );
    let mut with_digest = fields(&tombstone);
    with_digest["digest"] = json!(key.digest().to_hex());
    assert_eq!(
        SnapshotRecord::decode(with_digest.to_string().as_bytes()),
        Err(RecordError::TombstoneWithData("digest"))
    );
}

#[test]
fn decoding_refuses_what_it_does_not_understand() {
    let key = key(Environment::Production, 1);
    let good = fields(&record_for(&key));
    let with = |change: &dyn Fn(&mut Value)| {
        let mut value = good.clone();
        change(&mut value);
        SnapshotRecord::decode(value.to_string().as_bytes())
    };
    assert_eq!(
        with(&|v| v["format"] = json!(2)),
        Err(RecordError::UnsupportedFormat(2))
    );
    assert_eq!(
        with(&|v| {
            v["format"] = json!(2);
            v["allowed_methods"] = json!(["GET"]);
        }),
        Err(RecordError::UnsupportedFormat(2)),
        "a newer writer's extra field is reported as the newer format"
    );
    assert!(matches!(
        with(&|v| v["allowed_methods"] = json!(["GET"])),
        Err(RecordError::Invalid(_))
    ));
    assert_eq!(
        with(&|v| v
            .as_object_mut()
            .unwrap()
            .remove("digest")
            .map(drop)
            .unwrap_or(())),
        Err(RecordError::MissingField {
            status: "active",
            field: "digest"
        })
    );
    assert_eq!(
        with(&|v| v
            .as_object_mut()
            .unwrap()
            .remove("owner_id")
            .map(drop)
            .unwrap_or(())),
        Err(RecordError::MissingField {
            status: "active",
            field: "owner_id"
        })
    );
    for (field, bad) in [
        ("status", json!("paused")),
        ("digest", json!("abc")),
        ("key_id", json!("short")),
        ("environment", json!("prod")),
        ("permissions", json!(["nope"])),
        ("ip_allowlist", json!(["10.0.0.1/8"])),
        ("rate_limit", json!({"requests": 0, "window_seconds": 60})),
        (
            "rate_limit",
            json!({"requests": 10, "window_seconds": 60, "burst": 5}),
        ),
        ("customer_id", json!("has space")),
        ("version", json!(-1)),
    ] {
        assert!(
            matches!(
                with(&|v| v[field] = bad.clone()),
                Err(RecordError::Invalid(_))
            ),
            "{field}: {bad}"
        );
    }
    assert!(matches!(
        SnapshotRecord::decode(b"not json"),
        Err(RecordError::Invalid(_))
    ));
    assert!(matches!(
        SnapshotRecord::decode(b""),
        Err(RecordError::Invalid(_))
    ));
}

#[test]
fn the_largest_valid_record_fits_the_bound_and_larger_input_is_refused_unread() {
    let key = key(Environment::Production, 1);
    let mut record = record_for(&key);
    record.version = u64::MAX;
    let body = present(&mut record);
    let grants: Vec<String> = (0..MAX_GRANTS)
        .map(|i| format!("{}{i:02}:{}", "r".repeat(30), "a".repeat(32)))
        .collect();
    body.permissions = Grants::parse(&grants).unwrap();
    let networks: Vec<String> = (0..MAX_NETWORKS)
        .map(|i| format!("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff{i:02x}/128"))
        .collect();
    body.ip_allowlist = IpAllowlist::parse(&networks).unwrap();
    body.customer_id = Some(CustomerId::parse(&"c".repeat(MAX_REFERENCE_LEN)).unwrap());
    body.owner_id = OwnerId::parse(&"o".repeat(MAX_REFERENCE_LEN)).unwrap();
    body.previous = Some(PreviousDigest {
        digest: key.digest(),
        expires_at: i64::MAX,
    });
    body.not_before = Some(i64::MIN);
    body.expires_at = Some(i64::MAX);
    body.rate_limit = Some(RateLimit::new(1_000_000, 86_400).unwrap());
    let encoded = record.encode();
    assert!(encoded.len() <= MAX_RECORD_BYTES, "{} bytes", encoded.len());
    assert_eq!(SnapshotRecord::decode(encoded.as_bytes()).unwrap(), record);
    let padded = format!(
        "{encoded}{}",
        " ".repeat(MAX_RECORD_BYTES + 1 - encoded.len())
    );
    assert_eq!(
        SnapshotRecord::decode(padded.as_bytes()),
        Err(RecordError::TooLarge(MAX_RECORD_BYTES + 1))
    );
}

#[test]
fn references_and_rate_limits_are_validated() {
    assert!(CustomerId::parse("cus_123.eu:acme@x-y").is_ok());
    for bad in [
        "",
        "has space",
        "tab\t",
        "newline\n",
        "ü",
        &"c".repeat(MAX_REFERENCE_LEN + 1),
    ] {
        assert!(CustomerId::parse(bad).is_err(), "{bad:?}");
    }
    assert!(RateLimit::new(1, 1).is_ok());
    assert_eq!(RateLimit::new(0, 60), Err(RecordError::BadRateLimit));
    assert_eq!(RateLimit::new(10, 0), Err(RecordError::BadRateLimit));
    assert_eq!(
        RateLimit::new(1_000_001, 60),
        Err(RecordError::BadRateLimit)
    );
    assert_eq!(RateLimit::new(10, 86_401), Err(RecordError::BadRateLimit));
}

#[test]
fn a_key_expires_at_its_expiry_second_not_before() {
    use keygate_shared::is_expired;
    assert!(!is_expired(Some(1_000), 999));
    assert!(is_expired(Some(1_000), 1_000));
    assert!(is_expired(Some(1_000), 1_001));
    assert!(!is_expired(None, i64::MAX));
}

#[test]
fn status_names_round_trip_and_match_the_record_encoding() {
    for status in Status::ALL {
        assert_eq!(Status::parse(status.as_str()), Some(status));
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            serde_json::json!(status.as_str())
        );
    }
    assert_eq!(Status::parse("deleted"), None);
}
