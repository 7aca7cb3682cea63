//! One export: an Ed25519 signature check in Rust (ed25519-dalek, strict verification as
//! RFC 8032 and WebCrypto have it), for `scripts/bench-edge` to time beside WebCrypto's
//! `crypto.subtle.verify` on the same record, and to weigh in bytes.

use ed25519_dalek::{Signature, VerifyingKey};
use wasm_bindgen::prelude::wasm_bindgen;

/// Whether `signature` (64 bytes) by `public_key` (32 bytes) verifies over `message`.
#[wasm_bindgen]
pub fn verify(public_key: &[u8], signature: &[u8], message: &[u8]) -> bool {
    let Ok(public_key) = <[u8; 32]>::try_from(public_key) else {
        return false;
    };
    let Ok(signature) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    VerifyingKey::from_bytes(&public_key).is_ok_and(|key| {
        key.verify_strict(message, &Signature::from_bytes(&signature))
            .is_ok()
    })
}
