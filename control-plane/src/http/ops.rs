//! Operations: liveness, readiness, Prometheus metrics and the OpenAPI document. No token needed.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::bearer_is;
use super::error::{ApiError, ErrorResponse};
use crate::store::{keys, outbox};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_document))
        .routes(routes!(jwks))
}

/// The public keys of the edge's identity assertions, for origins to verify them with.
#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "operations",
    responses(
        (status = 200, description = "The JWKS (Ed25519 public keys, one per `kid`)", body = keygate_shared::Jwks),
        (status = 404, description = "No JWKS configured (`KEYGATE_ASSERTION_JWKS_FILE`)", body = ErrorResponse),
    )
)]
async fn jwks(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let jwks = state
        .settings()
        .assertion_jwks
        .as_ref()
        .ok_or_else(|| ApiError::not_found("JWKS"))?;
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(jwks.clone()),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Health {
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The process can serve: its database answers.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database does not answer", body = ErrorResponse),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.db().ping().await.map_err(|error| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "not_ready",
        message: "the database does not answer".into(),
        internal: Some(error.to_string()),
    })?;
    Ok(Json(Health { status: "ready" }))
}

/// Who may read `/metrics`: anyone, or under `KEYGATE_METRICS_TOKEN` the scraper that sends it.
#[derive(Debug)]
pub(super) struct Scraper;

impl FromRequestParts<AppState> for Scraper {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match &state.settings().metrics_token {
            Some(expected) if !bearer_is(parts, expected) => {
                Err(ApiError::unauthorized("missing or invalid metrics token"))
            }
            _ => Ok(Self),
        }
    }
}

/// Prometheus text: requests and latency by route, keys by status, the outbox and the pusher.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String),
        (status = 401, description = "`KEYGATE_METRICS_TOKEN` is set and the request does not carry it", body = ErrorResponse),
        (status = 500, description = "The database does not answer", body = ErrorResponse),
    )
)]
async fn metrics(
    State(state): State<AppState>,
    _scraper: Scraper,
) -> Result<impl IntoResponse, ApiError> {
    let mut out = String::new();
    state.metrics().render(&mut out);
    out.push_str("# HELP keygate_keys Keys by status.\n# TYPE keygate_keys gauge\n");
    for (status, count) in keys::count_by_status(state.db(), state.now()).await? {
        let status = status.as_str();
        let _ = writeln!(out, "keygate_keys{{status=\"{status}\"}} {count}");
    }
    let backlog = outbox::backlog(state.db()).await?;
    let last = outbox::sync_state(state.db()).await?;
    let age = backlog
        .oldest_enqueued_at
        .map_or(0, |at| (state.now() - at).max(0));
    let _ = writeln!(
        out,
        "# HELP keygate_outbox_depth Snapshot records waiting to be pushed to KV.\n\
         # TYPE keygate_outbox_depth gauge\nkeygate_outbox_depth {}\n\
         # HELP keygate_outbox_oldest_pending_seconds Age of the oldest record waiting (0: none).\n\
         # TYPE keygate_outbox_oldest_pending_seconds gauge\n\
         keygate_outbox_oldest_pending_seconds {age}\n\
         # HELP keygate_sync_last_success_timestamp_seconds When a pusher last wrote to KV (0: never).\n\
         # TYPE keygate_sync_last_success_timestamp_seconds gauge\n\
         keygate_sync_last_success_timestamp_seconds {}\n\
         # HELP keygate_sync_last_error_timestamp_seconds When a push last failed (0: never).\n\
         # TYPE keygate_sync_last_error_timestamp_seconds gauge\n\
         keygate_sync_last_error_timestamp_seconds {}",
        backlog.depth,
        last.last_success_at.unwrap_or_default(),
        last.last_error_at.unwrap_or_default(),
    );
    if state.sync().feed().is_some() {
        let age = backlog
            .oldest_unfed_at
            .map_or(0, |at| (state.now() - at).max(0));
        let _ = writeln!(
            out,
            "# HELP keygate_feed_pending Records not yet appended to the edge's change feed.\n\
             # TYPE keygate_feed_pending gauge\nkeygate_feed_pending {}\n\
             # HELP keygate_feed_oldest_pending_seconds Age of the oldest of them (0: none): the \
             feed's lag, which bounds how late an isolate learns of a revocation.\n\
             # TYPE keygate_feed_oldest_pending_seconds gauge\n\
             keygate_feed_oldest_pending_seconds {age}",
            backlog.unfed
        );
    }
    state.sync().render_metrics(&mut out);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document of this API", content_type = "application/json"))
)]
async fn openapi_document(
    Extension(document): Extension<Arc<serde_json::Value>>,
) -> Json<serde_json::Value> {
    Json(document.as_ref().clone())
}
