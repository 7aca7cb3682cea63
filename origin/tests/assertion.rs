//! The assertion as origins see it: the committed test vector (docs/edge.md prints it) verifies
//! with keygate-origin and with an independent JWT library (jsonwebtoken, on aws-lc), and every
//! forgery, tampering, wrong key, wrong audience or issuer and expiry is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keygate_origin::{
    AssertionError, AssertionVerifier, Jwks, JwksError, SigningJwk, generate, sign,
};
use keygate_shared::AssertionClaims;
use serde_json::{Value, json};

const VECTOR: &str = include_str!("vector.json");

struct Vector {
    signing: SigningJwk,
    jwks: String,
    claims: AssertionClaims,
    token: String,
    now: i64,
}

fn vector() -> Vector {
    let vector: Value = serde_json::from_str(VECTOR).unwrap();
    Vector {
        signing: serde_json::from_value(vector["signing_jwk"].clone()).unwrap(),
        jwks: vector["jwks"].to_string(),
        claims: serde_json::from_value(vector["claims"].clone()).unwrap(),
        token: vector["token"].as_str().unwrap().to_owned(),
        now: vector["now"].as_i64().unwrap(),
    }
}

fn verifier(jwks: &str) -> AssertionVerifier {
    AssertionVerifier::new(jwks, "keygate", "https://api.example.com").unwrap()
}

#[test]
fn the_vector_is_what_the_key_signs_and_what_the_jwks_publishes() {
    let v = vector();
    // Ed25519 signatures are deterministic: the same key and claims give the same token.
    assert_eq!(sign(&v.signing, &v.claims).unwrap(), v.token);
    let regenerated = generate(&v.signing.kid, &[7; 32]);
    assert_eq!(regenerated.x, v.signing.x);
    let jwks: Jwks = serde_json::from_str(&v.jwks).unwrap();
    assert_eq!(jwks.keys, [v.signing.public()]);
    assert!(!format!("{:?}", v.signing).contains(v.signing.d.as_str()));
}

#[test]
fn the_vector_verifies_here_and_with_an_independent_jwt_library() {
    let v = vector();
    assert_eq!(
        verifier(&v.jwks).verify(&v.token, v.now),
        Ok(v.claims.clone())
    );

    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(json!(v.signing.public())).expect("a JWK jsonwebtoken reads");
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["https://api.example.com"]);
    validation.set_issuer(&["keygate"]);
    validation.validate_exp = false; // the vector's times are fixed; expiry is checked below
    let decoded = jsonwebtoken::decode::<Value>(&v.token, &key, &validation).unwrap();
    assert_eq!(decoded.header.kid.as_deref(), Some(v.signing.kid.as_str()));
    assert_eq!(decoded.claims["sub"], v.claims.sub.as_str());
    assert_eq!(decoded.claims["permissions"], json!(v.claims.permissions));
}

#[test]
fn one_changed_byte_anywhere_is_refused() {
    let v = vector();
    let check = verifier(&v.jwks);
    for at in 0..v.token.len() {
        let mut bytes = v.token.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let Ok(tampered) = String::from_utf8(bytes) else {
            continue;
        };
        if tampered == v.token {
            continue;
        }
        assert!(check.verify(&tampered, v.now).is_err(), "byte {at}");
    }
}

#[test]
fn forgeries_and_stale_assertions_are_refused() {
    let v = vector();
    let check = verifier(&v.jwks);
    let other = generate(&v.signing.kid, &[8; 32]);
    assert_eq!(
        check.verify(&sign(&other, &v.claims).unwrap(), v.now),
        Err(AssertionError::Signature),
        "a key that claims the right kid"
    );
    let unknown = generate("someone-else", &[9; 32]);
    assert_eq!(
        check.verify(&sign(&unknown, &v.claims).unwrap(), v.now),
        Err(AssertionError::UnknownKey)
    );
    let claims = |change: fn(&mut AssertionClaims)| {
        let mut claims = v.claims.clone();
        change(&mut claims);
        sign(&v.signing, &claims).unwrap()
    };
    assert_eq!(
        check.verify(&claims(|c| c.aud = "https://evil.example".into()), v.now),
        Err(AssertionError::Audience)
    );
    assert_eq!(
        check.verify(&claims(|c| c.iss = "not-keygate".into()), v.now),
        Err(AssertionError::Issuer)
    );
    assert_eq!(
        check.verify(&v.token, v.claims.exp + 30),
        Err(AssertionError::Expired),
        "past expiry and the leeway"
    );
    assert!(check.verify(&v.token, v.claims.exp + 29).is_ok());
    assert_eq!(
        check.verify(&v.token, v.claims.iat - 31),
        Err(AssertionError::NotYetValid)
    );
    // alg "none", and an HMAC token keyed with the public key: the classic JWT confusions.
    let [_, body, _]: [&str; 3] = v.token.split('.').collect::<Vec<_>>().try_into().unwrap();
    for alg in ["none", "HS256"] {
        let header = URL_SAFE_NO_PAD
            .encode(json!({"alg": alg, "typ": "JWT", "kid": v.signing.kid}).to_string());
        let forged = format!("{header}.{body}.{}", URL_SAFE_NO_PAD.encode(b"x"));
        assert_eq!(
            check.verify(&forged, v.now),
            Err(AssertionError::Algorithm),
            "{alg}"
        );
    }
    for junk in ["", "a.b", "a.b.c.d", "!!!.!!!.!!!"] {
        assert!(check.verify(junk, v.now).is_err(), "{junk:?}");
    }
    assert!(check.verify(&"a".repeat(9000), v.now).is_err());
}

#[test]
fn a_rotation_publishes_two_keys_and_both_verify() {
    let v = vector();
    let next = generate("kg-2026-12", &[11; 32]);
    let jwks = json!({ "keys": [v.signing.public(), next.public()] }).to_string();
    let check = verifier(&jwks);
    assert!(
        check.verify(&v.token, v.now).is_ok(),
        "the old key, until it is removed"
    );
    assert!(
        check
            .verify(&sign(&next, &v.claims).unwrap(), v.now)
            .is_ok()
    );
    let retired = verifier(&json!({ "keys": [next.public()] }).to_string());
    assert_eq!(
        retired.verify(&v.token, v.now),
        Err(AssertionError::UnknownKey),
        "once the old key is gone from the JWKS"
    );
}

#[test]
fn bad_key_sets_are_refused() {
    let v = vector();
    let key = v.signing.public();
    let cases = [
        ("[]".to_owned(), JwksError::NotJwks),
        (json!({ "keys": [] }).to_string(), JwksError::KeyCount),
        (
            json!({ "keys": [key, key] }).to_string(),
            JwksError::DuplicateKid(key.kid.clone()),
        ),
        (
            json!({ "keys": [{"kty": "RSA", "crv": "Ed25519", "x": key.x, "kid": "r"}] })
                .to_string(),
            JwksError::BadKey("r".into()),
        ),
        (
            json!({ "keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "s"}] })
                .to_string(),
            JwksError::BadKey("s".into()),
        ),
    ];
    for (jwks, error) in cases {
        assert_eq!(
            AssertionVerifier::new(&jwks, "keygate", "a").unwrap_err(),
            error,
            "{jwks}"
        );
    }
}
