//! Usage events: every gateway decision that identified a key (the secret matched; allowed or
//! denied) is sent to the `USAGE` queue from `ctx.wait_until`, after the response is on its way.
//! The same Worker consumes the queue in batches and delivers them to the control plane's
//! `POST /v1/usage/events` (`KEYGATE_USAGE_URL`, with `KEYGATE_INGEST_TOKEN`). Delivery is at
//! least once: a failed batch is retried by the queue, and the control plane counts each event id
//! once. Without a `USAGE` binding, nothing is sent and requests are unaffected.

use keygate_shared::Denial;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Context, Env, MessageBatch, Result, console_error, js_sys, web_sys};

pub(crate) const USAGE_BINDING: &str = "USAGE";

/// One decision, encoded as `POST /v1/usage/events` takes it. It travels through the queue as
/// that JSON text, so the consumer only joins messages into a batch. Written by hand rather than
/// derived: the Worker has a size budget, and every string still goes through serde_json's
/// escaping.
fn encode_event(decided: &Decided<'_>, outcome: &str, status: u16) -> String {
    let text = |value: &str| serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned());
    let colo = decided.colo.as_deref().unwrap_or("local");
    // Paths are percent-encoded ASCII; one longer than the control plane keeps is cut.
    let route = decided.path.get(..512).unwrap_or(decided.path);
    format!(
        r#"{{"event_id":{},"key_id":{},"occurred_at_ms":{},"method":{},"route":{},"outcome":{},"status":{status},"colo":{},"latency_ms":{}}}"#,
        text(decided.request_id),
        text(decided.key_id),
        decided.started_ms,
        text(decided.method),
        text(route),
        text(outcome),
        text(colo),
        (decided.finished_ms - decided.started_ms).max(0),
    )
}

/// Denials that come after the secret matched: only these say anything about the key's use. An
/// unknown key or a wrong secret is never logged under a key id someone merely typed.
pub(crate) fn identifies(denial: &Denial) -> bool {
    matches!(
        denial,
        Denial::Revoked
            | Denial::Disabled
            | Denial::Expired
            | Denial::NotYetValid
            | Denial::IpNotAllowed
            | Denial::CustomerMismatch
            | Denial::InsufficientPermissions { .. }
            | Denial::RateLimited { .. }
    )
}

/// What is known of a request when its answer is ready.
pub(crate) struct Decided<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) key_id: &'a str,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) colo: Option<String>,
    pub(crate) started_ms: i64,
    pub(crate) finished_ms: i64,
}

/// Queues the event without delaying the response.
pub(crate) fn report(ctx: &Context, env: &Env, decided: Decided<'_>, outcome: &str, status: u16) {
    let Ok(queue) = env.queue(USAGE_BINDING) else {
        return;
    };
    let encoded = encode_event(&decided, outcome, status);
    ctx.wait_until(async move {
        if let Err(error) = queue.send(encoded).await {
            console_error!("usage event not queued: {error}");
        }
    });
}

/// The queue consumer: one batch, one `POST /v1/usage/events`. Acknowledged when the control
/// plane answered 2xx (events it refused as invalid would never pass: they are not retried);
/// otherwise the whole batch is retried later.
pub(crate) async fn deliver(batch: MessageBatch<String>, env: &Env) -> Result<()> {
    let (Ok(url), Ok(token)) = (
        env.var("KEYGATE_USAGE_URL"),
        env.var("KEYGATE_INGEST_TOKEN"),
    ) else {
        console_error!(
            "usage: KEYGATE_USAGE_URL or KEYGATE_INGEST_TOKEN is not set; retrying later"
        );
        batch.retry_all();
        return Ok(());
    };
    let messages = batch.messages()?;
    let events: Vec<&str> = messages
        .iter()
        .map(|message| message.body().as_str())
        .collect();
    let headers = web_sys::Headers::new()?;
    headers.set("content-type", "application/json")?;
    headers.set("authorization", &format!("Bearer {token}"))?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_headers(headers.as_ref());
    init.set_body(&JsValue::from_str(&format!(
        r#"{{"events":[{}]}}"#,
        events.join(",")
    )));
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let sent = JsFuture::from(scope.fetch_with_str_and_init(&url.to_string(), &init)).await;
    let status = sent
        .ok()
        .and_then(|response| response.dyn_into::<web_sys::Response>().ok())
        .map(|response| response.status());
    if matches!(status, Some(200..=299)) {
        batch.ack_all();
    } else {
        // None: the control plane could not be reached.
        console_error!("usage: delivery failed (HTTP {status:?}); retrying");
        batch.retry_all();
    }
    Ok(())
}
