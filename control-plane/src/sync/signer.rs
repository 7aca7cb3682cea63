//! The control plane's record signing key: every record the pusher writes to KV is sealed with it
//! (keygate-shared's signed envelope), and the edge trusts no other. It comes from a private
//! Ed25519 JWK in a file only its owner can read (`keygate record-key generate` makes one);
//! `Debug` shows its `kid`, never the key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey};
use keygate_shared::SigningJwk;

pub struct RecordSigner {
    kid: String,
    key: SigningKey,
}

impl std::fmt::Debug for RecordSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl RecordSigner {
    /// From a private Ed25519 JWK; its `x` must be the public half of its `d`.
    pub fn from_jwk(text: &str) -> Result<Self, String> {
        let jwk = SigningJwk::parse(text)?;
        let secret: [u8; 32] = URL_SAFE_NO_PAD
            .decode(jwk.d.as_bytes())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or("d must be 32 bytes, base64url")?;
        let key = SigningKey::from_bytes(&secret);
        if URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()) != jwk.x {
            return Err("x is not the public key of d".into());
        }
        if jwk.kid.len() > keygate_shared::MAX_KID_LEN {
            return Err("kid is too long".into());
        }
        Ok(Self { kid: jwk.kid, key })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `record` (a format-1 encoding) as the signed entry KV gets.
    pub fn seal(&self, record: &str) -> String {
        keygate_shared::seal(record, &self.kid, |input| self.key.sign(input).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signer_comes_only_from_a_matching_key_pair_and_hides_it() {
        let jwk = keygate_origin::generate("rec-1", &[9; 32]);
        let text = serde_json::to_string(&jwk).unwrap();
        let signer = RecordSigner::from_jwk(&text).unwrap();
        assert_eq!(signer.kid(), "rec-1");
        assert!(!format!("{signer:?}").contains(jwk.d.as_str()));
        let other = keygate_origin::generate("rec-1", &[8; 32]);
        let mismatched = text.replace(&jwk.x, &other.x);
        assert!(RecordSigner::from_jwk(&mismatched).is_err());
        assert!(RecordSigner::from_jwk("{}").is_err());
    }
}
