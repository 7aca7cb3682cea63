//! The full decision for a valid key (header -> parse -> checksum -> digest -> constant-time
//! compare -> status, IP, customer, permission checks) next to a bare SHA-256 of the same key bytes,
//! in one run. Target: the decision costs at most 2x the hash. `scripts/bench-shared` prints the
//! ratio.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keygate_shared::{Decision, Environment, Request, Verifier, decide};
use sha2::{Digest as _, Sha256};

fn decision_vs_sha256(c: &mut Criterion) {
    let key = support::key(Environment::Production, 1);
    let record = support::record_for(&key);
    let verifier = Verifier::new(support::format(), Environment::Production);
    let header = format!("Bearer {}", key.expose_secret());
    let required = support::permissions(&["customer:read"]);

    let mut group = c.benchmark_group("shared");
    group.bench_function("sha256_of_key", |b| {
        b.iter(|| Sha256::digest(black_box(key.expose_secret()).as_bytes()))
    });
    group.bench_function("decide_valid_key", |b| {
        b.iter(|| {
            let presented = verifier
                .credential(Some(black_box(header.as_str())), None)
                .expect("credential");
            let parsed = verifier.check(&presented).expect("valid key");
            let request = Request {
                now: support::NOW,
                client_ip: None,
                required: &required,
                customer_id: None,
            };
            matches!(
                decide(&parsed, Some(black_box(&record)), &request),
                Decision::Allowed(_)
            )
        })
    });
    group.bench_function("reject_bad_checksum", |b| {
        let typo = format!(
            "Bearer {}000000",
            &key.expose_secret()[..key.expose_secret().len() - 6]
        );
        b.iter(|| {
            let presented = verifier
                .credential(Some(black_box(typo.as_str())), None)
                .expect("credential");
            verifier.check(&presented).is_err()
        })
    });
    group.finish();
}

criterion_group!(benches, decision_vs_sha256);
criterion_main!(benches);
