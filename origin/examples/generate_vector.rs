//! Writes `origin/tests/vector.json`: a fixed signing key (secret bytes all 7, kid `kg-2026-11`),
//! its JWKS, fixed claims and the token they sign to. docs/edge.md prints it as the test vector
//! for origins verifying with another JWT library.
//!
//! `cargo run -p keygate-origin --example generate_vector`

use keygate_shared::AssertionClaims;
use serde_json::json;

fn main() {
    let signing = keygate_origin::generate("kg-2026-11", &[7; 32]);
    let claims = AssertionClaims {
        iss: "keygate".into(),
        aud: "https://api.example.com".into(),
        sub: "4fJ0tq8HvQmZ2cL9sWbN1e".into(),
        owner_id: "usr_7".into(),
        customer_id: Some("cus_1".into()),
        permissions: vec!["customer:read".into(), "telemetry:write".into()],
        environment: "production".into(),
        iat: 1_796_083_200,
        exp: 1_796_083_260,
    };
    let token = keygate_origin::sign(&signing, &claims).expect("a valid key signs");
    let vector = json!({
        "signing_jwk": signing,
        "jwks": { "keys": [signing.public()] },
        "claims": claims,
        "token": token,
        "now": claims.iat + 10,
    });
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vector.json");
    let text = serde_json::to_string_pretty(&vector).expect("JSON") + "\n";
    std::fs::write(path, text).expect("write the vector");
    println!("wrote {path}");
}
