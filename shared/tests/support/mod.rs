//! Fixtures and the conformance evaluation, shared by the tests, the vector generator and the
//! benchmark (each includes this file with `#[path]`), so the vectors are produced and checked by
//! one piece of code.
#![allow(dead_code, unreachable_pub)] // each includer uses a different part

use keygate_shared::{
    ApiKey, Decision, Digest, Environment, Grants, KeyFormat, KeyRecord, OwnerId, Permission,
    RecordState, Request, SnapshotRecord, Verifier,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub const PREFIX: &str = "kg";
/// A fixed "now" for every vector: 2026-01-01T00:00:00Z.
pub const NOW: i64 = 1_767_225_600;

pub fn format() -> KeyFormat {
    KeyFormat::new(PREFIX).expect("valid prefix")
}

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub fn key(environment: Environment, seed: u64) -> ApiKey {
    format().generate(environment, &mut rng(seed))
}

/// A new secret for `key`'s id, as a regeneration makes it.
pub fn regenerate(key: &ApiKey, seed: u64) -> ApiKey {
    format().regenerate(key.environment(), key.key_id(), &mut rng(seed))
}

/// An active record for `key` that allows `customer:read`, owned by `usr_1`.
pub fn record_for(key: &ApiKey) -> SnapshotRecord {
    SnapshotRecord {
        key_id: key.key_id(),
        version: 1,
        state: RecordState::Present(KeyRecord::active(
            key.digest(),
            key.environment(),
            Grants::parse(&["customer:read"]).expect("valid grants"),
            OwnerId::parse("usr_1").expect("valid owner"),
        )),
    }
}

/// The present part of a record, to change one field in a test.
pub fn present(record: &mut SnapshotRecord) -> &mut KeyRecord {
    match &mut record.state {
        RecordState::Present(key) => key,
        RecordState::Deleted => panic!("fixture record is a tombstone"),
    }
}

pub fn permissions(texts: &[&str]) -> Vec<Permission> {
    texts
        .iter()
        .map(|text| Permission::parse(text).expect("valid permission"))
        .collect()
}

/// One key string and what parsing it must give.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyVector {
    pub input: String,
    pub expected: Value,
}

pub fn evaluate_key(input: &str) -> Value {
    match format().parse(input) {
        Ok(key) => json!({
            "key_id": key.key_id(),
            "environment": key.environment(),
            "digest": key.digest(),
        }),
        Err(error) => json!({ "error": error }),
    }
}

/// Headers, the record KV returns for the key's id (or none), and the request: the whole input of
/// one decision.
#[derive(Debug, Serialize, Deserialize)]
pub struct DecisionVector {
    pub name: String,
    pub deployment: Environment,
    #[serde(default)]
    pub authorization: Option<String>,
    #[serde(default)]
    pub x_api_key: Option<String>,
    pub record: Option<SnapshotRecord>,
    pub now: i64,
    #[serde(default)]
    pub client_ip: Option<std::net::IpAddr>,
    #[serde(default)]
    pub required: Vec<Permission>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub customer_keys: bool,
    pub expected: Value,
}

pub fn evaluate_decision(case: &DecisionVector) -> Value {
    let verifier = Verifier::new(format(), case.deployment);
    let request = Request {
        now: case.now,
        client_ip: case.client_ip,
        required: &case.required,
        customer_id: case.customer_id.as_deref(),
        customer_keys: case.customer_keys,
    };
    let decision = verifier.verify(
        case.authorization.as_deref(),
        case.x_api_key.as_deref(),
        |_| case.record.as_ref(),
        &request,
    );
    match decision {
        Decision::Allowed(identity) => json!({
            "status": 200,
            "code": "ok",
            "key_id": identity.key_id,
            "environment": identity.environment,
            "owner_id": identity.owner_id,
            "customer_id": identity.customer_id,
            "permissions": identity.permissions,
            "expires_at": identity.expires_at,
            "rate_limit": identity.rate_limit,
            "previous_secret": identity.previous_secret,
        }),
        Decision::Denied(denial) => denial_json(&denial),
    }
}

fn denial_json(denial: &keygate_shared::Denial) -> Value {
    json!({
        "status": denial.status(),
        "code": denial.code(),
        "reason": denial.reason(),
        "body": denial.to_body("req_vector"),
    })
}

/// An encoded record and what decoding it must give.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecordVector {
    pub name: String,
    pub encoded: String,
    pub expected: Value,
}

pub fn evaluate_record(encoded: &str) -> Value {
    match SnapshotRecord::decode(encoded.as_bytes()) {
        Ok(record) => json!({ "reencoded": record.encode() }),
        Err(error) => json!({ "error": error.to_string() }),
    }
}

/// A signed entry as KV would hold it, read under `read_under` by an edge that knows `keys`
/// (`kid` -> Ed25519 public key, base64url, as a JWK's `x`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignedVector {
    pub name: String,
    pub keys: std::collections::BTreeMap<String, String>,
    pub read_under: String,
    pub entry: String,
    pub expected: Value,
}

/// What an edge makes of a signed entry: the record it may trust, or why not (`unreadable`,
/// `unknown_kid`, `bad_signature`).
pub fn evaluate_signed(vector: &SignedVector) -> Value {
    use base64::Engine as _;
    use ed25519_dalek::Verifier as _;
    let refused = |reason: &str| json!({ "refused": reason });
    let Ok(key_id) = keygate_shared::KeyId::parse(&vector.read_under) else {
        return refused("bad_key_id");
    };
    let envelope = match keygate_shared::Envelope::decode(vector.entry.as_bytes()) {
        Ok(envelope) => envelope,
        Err(error) => return json!({ "refused": "unreadable", "error": error.to_string() }),
    };
    let Some(public) = vector.keys.get(envelope.kid()) else {
        return refused("unknown_kid");
    };
    let verifying = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(public)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .and_then(|bytes| ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok());
    let Some(verifying) = verifying else {
        return refused("bad_public_key");
    };
    let signature = ed25519_dalek::Signature::from_bytes(envelope.signature());
    if verifying
        .verify(&envelope.signed_bytes(), &signature)
        .is_err()
    {
        return refused("bad_signature");
    }
    match envelope.open_verified(&key_id) {
        Ok(record) => json!({ "record": record.encode() }),
        Err(error) => json!({ "refused": "unreadable", "error": error.to_string() }),
    }
}

pub fn digest_hex(text: &str) -> String {
    Digest::of_key(text).to_hex()
}

pub mod cases;
