//! GitHub's secret-scanning signatures: the public keys GitHub signs its partner alerts with, in
//! the shape GitHub publishes them (`GET https://api.github.com/meta/public_keys/secret_scanning`),
//! and the check of a request's signature (ECDSA P-256 with SHA-256 over the raw body, DER,
//! base64). There is no fetch at run time: the operator keeps the file (docs/security.md).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde::Deserialize;

/// The DER of a P-256 public key's SubjectPublicKeyInfo up to the point: SEQUENCE, the
/// algorithm (id-ecPublicKey, prime256v1), and the BIT STRING's header.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// An uncompressed P-256 point: 0x04, x, y.
const POINT_LEN: usize = 65;

/// The most keys a file may hold (GitHub publishes two or three).
const MAX_KEYS: usize = 32;

/// A signature's DER is at most 72 bytes; its base64 at most 96 characters.
const MAX_SIGNATURE_CHARS: usize = 128;

#[derive(Deserialize)]
struct Published {
    public_keys: Vec<PublishedKey>,
}

#[derive(Deserialize)]
struct PublishedKey {
    key_identifier: String,
    key: String,
}

/// The keys alerts may be signed with: each one GitHub publishes, current or not (`is_current`
/// is not read), so a rotation does not refuse alerts in flight.
#[derive(Clone)]
pub struct GithubKeys {
    keys: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for GithubKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("GithubKeys").field("ids", &ids).finish()
    }
}

/// Why a request's signature was refused: for the log, never for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Unsigned,
    UnknownKey,
    Malformed,
    BadSignature,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::UnknownKey => "unknown_key_identifier",
            Self::Malformed => "malformed_signature",
            Self::BadSignature => "bad_signature",
        }
    }
}

impl GithubKeys {
    /// The keys of a file in GitHub's shape; every key must be a P-256 public key in PEM.
    pub fn parse(text: &str) -> Result<Self, String> {
        let published: Published = serde_json::from_str(text)
            .map_err(|error| format!("not GitHub's public key list: {error}"))?;
        if published.public_keys.is_empty() || published.public_keys.len() > MAX_KEYS {
            return Err(format!("it must hold 1 to {MAX_KEYS} public keys"));
        }
        let keys = published
            .public_keys
            .into_iter()
            .map(|key| {
                let point = p256_point(&key.key)
                    .map_err(|problem| format!("key {:?}: {problem}", key.key_identifier))?;
                Ok((key.key_identifier, point))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { keys })
    }

    /// Whether `signature` (the `Github-Public-Key-Signature` header) by the key named
    /// `identifier` (`Github-Public-Key-Identifier`) signs `body`.
    pub fn check(
        &self,
        identifier: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), Refused> {
        let (Some(identifier), Some(signature)) = (identifier, signature) else {
            return Err(Refused::Unsigned);
        };
        let point = self
            .keys
            .iter()
            .find(|(id, _)| id == identifier)
            .map(|(_, point)| point)
            .ok_or(Refused::UnknownKey)?;
        if signature.len() > MAX_SIGNATURE_CHARS {
            return Err(Refused::Malformed);
        }
        let der = STANDARD
            .decode(signature.trim())
            .map_err(|_| Refused::Malformed)?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
            .verify(body, &der)
            .map_err(|_| Refused::BadSignature)
    }
}

/// The point of a P-256 public key in PEM (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo).
fn p256_point(pem: &str) -> Result<Vec<u8>, &'static str> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("-----"))
        .collect();
    let der = STANDARD
        .decode(body)
        .map_err(|_| "not PEM (base64 between BEGIN and END lines)")?;
    match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
        Some(point) if point.len() == POINT_LEN && point[0] == 0x04 => Ok(point.to_vec()),
        _ => Err("not an uncompressed P-256 public key"),
    }
}

/// A P-256 public key's PEM for `point` (the uncompressed point).
fn p256_pem(point: &[u8]) -> String {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(point);
    let base64 = STANDARD.encode(der);
    let lines: Vec<&str> = base64
        .as_bytes()
        .chunks(64)
        .filter_map(|chunk| std::str::from_utf8(chunk).ok())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

/// A new P-256 key pair, standing in for GitHub's signing key in tests, benchmarks and local
/// setups.
pub fn generate_pair() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .expect("the system's random source");
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .expect("a key pair reads its own PKCS#8")
}

/// The key list GitHub would publish for `pair` under `key_id`: what
/// `KEYGATE_SECRET_SCANNING_KEYS_FILE` holds.
pub fn key_list(key_id: &str, pair: &EcdsaKeyPair) -> String {
    serde_json::json!({"public_keys": [{
        "key_identifier": key_id,
        "key": p256_pem(pair.public_key().as_ref()),
        "is_current": true,
    }]})
    .to_string()
}

/// `body`'s signature by `pair`, as GitHub sends it (`Github-Public-Key-Signature`).
pub fn sign(pair: &EcdsaKeyPair, body: &[u8]) -> String {
    let signature = pair
        .sign(&SystemRandom::new(), body)
        .expect("the system's random source");
    STANDARD.encode(signature.as_ref())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pair() -> EcdsaKeyPair {
        generate_pair()
    }

    fn file(pairs: &[(&str, &EcdsaKeyPair)]) -> String {
        let keys: Vec<_> = pairs
            .iter()
            .map(|(id, pair)| {
                json!({"key_identifier": id, "key": p256_pem(pair.public_key().as_ref()), "is_current": true})
            })
            .collect();
        json!({ "public_keys": keys }).to_string()
    }

    #[test]
    fn only_a_known_key_s_signature_over_the_exact_body_passes() {
        let (current, next, stranger) = (pair(), pair(), pair());
        let keys = GithubKeys::parse(&file(&[("a", &current), ("b", &next)])).expect("keys");
        let body = br#"[{"token":"x","type":"t","url":"u","source":"content"}]"#;
        assert_eq!(
            keys.check(Some("a"), Some(&sign(&current, body)), body),
            Ok(())
        );
        assert_eq!(
            keys.check(Some("b"), Some(&sign(&next, body)), body),
            Ok(())
        );
        let signed = sign(&current, body);
        let cases = [
            (None, Some(signed.as_str()), &body[..], Refused::Unsigned),
            (Some("a"), None, &body[..], Refused::Unsigned),
            (Some("c"), Some(&signed), &body[..], Refused::UnknownKey),
            (Some("b"), Some(&signed), &body[..], Refused::BadSignature),
            (Some("a"), Some(&signed), b"[]", Refused::BadSignature),
            (
                Some("a"),
                Some("not base64!"),
                &body[..],
                Refused::Malformed,
            ),
        ];
        for (id, signature, body, refused) in cases {
            assert_eq!(keys.check(id, signature, body), Err(refused), "{id:?}");
        }
        let theirs = sign(&stranger, body);
        assert_eq!(
            keys.check(Some("a"), Some(&theirs), body),
            Err(Refused::BadSignature)
        );
    }

    #[test]
    fn a_file_that_is_not_p256_keys_is_refused() {
        assert!(GithubKeys::parse("{}").is_err());
        assert!(GithubKeys::parse(r#"{"public_keys": []}"#).is_err());
        let not_pem = json!({"public_keys": [{"key_identifier": "a", "key": "hello"}]});
        assert!(GithubKeys::parse(&not_pem.to_string()).is_err());
        let short = p256_pem(&[4; 33]);
        let short = json!({"public_keys": [{"key_identifier": "a", "key": short}]});
        assert!(GithubKeys::parse(&short.to_string()).is_err());
    }
}
