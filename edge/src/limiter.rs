//! Per-key rate limits. Each limited key id has one Durable Object (`KEY_LIMITER`, class
//! [`KeyLimiter`]) holding its [`TokenBucket`], asked through JS RPC ([`KeyLimiter::take`]: no
//! `Request` or `Response` built); a Durable Object handles one call at a time, so the limit holds
//! exactly across every isolate and location. Keys without a limit never reach it.
//!
//! Two modes (`KEYGATE_RATE_LIMIT_MODE`): `exact` asks the object for every request; `fast`
//! admits from this isolate's [`BucketCopy`] and reports what it admitted to the object in the
//! background, [`REPORT_AFTER_MS`] after the first unreported request, so a busy key costs one
//! object call per isolate per report rather than one per request.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use keygate_shared::{Admission, BucketCopy, FastTake, KeyId, RateLimit, TokenBucket};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::{JsFuture, future_to_promise};
use worker::{
    Context, Delay, DurableObject, Env, Request, Response, Result, State, console_error,
    durable_object, js_sys, web_sys,
};

use crate::Isolate;

pub(crate) const LIMITER_BINDING: &str = "KEY_LIMITER";
const BUCKET: &str = "bucket";

/// How long fast mode gathers admitted requests before reporting them to the key's object.
const REPORT_AFTER_MS: u64 = 50;

/// What the Worker asks of a key's object: count `reported` requests admitted by an isolate in
/// fast mode, then, with `take`, decide one more request.
#[derive(Serialize, Deserialize)]
struct Ask {
    limit: RateLimit,
    reported: u32,
    take: bool,
}

/// The object's answer: the decision (when asked to take) and the bucket after it.
#[derive(Serialize, Deserialize)]
struct Answer {
    admission: Option<Admission>,
    bucket: TokenBucket,
}

/// How long the object gathers changes to its bucket before storing it once.
const WRITE_AFTER_MS: u64 = 100;

#[durable_object(fetch)]
#[derive(Clone)]
pub struct KeyLimiter {
    state: Rc<State>,
    /// The bucket, kept in memory: read from storage once per object lifetime, stored
    /// [`WRITE_AFTER_MS`] after a change.
    bucket: Rc<Cell<Option<TokenBucket>>>,
    /// A write of the bucket is scheduled.
    writing: Rc<Cell<bool>>,
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
            state: Rc::new(state),
            bucket: Rc::new(Cell::new(None)),
            writing: Rc::new(Cell::new(false)),
        }
    }

    /// The object is asked through JS RPC ([`KeyLimiter::take`]); edge/entry.js offers no fetch,
    /// so this answer, which the trait requires, is never reached.
    async fn fetch(&self, _request: Request) -> Result<Response> {
        Response::error("The key limiter answers JS RPC (take), not fetch.", 405)
    }
}

#[wasm_bindgen]
impl KeyLimiter {
    /// JS RPC from the Worker, `stub.take(ask)` (edge/entry.js passes it on): counts and decides
    /// an `Ask`, answers an `Answer`, both as JSON text. With its bucket in memory, the object
    /// answers at once; only its first call after starting waits, to read the stored bucket.
    pub fn take(&self, ask: String) -> std::result::Result<JsValue, JsValue> {
        let ask: Ask = serde_json::from_str(&ask).map_err(|error| error.to_string())?;
        if let Some(bucket) = self.bucket.get() {
            return Ok(self.answer(Some(bucket), &ask)?.into());
        }
        let limiter = self.clone();
        Ok(future_to_promise(async move {
            // Storage calls close the object's input gate: no other call is delivered until this
            // one has its bucket, so two calls never spend the same token.
            let stored = limiter.state.storage().get(BUCKET).await?;
            Ok(limiter.answer(stored, &ask)?.into())
        })
        .into())
    }
}

impl KeyLimiter {
    /// Counts and decides `ask` against `stored`, keeps the bucket after it, and schedules its
    /// write: the [`Answer`] as JSON text.
    fn answer(&self, stored: Option<TokenBucket>, ask: &Ask) -> Result<String> {
        let now_ms = crate::now_ms();
        let counted = TokenBucket::spend(stored, ask.limit, ask.reported, now_ms);
        let (bucket, admission) = if ask.take {
            let (bucket, admission) = TokenBucket::take(Some(counted), ask.limit, now_ms);
            (bucket, Some(admission))
        } else {
            (counted, None)
        };
        self.bucket.set(Some(bucket));
        self.schedule_write()?;
        Ok(serde_json::to_string(&Answer { admission, bucket })?)
    }

