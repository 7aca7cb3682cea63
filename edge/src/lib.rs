//! keygate-edge: the Cloudflare Worker in front of an API. Every request's key is decided by
//! keygate-shared against the record in the Workers KV snapshot; the Worker adds only what needs the
//! platform: configuration, the isolate cache, KV, the per-client lookup limiter, and forwarding.
//!
//! - Gateway mode: a request matching a route in `KEYGATE_ROUTES` is verified and forwarded to
//!   `KEYGATE_ORIGIN` with the caller's identity, or refused with 401/403/429.
//! - Verify mode: `POST <KEYGATE_VERIFY_PATH>` (default `/.keygate/verify`) with
//!   `{"key": ..., "permissions": [...], "customer_id": ...}` answers the decision as JSON.
//!
//! It writes nothing: records come from the control plane through KV. Nothing on the request path
//! panics; a missing binding or bad setting is a 500/503 that names it, and KV trouble fails closed.

mod cache;
mod config;
mod gateway;
mod limiter;
mod lookup;
mod respond;
mod routes;
mod usage;

use std::cell::{OnceCell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;

use futures_util::StreamExt as _;
use keygate_shared::{
    Candidate, Decision, Denial, KeyId, Outcome, Request as Needs, UsageEvent, Verifier,
    VerifyRequest,
};
use worker::{Context, Date, Env, Method, Request, Result, console_error, event, web_sys};

use crate::cache::RecordCache;
use crate::config::{Config, ConfigError, LimiterUnavailable};
use crate::gateway::Caller;
use crate::lookup::LookupError;

/// Largest verify-mode body read; a key and a few permissions fit many times over.
const MAX_VERIFY_BODY: usize = 8 * 1024;

pub use crate::limiter::KeyLimiter;

/// Per-isolate state: the parsed configuration and the record cache.
pub(crate) struct Isolate {
    pub(crate) config: Config,
    pub(crate) cache: RefCell<RecordCache>,
    /// Whether the `USAGE` queue is bound: without it, no event is built at all.
    pub(crate) reports_usage: bool,
}

thread_local! {
    static ISOLATE: OnceCell<std::result::Result<Rc<Isolate>, ConfigError>> = const { OnceCell::new() };
}

/// Vars do not change during an isolate's life, so they are read and parsed once.
fn isolate(env: &Env) -> std::result::Result<Rc<Isolate>, ConfigError> {
    ISOLATE.with(|cell| {
        cell.get_or_init(|| {
            let config = Config::from_vars(|name| env.var(name).ok().map(|var| var.to_string()))?;
            let cache = RecordCache::new(config.cache_capacity, config.cache_ttl_ms);
            Ok(Rc::new(Isolate {
                config,
                cache: RefCell::new(cache),
                reports_usage: env.queue(usage::USAGE_BINDING).is_ok(),
            }))
        })
        .clone()
    })
}

/// The `USAGE` queue's consumer: delivers usage events to the control plane.
#[event(queue)]
async fn queue(batch: worker::MessageBatch<String>, env: Env, _ctx: Context) -> Result<()> {
    usage::deliver(batch, &env).await
}

#[event(fetch)]
async fn fetch(request: Request, env: Env, ctx: Context) -> Result<web_sys::Response> {
    let request_id = request_id(&request);
    let isolate = match isolate(&env) {
        Ok(isolate) => isolate,
        Err(error) => {
            console_error!("{request_id} misconfigured: {error}");
            return respond::error(500, "misconfigured", &error.to_string(), &request_id);
        }
    };
    let call = Call {
        isolate: &isolate,
        env: &env,
        ctx: &ctx,
        request_id: &request_id,
        client: client_ip(&request),
        now_ms: i64::try_from(Date::now().as_millis()).unwrap_or(i64::MAX),
    };
    if request.path() == isolate.config.verify_path {
        call.verify(request).await
    } else {
        call.gateway(request).await
    }
}

struct Call<'a> {
    isolate: &'a Isolate,
    env: &'a Env,
    ctx: &'a Context,
    request_id: &'a str,
    client: Option<IpAddr>,
    /// Read once per request: the decision and the cache see the same instant.
    now_ms: i64,
}

/// A request that ends before it is decided (no route, no credential, KV trouble): its answer.
type Answered = Result<web_sys::Response>;

