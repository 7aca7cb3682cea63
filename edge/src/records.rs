//! Trusting a record read from KV: its Ed25519 signature is checked through WebCrypto
//! (`crypto.subtle.verify`, so no signature code in the wasm) against the public key its `kid`
//! names in `KEYGATE_RECORD_KEYS`. A record that is unsigned, signed by a key the edge does not
//! know, or whose signature does not verify is never a key: the lookup fails closed. Records are
//! checked once, when they come from KV; the isolate cache keeps only checked ones.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use keygate_shared::{Envelope, KeyId, RecordError, SnapshotRecord};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Result, console_warn, web_sys};

use crate::config::{RecordTrust, Signatures};
use crate::webcrypto::{ED25519, import_ed25519, subtle};

/// Why a record read from KV is not trusted.
#[derive(Debug)]
pub(crate) enum Untrusted {
    /// Not even an envelope (or not a record inside): unreadable.
    Unreadable(RecordError),
    /// Unsigned, an unknown `kid`, or a signature that does not verify.
    Forged(&'static str),
}

/// One isolate's record verifier: the imported public keys, and how many records it refused.
#[derive(Debug, Default)]
pub(crate) struct RecordVerifier {
    keys: RefCell<HashMap<String, web_sys::CryptoKey>>,
    refused: Cell<u64>,
}

impl RecordVerifier {
    /// Records this isolate refused as forged so far (in the log line of each refusal).
    pub(crate) fn refused(&self) -> u64 {
        self.refused.get()
    }

    /// The record KV holds under `key_id`, once it is proven to be the control plane's.
    pub(crate) async fn open(
        &self,
        trust: &RecordTrust,
        key_id: &KeyId,
        bytes: &[u8],
    ) -> std::result::Result<SnapshotRecord, Untrusted> {
        let envelope = match Envelope::decode(bytes) {
            Ok(envelope) => envelope,
            Err(RecordError::Unsigned) if trust.signatures == Signatures::Log => {
                console_warn!(
                    "unsigned record for key id {key_id} accepted (KEYGATE_RECORD_SIGNATURES=log)"
                );
                return SnapshotRecord::decode(bytes).map_err(Untrusted::Unreadable);
            }
            Err(RecordError::Unsigned) => return Err(self.forged("unsigned")),
            Err(error) => return Err(Untrusted::Unreadable(error)),
        };
        let Some(jwk) = trust.keys.get(envelope.kid()) else {
            return Err(self.forged("signed by an unknown kid"));
        };
        let verified = self
            .verify(envelope.kid(), jwk, &envelope)
            .await
            .map_err(|_| self.forged("signature could not be checked"))?;
        if !verified {
            return Err(self.forged("bad signature"));
        }
        envelope.open_verified(key_id).map_err(|error| match error {
            RecordError::Moved { .. } => self.forged("a genuine record under another key id"),
            // Signed by the control plane, but not a record this build reads (a newer format).
            other => Untrusted::Unreadable(other),
        })
    }

    fn forged(&self, why: &'static str) -> Untrusted {
        self.refused.set(self.refused.get() + 1);
        Untrusted::Forged(why)
    }

    async fn verify(&self, kid: &str, jwk: &str, envelope: &Envelope) -> Result<bool> {
        let key = self.key(kid, jwk).await?;
        let verified = JsFuture::from(subtle()?.verify_with_str_and_u8_array_and_u8_array(
            ED25519,
            &key,
            envelope.signature(),
            &envelope.signed_bytes(),
        )?)
        .await?;
        Ok(verified.as_bool() == Some(true))
    }

    /// The public key `kid` names, imported from its JWK on first use.
    async fn key(&self, kid: &str, jwk: &str) -> Result<web_sys::CryptoKey> {
        if let Some(key) = self.keys.borrow().get(kid) {
            return Ok(key.clone());
        }
        let key = import_ed25519(jwk, "verify").await?;
        self.keys.borrow_mut().insert(kid.to_owned(), key.clone());
        Ok(key)
    }
}
