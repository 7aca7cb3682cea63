//! A stand-in for Cloudflare's Workers KV REST API (bulk write, read and delete, key listing), for what
//! cannot run here: it keeps the namespace in memory, records every request, and fails on demand.
//! Its wire format is checked against wrangler itself (`tests/sync.rs`, the contract test).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub const TOKEN: &str = "test-token-for-the-fake-kv";
pub const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
pub const NAMESPACE: &str = "fedcba9876543210fedcba9876543210";

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub at: std::time::Instant,
    /// The status it was answered with.
    pub status: u16,
}

/// An answer to give instead of doing the work.
#[derive(Clone, Debug)]
pub struct Failure {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: Value,
}

impl Failure {
    pub fn server_error() -> Self {
        Self {
            status: 500,
            retry_after: None,
            body: envelope_error(10001, "internal error"),
        }
    }

    pub fn throttled(retry_after: u64) -> Self {
        Self {
            status: 429,
            retry_after: Some(retry_after),
            body: envelope_error(10429, "too many requests"),
        }
    }
}

pub fn envelope_error(code: i64, message: &str) -> Value {
    json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null})
}

#[derive(Debug, Default)]
pub struct Namespace {
    /// name -> (value, metadata)
    pub entries: BTreeMap<String, (String, Option<Value>)>,
    pub requests: Vec<Recorded>,
    /// Every successful single-entry write, in the order applied: (name, version in metadata).
    pub writes: Vec<(String, Option<u64>)>,
    /// Answers for the next requests, one each.
    pub fail_next: VecDeque<Failure>,
    /// While set, every request gets this answer.
    pub down: Option<Failure>,
    /// Names a bulk write reports as unsuccessful (and does not write), this many times each.
    pub refuse_keys: BTreeMap<String, u32>,
    /// Added to every request before it is answered.
    pub delay: Duration,
}

/// The fake API, served on a free port for as long as the runtime runs.
#[derive(Clone, Debug)]
pub struct FakeKv {
    pub port: u16,
    state: Arc<Mutex<Namespace>>,
}

impl FakeKv {
    pub fn start(runtime: &tokio::runtime::Runtime) -> Self {
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(Namespace::default()));
        let namespace = "/client/v4/accounts/{account}/storage/kv/namespaces/{namespace}";
        let app = axum::Router::new()
            .route(
                &format!("{namespace}/bulk"),
                put(bulk_put).delete(bulk_delete),
            )
            .route(&format!("{namespace}/bulk/get"), post(bulk_get))
            .route(&format!("{namespace}/keys"), get(list))
            .fallback(unknown)
            // KV takes bulk bodies of up to 100 MB; the check is the handler's, with KV's answer.
            .layer(axum::extract::DefaultBodyLimit::max(128 << 20))
            .with_state(state.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self { port, state }
    }

    /// The base URL to give wrangler (`CLOUDFLARE_API_BASE_URL`) or keygate.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/client/v4", self.port)
    }

    /// The settings of a `keygate serve|sync` that pushes here, retrying within a second and
    /// reconciling never.
    pub fn sink_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KEYGATE_KV_SINK", "cloudflare".to_owned()),
            ("CLOUDFLARE_API_BASE_URL", self.base_url()),
            ("CLOUDFLARE_ACCOUNT_ID", ACCOUNT.to_owned()),
            ("KEYGATE_KV_NAMESPACE_ID", NAMESPACE.to_owned()),
            ("CLOUDFLARE_API_TOKEN", TOKEN.to_owned()),
            ("KEYGATE_SYNC_MAX_BACKOFF_SECONDS", "1".to_owned()),
            ("KEYGATE_SYNC_POLL_MS", "100".to_owned()),
            ("KEYGATE_RECONCILE_INTERVAL_SECONDS", "0".to_owned()),
            (
                "KEYGATE_RECORD_SIGNING_KEY_FILE",
                crate::record_key_file().display().to_string(),
            ),
        ]
    }

    pub fn state(&self) -> MutexGuard<'_, Namespace> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The version KV holds for `name`, from its metadata.
    pub fn value(&self, name: &str) -> Option<String> {
        self.entry(name).map(|(value, _)| value)
    }

    /// An entry's value and the version in its metadata, read together (a pusher may be writing).
    pub fn entry(&self, name: &str) -> Option<(String, Option<u64>)> {
        self.state().entries.get(name).map(|(value, metadata)| {
            let version = metadata.as_ref().and_then(|m| m.get("version")?.as_u64());
            (value.clone(), version)
        })
    }

    /// Requests of `method` so far.
    pub fn count(&self, method: &str) -> usize {
        self.state()
            .requests
            .iter()
            .filter(|request| request.method == method)
            .count()
    }
}

