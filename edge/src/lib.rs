//! keygate-edge: the Cloudflare Worker in front of an API. Every request's key is decided by
//! keygate-shared against the record in the Workers KV snapshot; the Worker adds only what needs the
//! platform: configuration, the isolate cache, KV, the per-client lookup limiter, and forwarding.
//!
//! - Before anything else, the method is checked against a fixed set (405) and the path made
//!   canonical (400 if it cannot be safely): routing, authorisation and forwarding all use it.
//! - Gateway mode: a request matching a route in `KEYGATE_ROUTES` is verified and forwarded to
//!   `KEYGATE_ORIGIN` with the caller's identity and its signed assertion
//!   (`x-keygate-assertion`, public keys at `/.keygate/jwks.json`), or refused with 401/403/429.
//! - Verify mode: `POST <KEYGATE_VERIFY_PATH>` (default `/.keygate/verify`) with
//!   `{"key": ..., "permissions": [...], "customer_id": ...}` answers the decision as JSON.
//!
//! It writes nothing: records come from the control plane through KV. Nothing on the request path
//! panics; a missing binding or bad setting is a 500/503 that names it, and KV trouble fails closed.

mod assertion;
mod cache;
mod config;
mod feed;
mod follower;
mod gateway;
mod limiter;
mod lookup;
mod records;
mod respond;
mod routes;
mod target;
mod usage;
mod webcrypto;

use std::cell::{OnceCell, RefCell};
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Wake, Waker};

use futures_util::StreamExt as _;
use keygate_shared::{
    Candidate, Decision, Denial, Digest, KeyId, Method as KeyMethod, Outcome, Request as Needs,
    UsageEvent, Verifier, VerifyRequest,
};
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::{Closure, wasm_bindgen};
use worker::wasm_bindgen_futures::future_to_promise;
use worker::worker_sys::ext::RequestExt as _;
use worker::{Context, Env, Request, Result, console_error, event, js_sys, web_sys};

use crate::cache::RecordCache;
use crate::config::{Config, ConfigError, LimitMode, LimiterUnavailable};
use crate::gateway::Caller;
use crate::lookup::LookupError;
use crate::routes::Route;
use crate::target::Target;

/// Where the edge publishes the public keys of its identity assertions.
const JWKS_PATH: &str = "/.keygate/jwks.json";

/// Largest verify-mode body read; a key and a few permissions fit many times over.
const MAX_VERIFY_BODY: usize = 8 * 1024;

pub use crate::limiter::KeyLimiter;

/// Per-isolate state: the parsed configuration and the record cache.
pub(crate) struct Isolate {
    pub(crate) config: Config,
    pub(crate) cache: RefCell<RecordCache>,
    /// Signs the identity assertion (when the deployment has one).
    pub(crate) signer: assertion::Signer,
    /// Checks the signature of every record read from KV (or the change feed).
    pub(crate) records: records::RecordVerifier,
    /// This isolate's place in the change feed.
    pub(crate) follower: follower::Follower,
    /// Per-key buckets for when a key's limiter cannot be reached (`local` fallback).
    pub(crate) local_buckets: RefCell<limiter::LocalBuckets>,
    /// Fast mode's copies of key buckets (`KEYGATE_RATE_LIMIT_MODE=fast`).
    pub(crate) fast_copies: RefCell<limiter::FastCopies>,
    /// Whether the `USAGE` queue is bound: without it, no event is built at all.
    pub(crate) reports_usage: bool,
}

thread_local! {
    static ISOLATE: OnceCell<std::result::Result<&'static Isolate, ConfigError>> = const { OnceCell::new() };
}

/// Vars do not change during an isolate's life, so they are read and parsed once, into state that
/// lives as long as the isolate (a wasm instance built after a trap starts its own).
fn isolate(env: &Env) -> std::result::Result<&'static Isolate, ConfigError> {
    ISOLATE.with(|cell| {
        cell.get_or_init(|| {
            let config = Config::from_vars(|name| env.var(name).ok().map(|var| var.to_string()))?;
            let cache = RecordCache::new(config.cache_capacity, config.cache_ttl_ms);
            let local_buckets = limiter::LocalBuckets::new(config.cache_capacity);
            let fast_copies = limiter::FastCopies::new(config.cache_capacity);
            let signer = assertion::Signer::new(config.cache_capacity);
            Ok(&*Box::leak(Box::new(Isolate {
                config,
                local_buckets: RefCell::new(local_buckets),
                fast_copies: RefCell::new(fast_copies),
                signer,
                records: records::RecordVerifier::default(),
                follower: follower::Follower::default(),
                cache: RefCell::new(cache),
                reports_usage: env.queue(usage::USAGE_BINDING).is_ok(),
            })))
        })
        .clone()
    })
}

