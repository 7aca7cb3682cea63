//! Signed snapshot records (format 2). The control plane signs every record it pushes with
//! Ed25519, and the edge trusts a record read from KV only once its signature checks out against
//! a public key it was configured with; a KV write alone can no longer mint, widen or revive a
//! key.
//!
//! The envelope carries a format-1 record's exact bytes as a string, and the signature covers
//! those bytes (after a context prefix), so what is verified is exactly what is then decoded:
//! there is no canonical form to get wrong.
//!
//! ```json
//! {"format":2,"kid":"rec-2026-12","sig":"<64 bytes, base64url>","record":"{\"format\":1,...}"}
//! ```
//!
//! This crate has no signature code (the edge verifies through WebCrypto, the control plane with
//! ed25519-dalek): it builds the bytes to sign and to verify, and opens a verified envelope.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::key::KeyId;
use crate::record::{MAX_RECORD_BYTES, RECORD_FORMAT, RecordError, SnapshotRecord};

/// The `format` of a signed record.
pub const SIGNED_FORMAT: u32 = 2;
/// Signatures are made over this prefix and the record's bytes, so a signature made for anything
/// else (an identity assertion with the same key, say) never verifies as a record's.
pub const RECORD_CONTEXT: &[u8] = b"keygate snapshot record\n";
/// The longest `kid`.
pub const MAX_KID_LEN: usize = 64;
/// The longest signed entry: a record escaped as a string (each byte at most doubled) and the
/// envelope's own fields.
pub const MAX_SIGNED_BYTES: usize = 2 * MAX_RECORD_BYTES + 256;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEnvelope {
    format: u32,
    kid: String,
    sig: String,
    record: String,
}

#[derive(Deserialize)]
struct FormatProbe {
    format: u32,
}

/// A signed record as read from KV, before its signature is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    kid: String,
    signature: [u8; 64],
    record: String,
}

/// The bytes a signature over `record` (a format-1 encoding) covers.
pub fn record_signing_input(record: &str) -> Vec<u8> {
    let mut input = Vec::with_capacity(RECORD_CONTEXT.len() + record.len());
    input.extend_from_slice(RECORD_CONTEXT);
    input.extend_from_slice(record.as_bytes());
    input
}

/// `record` (a format-1 encoding, [`SnapshotRecord::encode`]), signed by `sign` (an Ed25519
/// signature over the bytes it is given) under `kid`: the KV entry the pusher writes.
pub fn seal(record: &str, kid: &str, sign: impl FnOnce(&[u8]) -> [u8; 64]) -> String {
    let signature = sign(&record_signing_input(record));
    let wire = WireEnvelope {
        format: SIGNED_FORMAT,
        kid: kid.to_owned(),
        sig: URL_SAFE_NO_PAD.encode(signature),
        record: record.to_owned(),
    };
    serde_json::to_string(&wire).expect("an envelope is strings and a number")
}

