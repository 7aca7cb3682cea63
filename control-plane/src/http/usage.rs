//! Usage: the edge's ingest endpoint, per-key counts, and the request log.
//!
//! `POST /v1/usage/events` is called by the edge's queue consumer with the ingest token
//! (`KEYGATE_INGEST_TOKEN`), which can do nothing else; control-plane tokens cannot ingest.
#![allow(
    unused_qualifications,
    reason = "utoipa's expansion of `params(Query)` qualifies the type it is given"
)]

use axum::Json;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use keygate_shared::{KeyId, Outcome, UsageEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::bearer_is;
use super::error::{ApiError, ApiJson, ApiQuery, ErrorResponse};
use super::views::{Page, decode_cursor, page_size, parse_rfc3339, rfc3339};
use super::{AppState, Caller};
use crate::store::keys;
use crate::store::usage::{self, LogFilter};

/// Events per ingest batch, and the body that holds them.
const MAX_BATCH: usize = 1000;
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// How far an event's time may be ahead of ours (clock skew), in milliseconds.
const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ingest_events))
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .routes(routes!(key_usage))
        .routes(routes!(list_logs))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct IngestRequest {
    /// At most 1000.
    events: Vec<UsageEvent>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct IngestResponse {
    /// Events stored for the first time.
    accepted: u64,
    /// Events already stored (a redelivery): nothing changed.
    duplicates: u64,
    /// Events refused, by their index in the batch; the others were stored.
    rejected: Vec<Rejected>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Rejected {
    index: usize,
    message: String,
}

/// The edge's usage consumer, known by the ingest token. An extractor of the request's head, so
/// it runs before the body is read: a caller without the token gets 401 before a byte of its
/// (up to 1 MiB) body is parsed.
#[derive(Debug)]
pub(super) struct IngestCaller;

impl FromRequestParts<AppState> for IngestCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match &state.settings().ingest_token {
            Some(expected) if bearer_is(parts, expected) => Ok(Self),
            _ => Err(ApiError::unauthorized("missing or invalid ingest token")),
        }
    }
}