/// The `USAGE` queue's consumer: delivers usage events to the control plane.
#[event(queue)]
async fn queue(batch: worker::MessageBatch<String>, env: Env, _ctx: Context) -> Result<()> {
    usage::deliver(batch, &env).await
}

/// The fetch handler, exported by hand: `#[event(fetch)]` would make every request a Rust future,
/// run by an executor that JS calls back into. Here an answer that needs no waiting is made at once
/// and returned settled, and a public route's request is forwarded at once: the promise returned
/// is the origin's fetch itself (a 502 attached for an unreachable origin), so no future runs for
/// it and nothing calls back into wasm. A key's request is decided at once too when what it needs
/// is in the isolate (`now_or_later`); verify mode and feed appends read a body, and run as a
/// future.
///
/// The request arrives as the runtime's own object: `worker::Request` would read its `cf`
/// properties, method and URL on every request, and only the verify and feed paths use it.
#[wasm_bindgen]
pub fn fetch(
    request: web_sys::Request,
    env: Env,
    ctx: worker::worker_sys::Context,
) -> js_sys::Promise {
    let headers = request.headers();
    let request_id = request_id(&headers);
    let isolate = match isolate(&env) {
        Ok(isolate) => isolate,
        Err(error) => {
            console_error!("{request_id} misconfigured: {error}");
            let answer = respond::error(500, "misconfigured", &error.to_string(), &request_id);
            return settled(answer, &request_id);
        }
    };
    let target = match Target::of(&request) {
        Ok(target) => target,
        Err(refusal) => return settled(refusal.answer(&request_id), &request_id),
    };
    let call = Call {
        isolate,
        env,
        ctx: Context::new(ctx),
        client: client_ip(&headers),
        now_ms: now_ms(),
        request_id,
        target,
    };
    let config = &isolate.config;
    let Target { method, path, .. } = &call.target;
    let later = if *path == config.verify_path {
        Later::Verify
    } else if path == feed::FEED_PATH && config.feed.is_some() {
        Later::FeedAppend
    } else if path == JWKS_PATH {
        return settled(call.jwks(), &call.request_id);
    } else {
        match config.routes.find(*method, path) {
            None => {
                let message = format!("No route for {method} {path}.");
                return settled(
                    respond::error(404, "no_route", &message, &call.request_id),
                    &call.request_id,
                );
            }
            Some(found) if found.route.public => {
                return call.send(&request, Caller::Anonymous);
            }
            Some(found) => {
                let (route, customer) = (found.route, found.customer.map(str::to_owned));
                return now_or_later(async move {
                    let decided = call.gateway(&request, route, customer.as_deref()).await;
                    call.settle(request, decided)
                });
            }
        }
    };
    future_to_promise(async move {
        let answer = match later {
            Later::Verify => call.verify(request.into()).await,
            Later::FeedAppend => call.append_to_feed(request.into()).await,
        };
        answered(answer, &call.request_id)
    })
}

/// A request that always waits (for its body), as the handler found it.
enum Later {
    Verify,
    FeedAppend,
}

/// A key's request, decided: keygate's own answer, or the request sent on to the origin with what
/// its response still needs.
enum Decided {
    Answer(Result<web_sys::Response>),
    Sent(js_sys::Promise, AfterOrigin),
}

/// What an allowed key's response needs when the origin answers: the RateLimit headers of its
/// admission, and its usage event.
struct AfterOrigin {
    key_id: KeyId,
    admission: Option<keygate_shared::Admission>,
}

