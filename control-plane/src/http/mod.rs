//! The HTTP API. [`app`] builds the router from one module per resource; each handler carries its
//! `#[utoipa::path]`, and routes are registered through `utoipa_axum`, so the OpenAPI document
//! served at `/openapi.json` is generated from the very routes the router serves.

mod audit;
mod auth;
mod cache;
mod ceilings;
mod document;
mod error;
mod keys;
mod leaks;
mod metrics;
mod ops;
mod permissions;
mod sync;
mod ui;
mod usage;
mod users;
mod verify;
mod views;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use keygate_shared::{Environment, KeyFormat, Verifier};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

pub use auth::Caller;
pub use error::{ApiError, ErrorResponse};
use error::{ErrorDetail, ErrorReport};
pub use metrics::Metrics;
pub use ui::UiSettings;

use crate::Clock;
use crate::store::{Actor, Db};
use crate::sync::SyncHandle;

/// How long `POST /v1/verify` uses a read unless told otherwise, in milliseconds.
pub const DEFAULT_VERIFY_CACHE_MS: u32 = 500;

/// How this deployment issues keys and tokens.
#[derive(Clone, Debug)]
pub struct Settings {
    pub key_format: KeyFormat,
    pub token_format: KeyFormat,
    /// The environment tag of control-plane tokens.
    pub environment: Environment,
    pub max_body_bytes: usize,
    /// The digest of the token the edge's usage consumer sends to `POST /v1/usage/events`;
    /// `None`: ingest refuses everyone.
    pub ingest_token: Option<keygate_shared::Digest>,
    /// Days the request log keeps events (usage counts are kept).
    pub log_retention_days: u32,
    /// The JWKS of the edge's assertion keys, served at `/.well-known/jwks.json`.
    pub assertion_jwks: Option<keygate_shared::Jwks>,
    /// The digest of the token `/metrics` asks for; `None`: `/metrics` is open.
    pub metrics_token: Option<keygate_shared::Digest>,
    /// The dashboard's sessions.
    pub ui: UiSettings,
    /// The keys GitHub signs secret-scanning alerts with; `None`: the alert route answers 404.
    pub secret_scanning: Option<Arc<crate::scanning::GithubKeys>>,
    /// How long `POST /v1/verify` may use what it read (milliseconds, at most
    /// [`cache::MAX_TTL_MS`]; 0: it reads the database on every call).
    pub verify_cache_ms: u32,
}

impl Settings {
    pub fn new(
        key_prefix: &str,
        token_prefix: &str,
        environment: Environment,
        max_body_bytes: usize,
    ) -> Result<Self, String> {
        let format = |prefix: &str, what: &str| {
            KeyFormat::new(prefix).map_err(|error| format!("the {what} prefix {prefix:?}: {error}"))
        };
        if key_prefix == token_prefix {
            return Err("the key and token prefixes must differ".into());
        }
        Ok(Self {
            key_format: format(key_prefix, "key")?,
            token_format: format(token_prefix, "token")?,
            environment,
            max_body_bytes,
            assertion_jwks: None,
            metrics_token: None,
            ingest_token: None,
            log_retention_days: 30,
            ui: UiSettings::default(),
            secret_scanning: None,
            verify_cache_ms: DEFAULT_VERIFY_CACHE_MS,
        })
    }

    /// `POST /v1/verify` may use a read for `millis` (at most [`cache::MAX_TTL_MS`]).
    pub fn with_verify_cache_ms(mut self, millis: u32) -> Result<Self, String> {
        if millis > cache::MAX_TTL_MS {
            return Err(format!(
                "the verify cache keeps reads at most {} ms, not {millis}",
                cache::MAX_TTL_MS
            ));
        }
        self.verify_cache_ms = millis;
        Ok(self)
    }

    /// Turns on usage ingest with `token`, keeping the request log for `retention_days`.
    /// `/metrics` asks for `token` (as a bearer token); `None` leaves it open.
    pub fn with_metrics_token(mut self, token: Option<&str>) -> Self {
        self.metrics_token = token.map(keygate_shared::Digest::of_key);
        self
    }

    /// Publishes `jwks` (checked as origins will read it) at `/.well-known/jwks.json`.
    pub fn with_assertion_jwks(mut self, jwks: Option<&str>) -> Result<Self, String> {
        self.assertion_jwks = jwks
            .map(|text| {
                keygate_origin::AssertionVerifier::new(text, "keygate", "check")
                    .map_err(|error| format!("the assertion JWKS: {error}"))?;
                serde_json::from_str(text).map_err(|error| format!("the assertion JWKS: {error}"))
            })
            .transpose()?;
        Ok(self)
    }

    /// Accepts GitHub's secret-scanning alerts signed by a key of `keys` (GitHub's published
    /// list, as JSON).
    pub fn with_secret_scanning(mut self, keys: Option<&str>) -> Result<Self, String> {
        self.secret_scanning = keys
            .map(|text| {
                crate::scanning::GithubKeys::parse(text)
                    .map(Arc::new)
                    .map_err(|error| format!("the secret-scanning keys: {error}"))
            })
            .transpose()?;
        Ok(self)
    }

    pub fn with_ui(mut self, ui: UiSettings) -> Self {
        self.ui = ui;
        self
    }

    pub fn with_usage(mut self, token: Option<&str>, retention_days: u32) -> Self {
        self.ingest_token = token
            .filter(|token| !token.is_empty())
            .map(keygate_shared::Digest::of_key);
        self.log_retention_days = retention_days;
        self
    }
}

