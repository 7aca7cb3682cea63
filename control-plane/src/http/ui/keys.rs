//! The API Keys page: the list, with the API's filters and cursor pages. It is `GET /v1/keys`
//! itself ([`keys::list_keys`]), called with the session's caller, so a member sees exactly what
//! the API shows them: their own keys.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use keygate_shared::RateLimit;

use super::AppState;
use super::page::{self, Layout};
use super::session::Signed;
use crate::http::error::ApiQuery;
use crate::http::keys::{self, ListKeysQuery};
use crate::http::views::KeyView;
use crate::store::keys::KeyStatus;

/// Grants a row names before it says how many more there are.
const GRANTS_SHOWN: usize = 3;

/// The filters as typed, to put back in the form and carry into the next page's link.
#[derive(Debug, Default)]
struct Filters {
    status: String,
    environment: String,
    owner_id: String,
    customer_id: String,
    name: String,
    unused_days: String,
}

impl Filters {
    /// The query string of these filters (empty ones left out), followed by `extra`.
    fn query(&self, extra: &[(&str, &str)]) -> String {
        let mut pairs = form_pairs(self);
        pairs.extend(extra.iter().map(|(key, value)| (*key, *value)));
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    /// The query string of these filters at `cursor`: the page it names.
    fn at(&self, cursor: Option<&str>) -> String {
        let extra: Vec<(&str, &str)> = cursor
            .map(|cursor| ("cursor", cursor))
            .into_iter()
            .collect();
        self.query(&extra)
    }
}

fn form_pairs(filters: &Filters) -> Vec<(&'static str, &str)> {
    [
        ("status", filters.status.as_str()),
        ("environment", &filters.environment),
        ("owner_id", &filters.owner_id),
        ("customer_id", &filters.customer_id),
        ("name", &filters.name),
        ("unused_days", &filters.unused_days),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .collect()
}

/// A key as a row shows it.
#[derive(Debug)]
struct Row {
    view: KeyView,
    status_word: &'static str,
    status_class: &'static str,
    grants: String,
    rate_limit: String,
}

impl Row {
    fn new(view: KeyView) -> Self {
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

fn per_window(limit: &RateLimit) -> String {
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
    filters: Filters,
    /// Admins and key managers may filter by owner; members see only their own keys.
    sees_all: bool,
    rows: Vec<Row>,
    problem: Option<String>,
    /// The query string of the next page, if there is one.
    next: Option<String>,
    /// The query string of the first page with these filters, when this is a later one.
    first: Option<String>,
    /// This page's own query string, which row actions carry back.
    here: String,
}

/// `GET /ui/keys`.
pub(super) async fn list(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    RawQuery(query): RawQuery,
) -> Response {
    let typed = parse(query.as_deref().unwrap_or(""));
    let (filters, cursor) = match typed {
        Ok(parsed) => parsed,
        Err(problem) => {
            return page::failure(&crate::http::ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                problem,
            ));
        }
    };
    let here = filters.at(cursor.as_deref());
    let sees_all = caller.role.manages_all_keys();
    let layout = Layout::signed_in("API Keys", &caller);
    let listed = match ApiQuery::<ListKeysQuery>::parse(&here) {
        Ok(asked) => keys::list_keys(State(state), caller, asked)
            .await
            .map(|page| page.0),
        Err(error) => Err(error),
    };
    let (status, rows, next, problem) = match listed {
        Ok(page) => (
            StatusCode::OK,
            page.items.into_iter().map(Row::new).collect(),
            page.next_cursor
                .map(|cursor| filters.query(&[("cursor", &cursor)])),
            None,
        ),
        Err(error) if error.status.is_client_error() => {
            (error.status, Vec::new(), None, Some(error.message))
        }
        Err(error) => return page::failure(&error),
    };
    let page = KeysPage {
        here,
        layout,
        first: cursor.is_some().then(|| filters.query(&[])),
        filters,
        sees_all,
        rows,
        problem,
        next,
    };
    page::render(status, &page)
}

/// The filters and cursor of a query string; an empty field is no filter.
fn parse(query: &str) -> Result<(Filters, Option<String>), String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| "the query string is not form-encoded".to_owned())?;
    let mut filters = Filters::default();
    let mut cursor = None;
    for (key, value) in pairs {
        let value = value.trim().to_owned();
        let slot = match key.as_str() {
            "status" => &mut filters.status,
            "environment" => &mut filters.environment,
            "owner_id" => &mut filters.owner_id,
            "customer_id" => &mut filters.customer_id,
            "name" => &mut filters.name,
            "unused_days" => &mut filters.unused_days,
            "cursor" => {
                cursor = Some(value).filter(|value| !value.is_empty());
                continue;
            }
            other => return Err(format!("unknown filter {other:?}")),
        };
        *slot = value;
    }
    Ok((filters, cursor))
}

/// The list's query string for `query` (a list's own, as a row's form carries it back), rebuilt
/// from the filters and cursor it holds: whatever else it says is dropped.
pub(super) fn list_query(query: &str) -> String {
    parse(query).map_or_else(
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