/// Polls a key's request once, in the handler: a key whose record, assertion and feed state are
/// all in the isolate is decided and sent without the executor, its promise returned at once; a
/// request that must wait goes on as an executor task. The first poll's waker relays to that
/// task, because some futures keep the waker of their first poll only (`worker::Delay`, the feed
/// poll's timeout).
fn now_or_later<F>(future: F) -> js_sys::Promise
where
    F: Future<Output = js_sys::Promise> + 'static,
{
    let mut future = Box::pin(future);
    let relay = Arc::new(Relay::default());
    let waker = Waker::from(Arc::clone(&relay));
    if let Poll::Ready(promise) = future.as_mut().poll(&mut TaskContext::from_waker(&waker)) {
        return promise;
    }
    future_to_promise(async move {
        let promise = std::future::poll_fn(|cx| {
            relay.follow(cx.waker());
            future.as_mut().poll(cx)
        })
        .await;
        Ok(promise.into())
    })
}

/// The waker of a request's first poll: it wakes whichever task polls the request after it. A
/// wake before that task's first poll is not needed: the task polls once when it starts.
#[derive(Default)]
struct Relay(Mutex<Option<Waker>>);

impl Relay {
    fn follow(&self, waker: &Waker) {
        if let Ok(mut current) = self.0.lock()
            && !current.as_ref().is_some_and(|held| held.will_wake(waker))
        {
            *current = Some(waker.clone());
        }
    }
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Ok(current) = self.0.lock()
            && let Some(waker) = current.as_ref()
        {
            waker.wake_by_ref();
        }
    }
}

/// The JS value the runtime gets for an answer: the response, or, if making it failed, a 500 (or,
/// failing that too, a rejection, which the runtime answers with its own 500).
fn answered(
    answer: Result<web_sys::Response>,
    request_id: &str,
) -> std::result::Result<JsValue, JsValue> {
    let response = answer.or_else(|error| {
        console_error!("{request_id} internal error: {error}");
        respond::error(
            500,
            "internal_error",
            "The edge could not answer.",
            request_id,
        )
    })?;
    Ok(response.into())
}

/// An answer made without waiting, as the settled promise the handler returns.
fn settled(answer: Result<web_sys::Response>, request_id: &str) -> js_sys::Promise {
    match answered(answer, request_id) {
        Ok(response) => js_sys::Promise::resolve(&response),
        Err(error) => js_sys::Promise::reject(&error),
    }
}

struct Call {
    isolate: &'static Isolate,
    env: Env,
    ctx: Context,
    request_id: String,
    client: Option<IpAddr>,
    /// Read once per request: the decision and the cache see the same instant.
    now_ms: i64,
    target: Target,
}

/// A request that ends before it is decided (no route, no credential, KV trouble): its answer.
type Answered = Result<web_sys::Response>;

/// A key's request decided, its rate limit spent: what both modes answer from.
enum Verdict<'r> {
    /// Go on; with the admission when the key has a limit (its headers go on the response).
    Allowed(
        keygate_shared::Identity<'r>,
        Option<keygate_shared::Admission>,
    ),
    /// Refused; with the admission when the rate limit refused it.
    Denied(Denial, Option<keygate_shared::Admission>),
    /// The key's limiter could not be reached and the deployment fails closed.
    LimiterUnavailable,
}

impl Verdict<'_> {
    /// How the usage log records it; `None` for denials before the secret matched.
    fn outcome(&self) -> Option<Outcome> {
        match self {
            Self::Allowed(..) => Some(Outcome::Ok),
            Self::Denied(denial, _) => denial.usage_outcome(),
            Self::LimiterUnavailable => Some(Outcome::RateLimiterUnavailable),
        }
    }
}

