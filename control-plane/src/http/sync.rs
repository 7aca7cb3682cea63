//! `GET /v1/sync/status`: how far the edge's KV snapshot is behind the database.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorResponse};
use super::views::rfc3339;
use super::{AppState, Caller};
use crate::store::outbox;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sync_status))
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SyncStatus {
    /// Where this replica's pusher writes (`cloudflare:<account>/storage/kv/namespaces/<id>` or
    /// `wrangler-local:<binding>:<dir>`); null when it runs none. Other replicas may.
    pub(super) sink: Option<String>,
    /// Where this replica's pusher appends to the edge's change feed before KV; null when it
    /// has no feed.
    pub(super) feed: Option<String>,
    /// Records not yet in the change feed (null without a feed): what isolates cannot know yet.
    pub(super) feed_pending: Option<i64>,
    /// Age of the oldest of them (null when there are none, or no feed).
    pub(super) feed_oldest_pending_age_seconds: Option<i64>,
    /// Snapshot records written to the outbox and not yet in KV.
    pub(super) outbox_depth: i64,
    /// Keys those records belong to.
    pub(super) pending_keys: i64,
    /// Age of the oldest of them; null when there are none.
    pub(super) oldest_pending_age_seconds: Option<i64>,
    /// When any pusher last wrote to KV without an error.
    #[schema(format = DateTime)]
    pub(super) last_success_at: Option<String>,
    #[schema(format = DateTime)]
    pub(super) last_error_at: Option<String>,
    /// What went wrong then (never a credential).
    pub(super) last_error: Option<String>,
    /// The last reconciliation pass (KV listed and compared with the database).
    #[schema(format = DateTime)]
    pub(super) last_reconcile_at: Option<String>,
    /// What that pass queued again, rewrote or deleted.
    pub(super) last_reconcile_repairs: Option<i64>,
    /// Entries that pass read at the right version but found unlike what keygate signed
    /// (tampering, or a replayed older record), and rewrote.
    pub(super) last_reconcile_tampered: Option<i64>,
    /// The last pass that found tampering, and how many entries it rewrote: kept through the
    /// clean passes after it. Worth an alert whenever it changes.
    #[schema(format = DateTime)]
    pub(super) last_tampering_at: Option<String>,
    pub(super) last_tampering_entries: Option<i64>,
}

/// The snapshot pusher's state, shared by all replicas. Admins and key managers.
#[utoipa::path(
    get, path = "/v1/sync/status", tag = "sync", security(("bearer" = [])),
    responses(
        (status = 200, description = "The pusher's state", body = SyncStatus),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 403, description = "A member", body = ErrorResponse),
    )
)]
pub(super) async fn sync_status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<SyncStatus>, ApiError> {
    if !caller.role.manages_all_keys() {
        return Err(ApiError::forbidden(
            "the sync status needs the admin or key_manager role",
        ));
    }
    let backlog = outbox::backlog(state.db()).await?;
    let last = outbox::sync_state(state.db()).await?;
    let now = state.now();
    Ok(Json(SyncStatus {
        sink: state.sync().sink().map(str::to_owned),
        feed: state.sync().feed().map(str::to_owned),
        feed_pending: state.sync().feed().map(|_| backlog.unfed),
        feed_oldest_pending_age_seconds: state
            .sync()
            .feed()
            .and(backlog.oldest_unfed_at)
            .map(|at| (now - at).max(0)),
        outbox_depth: backlog.depth,
        pending_keys: backlog.keys,
        oldest_pending_age_seconds: backlog.oldest_enqueued_at.map(|at| (now - at).max(0)),
        last_success_at: last.last_success_at.map(rfc3339),
        last_error_at: last.last_error_at.map(rfc3339),
        last_error: last.last_error,
        last_reconcile_at: last.last_reconcile_at.map(rfc3339),
        last_reconcile_repairs: last.last_reconcile_repairs,
        last_reconcile_tampered: last.last_reconcile_tampered,
        last_tampering_at: last.last_tampering_at.map(rfc3339),
        last_tampering_entries: last.last_tampering_entries,
    }))
}
