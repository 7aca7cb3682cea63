//! The API Keys page: the list, with the API's filters and cursor pages. It is `GET /v1/keys`
//! itself ([`keys::list_keys`]), called with the session's caller, so a member sees exactly what
//! the API shows them: their own keys.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use keygate_shared::RateLimit;

use super::AppState;
use super::chart::{SPARK_HOURS, Spark, spark_hours};
use super::listing::{self, Filters, Listed};
use super::page::{self, Layout};
use super::session::Signed;
use crate::http::ApiError;
use crate::http::error::ApiQuery;
use crate::http::keys::{self, ListKeysQuery};
use crate::http::views::KeyView;
use crate::store::keys::KeyStatus;
use crate::store::usage;

/// Grants a row names before it says how many more there are.
const GRANTS_SHOWN: usize = 3;

/// The API's filters of the key list, in the order the query string carries them.
const FIELDS: &[&str] = &[
    "status",
    "environment",
    "owner_id",
    "customer_id",
    "name",
    "unused_days",
];

/// A key as a row (or its own page) shows it.
#[derive(Debug)]
pub(super) struct Row {
    pub view: KeyView,
    pub status_word: &'static str,
    pub status_class: &'static str,
    pub grants: String,
    pub rate_limit: String,
    /// Requests per hour over the last [`SPARK_HOURS`] hours, once read.
    pub spark: Option<Spark>,
}

impl Row {
    pub(super) fn new(view: KeyView) -> Self {
        let (status_word, status_class) = match view.status {
            KeyStatus::Active => ("Active", "status-active"),
            KeyStatus::Disabled => ("Disabled", "status-disabled"),
            KeyStatus::Expired => ("Expired", "status-expired"),
            KeyStatus::Revoked => ("Revoked", "status-revoked"),
        };
        Self {
            grants: summary(&view.grants),
            rate_limit: view
                .rate_limit
                .as_ref()
                .map_or_else(String::new, per_window),
            status_word,
            status_class,
            view,
            spark: None,
        }
    }
}

fn summary(grants: &[String]) -> String {
    match grants.len() {
        0 => "none".to_owned(),
        n if n <= GRANTS_SHOWN => grants.join(", "),
        n => format!(
            "{} +{} more",
            grants[..GRANTS_SHOWN].join(", "),
            n - GRANTS_SHOWN
        ),
    }
}

pub(super) fn per_window(limit: &RateLimit) -> String {
    match limit.window_seconds() {
        1 => format!("{} / s", limit.requests()),
        60 => format!("{} / min", limit.requests()),
        3_600 => format!("{} / h", limit.requests()),
        seconds => format!("{} / {seconds} s", limit.requests()),
    }
}

#[derive(askama::Template)]
#[template(path = "keys.html")]
struct KeysPage {
    layout: Layout,
    /// Admins and key managers may filter by owner; members see only their own keys.
    sees_all: bool,
    listed: Listed<Row>,
}

/// `GET /ui/keys`.
pub(super) async fn list(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    RawQuery(query): RawQuery,
) -> Response {
    let sees_all = caller.role.manages_all_keys();
    let layout = Layout::signed_in("API Keys", &caller);
    let listed = listing::list(
        FIELDS,
        query.as_deref(),
        Filters::at,
        |asked: ApiQuery<ListKeysQuery>| keys::list_keys(State(state.clone()), caller, asked),
        Row::new,
    )
    .await;
    match listed {
        Ok(mut listed) => {
            if let Err(error) = sparklines(&state, &mut listed.rows).await {
                return page::failure(&error);
            }
            page::render(
                listed.status,
                &KeysPage {
                    layout,
                    sees_all,
                    listed,
                },
            )
        }
        Err(failure) => failure,
    }
}

/// Each row's sparkline: its key's requests per hour, in one query for the page.
async fn sparklines(state: &AppState, rows: &mut [Row]) -> Result<(), ApiError> {
    let now = state.now();
    let from = now - now.rem_euclid(3_600) - (SPARK_HOURS - 1) * 3_600;
    let ids: Vec<&str> = rows.iter().map(|row| row.view.key_id.as_str()).collect();
    let hourly = usage::hourly(state.db(), &ids, from).await?;
    for row in rows {
        let own = hourly
            .iter()
            .filter(|(key_id, _, _)| *key_id == row.view.key_id)
            .map(|(_, start, requests)| (*start, *requests));
        row.spark = Some(Spark::new(&spark_hours(own, now)));
    }
    Ok(())
}

/// The list's query string for `query` (a list's own, as a row's form carries it back), rebuilt
/// from the filters and cursor it holds: whatever else it says is dropped.
pub(super) fn list_query(query: &str) -> String {
    Filters::parse(FIELDS, query).map_or_else(
        |_| String::new(),
        |(filters, cursor)| filters.at(cursor.as_deref()),
    )
}

/// The list's URL for `query` ([`list_query`]): it cannot point anywhere but the list.
pub(super) fn list_url(query: &str) -> String {
    match list_query(query) {
        query if query.is_empty() => "/ui/keys".to_owned(),
        query => format!("/ui/keys?{query}"),
    }
}

#[cfg(test)]
mod tests {
    use super::list_url;

    #[test]
    fn the_way_back_is_always_the_list() {
        assert_eq!(list_url(""), "/ui/keys");
        assert_eq!(
            list_url("status=active&cursor=abc"),
            "/ui/keys?status=active&cursor=abc"
        );
        // Only the list's own filters survive, re-encoded.
        assert_eq!(
            list_url("name=a%0D%0ALocation:x"),
            "/ui/keys?name=a%0D%0ALocation%3Ax"
        );
        for hostile in [
            "//evil.test",
            "next=https://evil.test",
            "%zz=1&status=active",
        ] {
            assert_eq!(list_url(hostile), "/ui/keys", "{hostile}");
        }
    }
}