impl Envelope {
    /// Reads an entry, strictly: format 2, a `kid` of at most [`MAX_KID_LEN`] characters, a
    /// 64-byte signature. Nothing in it is trusted yet.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_SIGNED_BYTES {
            return Err(RecordError::Invalid(format!(
                "a signed record is at most {MAX_SIGNED_BYTES} bytes; this one is {}",
                bytes.len()
            )));
        }
        let wire: WireEnvelope = serde_json::from_slice(bytes).map_err(|error| {
            match serde_json::from_slice::<FormatProbe>(bytes) {
                Ok(probe) if probe.format == RECORD_FORMAT => RecordError::Unsigned,
                Ok(probe) if probe.format != SIGNED_FORMAT => {
                    RecordError::UnsupportedFormat(probe.format)
                }
                _ => RecordError::Invalid(error.to_string()),
            }
        })?;
        if wire.format != SIGNED_FORMAT {
            return Err(RecordError::UnsupportedFormat(wire.format));
        }
        if wire.kid.is_empty() || wire.kid.len() > MAX_KID_LEN {
            return Err(RecordError::Invalid(format!(
                "kid must be 1 to {MAX_KID_LEN} characters"
            )));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(&wire.sig)
            .ok()
            .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
            .ok_or_else(|| RecordError::Invalid("sig must be 64 bytes, base64url".into()))?;
        Ok(Self {
            kid: wire.kid,
            signature,
            record: wire.record,
        })
    }

    /// Which key signed it, by the signer's word: look the public key up by it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// The record's bytes as the envelope holds them, not yet verified: for comparing with what
    /// the signer would have written, never for deciding about a key.
    pub fn unverified_record(&self) -> &str {
        &self.record
    }

    /// The bytes the signature must verify over.
    pub fn signed_bytes(&self) -> Vec<u8> {
        record_signing_input(&self.record)
    }

    /// The record, once the caller has verified [`Envelope::signature`] over
    /// [`Envelope::signed_bytes`] with the public key of [`Envelope::kid`]. It must be the record
    /// of `key_id`, the KV name it was read under: a genuine record moved to another name is
    /// refused.
    pub fn open_verified(self, key_id: &KeyId) -> Result<SnapshotRecord, RecordError> {
        let record = SnapshotRecord::decode(self.record.as_bytes())?;
        if record.key_id != *key_id {
            return Err(RecordError::Moved {
                record: record.key_id.to_string(),
                read_under: key_id.to_string(),
            });
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey, Verifier};

    use super::*;
    use crate::{Digest, Environment, Grants, KeyRecord, OwnerId, RecordState};

    fn record(key_id: KeyId) -> SnapshotRecord {
        SnapshotRecord {
            key_id,
            version: 3,
            state: RecordState::Present(KeyRecord::active(
                Digest::of_key("kg_live_example"),
                Environment::Production,
                Grants::parse(&["orders:read"]).unwrap(),
                OwnerId::parse("usr_1").unwrap(),
            )),
        }
    }

    fn key_id(seed: u8) -> KeyId {
        KeyId::parse(&char::from(b'a' + seed).to_string().repeat(22)).unwrap()
    }

    /// Verifies as the edge does: decode, the signature over the signed bytes, then open.
    fn read(entry: &[u8], key: &SigningKey, under: &KeyId) -> Result<SnapshotRecord, String> {
        let envelope = Envelope::decode(entry).map_err(|error| error.to_string())?;
        let signature = ed25519_dalek::Signature::from_bytes(envelope.signature());
        key.verifying_key()
            .verify(&envelope.signed_bytes(), &signature)
            .map_err(|_| "bad signature".to_owned())?;
        envelope
            .open_verified(under)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn a_sealed_record_opens_and_any_changed_byte_is_refused() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let id = key_id(1);
        let entry = seal(&record(id).encode(), "rec-1", |input| {
            key.sign(input).to_bytes()
        });
        assert_eq!(read(entry.as_bytes(), &key, &id).unwrap(), record(id));
        let kid_at = entry.find("rec-1").unwrap();
        let kid = kid_at..kid_at + "rec-1".len();
        for index in 0..entry.len() {
            let mut bytes = entry.clone().into_bytes();
            bytes[index] ^= 0x01;
            let opened = read(&bytes, &key, &id);
            // The kid is the signer's word, not signed: a changed kid finds another key, or none.
            assert!(
                opened.is_err() || kid.contains(&index),
                "byte {index} changed, still opened"
            );
        }
    }

    #[test]
    fn a_genuine_record_under_another_name_or_another_key_is_refused() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let entry = seal(&record(key_id(1)).encode(), "rec-1", |input| {
            key.sign(input).to_bytes()
        });
        assert!(read(entry.as_bytes(), &key, &key_id(2)).is_err());
        assert_eq!(
            read(entry.as_bytes(), &other, &key_id(1)).unwrap_err(),
            "bad signature"
        );
    }

    #[test]
    fn unsigned_and_malformed_envelopes_are_named() {
        let unsigned = record(key_id(1)).encode();
        assert_eq!(
            Envelope::decode(unsigned.as_bytes()),
            Err(RecordError::Unsigned)
        );
        let sig = URL_SAFE_NO_PAD.encode([0u8; 64]);
        for (entry, refused) in [
            (
                format!(r#"{{"format":3,"kid":"k","sig":"{sig}","record":""}}"#),
                RecordError::UnsupportedFormat(3),
            ),
            (
                format!(r#"{{"format":2,"kid":"","sig":"{sig}","record":""}}"#),
                RecordError::Invalid(format!("kid must be 1 to {MAX_KID_LEN} characters")),
            ),
            (
                r#"{"format":2,"kid":"k","sig":"AAAA","record":""}"#.to_owned(),
                RecordError::Invalid("sig must be 64 bytes, base64url".into()),
            ),
        ] {
            assert_eq!(Envelope::decode(entry.as_bytes()), Err(refused), "{entry}");
        }
        let huge = vec![b' '; MAX_SIGNED_BYTES + 1];
        assert!(Envelope::decode(&huge).is_err());
    }
}
