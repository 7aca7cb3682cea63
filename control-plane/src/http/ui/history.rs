//! The Logs page (the edge's request log) and the Audit page (who changed what): each is the
//! API's own listing (`GET /v1/logs`, `GET /v1/audit-log`) with its filters, called with the
//! session's caller, so a member sees what the API shows them.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use keygate_shared::Outcome;

use super::listing::{self, Filters, Listed};
use super::page::{self, Layout};
use super::session::Signed;
use super::{AppState, Caller};
use crate::http::audit::{self, AuditEventView, AuditQuery};
use crate::http::error::ApiQuery;
use crate::http::usage::{self, LogEntryView, LogQuery};

/// The request log's filters.
const LOG_FIELDS: &[&str] = &["key_id", "outcome", "since", "until"];
/// The audit log's filters.
const AUDIT_FIELDS: &[&str] = &["actor_id", "action", "target_id", "since", "until"];

/// Every outcome, for the outcome filter.
pub(super) const OUTCOMES: [Outcome; 11] = Outcome::ALL;

/// A time as a `datetime-local` field sends it (`2026-12-06T09:30`, read as UTC) in the API's
/// RFC 3339; anything else goes to the API as typed, for it to accept or refuse.
pub(super) fn utc(typed: &str) -> String {
    let local = typed.len() == 16 || typed.len() == 19;
    if local && typed.as_bytes().get(10) == Some(&b'T') {
        let seconds = if typed.len() == 16 { ":00" } else { "" };
        format!("{typed}{seconds}Z")
    } else {
        typed.to_owned()
    }
}

/// The API's query for typed filters at `cursor`: times in RFC 3339.
pub(super) fn api_query(filters: &Filters, cursor: Option<&str>) -> String {
    let mut api = filters.clone();
    for field in ["since", "until"] {
        let time = utc(api.get(field));
        api.set(field, time);
    }
    api.at(cursor)
}

#[derive(askama::Template)]
#[template(path = "logs.html")]
struct LogsPage {
    layout: Layout,
    outcomes: [Outcome; 11],
    listed: Listed<LogEntryView>,
}

/// `GET /ui/logs`.
pub(super) async fn logs(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    RawQuery(query): RawQuery,
) -> Response {
    let layout = Layout::signed_in("Logs", &caller);
    let listed = listing::list(
        LOG_FIELDS,
        query.as_deref(),
        api_query,
        |asked: ApiQuery<LogQuery>| usage::list_logs(State(state), caller, asked),
        |entry| entry,
    )
    .await;
    match listed {
        Ok(listed) => page::render(
            listed.status,
            &LogsPage {
                layout,
                outcomes: OUTCOMES,
                listed,
            },
        ),
        Err(failure) => failure,
    }
}

#[derive(askama::Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    sees_all: bool,
    listed: Listed<AuditRow>,
}

/// An audit event as a row shows it: its summary as compact JSON.
#[derive(Debug)]
pub(super) struct AuditRow {
    pub event: AuditEventView,
    pub summary: String,
}

impl AuditRow {
    fn new(event: AuditEventView) -> Self {
        Self {
            summary: event.summary.to_string(),
            event,
        }
    }
}

/// `GET /ui/audit`.
pub(super) async fn audit(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    RawQuery(query): RawQuery,
) -> Response {
    let layout = Layout::signed_in("Audit", &caller);
    let sees_all = caller.role.manages_all_keys();
    match audit_page(state, caller, query.as_deref()).await {
        Ok(listed) => page::render(
            listed.status,
            &AuditPage {
                layout,
                sees_all,
                listed,
            },
        ),
        Err(failure) => failure,
    }
}

/// One page of the audit log, as `query` filters it.
pub(super) async fn audit_page(
    state: AppState,
    caller: Caller,
    query: Option<&str>,
) -> Result<Listed<AuditRow>, Response> {
    listing::list(
        AUDIT_FIELDS,
        query,
        api_query,
        |asked: ApiQuery<AuditQuery>| audit::list_audit_events(State(state), caller, asked),
        AuditRow::new,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn a_local_time_field_is_read_as_utc() {
        assert_eq!(utc("2026-12-06T09:30"), "2026-12-06T09:30:00Z");
        assert_eq!(utc("2026-12-06T09:30:15"), "2026-12-06T09:30:15Z");
        assert_eq!(
            utc("2026-12-06T09:30:00+01:00"),
            "2026-12-06T09:30:00+01:00"
        );
        assert_eq!(utc("yesterday"), "yesterday");
        assert_eq!(utc(""), "");
    }
}