#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    db: Db,
    settings: Settings,
    tokens: Verifier,
    /// One verifier of API keys per environment, for `POST /v1/verify`.
    keys: [Verifier; 3],
    clock: Clock,
    metrics: Metrics,
    sync: SyncHandle,
    cache: cache::ReadCache,
}

impl AppState {
    /// A state with no pusher in this process (tests; `serve --kv-sink none`).
    pub fn new(db: Db, settings: Settings, clock: Clock) -> Self {
        Self::with_sync(db, settings, clock, SyncHandle::default())
    }

    pub fn with_sync(db: Db, settings: Settings, clock: Clock, sync: SyncHandle) -> Self {
        let tokens = Verifier::new(settings.token_format.clone(), settings.environment);
        let keys = Environment::ALL
            .map(|environment| Verifier::new(settings.key_format.clone(), environment));
        let cache = cache::ReadCache::new(settings.verify_cache_ms);
        Self(Arc::new(Inner {
            db,
            settings,
            tokens,
            keys,
            clock,
            metrics: Metrics::default(),
            sync,
            cache,
        }))
    }

    /// A key changed here (its transaction committed): `POST /v1/verify` reads afresh, and this
    /// process's pusher wakes.
    pub(crate) fn key_changed(&self) {
        self.0.cache.forget();
        self.0.sync.changed();
    }

    /// A token or user changed here: `POST /v1/verify` authenticates afresh.
    pub(crate) fn caller_changed(&self) {
        self.0.cache.forget();
    }

    fn cache(&self) -> &cache::ReadCache {
        &self.0.cache
    }

    pub fn sync(&self) -> &SyncHandle {
        &self.0.sync
    }

    pub fn db(&self) -> &Db {
        &self.0.db
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub fn now(&self) -> i64 {
        self.0.clock.now()
    }

    fn now_ms(&self) -> i64 {
        self.0.clock.now_ms()
    }

    fn token_verifier(&self) -> &Verifier {
        &self.0.tokens
    }

    fn key_verifier(&self, environment: Environment) -> &Verifier {
        &self.0.keys[match environment {
            Environment::Production => 0,
            Environment::Staging => 1,
            Environment::Development => 2,
        }]
    }

    fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }
}

/// The request's id, made here for every request (a client's `x-request-id` is not trusted:
/// it would land in the audit log and the server's log as is).
#[derive(Clone, Debug)]
pub(crate) struct RequestId(pub String);

#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientIp(pub Option<IpAddr>);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keygate control plane",
        description = "Issue, manage and verify API keys. Every route except /healthz, /readyz, \
                       /metrics and /openapi.json needs `Authorization: Bearer <token>`.",
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorResponse, ErrorDetail)),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // The edge's usage consumer: `Authorization: Bearer <KEYGATE_INGEST_TOKEN>`.
        components.add_security_scheme(
            "ingest",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(keys::router())
        .merge(users::router())
        .merge(ceilings::router())
        .merge(permissions::router())
        .merge(audit::router())
        .merge(sync::router())
        .merge(usage::router())
        .merge(verify::router())
        .merge(leaks::router())
        .merge(ops::router())
}

/// The routes and the OpenAPI document of exactly those routes.
fn routes_and_document() -> (Router<AppState>, serde_json::Value) {
    let (router, document) = routes().split_for_parts();
    (router, document::complete(document))
}

/// The OpenAPI document of every route [`app`] serves, as `/openapi.json` serves it.
pub fn openapi() -> serde_json::Value {
    routes_and_document().1
}

pub fn app(state: AppState) -> Router {
    let (router, document) = routes_and_document();
    router
        .merge(ui::router())
        .layer(Extension(Arc::new(document)))
        .layer(DefaultBodyLimit::max(state.settings().max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Around every request: give it an id, time it, count it, log one line, and render any error in
/// the one error shape with that id.
async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let is_page = ui::serves(request.uri().path());
    let client_ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    request.extensions_mut().insert(ClientIp(client_ip));

    let mut response = next.run(request).await;

    let status = response.status();
    let report = response.extensions_mut().remove::<ErrorReport>();
    if let Some(cause) = report
        .as_ref()
        .and_then(|report| report.internal.as_deref())
    {
        tracing::error!(request_id, %method, route, status = status.as_u16(), cause, "request failed");
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    // The dashboard's errors are pages, and stay so.
    if !is_page
        && (report.is_some() || (status.is_client_error() || status.is_server_error()) && !is_json)
    {
        let (code, message) = match report {
            Some(report) => (report.code, report.message),
            None => generic_error(status),
        };
        let body = ErrorResponse {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
                request_id: request_id.clone(),
            },
        };
        let (mut parts, _) = response.into_parts();
        // The body is replaced, so are its headers (axum's own rejections say text/plain).
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::CONTENT_TYPE);
        response = (parts, Json(body)).into_response();
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let elapsed = started.elapsed();
    state
        .metrics()
        .observe(method.as_str(), &route, status.as_u16(), elapsed);
    tracing::info!(
        request_id,
        %method,
        route,
        status = status.as_u16(),
        elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

/// Errors raised by axum itself (no route, wrong method, ...), in the same shape.
fn generic_error(status: StatusCode) -> (&'static str, String) {
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        status if status.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = match status {
        StatusCode::NOT_FOUND => "no such route".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "this route does not take that method".to_owned(),
        status => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    (code, message)
}

/// The audit stamp of a request made by `caller`.
pub(crate) fn actor(state: &AppState, caller: &Caller) -> Actor {
    Actor {
        user_id: Some(caller.user_id.clone()),
        request_id: Some(caller.request_id.clone()),
        client_ip: caller.client_ip.map(|ip| ip.to_string()),
        now: state.now(),
    }
}
