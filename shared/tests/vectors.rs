//! The committed conformance vectors, checked natively and (by `.ci/run`) compiled to wasm32 and run
//! under node, so both targets are proven to give the same answers.
//!
//! Regenerate after an intended change: `cargo run -p keygate-shared --example generate_vectors`.

#[path = "support/mod.rs"]
mod support;

use support::{
    DecisionVector, KeyVector, RecordVector, SignedVector, evaluate_decision, evaluate_key,
    evaluate_record, evaluate_signed,
};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const KEYS: &str = include_str!("vectors/keys.json");
const DECISIONS: &str = include_str!("vectors/decisions.json");
const RECORDS: &str = include_str!("vectors/records.json");
const SIGNED: &str = include_str!("vectors/signed_records.json");

#[test]
fn key_vectors() {
    let vectors: Vec<KeyVector> = serde_json::from_str(KEYS).expect("keys.json");
    assert!(vectors.len() >= 100, "{} key vectors", vectors.len());
    for vector in &vectors {
        assert_eq!(
            evaluate_key(&vector.input),
            vector.expected,
            "{:?}",
            vector.input
        );
    }
}

#[test]
fn decision_vectors() {
    let vectors: Vec<DecisionVector> = serde_json::from_str(DECISIONS).expect("decisions.json");
    assert!(vectors.len() >= 40, "{} decision vectors", vectors.len());
    for vector in &vectors {
        assert_eq!(
            evaluate_decision(vector),
            vector.expected,
            "{}",
            vector.name
        );
    }
}

#[test]
fn record_vectors() {
    let vectors: Vec<RecordVector> = serde_json::from_str(RECORDS).expect("records.json");
    assert!(vectors.len() >= 15, "{} record vectors", vectors.len());
    for vector in &vectors {
        assert_eq!(
            evaluate_record(&vector.encoded),
            vector.expected,
            "{}",
            vector.name
        );
    }
}

/// The committed files are exactly what the generator writes today: inputs and expectations.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn committed_vectors_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    for (name, contents) in support::cases::files() {
        let committed = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert!(
            committed == contents,
            "tests/vectors/{name} is stale: run `cargo run -p keygate-shared --example generate_vectors` and review the diff"
        );
    }
}

#[test]
fn signed_record_vectors() {
    let vectors: Vec<SignedVector> = serde_json::from_str(SIGNED).expect("signed_records.json");
    assert!(
        vectors.len() >= 12,
        "{} signed record vectors",
        vectors.len()
    );
    for vector in &vectors {
        assert_eq!(evaluate_signed(vector), vector.expected, "{}", vector.name);
    }
}
