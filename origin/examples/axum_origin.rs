//! An origin behind keygate, in axum: a middleware refuses every request without a valid
//! `x-keygate-assertion` and hands the verified claims to the handlers, which trust nothing else
//! (not the plain `x-keygate-*` headers, not the client's address).
//!
//! ```sh
//! curl -s http://127.0.0.1:8080/.well-known/jwks.json > jwks.json   # from the control plane
//! KEYGATE_JWKS=jwks.json KEYGATE_AUDIENCE=http://127.0.0.1:8789 \
//!   cargo run -p keygate-origin --example axum_origin
//! ```

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use keygate_origin::{ASSERTION_HEADER, AssertionClaims, AssertionVerifier};

/// Lets a request through only with a valid assertion; the handler gets its claims.
async fn require_keygate(
    State(verifier): State<Arc<AssertionVerifier>>,
    mut request: Request,
    next: Next,
) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64);
    let token = request
        .headers()
        .get(ASSERTION_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    match verifier.verify(token, now) {
        Ok(claims) => {
            request.extensions_mut().insert(claims);
            next.run(request).await
        }
        // Say no more than that: the caller is either not keygate or not current.
        Err(_) => (StatusCode::UNAUTHORIZED, "not authorised by keygate\n").into_response(),
    }
}

async fn profile(Extension(claims): Extension<AssertionClaims>) -> String {
    format!(
        "key {} of {} may {:?} for customer {:?}\n",
        claims.sub, claims.owner_id, claims.permissions, claims.customer_id
    )
}

#[tokio::main]
async fn main() {
    let jwks_path = std::env::var("KEYGATE_JWKS").unwrap_or_else(|_| "jwks.json".into());
    let jwks = std::fs::read_to_string(&jwks_path).expect("the JWKS file (KEYGATE_JWKS)");
    let audience = std::env::var("KEYGATE_AUDIENCE").expect("the edge's KEYGATE_ORIGIN");
    let verifier = Arc::new(AssertionVerifier::new(&jwks, "keygate", &audience).expect("a JWKS"));
    let app = Router::new()
        .route("/v1/customers/{customer}/profile", get(profile))
        .layer(middleware::from_fn_with_state(verifier, require_keygate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8789")
        .await
        .expect("listen");
    axum::serve(listener, app).await.expect("serve");
}
