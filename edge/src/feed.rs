//! The change feed's store: one Durable Object (`FEED`, class [`ChangeFeed`], named `global`)
//! keeps an ordered log of the signed records the control plane appends, numbered by SQLite, for
//! `KEYGATE_FEED_RETENTION_SECONDS`. The control plane appends through `POST /.keygate/feed`
//! (bearer `KEYGATE_FEED_TOKEN`); isolates read it through the binding ([`crate::follower`]).
//! Nothing here trusts a record: every reader checks its signature as it does KV's.

use keygate_shared::{Append, FeedEntry, FeedPage, MAX_FEED_ENTRIES};
use serde::Deserialize;
use worker::wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{
    DurableObject, Env, Method, Request, RequestInit, Response, Result, State, Stub,
    durable_object, web_sys,
};

pub(crate) const FEED_BINDING: &str = "FEED";
/// The route the control plane appends through.
pub(crate) const FEED_PATH: &str = "/.keygate/feed";
/// The one feed object.
const FEED_NAME: &str = "global";
/// Beyond every sequence number: JS numbers are exact up to 2^53 - 1.
const MAX_SEQ: u64 = (1 << 53) - 1;
/// Kept when `KEYGATE_FEED_RETENTION_SECONDS` is not set: well past KV's propagation (about 60 s)
/// plus its edge cache (`KEYGATE_KV_CACHE_TTL_SECONDS`).
pub(crate) const DEFAULT_RETENTION_SECONDS: u64 = 600;

#[durable_object(fetch)]
pub struct ChangeFeed {
    state: State,
    retention_ms: i64,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("retention_ms", &self.retention_ms)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Bounds {
    head: Option<f64>,
    first: Option<f64>,
}

#[derive(Deserialize)]
struct Row {
    seq: f64,
    key_id: String,
    record: String,
}

fn whole(number: Option<f64>) -> u64 {
    // SQLite integers arrive as JS numbers; sequence numbers stay far below 2^53.
    number.map_or(0, |n| n as u64)
}

impl ChangeFeed {
    fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    fn page(&self, after: u64) -> Result<FeedPage> {
        let sql = self.sql();
        let bounds: Bounds = sql
            .exec(
                "SELECT MAX(seq) AS head, MIN(seq) AS first FROM entry",
                None,
            )?
            .one()?;
        // Sequence numbers stay far below 2^53, the largest integer a JS number holds exactly.
        let after = i64::try_from(after.min(MAX_SEQ)).unwrap_or_default();
        let rows: Vec<Row> = sql
            .exec(
                "SELECT seq, key_id, record FROM entry WHERE seq > ? ORDER BY seq LIMIT ?",
                vec![after.into(), (MAX_FEED_ENTRIES as i64).into()],
            )?
            .to_array()?;
        Ok(FeedPage {
            head: whole(bounds.head),
            first: whole(bounds.first),
            entries: rows
                .into_iter()
                .map(|row| FeedEntry {
                    seq: row.seq as u64,
                    key_id: row.key_id,
                    record: row.record,
                })
                .collect(),
        })
    }

    fn append(&self, append: &Append) -> Result<()> {
        let sql = self.sql();
        let now = crate::now_ms();
        for entry in &append.entries {
            sql.exec(
                "INSERT INTO entry (key_id, record, at_ms) VALUES (?, ?, ?)",
                vec![
                    entry.key_id.as_str().into(),
                    entry.record.as_str().into(),
                    now.into(),
                ],
            )?;
        }
        // The newest entry always stays, so the head survives a quiet spell.
        sql.exec(
            "DELETE FROM entry WHERE at_ms < ? AND seq < (SELECT MAX(seq) FROM entry)",
            vec![(now - self.retention_ms).into()],
        )?;
        Ok(())
    }
}

impl DurableObject for ChangeFeed {
    fn new(state: State, env: Env) -> Self {
        let retention_seconds = env
            .var("KEYGATE_FEED_RETENTION_SECONDS")
            .ok()
            .and_then(|var| var.to_string().trim().parse::<u64>().ok())
            .unwrap_or(DEFAULT_RETENTION_SECONDS);
        let feed = Self {
            state,
            retention_ms: i64::try_from(retention_seconds.saturating_mul(1_000))
                .unwrap_or(i64::MAX),
        };
        if let Err(error) = feed.sql().exec(
            "CREATE TABLE IF NOT EXISTS entry (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
             key_id TEXT NOT NULL, record TEXT NOT NULL, at_ms INTEGER NOT NULL)",
            None,
        ) {
            worker::console_error!("feed: cannot create its table: {error}");
        }
        feed
    }

