//! A key's own page: its details (restrictions and who set them, the previous secret's grace),
//! its requests of the last day by outcome, its request log with filters, and its audit history.
//! The key is `GET /v1/keys/{key_id}`'s own answer, so a key the caller may not see is a 404
//! here too; the log and the audit history are the API's listings narrowed to the key.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::chart::{CHART_HOURS, Chart};
use super::history::{self, AuditRow, OUTCOMES};
use super::keys::Row;
use super::listing::{self, Filters, Listed};
use super::page::{self, Layout};
use super::session::Signed;
use super::{AppState, Caller};
use crate::http::error::ApiQuery;
use crate::http::keys;
use crate::http::usage::{self, LogEntryView, LogQuery};
use crate::store::usage as usage_store;
use keygate_shared::Outcome;

/// The key page's request-log filters; the key itself is fixed.
const LOG_FIELDS: &[&str] = &["outcome", "since", "until"];

/// A restriction on the key, as the page shows it.
#[derive(Debug)]
struct Lock {
    what: &'static str,
    set_by: String,
    set_at: String,
}

#[derive(askama::Template)]
#[template(path = "key.html")]
struct KeyPage {
    layout: Layout,
    row: Row,
    locks: Vec<Lock>,
    /// Whether the restrictions bind the caller (they own the key and manage no one else's).
    bound: bool,
    chart: Chart,
    outcomes: [Outcome; 11],
    log: Listed<LogEntryView>,
    audit: Listed<AuditRow>,
}

/// `GET /ui/keys/{key_id}`.
pub(super) async fn show(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let view = match keys::get_key(State(state.clone()), caller.clone(), Path(id)).await {
        Ok(view) => view.0,
        Err(error) => return page::failure(&error),
    };
    let now = state.now();
    let from = now - now.rem_euclid(3_600) - (CHART_HOURS - 1) * 3_600;
    let counts =
        match usage_store::outcomes(state.db(), &view.key_id, from, now + 3_600, 3_600).await {
            Ok(counts) => counts,
            Err(error) => return page::failure(&error.into()),
        };
    let key_id = view.key_id.clone();
    let log = match key_log(&state, &caller, &key_id, query.as_deref()).await {
        Ok(log) => log,
        Err(failure) => return failure,
    };
    let target = serde_urlencoded::to_string([("target_id", &key_id)]).unwrap_or_default();
    let audit = match history::audit_page(state, caller.clone(), Some(&target)).await {
        Ok(audit) => audit,
        Err(failure) => return failure,
    };
    let locks = view
        .restrictions
        .iter()
        .map(|(restriction, set)| Lock {
            what: restriction.as_str(),
            set_by: set.set_by.clone(),
            set_at: set.set_at.clone(),
        })
        .collect();
    let status = if log.status.is_client_error() {
        log.status
    } else {
        StatusCode::OK
    };
    page::render(
        status,
        &KeyPage {
            layout: Layout::signed_in("API Keys", &caller),
            bound: !caller.role.manages_all_keys(),
            row: Row::new(view),
            locks,
            chart: Chart::new(&counts, now),
            outcomes: OUTCOMES,
            log,
            audit,
        },
    )
}

/// The key's request log as `query` filters it.
async fn key_log(
    state: &AppState,
    caller: &Caller,
    key_id: &str,
    query: Option<&str>,
) -> Result<Listed<LogEntryView>, Response> {
    let (state, caller) = (state.clone(), caller.clone());
    listing::list(
        LOG_FIELDS,
        query,
        |filters: &Filters, cursor| {
            let key = serde_urlencoded::to_string([("key_id", key_id)]).unwrap_or_default();
            format!("{key}&{}", history::api_query(filters, cursor))
        },
        |asked: ApiQuery<LogQuery>| usage::list_logs(State(state), caller, asked),
        |entry| entry,
    )
    .await
}
