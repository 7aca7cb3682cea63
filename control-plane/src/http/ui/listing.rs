//! What the listing pages (keys, request log, audit log) share: their filters as typed, read
//! from and written back to the query string, and one page of the API's own listing.

use std::future::Future;

use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::page;
use crate::http::ApiError;
use crate::http::error::ApiQuery;
use crate::http::views::Page;

/// A listing's filters as typed, in the order of `fields`; an empty one is no filter.
#[derive(Clone, Debug)]
pub(super) struct Filters {
    fields: &'static [&'static str],
    values: Vec<String>,
}

impl Filters {
    /// The filters and cursor of `query`. A field that is not one of `fields` is refused.
    pub(super) fn parse(
        fields: &'static [&'static str],
        query: &str,
    ) -> Result<(Self, Option<String>), String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|_| "the query string is not form-encoded".to_owned())?;
        let mut filters = Self {
            fields,
            values: vec![String::new(); fields.len()],
        };
        let mut cursor = None;
        for (key, value) in pairs {
            let value = value.trim().to_owned();
            if key == "cursor" {
                cursor = Some(value).filter(|value| !value.is_empty());
                continue;
            }
            let slot = fields
                .iter()
                .position(|field| *field == key)
                .ok_or_else(|| format!("unknown filter {key:?}"))?;
            filters.values[slot] = value;
        }
        Ok((filters, cursor))
    }

    /// The value typed for `field` (empty when none was).
    pub(super) fn get(&self, field: &str) -> &str {
        self.fields
            .iter()
            .position(|known| *known == field)
            .map_or("", |slot| &self.values[slot])
    }

    /// Puts `value` in `field`, when it is one of these filters.
    pub(super) fn set(&mut self, field: &str, value: String) {
        if let Some(slot) = self.fields.iter().position(|known| *known == field) {
            self.values[slot] = value;
        }
    }

    /// The query string of these filters (empty ones left out), followed by `extra`.
    pub(super) fn query(&self, extra: &[(&str, &str)]) -> String {
        let pairs: Vec<(&str, &str)> = self
            .fields
            .iter()
            .zip(&self.values)
            .filter(|(_, value)| !value.is_empty())
            .map(|(field, value)| (*field, value.as_str()))
            .chain(extra.iter().copied())
            .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    /// The query string of these filters at `cursor`: the page it names.
    pub(super) fn at(&self, cursor: Option<&str>) -> String {
        let extra: Vec<(&str, &str)> = cursor
            .map(|cursor| ("cursor", cursor))
            .into_iter()
            .collect();
        self.query(&extra)
    }
}

/// One page of a listing as a page shows it: its rows, or the API's refusal of the filters.
#[derive(Debug)]
pub(super) struct Listed<T> {
    pub filters: Filters,
    pub status: StatusCode,
    pub rows: Vec<T>,
    pub problem: Option<String>,
    /// The query string of the next page, if there is one.
    pub next: Option<String>,
    /// The query string of the first page with these filters, when this is a later one.
    pub first: Option<String>,
    /// This page's own query string.
    pub here: String,
}

/// The page `query` asks for, fetched with `fetch`: the API's own listing handler. The query
/// reaches it as `rewrite` makes it from the typed filters (the API's spelling of a field, say).
/// A refusal of the filters is shown on the page; a fault is the error page.
pub(super) async fn list<Q, V, T, F>(
    fields: &'static [&'static str],
    query: Option<&str>,
    rewrite: impl FnOnce(&Filters, Option<&str>) -> String,
    fetch: impl FnOnce(ApiQuery<Q>) -> F,
    row: impl FnMut(V) -> T,
) -> Result<Listed<T>, axum::response::Response>
where
    Q: DeserializeOwned,
    F: Future<Output = Result<axum::Json<Page<V>>, ApiError>>,
{
    let (filters, cursor) = Filters::parse(fields, query.unwrap_or("")).map_err(|problem| {
        page::failure(&ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            problem,
        ))
    })?;
    let here = filters.at(cursor.as_deref());
    let listed = match ApiQuery::<Q>::parse(&rewrite(&filters, cursor.as_deref())) {
        Ok(asked) => fetch(asked).await.map(|page| page.0),
        Err(error) => Err(error),
    };
    let (status, rows, next, problem) = match listed {
        Ok(page) => (
            StatusCode::OK,
            page.items.into_iter().map(row).collect(),
            page.next_cursor
                .map(|cursor| filters.query(&[("cursor", &cursor)])),
            None,
        ),
        Err(error) if error.status.is_client_error() => {
            (error.status, Vec::new(), None, Some(error.message))
        }
        Err(error) => return Err(page::failure(&error)),
    };
    Ok(Listed {
        first: cursor.is_some().then(|| filters.query(&[])),
        filters,
        status,
        rows,
        problem,
        next,
        here,
    })
}

#[cfg(test)]
mod tests {
    use super::Filters;

    const FIELDS: &[&str] = &["status", "name"];

    #[test]
    fn filters_round_trip_in_their_own_order_without_empty_ones() {
        let (filters, cursor) =
            Filters::parse(FIELDS, "name=a+b&status=&cursor=xyz").expect("known fields");
        assert_eq!(filters.get("name"), "a b");
        assert_eq!(filters.get("status"), "");
        assert_eq!(filters.get("other"), "");
        assert_eq!(cursor.as_deref(), Some("xyz"));
        assert_eq!(filters.at(cursor.as_deref()), "name=a+b&cursor=xyz");
        assert!(Filters::parse(FIELDS, "owner=me").is_err());
        assert!(Filters::parse(FIELDS, "%zz=1").is_err());
    }
}