impl Call {
    /// Gateway mode on a route that needs a key: take the credential, decide, spend the rate
    /// limit, then send the request on or answer it (reporting the usage of a denial). It waits
    /// only for what the isolate does not hold: a KV read, the key's limiter, a signature, a
    /// stale feed; never for the origin.
    async fn gateway(
        &self,
        request: &web_sys::Request,
        route: &Route,
        customer: Option<&str>,
    ) -> Decided {
        let candidate = match self.credential(request) {
            Ok(candidate) => candidate,
            Err(answered) => return Decided::Answer(answered),
        };
        let cached = match self.record(candidate.key_id()).await {
            Ok(Some(cached)) => cached,
            Ok(None) => {
                return Decided::Answer(respond::denial(&Denial::UnknownKey, &self.request_id));
            }
            Err(answered) => return Decided::Answer(answered),
        };
        let needs = Needs {
            now: self.now_ms.div_euclid(1000),
            client_ip: self.client,
            required: &route.permissions,
            customer_id: customer,
            customer_keys: route.customer_keys,
        };
        let verdict = self.judge(&candidate, &cached, &needs).await;
        let outcome = verdict.outcome();
        let answer = match verdict {
            Verdict::Allowed(identity, admission) => {
                let assertion = match self.assertion(&identity, &cached).await {
                    Ok(assertion) => assertion,
                    Err(answered) => return Decided::Answer(answered),
                };
                let caller = Caller::Verified {
                    identity: cached.identity_headers(&identity),
                    assertion,
                };
                let after = AfterOrigin {
                    key_id: candidate.key_id(),
                    admission,
                };
                return Decided::Sent(self.send(request, caller), after);
            }
            Verdict::Denied(_, Some(admission)) => {
                respond::rate_limited(&admission, &self.request_id)
            }
            Verdict::Denied(denial, None) => respond::denial(&denial, &self.request_id),
            Verdict::LimiterUnavailable => respond::limiter_unavailable(&self.request_id),
        };
        if let (Some(outcome), Ok(response)) = (outcome, &answer) {
            self.report(candidate.key_id(), outcome, response.status(), || {
                request.cf().map(|cf| worker::Cf::from(cf).colo())
            });
        }
        Decided::Answer(answer)
    }

    /// The promise the runtime gets for a decided key's request. An allowed key's response gets
    /// its RateLimit headers and its usage event in one callback when the origin answers (no
    /// callback when it needs neither).
    fn settle(self, request: web_sys::Request, decided: Decided) -> js_sys::Promise {
        let (sent, after) = match decided {
            Decided::Answer(answer) => return settled(answer, &self.request_id),
            Decided::Sent(sent, after) => (sent, after),
        };
        if after.admission.is_none() && !self.isolate.reports_usage {
            return sent;
        }
        let finish = Closure::once_into_js(move |response: web_sys::Response| {
            let response = match &after.admission {
                Some(admission) => limiter::annotate(response, admission),
                None => Ok(response),
            };
            if let Ok(response) = &response {
                self.report(after.key_id, Outcome::Ok, response.status(), || {
                    request.cf().map(|cf| worker::Cf::from(cf).colo())
                });
            }
            answered(response, &self.request_id)
        });
        gateway::then(&sent, &finish)
    }

    /// The signed identity assertion for an allowed key (none under `KEYGATE_ASSERTION=off`), or
    /// the 503 that ends the request: nothing is forwarded without it.
    async fn assertion(
        &self,
        identity: &keygate_shared::Identity<'_>,
        cached: &cache::CachedRecord,
    ) -> std::result::Result<Option<js_sys::JsString>, Answered> {
        let Some(config) = &self.isolate.config.assertion else {
            return Ok(None);
        };
        self.isolate
            .signer
            .token(config, identity, cached.record.version, self.now_ms)
            .await
            .map(Some)
            .map_err(|error| {
                console_error!("{} assertion not signed: {error}", self.request_id);
                respond::error(
                    503,
                    "unavailable",
                    "The identity assertion could not be signed.",
                    &self.request_id,
                )
            })
    }

    /// `GET /.keygate/jwks.json`: the public keys origins verify assertions with.
    fn jwks(&self) -> Result<web_sys::Response> {
        match (&self.isolate.config.assertion, self.target.method) {
            (Some(assertion), KeyMethod::Get | KeyMethod::Head) => {
                respond::public_json(&assertion.jwks_json, &self.request_id)
            }
            (Some(_), _) => respond::method_not_allowed(&self.request_id),
            (None, _) => {
                respond::error(404, "no_route", "No assertion keys here.", &self.request_id)
            }
        }
    }

