//! `/v1/audit-log`: every mutation, newest first. Admins and key managers see all of it; members
//! see what they did themselves.
#![allow(
    unused_qualifications,
    reason = "utoipa's expansion of `params(Query)` qualifies the type it is given"
)]

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiQuery, ErrorResponse};
use super::views::{Page, decode_cursor, page_size, parse_rfc3339, rfc3339};
use super::{AppState, Caller};
use crate::store::audit::{self, AuditFilter};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit_events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Events by this user.
    actor_id: Option<String>,
    /// `key.create`, `key.revoke`, `user.role`, ...
    action: Option<String>,
    /// Events about this key, user, permission or set.
    target_id: Option<String>,
    /// RFC 3339; events at or after.
    #[param(format = DateTime)]
    since: Option<String>,
    /// RFC 3339; events before.
    #[param(format = DateTime)]
    until: Option<String>,
    /// 1 to 500; 50 if absent.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AuditEventView {
    pub(super) id: i64,
    #[schema(format = DateTime)]
    pub(super) occurred_at: String,
    /// Null for the bootstrap admin's creation.
    pub(super) actor_id: Option<String>,
    pub(super) action: String,
    pub(super) target_type: String,
    pub(super) target_id: String,
    /// What changed, without secrets.
    pub(super) summary: Value,
    pub(super) request_id: Option<String>,
    pub(super) client_ip: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(
    get, path = "/v1/audit-log", tag = "audit", security(("bearer" = [])),
    params(AuditQuery),
    extensions(("x-semantic-refusals" = json!(["invalid_cursor"]))),
    responses(
        (status = 200, description = "One page", body = Page<AuditEventView>),
        (status = 400, description = "Bad query parameter or cursor", body = ErrorResponse),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 403, description = "A member asking for someone else's actions", body = ErrorResponse),
    )
)]
pub(super) async fn list_audit_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Page<AuditEventView>>, ApiError> {
    let limit = page_size(query.limit)?;
    let actor_id = match query.actor_id {
        None if !caller.role.manages_all_keys() => Some(caller.user_id.clone()),
        Some(actor) if !caller.manages(&actor) => {
            return Err(ApiError::forbidden(
                "members can only read the audit log of their own actions",
            ));
        }
        other => other,
    };
    let bad_query = |error: crate::store::Refusal| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", error.to_string())
    };
    let filter = AuditFilter {
        actor_id,
        action: query.action,
        target_id: query.target_id,
        since: query
            .since
            .map(|at| parse_rfc3339("since", &at))
            .transpose()
            .map_err(bad_query)?,
        until: query
            .until
            .map(|at| parse_rfc3339("until", &at))
            .transpose()
            .map_err(bad_query)?,
        before: query
            .cursor
            .map(|cursor| decode_cursor(&cursor, |position| position.parse().ok()))
            .transpose()?,
    };
    let events = audit::list(state.db(), &filter, limit + 1).await?;
    Ok(Json(Page::of(
        events,
        limit,
        |event| event.audit_event_id.to_string(),
        |event| AuditEventView {
            id: event.audit_event_id,
            occurred_at: rfc3339(event.occurred_at),
            actor_id: event.actor_id,
            action: event.action,
            target_type: event.target_type,
            target_id: event.target_id,
            summary: event.summary,
            request_id: event.request_id,
            client_ip: event.client_ip,
        },
    )))
}