/// Store a batch of usage events from the edge. Idempotent by event id; valid events are stored
/// even when others in the batch are refused.
#[utoipa::path(
    post, path = "/v1/usage/events", tag = "usage", security(("ingest" = [])),
    request_body = IngestRequest,
    responses(
        (status = 200, description = "Stored (see rejected)", body = IngestResponse),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or wrong ingest token", body = ErrorResponse),
        (status = 413, description = "Over 1 MiB", body = ErrorResponse),
        (status = 422, description = "Not a batch, or over 1000 events", body = ErrorResponse),
    )
)]
async fn ingest_events(
    State(state): State<AppState>,
    _edge: IngestCaller,
    ApiJson(batch): ApiJson<IngestRequest>,
) -> Result<Json<IngestResponse>, ApiError> {
    if batch.events.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "batch_too_large",
            format!("a batch holds at most {MAX_BATCH} events"),
        ));
    }
    let now = state.now();
    let oldest_ms = (now - i64::from(state.settings().log_retention_days) * 86_400) * 1000;
    let mut valid = Vec::with_capacity(batch.events.len());
    let mut rejected = Vec::new();
    for (index, event) in batch.events.into_iter().enumerate() {
        match event.check(now * 1000, oldest_ms, MAX_SKEW_MS) {
            Ok(event) => valid.push(event),
            Err(message) => rejected.push(Rejected { index, message }),
        }
    }
    let ingested = usage::ingest(state.db(), &valid, now).await?;
    Ok(Json(IngestResponse {
        accepted: ingested.accepted,
        duplicates: ingested.duplicates,
        rejected,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct UsageQuery {
    /// RFC 3339; default: 7 days before `to`.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339, exclusive; default: now.
    #[param(format = DateTime)]
    to: Option<String>,
    /// `hour` (default) or `day`.
    #[param(pattern = "^(hour|day)$")]
    granularity: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UsageView {
    pub(super) key_id: String,
    pub(super) granularity: String,
    /// Buckets with requests, oldest first.
    pub(super) buckets: Vec<BucketView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BucketView {
    #[schema(format = DateTime)]
    pub(super) start: String,
    pub(super) allowed: i64,
    pub(super) denied: i64,
}

/// A key's requests per hour or day, allowed and denied, as the edge reported them.
#[utoipa::path(
    get, path = "/v1/keys/{key_id}/usage", tag = "usage", security(("bearer" = [])),
    params(("key_id" = String, Path, description = "The key's id"), UsageQuery),
    extensions(("x-semantic-refusals" = json!(["invalid_range"]))),
    responses(
        (status = 200, description = "Counts", body = UsageView),
        (status = 400, description = "Bad query", body = ErrorResponse),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 404, description = "No such key (or not yours)", body = ErrorResponse),
    )
)]
pub(super) async fn key_usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<UsageView>, ApiError> {
    let key_id = KeyId::parse(&id).map_err(|_| ApiError::not_found("key"))?;
    let key = keys::get(state.db(), &key_id)
        .await?
        .filter(|key| caller.manages(key.owner_id.as_str()))
        .ok_or_else(|| ApiError::not_found("key"))?;
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message);
    let (granularity, bucket) = match query.granularity.as_deref() {
        None | Some("hour") => ("hour", 3600),
        Some("day") => ("day", 86_400),
        Some(_) => return Err(bad("granularity must be hour or day".into())),
    };
    let at = |field: &str, text: Option<String>| {
        text.map(|text| parse_rfc3339(field, &text).map_err(|error| bad(error.to_string())))
            .transpose()
    };
    let to = at("to", query.to)?.unwrap_or_else(|| state.now());
    let from = at("from", query.from)?.unwrap_or(to - 7 * 86_400);
    if from >= to || to - from > 366 * 86_400 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_range",
            "from must be before to, and at most 366 days apart",
        ));
    }
    let buckets = usage::usage(state.db(), key.key_id.as_str(), from, to, bucket).await?;
    Ok(Json(UsageView {
        key_id: key.key_id.as_str().to_owned(),
        granularity: granularity.to_owned(),
        buckets: buckets
            .into_iter()
            .map(|bucket| BucketView {
                start: rfc3339(bucket.start),
                allowed: bucket.allowed,
                denied: bucket.denied,
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct LogQuery {
    /// Events of this key.
    key_id: Option<String>,
    /// `ok` or a denial code.
    outcome: Option<String>,
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
pub(super) struct LogEntryView {
    pub(super) event_id: String,
    pub(super) key_id: String,
    /// RFC 3339 with milliseconds.
    #[schema(format = DateTime)]
    pub(super) occurred_at: String,
    pub(super) method: String,
    pub(super) route: String,
    pub(super) outcome: Outcome,
    pub(super) status: u16,
    pub(super) colo: String,
    pub(super) latency_ms: i64,
}

/// The request log, newest first: admins and key managers see every key's; members their own
/// keys'. Kept for `KEYGATE_LOG_RETENTION_DAYS`.
#[utoipa::path(
    get, path = "/v1/logs", tag = "usage", security(("bearer" = [])),
    params(LogQuery),
    extensions(("x-semantic-refusals" = json!(["invalid_cursor"]))),
    responses(
        (status = 200, description = "One page", body = Page<LogEntryView>),
        (status = 400, description = "Bad query parameter or cursor", body = ErrorResponse),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
    )
)]
pub(super) async fn list_logs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Json<Page<LogEntryView>>, ApiError> {
    let limit = page_size(query.limit)?;
    let bad = |error: crate::store::Refusal| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", error.to_string())
    };
    let millis = |field: &str, text: Option<String>| {
        text.map(|text| parse_rfc3339(field, &text).map(|at| at * 1000).map_err(bad))
            .transpose()
    };
    let filter = LogFilter {
        key_id: query.key_id,
        owner_id: (!caller.role.manages_all_keys()).then(|| caller.user_id.clone()),
        outcome: query.outcome,
        since_ms: millis("since", query.since)?,
        until_ms: millis("until", query.until)?,
        before: query
            .cursor
            .map(|cursor| {
                decode_cursor(&cursor, |position| {
                    let (at, id) = position.split_once(' ')?;
                    Some((at.parse().ok()?, id.to_owned()))
                })
            })
            .transpose()?,
    };
    let events = usage::log(state.db(), &filter, limit + 1).await?;
    Ok(Json(Page::of(
        events,
        limit,
        |event| format!("{} {}", event.occurred_at_ms, event.event_id),
        |event| LogEntryView {
            occurred_at: time::OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(event.occurred_at_ms) * 1_000_000,
            )
            .ok()
            .and_then(|at| {
                at.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default(),
            event_id: event.event_id,
            key_id: event.key_id.to_string(),
            method: event.method,
            route: event.route,
            outcome: event.outcome,
            status: event.status,
            colo: event.colo,
            latency_ms: event.latency_ms,
        },
    )))
}
