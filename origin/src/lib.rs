//! keygate-origin: what an origin behind keygate needs to trust keygate's verdict and nothing else.
//!
//! Every request the edge forwards for a key carries `x-keygate-assertion`, a JWT signed with the
//! edge's Ed25519 key (`alg: EdDSA`, with a `kid`). [`AssertionVerifier`] checks it against the
//! public keys keygate publishes (a JWKS, two keys at once during a rotation), its issuer, its
//! audience and its lifetime, and gives the [`AssertionClaims`]: the key id, owner, customer,
//! permissions and environment keygate verified. Identity headers without a valid assertion, or a
//! request that reached the origin some other way, are not keygate's word.
//!
//! [`generate`] makes a key pair for the edge (the private JWK is a Worker secret; the
//! public one goes into the JWKS).
//!
//! It does no I/O: the JWKS comes in as text, the time as `now`.

#![forbid(unsafe_code)]

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
pub use keygate_shared::{
    ASSERTION_ALGORITHM, ASSERTION_HEADER, AssertionClaims, AssertionHeader, Jwks, PublicJwk,
    SigningJwk,
};
use zeroize::Zeroizing;

/// No assertion longer than this is parsed.
pub const MAX_ASSERTION_LEN: usize = 8 * 1024;
/// At most this many keys in a JWKS.
pub const MAX_KEYS: usize = 16;

/// A key pair from 32 secret bytes (from a CSPRNG: the caller draws them).
pub fn generate(kid: &str, secret: &[u8; 32]) -> SigningJwk {
    let signing = SigningKey::from_bytes(secret);
    SigningJwk {
        kty: "OKP".into(),
        crv: "Ed25519".into(),
        x: URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes()),
        d: Zeroizing::new(URL_SAFE_NO_PAD.encode(secret)),
        kid: kid.to_owned(),
    }
}

/// Signs an assertion as the edge does (for tests and tools; the edge signs through WebCrypto).
/// Fails if the JWK is not an Ed25519 private key.
pub fn sign(jwk: &SigningJwk, claims: &AssertionClaims) -> Result<String, JwksError> {
    let secret: [u8; 32] = decode(&jwk.d)?
        .try_into()
        .map_err(|_| JwksError::BadKey(jwk.kid.clone()))?;
    let input = keygate_shared::signing_input(&jwk.kid, claims);
    let signature = SigningKey::from_bytes(&secret).sign(input.as_bytes());
    Ok(keygate_shared::compact(&input, &signature.to_bytes()))
}

fn decode(text: &str) -> Result<Vec<u8>, JwksError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JwksError::BadKey("(base64url)".into()))
}

/// A JWKS that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the JWKS is not JSON of the form {{\"keys\": [...]}}")]
    NotJwks,
    #[error("the JWKS has no keys, or more than {MAX_KEYS}")]
    KeyCount,
    #[error("key {0:?} is not an Ed25519 public key (kty OKP, crv Ed25519, 32-byte x)")]
    BadKey(String),
    #[error("two keys share the kid {0:?}")]
    DuplicateKid(String),
}

/// Why an assertion is not trusted. None of them says more than that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("no assertion")]
    Missing,
    #[error("the assertion is not a compact JWS")]
    Malformed,
    #[error("the assertion's algorithm is not EdDSA")]
    Algorithm,
    #[error("the assertion is signed by a key this origin does not know")]
    UnknownKey,
    #[error("the assertion's signature does not verify")]
    Signature,
    #[error("the assertion is from another issuer")]
    Issuer,
    #[error("the assertion is for another audience")]
    Audience,
    #[error("the assertion has expired")]
    Expired,
    #[error("the assertion is issued in the future")]
    NotYetValid,
}

/// Checks assertions against a JWKS, an issuer and an audience.
#[derive(Clone, Debug)]
pub struct AssertionVerifier {
    keys: HashMap<String, VerifyingKey>,
    issuer: String,
    audience: String,
    /// Clock skew tolerated on `iat` and `exp`, in seconds.
    leeway: i64,
}

impl AssertionVerifier {
    /// From the JWKS keygate publishes (`/.well-known/jwks.json` on the control plane,
    /// `/.keygate/jwks.json` at the edge), the issuer and the audience the edge was configured with.
    pub fn new(jwks: &str, issuer: &str, audience: &str) -> Result<Self, JwksError> {
        let jwks: Jwks = serde_json::from_str(jwks).map_err(|_| JwksError::NotJwks)?;
        if jwks.keys.is_empty() || jwks.keys.len() > MAX_KEYS {
            return Err(JwksError::KeyCount);
        }
        let mut keys = HashMap::new();
        for jwk in jwks.keys {
            let bad = || JwksError::BadKey(jwk.kid.clone());
            if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
                return Err(bad());
            }
            let bytes: [u8; 32] = decode(&jwk.x)?.try_into().map_err(|_| bad())?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
            if keys.insert(jwk.kid.clone(), key).is_some() {
                return Err(JwksError::DuplicateKid(jwk.kid));
            }
        }
        Ok(Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway: 30,
        })
    }

    /// Seconds of clock skew tolerated (30 by default).
    pub fn with_leeway(mut self, seconds: i64) -> Self {
        self.leeway = seconds.max(0);
        self
    }

    /// The claims of a valid assertion at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<AssertionClaims, AssertionError> {
        if token.is_empty() {
            return Err(AssertionError::Missing);
        }
        if token.len() > MAX_ASSERTION_LEN {
            return Err(AssertionError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AssertionError::Malformed);
        };
        let json = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| AssertionError::Malformed)
        };
        let header: AssertionHeader =
            serde_json::from_slice(&json(header)?).map_err(|_| AssertionError::Malformed)?;
        if header.alg != ASSERTION_ALGORITHM {
            return Err(AssertionError::Algorithm);
        }
        let key = self
            .keys
            .get(&header.kid)
            .ok_or(AssertionError::UnknownKey)?;
        let signature =
            Signature::from_slice(&json(signature)?).map_err(|_| AssertionError::Signature)?;
        let signed = &token[..token.len() - token.rsplit('.').next().map_or(0, str::len) - 1];
        key.verify_strict(signed.as_bytes(), &signature)
            .map_err(|_| AssertionError::Signature)?;
        let claims: AssertionClaims =
            serde_json::from_slice(&json(claims)?).map_err(|_| AssertionError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(AssertionError::Issuer);
        }
        if claims.aud != self.audience {
            return Err(AssertionError::Audience);
        }
        if now >= claims.exp.saturating_add(self.leeway) {
            return Err(AssertionError::Expired);
        }
        if claims.iat > now.saturating_add(self.leeway) {
            return Err(AssertionError::NotYetValid);
        }
        Ok(claims)
    }
}
