//! `POST /v1/verify`: the edge's decision, for services that are not behind the edge. Same code
//! (keygate-shared's `decide`), decided against the database rather than a KV snapshot, read
//! through the read cache (`http::cache`: a change made on this replica is seen at once, one
//! made on another within the cache's TTL).

use axum::Json;
use axum::extract::State;
use keygate_shared::{Decision, Environment, Request, VerifyRequest, VerifyResponse};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::CachedCaller;
use super::error::{ApiError, ApiJson, ErrorResponse};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(verify_key))
}

/// Verify a key as the edge would.
#[utoipa::path(
    post, path = "/v1/verify", tag = "verify", security(("bearer" = [])),
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "The decision; `valid` says whether the key may be used", body = VerifyResponse),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 422, description = "Invalid field", body = ErrorResponse),
    )
)]
async fn verify_key(
    State(state): State<AppState>,
    _caller: CachedCaller,
    ApiJson(request): ApiJson<VerifyRequest>,
) -> Result<Json<Value>, ApiError> {
    let environment = request.environment.unwrap_or(Environment::Production);
    let candidate = match state.key_verifier(environment).identify_key(&request.key) {
        Ok(candidate) => candidate,
        Err(denial) => return answer(&Decision::Denied(denial)),
    };
    let record = state
        .cache()
        .key(state.db(), state.now_ms(), &candidate.key_id())
        .await?;
    let needs = Request {
        now: state.now(),
        client_ip: request.client_ip,
        required: &request.permissions,
        customer_id: request.customer_id.as_deref(),
        customer_keys: false,
    };
    answer(&candidate.decide(record.as_deref(), &needs))
}

fn answer(decision: &Decision<'_>) -> Result<Json<Value>, ApiError> {
    serde_json::to_value(decision.to_verify_response())
        .map(Json)
        .map_err(ApiError::internal)
}
