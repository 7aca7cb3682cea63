//! Per-key rate limits. Each limited key id has one Durable Object (`KEY_LIMITER`, class
//! [`KeyLimiter`]) holding its [`TokenBucket`]; a Durable Object handles one request at a time, so
//! the limit holds exactly across every isolate and location. Keys without a limit never reach it.

use std::cell::Cell;
use std::collections::HashMap;

use keygate_shared::{Admission, KeyId, RateLimit, TokenBucket};
use wasm_bindgen::{JsCast, JsValue};
use worker::{
    Date, DurableObject, Env, Method, Request, RequestInit, Response, Result, State,
    durable_object, js_sys, web_sys,
};

pub(crate) const LIMITER_BINDING: &str = "KEY_LIMITER";
const BUCKET: &str = "bucket";

#[durable_object(fetch)]
pub struct KeyLimiter {
    state: State,
    /// The bucket as last stored; read from storage once per object lifetime.
    bucket: Cell<Option<TokenBucket>>,
}

impl std::fmt::Debug for KeyLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLimiter")
            .field("bucket", &self.bucket.get())
            .finish_non_exhaustive()
    }
}

impl DurableObject for KeyLimiter {
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            bucket: Cell::new(None),
        }
    }

    /// `POST` a [`RateLimit`]; answers the [`Admission`] of one request.
    async fn fetch(&self, mut request: Request) -> Result<Response> {
        let limit: RateLimit = request.json().await?;
        let stored = match self.bucket.get() {
            Some(bucket) => Some(bucket),
            // Storage calls close the object's input gate: no other request is delivered until
            // this one has its bucket, so two requests never spend the same token.
            None => self.state.storage().get(BUCKET).await?,
        };
        let now_ms = i64::try_from(Date::now().as_millis()).unwrap_or(i64::MAX);
        let (bucket, admission) = TokenBucket::take(stored, limit, now_ms);
        self.bucket.set(Some(bucket));
        self.persist(&bucket)?;
        Response::from_json(&admission)
    }
}

impl KeyLimiter {
    /// Stores the bucket without holding the answer for the write (`allowUnconfirmed`): the
    /// object answers from the bucket it keeps in memory, and storage only matters when it
    /// starts again. Writes still apply in order; see docs/edge.md for what a crash can lose.
    fn persist(&self, bucket: &TokenBucket) -> Result<()> {
        let storage = js_sys::Reflect::get(self.state.as_raw(), &"storage".into())?;
        let put: js_sys::Function = js_sys::Reflect::get(&storage, &"put".into())?.unchecked_into();
        let options = js_sys::Object::new();
        js_sys::Reflect::set(&options, &"allowUnconfirmed".into(), &JsValue::TRUE)?;
        let value = js_sys::JSON::parse(&serde_json::to_string(bucket)?)?;
        put.call3(&storage, &BUCKET.into(), &value, &options)?;
        Ok(())
    }
}

/// Asks the key's limiter to admit one request.
pub(crate) async fn admit(env: &Env, key_id: &KeyId, limit: RateLimit) -> Result<Admission> {
    let stub = env
        .durable_object(LIMITER_BINDING)?
        .id_from_name(key_id.as_str())?
        .get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(serde_json::to_string(&limit)?.into()));
    let request = Request::new_with_init("https://key-limiter/take", &init)?;
    stub.fetch_with_request(request).await?.json().await
}

/// Buckets kept in this isolate, for keys whose limiter cannot be reached: the same limit, counted
/// per isolate (so approximate across isolates), never unlimited. Bounded: when full, an
/// arbitrary entry makes room.
#[derive(Debug)]
pub(crate) struct LocalBuckets {
    buckets: HashMap<KeyId, TokenBucket>,
    capacity: usize,
}

impl LocalBuckets {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            buckets: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn take(&mut self, key_id: KeyId, limit: RateLimit, now_ms: i64) -> Admission {
        if self.buckets.len() >= self.capacity && !self.buckets.contains_key(&key_id) {
            let evicted = self.buckets.keys().next().copied();
            if let Some(evicted) = evicted {
                self.buckets.remove(&evicted);
            }
        }
        let (bucket, admission) =
            TokenBucket::take(self.buckets.get(&key_id).copied(), limit, now_ms);
        self.buckets.insert(key_id, bucket);
        admission
    }
}

/// The IETF RateLimit headers (draft-ietf-httpapi-ratelimit-headers) for an admission.
pub(crate) fn headers_of(admission: &Admission) -> [(&'static str, String); 3] {
    [
        ("ratelimit-limit", admission.limit.to_string()),
        ("ratelimit-remaining", admission.remaining.to_string()),
        ("ratelimit-reset", admission.reset_seconds.to_string()),
    ]
}

/// The origin's response with the RateLimit headers added. Fetch's responses have immutable
/// headers, so this makes a new response around the same body stream (status and status text
/// kept); only limited keys pay for it. A failure is an error, never a panic.
pub(crate) fn annotate(
    response: web_sys::Response,
    admission: &Admission,
) -> Result<web_sys::Response> {
    let headers = web_sys::Headers::new_with_headers(&response.headers())?;
    for (name, value) in headers_of(admission) {
        headers.set(name, &value)?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(response.status());
    init.set_status_text(&response.status_text());
    init.set_headers_headers(&headers);
    Ok(web_sys::Response::new_with_opt_readable_stream_and_init(
        response.body().as_ref(),
        &init,
    )?)
}
