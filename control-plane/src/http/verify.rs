//! `POST /v1/verify`: the edge's decision, for services that are not behind the edge. Same code
//! (keygate-shared's `decide`), decided against the database rather than a KV snapshot.

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use keygate_shared::{Decision, Environment, Request, VerifyRequest, decide};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiJson, ErrorResponse};
use super::views::EnvironmentName;
use super::{AppState, Caller};
use crate::store::keys;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(verify_key))
}

/// The body of `POST /v1/verify` (keygate-shared's `VerifyRequest`).
#[derive(Debug, ToSchema)]
#[allow(
    dead_code,
    reason = "documents the shape of keygate_shared::VerifyRequest"
)]
pub(super) struct VerifyRequestBody {
    /// The key to check, as the client sent it.
    key: String,
    /// The deployment the key must belong to; `production` if absent.
    environment: Option<EnvironmentName>,
    /// Permissions the request needs; all must be granted.
    permissions: Option<Vec<String>>,
    /// The customer the request acts for, if it is customer-scoped.
    customer_id: Option<String>,
    /// The client's address, checked against the key's allowlist.
    #[schema(value_type = Option<String>)]
    client_ip: Option<IpAddr>,
}

/// The answer (keygate-shared's `VerifyResponse`).
#[derive(Debug, Serialize, ToSchema)]
#[allow(
    dead_code,
    reason = "documents the shape of keygate_shared::VerifyResponse"
)]
pub(super) struct VerifyResponseBody {
    valid: bool,
    /// `ok`, or why not: `invalid_key`, `wrong_environment`, `revoked`, `disabled`, `expired`,
    /// `ip_not_allowed`, `customer_mismatch`, `insufficient_permissions`.
    code: String,
    message: Option<String>,
    required_permission: Option<String>,
    /// When valid: the key's id and identity.
    key_id: Option<String>,
    environment: Option<EnvironmentName>,
    owner_id: Option<String>,
    customer_id: Option<String>,
    permissions: Option<Vec<String>>,
    expires_at: Option<i64>,
    rate_limit: Option<Value>,
    previous_secret: Option<bool>,
}

/// Verify a key as the edge would.
#[utoipa::path(
    post, path = "/v1/verify", tag = "verify", security(("bearer" = [])),
    request_body = VerifyRequestBody,
    responses(
        (status = 200, description = "The decision; `valid` says whether the key may be used", body = VerifyResponseBody),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 422, description = "Invalid field", body = ErrorResponse),
    )
)]
async fn verify_key(
    State(state): State<AppState>,
    _caller: Caller,
    ApiJson(request): ApiJson<VerifyRequest>,
) -> Result<Json<Value>, ApiError> {
    let environment = request.environment.unwrap_or(Environment::Production);
    let verifier = state.key_verifier(environment);
    let decide_request = Request {
        now: state.now(),
        client_ip: request.client_ip,
        required: &request.permissions,
        customer_id: request.customer_id.as_deref(),
    };
    let presented = match verifier.credential(None, Some(request.key.as_str())) {
        Ok(presented) => presented,
        Err(denial) => return answer(&Decision::Denied(denial)),
    };
    let key = match verifier.check(&presented) {
        Ok(key) => key,
        Err(denial) => return answer(&Decision::Denied(denial)),
    };
    let record = keys::get(state.db(), &key.key_id())
        .await?
        .map(|stored| stored.snapshot());
    answer(&decide(&key, record.as_ref(), &decide_request))
}

fn answer(decision: &Decision<'_>) -> Result<Json<Value>, ApiError> {
    serde_json::to_value(decision.to_verify_response())
        .map(Json)
        .map_err(ApiError::internal)
}