impl Call<'_> {
    /// Gateway mode: route, take the credential, decide, spend the rate limit, forward or deny,
    /// report usage.
    async fn gateway(&self, request: Request) -> Result<web_sys::Response> {
        let method = request.method();
        let path = request.path();
        let Some(route) = self.isolate.config.routes.find(method.as_ref(), &path) else {
            let message = format!("No route for {method} {path}.");
            return respond::error(404, "no_route", &message, self.request_id);
        };
        if route.route.public {
            return self.forward(&request, Caller::Anonymous).await;
        }
        let (candidate, in_authorization) = match self.credential(&request) {
            Ok(found) => found,
            Err(answered) => return answered,
        };
        let cached = match self.record(candidate.key_id()).await {
            Ok(Some(cached)) => cached,
            Ok(None) => return respond::denial(&Denial::UnknownKey, self.request_id),
            Err(answered) => return answered,
        };
        let needs = Needs {
            now: self.now_ms.div_euclid(1000),
            client_ip: self.client,
            required: &route.route.permissions,
            customer_id: route.customer,
        };
        let (outcome, response) = match candidate.decide(Some(&cached.record), &needs) {
            Decision::Allowed(identity) => {
                let caller = Caller::Verified {
                    identity: cached.identity_headers(&identity),
                    strip_authorization: in_authorization,
                };
                let (outcome, response) = self.pass(&request, &candidate, &cached, caller).await?;
                (Some(outcome), response)
            }
            Decision::Denied(denial) => (
                denial.usage_outcome(),
                respond::denial(&denial, self.request_id)?,
            ),
        };
        if let Some(outcome) = outcome {
            self.report(&request, &candidate, outcome, response.status());
        }
        Ok(response)
    }

    /// The key the request presents, and whether it came in `Authorization` (which then must not
    /// reach the origin), or the 401 that ends the request.
    fn credential(&self, request: &Request) -> std::result::Result<(Candidate, bool), Answered> {
        let headers = request.headers();
        let authorization = headers.get("authorization").map_err(Err)?;
        let in_authorization = authorization.as_deref().is_some_and(Verifier::carries_key);
        // X-API-Key matters only when Authorization does not carry the key: skip reading it.
        let x_api_key = if in_authorization {
            None
        } else {
            headers.get("x-api-key").map_err(Err)?
        };
        self.isolate
            .config
            .verifier
            .identify(authorization.as_deref(), x_api_key.as_deref())
            .map(|candidate| (candidate, in_authorization))
            .map_err(|denial| respond::denial(&denial, self.request_id))
    }

    /// An allowed request: through the key's rate limit, if it has one, to the origin.
    async fn pass(
        &self,
        request: &Request,
        candidate: &Candidate,
        cached: &cache::CachedRecord,
        caller: Caller<'_>,
    ) -> Result<(Outcome, web_sys::Response)> {
        let Some(limit) = cached.rate_limit() else {
            return Ok((Outcome::Ok, self.forward(request, caller).await?));
        };
        Ok(
            match limiter::admit(self.env, &candidate.key_id(), limit).await {
                Ok(admission) if admission.allowed => (
                    Outcome::Ok,
                    limiter::annotate(self.forward(request, caller).await?, &admission)?,
                ),
                Ok(admission) => (
                    Outcome::RateLimited,
                    respond::rate_limited(&admission, self.request_id)?,
                ),
                Err(error) => {
                    console_error!("{} rate limiter unavailable: {error}", self.request_id);
                    match self.isolate.config.rate_limit_unavailable {
                        LimiterUnavailable::Open => {
                            (Outcome::Ok, self.forward(request, caller).await?)
                        }
                        LimiterUnavailable::Closed => (
                            Outcome::RateLimiterUnavailable,
                            respond::error(
                                503,
                                "unavailable",
                                "The rate limiter is unavailable; try again shortly.",
                                self.request_id,
                            )?,
                        ),
                    }
                }
            },
        )
    }

    /// Queues the usage event of a decision that identified the key, after the response.
    fn report(&self, request: &Request, candidate: &Candidate, outcome: Outcome, status: u16) {
        if !self.isolate.reports_usage {
            return;
        }
        let path = request.path();
        let finished_ms = i64::try_from(Date::now().as_millis()).unwrap_or(i64::MAX);
        let colo = request.cf().map(|cf| cf.colo());
        let event = UsageEvent {
            event_id: self.request_id.to_owned(),
            key_id: candidate.key_id().as_str().to_owned(),
            occurred_at_ms: self.now_ms,
            method: request.method().to_string(),
            route: UsageEvent::route_of(&path).to_owned(),
            outcome: outcome.into(),
            status: i64::from(status),
            colo: colo.unwrap_or_else(|| "local".to_owned()),
            latency_ms: (finished_ms - self.now_ms).max(0),
        };
        usage::report(self.ctx, self.env, &event);
    }

    /// Verify mode: the decision for a key in a JSON body, as JSON.
    async fn verify(&self, mut request: Request) -> Result<web_sys::Response> {
        if request.method() != Method::Post {
            return respond::error(
                405,
                "method_not_allowed",
                "Verify with POST and a JSON body.",
                self.request_id,
            );
        }
        let body = match read_capped(&mut request, MAX_VERIFY_BODY).await? {
            Some(body) => body,
            None => {
                let message = format!("The body is larger than {MAX_VERIFY_BODY} bytes.");
                return respond::error(413, "body_too_large", &message, self.request_id);
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
                return respond::error(400, "invalid_request", &message, self.request_id);
            }
        };
        let verifier = &self.isolate.config.verifier;
        if asked
            .environment
            .is_some_and(|environment| environment != verifier.environment())
        {
            let message = format!("This edge verifies {} keys only.", verifier.environment());
            return respond::error(400, "wrong_environment", &message, self.request_id);
        }
        let candidate = match verifier.identify_key(&asked.key) {
            Ok(candidate) => candidate,
            Err(denial) => return self.verdict(Decision::Denied(denial)),
        };
        let record = match self.record(candidate.key_id()).await {
            Ok(record) => record,
            Err(answered) => return answered,
        };
        let needs = Needs {
            now: self.now_ms.div_euclid(1000),
            client_ip: asked.client_ip,
            required: &asked.permissions,
            customer_id: asked.customer_id.as_deref(),
        };
        self.verdict(candidate.decide(record.as_ref().map(|cached| &cached.record), &needs))
    }

    fn verdict(&self, decision: Decision<'_>) -> Result<web_sys::Response> {
        respond::json(200, &decision.to_verify_response(), self.request_id)
    }

    /// The record for `key_id`, or the response that ends the request (limited, KV trouble).
    async fn record(&self, key_id: KeyId) -> std::result::Result<cache::Lookup, Answered> {
        lookup::record(self.isolate, self.env, key_id, self.client, self.now_ms)
            .await
            .map_err(|error| match error {
                LookupError::Limited => respond::denial(
                    &Denial::RateLimited {
                        retry_after_seconds: respond::LOOKUP_RETRY_AFTER_SECONDS,
                    },
                    self.request_id,
                ),
                LookupError::Unavailable(problem) => {
                    console_error!("{} KV unavailable: {problem}", self.request_id);
                    respond::error(
                        503,
                        "unavailable",
                        "The key store is unavailable; try again shortly.",
                        self.request_id,
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
                        self.request_id,
                    )
                }
            })
    }

    async fn forward(&self, request: &Request, caller: Caller<'_>) -> Result<web_sys::Response> {
        match gateway::forward(request, &self.isolate.config, caller, self.request_id).await {
            Ok(response) => Ok(response),
            Err(error) => {
                console_error!("{} origin unreachable: {error}", self.request_id);
                respond::error(
                    502,
                    "origin_unavailable",
                    "The origin could not be reached.",
                    self.request_id,
                )
            }
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

/// Cloudflare sets `CF-Connecting-IP` on every request it receives, overwriting any a client sent.
fn client_ip(request: &Request) -> Option<IpAddr> {
    request
        .headers()
        .get("cf-connecting-ip")
        .ok()
        .flatten()
        .and_then(|ip| ip.trim().parse().ok())
}

fn request_id(request: &Request) -> String {
    let ray = request.headers().get("cf-ray").ok().flatten();
    ray.filter(|ray| ray.len() <= 64 && ray.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .unwrap_or_else(|| {
            format!(
                "{:016x}",
                (worker::js_sys::Math::random() * (u64::MAX as f64)) as u64
            )
        })
}