    /// The key the request presents, or the 401 that ends the request.
    fn credential(&self, request: &web_sys::Request) -> std::result::Result<Candidate, Answered> {
        let headers = request.headers();
        let authorization = headers
            .get("authorization")
            .map_err(|error| Err(error.into()))?;
        // X-API-Key matters only when Authorization does not carry the key: skip reading it.
        let x_api_key = if authorization.as_deref().is_some_and(Verifier::carries_key) {
            None
        } else {
            headers
                .get("x-api-key")
                .map_err(|error| Err(error.into()))?
        };
        self.isolate
            .config
            .verifier
            .identify(authorization.as_deref(), x_api_key.as_deref())
            .map_err(|denial| respond::denial(&denial, &self.request_id))
    }

    /// The decision and, for an allowed key, one request spent of its rate limit, if it has one:
    /// at its Durable Object or, when that cannot be reached, as `KEYGATE_RATE_LIMIT_UNAVAILABLE`
    /// says. Both modes act on this.
    async fn judge<'r>(
        &self,
        candidate: &Candidate,
        cached: &'r cache::CachedRecord,
        needs: &Needs<'_>,
    ) -> Verdict<'r> {
        let identity = match candidate.decide(Some(&cached.record), needs) {
            Decision::Allowed(identity) => identity,
            Decision::Denied(denial) => return Verdict::Denied(denial, None),
        };
        let Some(limit) = cached.rate_limit() else {
            return Verdict::Allowed(identity, None);
        };
        let asked = match self.isolate.config.rate_limit_mode {
            LimitMode::Exact => limiter::admit(&self.env, &candidate.key_id(), limit).await,
            LimitMode::Fast => {
                let (isolate, key_id) = (self.isolate, candidate.key_id());
                limiter::admit_fast(isolate, &self.env, &self.ctx, key_id, limit, self.now_ms).await
            }
        };
        let admission = match asked {
            Ok(admission) => admission,
            Err(error) => {
                console_error!("{} rate limiter unavailable: {error}", self.request_id);
                match self.isolate.config.rate_limit_unavailable {
                    LimiterUnavailable::Local => self.isolate.local_buckets.borrow_mut().take(
                        candidate.key_id(),
                        limit,
                        self.now_ms,
                    ),
                    LimiterUnavailable::Closed => return Verdict::LimiterUnavailable,
                }
            }
        };
        if admission.allowed {
            Verdict::Allowed(identity, Some(admission))
        } else {
            let retry_after_seconds =
                u32::try_from(admission.retry_after_seconds).unwrap_or(u32::MAX);
            Verdict::Denied(
                Denial::RateLimited {
                    retry_after_seconds,
                },
                Some(admission),
            )
        }
    }

    /// Queues the usage event of a decision that identified the key, after the response.
    fn report(
        &self,
        key_id: KeyId,
        outcome: Outcome,
        status: u16,
        colo: impl FnOnce() -> Option<String>,
    ) {
        if !self.isolate.reports_usage {
            return;
        }
        let finished_ms = now_ms();
        let event = UsageEvent {
            event_id: self.request_id.to_owned(),
            key_id: key_id.as_str().to_owned(),
            occurred_at_ms: self.now_ms,
            method: self.target.method.as_str().to_owned(),
            route: UsageEvent::route_of(&self.target.path).to_owned(),
            outcome: outcome.into(),
            status: i64::from(status),
            colo: colo().unwrap_or_else(|| "local".to_owned()),
            latency_ms: (finished_ms - self.now_ms).max(0),
        };
        usage::report(&self.ctx, &self.env, &event);
    }

    /// Verify mode: the decision for a key in a JSON body, as JSON.
    async fn verify(&self, mut request: Request) -> Result<web_sys::Response> {
        if self.target.method != KeyMethod::Post {
            return respond::error(
                405,
                "method_not_allowed",
                "Verify with POST and a JSON body.",
                &self.request_id,
            );
        }
        let body = match read_capped(&mut request, MAX_VERIFY_BODY).await? {
            Some(body) => body,
            None => {
                let message = format!("The body is larger than {MAX_VERIFY_BODY} bytes.");
                return respond::error(413, "body_too_large", &message, &self.request_id);
            }
        };
        let asked: VerifyRequest = match serde_json::from_slice(&body) {
            Ok(asked) => asked,
            Err(error) => {
                // serde's own message could quote a value (possibly a key put in the wrong field);
                // say where and what shape is expected instead.
                let message = format!(
                    "Invalid verify request at line {} column {}: expected {{\"key\": string, \"permissions\"?: [string], \"customer_id\"?: string, \"client_ip\"?: string}}.",
                    error.line(),
                    error.column()
                );
                return respond::error(400, "invalid_request", &message, &self.request_id);
            }
        };
        if let Some(expected) = &self.isolate.config.verify_secret
            && !bearer_is(&request, expected)?
        {
            return respond::error(
                401,
                "invalid_verifier",
                "Verify mode needs the verifier secret: 'Authorization: Bearer <secret>'.",
                &self.request_id,
            );
        }
        let verifier = &self.isolate.config.verifier;
        if asked
            .environment
            .is_some_and(|environment| environment != verifier.environment())
        {
            let message = format!("This edge verifies {} keys only.", verifier.environment());
            return respond::error(400, "wrong_environment", &message, &self.request_id);
        }
        let candidate = match verifier.identify_key(&asked.key) {
            Ok(candidate) => candidate,
            Err(denial) => return self.verdict(Decision::Denied(denial)),
        };
        let cached = match self.record(candidate.key_id()).await {
            Ok(Some(cached)) => cached,
            Ok(None) => return self.verdict(Decision::Denied(Denial::UnknownKey)),
            Err(answered) => return answered,
        };
        let needs = Needs {
            now: self.now_ms.div_euclid(1000),
            client_ip: asked.client_ip,
            required: &asked.permissions,
            customer_id: asked.customer_id.as_deref(),
            customer_keys: false,
        };
        // A verification is a use of the key: it spends the rate limit and is reported.
        let verdict = self.judge(&candidate, &cached, &needs).await;
        let outcome = verdict.outcome();
        let response = match verdict {
            Verdict::Allowed(identity, _) => self.verdict(Decision::Allowed(identity))?,
            Verdict::Denied(denial, _) => self.verdict(Decision::Denied(denial))?,
            Verdict::LimiterUnavailable => respond::limiter_unavailable(&self.request_id)?,
        };
        if let Some(outcome) = outcome {
            self.report(candidate.key_id(), outcome, response.status(), || {
                request.cf().map(|cf| cf.colo())
            });
        }
        Ok(response)
    }

    /// `POST /.keygate/feed`: the control plane appends signed records to the change feed, with
    /// `Authorization: Bearer <KEYGATE_FEED_TOKEN>`.
    async fn append_to_feed(&self, mut request: Request) -> Result<web_sys::Response> {
        let Some(expected) = &self.isolate.config.feed_token else {
            return respond::error(
                404,
                "no_route",
                "This edge takes no feed appends (no KEYGATE_FEED_TOKEN).",
                &self.request_id,
            );
        };
        if request.method() != worker::Method::Post {
            return respond::error(
                405,
                "method_not_allowed",
                "POST an append.",
                &self.request_id,
            );
        }
        if !bearer_is(&request, expected)? {
            return respond::error(
                401,
                "invalid_feed_token",
                "Appending to the feed needs 'Authorization: Bearer <KEYGATE_FEED_TOKEN>'.",
                &self.request_id,
            );
        }
        let Some(body) = read_capped(&mut request, keygate_shared::MAX_APPEND_BYTES).await? else {
            let message = format!(
                "An append is at most {} bytes.",
                keygate_shared::MAX_APPEND_BYTES
            );
            return respond::error(413, "body_too_large", &message, &self.request_id);
        };
        match feed::append(&self.env, body).await {
            Ok(response) => Ok(response.into()),
            Err(error) => {
                console_error!("{} feed unavailable: {error}", self.request_id);
                respond::error(
                    503,
                    "unavailable",
                    "The change feed cannot be reached.",
                    &self.request_id,
                )
            }
        }
    }

    fn verdict(&self, decision: Decision<'_>) -> Result<web_sys::Response> {
        respond::json(200, &decision.to_verify_response(), &self.request_id)
    }

    /// The record for `key_id`, or the response that ends the request (limited, KV trouble, a
    /// stale feed where the deployment fails closed). The isolate keeps up with the change feed
    /// first: in the background, or, when it has not heard from the feed lately, by waiting for
    /// one poll.
    async fn record(&self, key_id: KeyId) -> std::result::Result<cache::Lookup, Answered> {
        if follower::keep_up(
            self.isolate,
            &self.env,
            &self.ctx,
            self.target.origin(),
            self.now_ms,
        )
        .await
        .is_err()
        {
            return Err(respond::error(
                503,
                "unavailable",
                "The change feed cannot be reached, and this deployment does not decide without it.",
                &self.request_id,
            ));
        }
        lookup::record(self.isolate, &self.env, key_id, self.client, self.now_ms)
            .await
            .map_err(|error| match error {
                LookupError::Limited => respond::denial(
                    &Denial::RateLimited {
                        retry_after_seconds: respond::LOOKUP_RETRY_AFTER_SECONDS,
                    },
                    &self.request_id,
                ),
                LookupError::Unavailable(problem) => {
                    console_error!("{} KV unavailable: {problem}", self.request_id);
                    respond::error(
                        503,
                        "unavailable",
                        "The key store is unavailable; try again shortly.",
                        &self.request_id,
                    )
                }
                LookupError::Unreadable(problem) => {
                    console_error!(
                        "{} unreadable record for key id {key_id}: {problem}",
                        self.request_id
                    );
                    respond::error(
                        503,
                        "unavailable",
                        "The key store returned an unreadable record.",
                        &self.request_id,
                    )
                }
                // Worth an alert: someone wrote KV without the control plane's signing key.
                LookupError::Forged(why) => {
                    console_error!(
                        "{} forged_record key_id={key_id} why=\"{why}\" refused_in_isolate={}",
                        self.request_id,
                        self.isolate.records.refused()
                    );
                    respond::error(
                        503,
                        "unavailable",
                        "The key store returned a record keygate did not sign.",
                        &self.request_id,
                    )
                }
            })
    }

    /// The request's target at the origin: the canonical path and the query as received.
    fn origin_target(&self) -> String {
        let Target { path, query, .. } = &self.target;
        if query.is_empty() {
            path.clone()
        } else {
            format!("{path}?{query}")
        }
    }

    /// Sends the request on to the origin: the promise of its response, or of the 502 when the
    /// origin cannot be reached.
    fn send(&self, request: &web_sys::Request, caller: Caller<'_>) -> js_sys::Promise {
        let config = &self.isolate.config;
        let target = self.origin_target();
        match gateway::send(request, config, &target, caller, &self.request_id) {
            Ok(pending) => gateway::or_unreachable(&pending, &self.request_id),
            Err(error) => settled(
                gateway::unreachable(&error.into(), &self.request_id),
                &self.request_id,
            ),
        }
    }
}