    /// `GET ?after=N`: the [`FeedPage`] after `N`. `POST` an [`Append`]: the page after the
    /// appended entries (its head).
    async fn fetch(&self, mut request: Request) -> Result<Response> {
        match request.method() {
            Method::Get => {
                let after = after_of(&request.inner().url());
                Response::from_json(&self.page(after)?)
            }
            Method::Post => {
                let bytes = request.bytes().await?;
                let append = match Append::decode(&bytes) {
                    Ok(append) => append,
                    Err(error) => return Response::error(error.to_string(), 400),
                };
                self.append(&append)?;
                let page = self.page(MAX_SEQ)?;
                Response::from_json(&page)
            }
            _ => Response::error("GET or POST", 405),
        }
    }
}

/// `N` of a reader's `...?after=N`, read by hand: `Request::url` would pull the url crate and its
/// Unicode tables (about 200 KB of wasm) into the Worker for one number.
fn after_of(url: &str) -> u64 {
    url.split_once('?')
        .map_or("", |(_, query)| query)
        .split('&')
        .find_map(|pair| pair.strip_prefix("after="))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// The feed object's stub.
pub(crate) fn stub(env: &Env) -> Result<Stub> {
    env.durable_object(FEED_BINDING)?
        .id_from_name(FEED_NAME)?
        .get_stub()
}

/// Hands an append (already authenticated) to the feed object; its answer goes back as it is.
pub(crate) async fn append(env: &Env, body: Vec<u8>) -> Result<Response> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(
        worker::js_sys::Uint8Array::from(body.as_slice()).into(),
    ));
    let request = Request::new_with_init("https://feed/append", &init)?;
    stub(env)?.fetch_with_request(request).await
}

/// How isolates in one location share their reads of the feed: through that location's Cache
/// API, for a window of time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sharing<'a> {
    /// `scheme://host` of the request that polls: Cloudflare advises cache keys on the Worker's
    /// own hostname.
    pub(crate) origin: &'a str,
    /// Which window of `share_ms` this is: a page read in one window is never used in the next.
    pub(crate) window: i64,
    pub(crate) share_ms: u64,
}

/// The named cache feed pages are shared through (per location, never replicated).
const PAGE_CACHE: &str = "keygate-feed";

/// The page after `after`. With `sharing`, an isolate asks this location's cache first: the
/// first isolate here to poll for `after` in a window reads the object and leaves the page for
/// the others, so the object is read about once per location and window, however many isolates
/// a location runs. A page is at most one window old.
pub(crate) async fn read(env: &Env, after: u64, sharing: Option<Sharing<'_>>) -> Result<FeedPage> {
    let shared = match sharing {
        Some(sharing) => page_cache().await.map(|cache| {
            let key = format!(
                "{}{FEED_PATH}/page/{after}/{}",
                sharing.origin, sharing.window
            );
            (cache, key, sharing.share_ms)
        }),
        None => None,
    };
    if let Some((cache, key, _)) = &shared
        && let Some(page) = cached(cache, key).await
    {
        return Ok(page);
    }
    let mut response = stub(env)?
        .fetch_with_str(&format!("https://feed/after?after={after}"))
        .await?;
    if response.status_code() != 200 {
        return Err(worker::Error::RustError(format!(
            "the feed answered {}",
            response.status_code()
        )));
    }
    let text = response.text().await?;
    let page = serde_json::from_str(&text)?;
    if let Some((cache, key, share_ms)) = shared {
        // A page that cannot be shared is still this isolate's to use.
        let _ = share(&cache, &key, text, share_ms).await;
    }
    Ok(page)
}

/// This location's page cache; `None` where the platform has none to offer.
async fn page_cache() -> Option<web_sys::Cache> {
    let global: web_sys::WorkerGlobalScope = worker::js_sys::global().unchecked_into();
    let opened = JsFuture::from(global.caches().ok()?.open(PAGE_CACHE))
        .await
        .ok()?;
    opened.dyn_into().ok()
}

/// The page another isolate here left under `key`, if any (an unreadable one counts as none).
async fn cached(cache: &web_sys::Cache, key: &str) -> Option<FeedPage> {
    let found = JsFuture::from(cache.match_with_str(key)).await.ok()?;
    let response: web_sys::Response = found.dyn_into().ok()?;
    let text = JsFuture::from(response.text().ok()?).await.ok()?;
    serde_json::from_str(&text.as_string()?).ok()
}

async fn share(cache: &web_sys::Cache, key: &str, page: String, share_ms: u64) -> Result<()> {
    let headers = worker::Headers::new();
    // Cache lifetimes are whole seconds; the window in the key keeps a page from outliving its own.
    headers.set(
        "cache-control",
        &format!("max-age={}", share_ms.div_ceil(1_000).max(1)),
    )?;
    headers.set("content-type", "application/json")?;
    let response = Response::ok(page)?.with_headers(headers);
    let response: web_sys::Response = response.into();
    JsFuture::from(cache.put_with_str(key, &response)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_reader_position_is_read_from_the_query() {
        assert_eq!(super::after_of("https://feed/after?after=42"), 42);
        assert_eq!(super::after_of("https://feed/after?x=1&after=7"), 7);
        assert_eq!(super::after_of("https://feed/after"), 0);
        assert_eq!(super::after_of("https://feed/after?after=-1"), 0);
    }
}
