//! The identity assertion: a JWT the edge attaches to every request it forwards for a key, signed
//! with the edge's Ed25519 key (`alg: EdDSA`), so that an origin can trust keygate's verdict and
//! nothing else (as Cloudflare Access's `Cf-Access-Jwt-Assertion`, Google IAP's
//! `x-goog-iap-jwt-assertion` and AWS ALB's `x-amzn-oidc-data` do).
//!
//! This module fixes the token's shape: its header, its claims and the bytes that are signed. It
//! does no cryptography: the edge signs through WebCrypto, and origins verify with the
//! `keygate-origin` crate or any JWT library that takes a JWKS.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use zeroize::Zeroizing;

use crate::decision::Identity;
use crate::record::UnixSeconds;

/// The request header that carries the assertion. It is in keygate's own `x-keygate-` namespace,
/// so a client's copy never reaches the origin.
pub const ASSERTION_HEADER: &str = "x-keygate-assertion";

/// The JWS algorithm, and the only one an origin should accept.
pub const ASSERTION_ALGORITHM: &str = "EdDSA";

/// What the assertion says: who keygate let through, for whom, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionClaims {
    /// Who issued it (`KEYGATE_ASSERTION_ISSUER`).
    pub iss: String,
    /// The origin it is for (`KEYGATE_ASSERTION_AUDIENCE`, the origin's URL by default).
    pub aud: String,
    /// The key's id.
    pub sub: String,
    pub owner_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// What the key holds, wildcards included.
    pub permissions: Vec<String>,
    /// `production`, `staging` or `development`.
    pub environment: String,
    pub iat: UnixSeconds,
    pub exp: UnixSeconds,
}

impl AssertionClaims {
    /// The claims for an allowed key, issued at `now` for `lifetime` seconds.
    pub fn for_identity(
        identity: &Identity<'_>,
        issuer: &str,
        audience: &str,
        now: UnixSeconds,
        lifetime: i64,
    ) -> Self {
        Self {
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            sub: identity.key_id.as_str().to_owned(),
            owner_id: identity.owner_id.as_str().to_owned(),
            customer_id: identity.customer_id.map(|id| id.as_str().to_owned()),
            permissions: identity
                .permissions
                .iter()
                .map(ToString::to_string)
                .collect(),
            environment: identity.environment.name().to_owned(),
            iat: now,
            exp: now.saturating_add(lifetime),
        }
    }
}

/// The JOSE header: `{"alg":"EdDSA","typ":"JWT","kid":...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionHeader {
    pub alg: String,
    pub typ: String,
    pub kid: String,
}

/// `BASE64URL(header) "." BASE64URL(claims)`: the bytes the signature covers.
pub fn signing_input(kid: &str, claims: &AssertionClaims) -> String {
    let header = AssertionHeader {
        alg: ASSERTION_ALGORITHM.to_owned(),
        typ: "JWT".to_owned(),
        kid: kid.to_owned(),
    };
    format!("{}.{}", part(&header), part(claims))
}

/// One part of the token: base64url of its JSON. Both parts are plain structs of strings and
/// numbers, which serialise without fail.
fn part(value: &impl Serialize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

/// The compact JWS: the signing input, `.`, and the base64url signature.
pub fn compact(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// One public key as a JWK: `{"kty":"OKP","crv":"Ed25519","x":...,"kid":...,"alg":"EdDSA","use":"sig"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicJwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
}

impl PublicJwk {
    /// Whether this is a usable Ed25519 public key: kty OKP, crv Ed25519, a 32-byte `x`, and a
    /// `kid` of 1 to 64 printable ASCII characters.
    pub fn is_ed25519(&self) -> bool {
        self.kty == "OKP"
            && self.crv == "Ed25519"
            && URL_SAFE_NO_PAD
                .decode(&self.x)
                .is_ok_and(|bytes| bytes.len() == 32)
            && (1..=64).contains(&self.kid.len())
            && self.kid.bytes().all(|b| b.is_ascii_graphic())
    }
}

/// A JWKS: `{"keys": [...]}`, what keygate publishes for origins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Jwks {
    pub keys: Vec<PublicJwk>,
}

/// The edge's signing key as a private JWK (`d` is the secret: a Worker secret, wiped on drop,
/// redacted in `Debug`). `keygate assertion-key generate` makes one.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningJwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    #[serde(serialize_with = "expose")]
    pub d: Zeroizing<String>,
    pub kid: String,
}

fn expose<S: serde::Serializer>(d: &Zeroizing<String>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(d)
}

impl std::fmt::Debug for SigningJwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningJwk")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningJwk {
    /// Parses a private Ed25519 JWK, checking its shape (not that `x` matches `d`: WebCrypto's
    /// import does that).
    pub fn parse(text: &str) -> Result<Self, String> {
        let jwk: Self = serde_json::from_str(text)
            .map_err(|_| "not a JSON private JWK {kty, crv, x, d, kid}".to_owned())?;
        let bytes = |part: &str| URL_SAFE_NO_PAD.decode(part).map(|bytes| bytes.len());
        if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
            return Err("the key must be kty OKP, crv Ed25519".into());
        }
        if bytes(&jwk.x) != Ok(32) || bytes(&jwk.d) != Ok(32) {
            return Err("x and d must each be 32 bytes, base64url".into());
        }
        if jwk.kid.is_empty()
            || jwk.kid.len() > 64
            || !jwk.kid.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err("kid must be 1 to 64 printable ASCII characters".into());
        }
        Ok(jwk)
    }

    /// The public half, as the JWKS lists it.
    pub fn public(&self) -> PublicJwk {
        PublicJwk {
            kty: self.kty.clone(),
            crv: self.crv.clone(),
            x: self.x.clone(),
            kid: self.kid.clone(),
            alg: Some(ASSERTION_ALGORITHM.into()),
            usage: Some("sig".into()),
        }
    }
}
