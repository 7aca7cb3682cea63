//! keygate-shared beside a peer: crates.io `prefixed-api-key` (the Seam format: a prefix, a short
//! token to look the key up by, and a long token stored as its SHA-256), in one criterion run.
//! Each side parses a valid key as a request presents it and checks it against the digest it
//! would have stored:
//! - keygate: `Verifier::identify` (prefix, environment, key id, secret, CRC32 checksum, SHA-256
//!   of the whole key) and a constant-time compare with the stored digest;
//! - prefixed-api-key: `PrefixedApiKey::from_string` and `check_hash` (SHA-256 of the long token,
//!   hex, constant-time compare).
//!
//! `scripts/bench-shared` runs it after the decision benchmark and prints the ratio. Native only.
#![cfg(not(target_arch = "wasm32"))]

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keygate_shared::{Digest, Environment, Verifier};
use prefixed_api_key::{PakControllerOsSha256, PrefixedApiKey};

fn parse_and_check(c: &mut Criterion) {
    let key = support::key(Environment::Production, 1);
    let stored = Digest::of_key(key.expose_secret());
    let verifier = Verifier::new(support::format(), Environment::Production);
    let header = format!("Bearer {}", key.expose_secret());

    // The peer's defaults: 8-character short token, 24-character long token (base58).
    let controller = PakControllerOsSha256::configure()
        .prefix("mycompany".to_owned())
        .rng_osrng()
        .short_token_length(8)
        .long_token_length(24)
        .finalize()
        .expect("a controller");
    let (peer_key, peer_hash) = controller.generate_key_and_hash();
    let peer_text = peer_key.to_string();

    c.bench_function("keygate_parse_and_check", |b| {
        b.iter(|| {
            verifier
                .identify(Some(black_box(header.as_str())), None)
                .is_ok_and(|candidate| candidate.digest() == stored)
        })
    });
    c.bench_function("prefixed_api_key_parse_and_check", |b| {
        b.iter(|| {
            PrefixedApiKey::from_string(black_box(peer_text.as_str()))
                .is_ok_and(|parsed| controller.check_hash(&parsed, &peer_hash))
        })
    });
}

criterion_group!(benches, parse_and_check);
criterion_main!(benches);
