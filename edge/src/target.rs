//! The request target as keygate routes, authorises and forwards it: a method of the fixed set and
//! the canonical path (keygate-shared's rules), or the 405/400 that refuses it before routing.

use keygate_shared::{Method, PathError, canonical_path};
use worker::{Result, web_sys};

use crate::respond;

/// The request target as it is routed, authorised and forwarded: a method of the fixed set, the
/// canonical path, and the query as received.
pub(crate) struct Target {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: String,
    /// The URL as received, kept for its origin: the change feed's polls key their shared
    /// reads on it, about once a second, so no request pays for more than a length.
    url: String,
    origin_len: usize,
}

/// Why a request target is refused before routing.
pub(crate) enum Unroutable {
    Method,
    Path(PathError),
}

impl Unroutable {
    pub(crate) fn answer(&self, request_id: &str) -> Result<web_sys::Response> {
        match self {
            Self::Method => respond::method_not_allowed(request_id),
            Self::Path(error) => respond::error(400, error.code(), &error.to_string(), request_id),
        }
    }
}

impl Target {
    pub(crate) fn of(request: &web_sys::Request) -> std::result::Result<Self, Unroutable> {
        let method = Method::parse(&request.method()).ok_or(Unroutable::Method)?;
        let url = request.url();
        let (origin, rest) = split_origin(&url);
        let (path, query) = path_and_query(rest);
        Ok(Self {
            method,
            path: canonical_path(path).map_err(Unroutable::Path)?,
            query: query.to_owned(),
            origin_len: origin.len(),
            url,
        })
    }

    /// `scheme://host[:port]`, as the request was addressed.
    pub(crate) fn origin(&self) -> &str {
        &self.url[..self.origin_len]
    }
}

/// `scheme://host[:port]` of a serialised absolute URL, and the rest from its path on: the path
/// starts at the first `/` after `scheme://host` (a serialised http(s) URL always has one, and
/// percent-encodes any `?` or `#` inside its path).
fn split_origin(url: &str) -> (&str, &str) {
    url.find("://")
        .and_then(|scheme| url[scheme + 3..].find('/').map(|path| scheme + 3 + path))
        .map_or(("", "/"), |at| url.split_at(at))
}

/// The path and the query (without its `?`) of what follows the origin; a fragment is dropped.
fn path_and_query(from_path: &str) -> (&str, &str) {
    let without_fragment = from_path.split('#').next().unwrap_or(from_path);
    without_fragment
        .split_once('?')
        .unwrap_or((without_fragment, ""))
}

#[cfg(test)]
mod tests {
    use super::split_origin;

    fn path_and_query(url: &str) -> (&str, &str) {
        super::path_and_query(split_origin(url).1)
    }

    #[test]
    fn the_origin_is_everything_before_the_path() {
        assert_eq!(
            split_origin("https://edge.example.com/v1/a?x=1"),
            ("https://edge.example.com", "/v1/a?x=1")
        );
        assert_eq!(
            split_origin("http://127.0.0.1:8787/"),
            ("http://127.0.0.1:8787", "/")
        );
        assert_eq!(split_origin("not a url"), ("", "/"));
    }

    #[test]
    fn path_and_query_are_taken_verbatim() {
        assert_eq!(
            path_and_query("https://edge.example.com/v1/a%20b?x=1&y=%2F"),
            ("/v1/a%20b", "x=1&y=%2F")
        );
        assert_eq!(path_and_query("http://127.0.0.1:8787/"), ("/", ""));
        assert_eq!(path_and_query("http://127.0.0.1:8787/?q"), ("/", "q"));
        assert_eq!(path_and_query("http://user@host:1/p//q"), ("/p//q", ""));
        assert_eq!(path_and_query("http://h/p?a#frag"), ("/p", "a"));
        assert_eq!(path_and_query("not a url"), ("/", ""));
    }
}
