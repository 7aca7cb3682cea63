//! The full decision for a valid key (header -> parse -> checksum -> digest -> constant-time
//! compare -> status, IP, customer, permission checks) next to a bare SHA-256 of the same key bytes,
//! in one run. Target: the decision costs at most 2x the hash.
//!
//! The same file runs natively (criterion) and compiled to wasm32 under node (wasm-bindgen-test's
//! criterion port), so the wasm/native cost of the decision comes from one source:
//! `scripts/bench-shared` runs both and prints the ratios.
#![cfg_attr(target_arch = "wasm32", no_main)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

#[cfg(not(target_arch = "wasm32"))]
use criterion::{Criterion, criterion_group, criterion_main};
use keygate_shared::{Decision, Environment, Request, Verifier};
use sha2::{Digest as _, Sha256};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::{Criterion, wasm_bindgen_bench};

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_bench)]
fn decision_vs_sha256(c: &mut Criterion) {
    let key = support::key(Environment::Production, 1);
    let record = support::record_for(&key);
    let verifier = Verifier::new(support::format(), Environment::Production);
    let header = format!("Bearer {}", key.expose_secret());
    let typo = format!(
        "Bearer {}000000",
        &key.expose_secret()[..key.expose_secret().len() - 6]
    );
    let required = support::permissions(&["customer:read"]);

    c.bench_function("sha256_of_key", |b| {
        b.iter(|| Sha256::digest(black_box(key.expose_secret()).as_bytes()))
    });
    c.bench_function("decide_valid_key", |b| {
        b.iter(|| {
            let request = Request {
                now: support::NOW,
                client_ip: None,
                required: &required,
                customer_id: None,
                customer_keys: false,
            };
            let decision = verifier.verify(
                Some(black_box(header.as_str())),
                None,
                |_| Some(black_box(&record)),
                &request,
            );
            matches!(decision, Decision::Allowed(_))
        })
    });
    c.bench_function("reject_bad_checksum", |b| {
        b.iter(|| {
            verifier
                .identify(Some(black_box(typo.as_str())), None)
                .is_err()
        })
    });
}

#[cfg(not(target_arch = "wasm32"))]
criterion_group!(benches, decision_vs_sha256);
#[cfg(not(target_arch = "wasm32"))]
criterion_main!(benches);