type Shared = State<Arc<Mutex<Namespace>>>;

/// Records the request, waits the delay, and returns the failure to answer with, if any.
async fn arrive(
    state: &Arc<Mutex<Namespace>>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(), Box<Response>> {
    let delay = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        state.requests.push(Recorded {
            method: method.to_string(),
            uri: uri.to_string(),
            authorization: header("authorization"),
            content_type: header("content-type"),
            body: body.clone(),
            at: std::time::Instant::now(),
            status: 200,
        });
        state.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let failure = state.down.clone().or_else(|| state.fail_next.pop_front());
    if let Some(failure) = failure {
        if let Some(last) = state.requests.last_mut() {
            last.status = failure.status;
        }
        let mut response = (status(failure.status), axum::Json(failure.body)).into_response();
        if let Some(after) = failure.retry_after {
            response
                .headers_mut()
                .insert("retry-after", after.to_string().parse().expect("header"));
        }
        return Err(Box::new(response));
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                axum::Json(envelope_error(10000, "Authentication error")),
            )
                .into_response(),
        ));
    }
    Ok(())
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"success": true, "errors": [], "messages": [], "result": result}))
        .into_response()
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(envelope_error(10002, message)),
    )
        .into_response()
}

fn right_namespace(account: &str, namespace: &str) -> Result<(), Box<Response>> {
    if account == ACCOUNT && namespace == NAMESPACE {
        Ok(())
    } else {
        Err(Box::new(
            (
                StatusCode::NOT_FOUND,
                axum::Json(envelope_error(10013, "namespace not found")),
            )
                .into_response(),
        ))
    }
}

/// What every namespace route does first: record, delay, fail on demand, check the token and
/// the account and namespace ids.
async fn admit(
    state: &Arc<Mutex<Namespace>>,
    (account, namespace): &(String, String),
    (method, uri, headers): (&Method, &Uri, &HeaderMap),
    body: &Bytes,
) -> Result<(), Box<Response>> {
    arrive(state, method, uri, headers, body).await?;
    right_namespace(account, namespace)
}

async fn bulk_put(
    State(state): Shared,
    Path(ids): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(answer) = admit(&state, &ids, (&method, &uri, &headers), &body).await {
        return *answer;
    }
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("the body must be a JSON array");
    };
    if items.len() > 10_000 || body.len() > 100_000_000 {
        return bad_request("too many pairs or too large a body");
    }
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let mut unsuccessful = Vec::new();
    let mut written = 0;
    for item in items {
        let (Some(name), Some(value)) = (item["key"].as_str(), item["value"].as_str()) else {
            return bad_request("each pair needs a string key and value");
        };
        if let Some(left) = state.refuse_keys.get_mut(name)
            && *left > 0
        {
            *left -= 1;
            unsuccessful.push(name.to_owned());
            continue;
        }
        let metadata = item.get("metadata").cloned();
        let version = metadata.as_ref().and_then(|m| m.get("version")?.as_u64());
        written += 1;
        state.writes.push((name.to_owned(), version));
        state
            .entries
            .insert(name.to_owned(), (value.to_owned(), metadata));
    }
    ok(json!({"successful_key_count": written, "unsuccessful_keys": unsuccessful}))
}