    /// Stores the bucket [`WRITE_AFTER_MS`] from now, once for every change made meanwhile,
    /// never holding an answer for it: the object answers from the bucket it keeps in memory,
    /// and storage only matters when it starts again (docs/edge.md: what an eviction or a crash
    /// can lose).
    fn schedule_write(&self) -> Result<()> {
        if self.writing.replace(true) {
            return Ok(());
        }
        let storage = js_sys::Reflect::get(self.state.as_raw(), &"storage".into())?;
        let (bucket, writing) = (Rc::clone(&self.bucket), Rc::clone(&self.writing));
        self.state.wait_until(async move {
            Delay::from(std::time::Duration::from_millis(WRITE_AFTER_MS)).await;
            writing.set(false);
            if let Some(bucket) = bucket.get()
                && let Err(error) = store(&storage, &bucket)
            {
                console_error!("rate limiter bucket not stored: {error}");
            }
        });
        Ok(())
    }
}

/// `storage.put(BUCKET, bucket, {allowUnconfirmed: true})`: nothing waits for the write.
fn store(storage: &JsValue, bucket: &TokenBucket) -> Result<()> {
    let put: js_sys::Function = js_sys::Reflect::get(storage, &"put".into())?.unchecked_into();
    let options = js_sys::Object::new();
    js_sys::Reflect::set(&options, &"allowUnconfirmed".into(), &JsValue::TRUE)?;
    let value = js_sys::JSON::parse(&serde_json::to_string(bucket)?)?;
    put.call3(storage, &BUCKET.into(), &value, &options)?;
    Ok(())
}

#[wasm_bindgen]
extern "C" {
    /// A `KEY_LIMITER` stub, for its JS RPC method.
    type LimiterStub;

    /// `stub.take(ask)`: [`KeyLimiter::take`] in the key's object.
    #[wasm_bindgen(method, catch)]
    fn take(this: &LimiterStub, ask: &str) -> std::result::Result<JsValue, JsValue>;
}

/// One call to the key's object.
async fn ask(env: &Env, key_id: &KeyId, ask: &Ask) -> Result<Answer> {
    let stub: LimiterStub = env
        .durable_object(LIMITER_BINDING)?
        .id_from_name(key_id.as_str())?
        .get_stub()?
        .into_rpc();
    // An RPC result is a thenable, made a promise here for the executor.
    let pending = js_sys::Promise::resolve(&stub.take(&serde_json::to_string(ask)?)?);
    let answer = JsFuture::from(pending).await?;
    let answer = answer
        .as_string()
        .ok_or("the key limiter answered something other than text")?;
    Ok(serde_json::from_str(&answer)?)
}

/// Exact mode: asks the key's object to admit one request.
pub(crate) async fn admit(env: &Env, key_id: &KeyId, limit: RateLimit) -> Result<Admission> {
    let asked = Ask {
        limit,
        reported: 0,
        take: true,
    };
    ask(env, key_id, &asked)
        .await?
        .admission
        .ok_or_else(|| "the limiter did not decide".into())
}

/// Fast mode: admits from this isolate's copy of the key's bucket and schedules a report, or,
/// when the copy cannot decide ([`FastTake::AskObject`]), asks the object, reporting what the
/// copy had not yet reported.
pub(crate) async fn admit_fast(
    isolate: &'static Isolate,
    env: &Env,
    ctx: &Context,
    key_id: KeyId,
    limit: RateLimit,
    now_ms: i64,
) -> Result<Admission> {
    let take = {
        let mut copies = isolate.fast_copies.borrow_mut();
        BucketCopy::take(
            copies.get_mut(&key_id).map(|held| &mut held.copy),
            limit,
            now_ms,
        )
    };
    let uncounted = match take {
        FastTake::Local(admission) => {
            if admission.allowed {
                schedule_report(isolate, env, ctx, key_id, limit);
            }
            return Ok(admission);
        }
        FastTake::AskObject { uncounted } => uncounted,
    };
    let asked = Ask {
        limit,
        reported: uncounted,
        take: true,
    };
    let answer = ask(env, &key_id, &asked).await?;
    isolate
        .fast_copies
        .borrow_mut()
        .synced(key_id, uncounted, false, answer.bucket, limit);
    answer
        .admission
        .ok_or_else(|| "the limiter did not decide".into())
}