/// The body, or `None` if it is longer than `limit` (read no further than that).
async fn read_capped(request: &mut Request, limit: usize) -> Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    if request.inner().body().is_none() {
        return Ok(Some(body));
    }
    let mut stream = request.stream()?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// Whether the request's `Authorization: Bearer <secret>` is the secret whose digest is
/// `expected` (digest equality is constant-time).
fn bearer_is(request: &Request, expected: &Digest) -> Result<bool> {
    let presented = request.headers().get("authorization")?;
    let presented = presented
        .as_deref()
        .and_then(|value| value.strip_prefix("Bearer "));
    Ok(presented.map(Digest::of_key).as_ref() == Some(expected))
}

/// Cloudflare sets `CF-Connecting-IP` on every request it receives, overwriting any a client sent.
fn client_ip(headers: &web_sys::Headers) -> Option<IpAddr> {
    headers
        .get("cf-connecting-ip")
        .ok()
        .flatten()
        .and_then(|ip| ip.trim().parse().ok())
}

fn request_id(headers: &web_sys::Headers) -> String {
    let ray = headers.get("cf-ray").ok().flatten();
    ray.filter(|ray| ray.len() <= 64 && ray.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .unwrap_or_else(|| {
            format!(
                "{:016x}",
                (js_sys::Math::random() * (u64::MAX as f64)) as u64
            )
        })
}

/// Milliseconds since the epoch, from the runtime's clock (`std::time` panics on wasm32).
pub(crate) fn now_ms() -> i64 {
    // An f64 of whole milliseconds: exact far beyond any date keygate meets.
    js_sys::Date::now() as i64
}