/// `{"keys": [...]}` (at most 100) -> `{"values": {"<name>": "<value>" | null}}`: text values,
/// as KV answers without `type` or `withMetadata`.
async fn bulk_get(
    State(state): Shared,
    Path(ids): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(answer) = admit(&state, &ids, (&method, &uri, &headers), &body).await {
        return *answer;
    }
    let keys: Option<Vec<String>> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(fields)) if fields.len() == 1 => fields
            .get("keys")
            .and_then(|keys| serde_json::from_value(keys.clone()).ok()),
        _ => None,
    };
    let Some(keys) = keys else {
        return bad_request("the body must be {\"keys\": [names]}");
    };
    if keys.is_empty() || keys.len() > 100 {
        return bad_request("a bulk read takes 1 to 100 keys");
    }
    let state = state.lock().unwrap_or_else(|p| p.into_inner());
    let values: serde_json::Map<String, Value> = keys
        .into_iter()
        .map(|name| {
            let value = state
                .entries
                .get(&name)
                .map_or(Value::Null, |(value, _)| Value::String(value.clone()));
            (name, value)
        })
        .collect();
    ok(json!({ "values": values }))
}

async fn bulk_delete(
    State(state): Shared,
    Path(ids): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(answer) = admit(&state, &ids, (&method, &uri, &headers), &body).await {
        return *answer;
    }
    let Ok(names) = serde_json::from_slice::<Vec<String>>(&body) else {
        return bad_request("the body must be a JSON array of key names");
    };
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    for name in &names {
        state.entries.remove(name);
    }
    ok(json!({"successful_key_count": names.len(), "unsuccessful_keys": []}))
}

async fn list(
    State(state): Shared,
    Path(ids): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let request = (&method, &uri, &headers);
    if let Err(answer) = admit(&state, &ids, request, &Bytes::new()).await {
        return *answer;
    }
    let limit: usize = query
        .get("limit")
        .and_then(|limit| limit.parse().ok())
        .unwrap_or(1000)
        .clamp(10, 1000);
    // Like Cloudflare's, the cursor is a seek: it names the last entry returned (base64), and the
    // next page starts after it, so a page costs its own size however many entries there are.
    let after = query
        .get("cursor")
        .and_then(|cursor| URL_SAFE_NO_PAD.decode(cursor).ok())
        .and_then(|name| String::from_utf8(name).ok());
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let from = match after {
        Some(name) => Bound::Excluded(name),
        None => Bound::Included(prefix.clone()),
    };
    let state = state.lock().unwrap_or_else(|p| p.into_inner());
    let mut matching = state
        .entries
        .range::<String, _>((from, Bound::Unbounded))
        .take_while(|(name, _)| name.starts_with(&prefix));
    let mut last = None;
    let page: Vec<Value> = matching
        .by_ref()
        .take(limit)
        .map(|(name, (_, metadata))| {
            last = Some(name);
            match metadata {
                Some(metadata) => json!({"name": name, "metadata": metadata}),
                None => json!({"name": name}),
            }
        })
        .collect();
    let cursor = match (last, matching.next()) {
        (Some(last), Some(_)) => URL_SAFE_NO_PAD.encode(last),
        _ => String::new(),
    };
    axum::Json(json!({
        "success": true, "errors": [], "messages": [], "result": page,
        "result_info": {"count": page.len(), "cursor": cursor},
    }))
    .into_response()
}

async fn unknown(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    State(state): Shared,
    body: Bytes,
) -> Response {
    let _ = arrive(&state, &method, &uri, &headers, &body).await;
    (
        StatusCode::NOT_FOUND,
        axum::Json(envelope_error(7003, "Could not route to this path")),
    )
        .into_response()
}