/// Reports the key's unreported requests [`REPORT_AFTER_MS`] from now, after the response, and
/// again while more come in; one such loop per key per isolate.
fn schedule_report(
    isolate: &'static Isolate,
    env: &Env,
    ctx: &Context,
    key_id: KeyId,
    limit: RateLimit,
) {
    if !isolate.fast_copies.borrow_mut().schedule(&key_id) {
        return;
    }
    let env = env.clone();
    ctx.wait_until(async move {
        loop {
            Delay::from(std::time::Duration::from_millis(REPORT_AFTER_MS)).await;
            let Some(reported) = isolate.fast_copies.borrow_mut().start_report(&key_id) else {
                break;
            };
            let asked = Ask {
                limit,
                reported,
                take: false,
            };
            match ask(&env, &key_id, &asked).await {
                Ok(answer) => isolate.fast_copies.borrow_mut().synced(
                    key_id,
                    reported,
                    true,
                    answer.bucket,
                    limit,
                ),
                Err(error) => {
                    console_error!("rate limiter report failed: {error}");
                    isolate
                        .fast_copies
                        .borrow_mut()
                        .report_failed(&key_id, reported);
                }
            }
        }
    });
}

/// A bounded map of per-key state: when full, an arbitrary entry makes room.
#[derive(Debug)]
pub(crate) struct PerKey<V> {
    entries: HashMap<KeyId, V>,
    capacity: usize,
}

impl<V> PerKey<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    fn get_mut(&mut self, key_id: &KeyId) -> Option<&mut V> {
        self.entries.get_mut(key_id)
    }

    fn insert(&mut self, key_id: KeyId, value: V) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key_id) {
            let evicted = self.entries.keys().next().copied();
            if let Some(evicted) = evicted {
                self.entries.remove(&evicted);
            }
        }
        self.entries.insert(key_id, value);
    }
}

/// Buckets kept in this isolate, for keys whose limiter cannot be reached: the same limit, counted
/// per isolate (so approximate across isolates), never unlimited.
pub(crate) type LocalBuckets = PerKey<TokenBucket>;

impl LocalBuckets {
    pub(crate) fn take(&mut self, key_id: KeyId, limit: RateLimit, now_ms: i64) -> Admission {
        let (bucket, admission) =
            TokenBucket::take(self.entries.get(&key_id).copied(), limit, now_ms);
        self.insert(key_id, bucket);
        admission
    }
}

/// Fast mode's copy of a key's bucket in this isolate, and whether a report loop runs for it.
#[derive(Debug)]
pub(crate) struct Held {
    copy: BucketCopy,
    report_scheduled: bool,
}

/// Fast mode's copies in this isolate.
pub(crate) type FastCopies = PerKey<Held>;

impl FastCopies {
    /// Marks a report loop as running for the key; false when one already runs.
    fn schedule(&mut self, key_id: &KeyId) -> bool {
        self.get_mut(key_id)
            .is_some_and(|held| !std::mem::replace(&mut held.report_scheduled, true))
    }

    /// The requests to report now; `None` ends the loop (nothing due, or a report in flight).
    fn start_report(&mut self, key_id: &KeyId) -> Option<u32> {
        let held = self.get_mut(key_id)?;
        let due = held.copy.start_report();
        held.report_scheduled = due.is_some();
        due
    }

    fn report_failed(&mut self, key_id: &KeyId, reported: u32) {
        if let Some(held) = self.get_mut(key_id) {
            held.copy.report_failed(reported);
        }
    }

    /// The object answered `bucket`, having counted `counted` of this isolate's requests.
    fn synced(
        &mut self,
        key_id: KeyId,
        counted: u32,
        in_report: bool,
        bucket: TokenBucket,
        limit: RateLimit,
    ) {
        let now_ms = crate::now_ms();
        match self.get_mut(&key_id) {
            Some(held) => {
                held.copy =
                    BucketCopy::synced(Some(held.copy), counted, in_report, bucket, limit, now_ms);
            }
            None => self.insert(
                key_id,
                Held {
                    copy: BucketCopy::synced(None, counted, in_report, bucket, limit, now_ms),
                    report_scheduled: false,
                },
            ),
        }
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
