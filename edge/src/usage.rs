//! Usage events: every gateway decision that identified a key (the secret matched; allowed or
//! denied) is sent to the `USAGE` queue from `ctx.wait_until`, after the response is on its way.
//! The same Worker consumes the queue in batches and delivers them to the control plane's
//! `POST /v1/usage/events` (`KEYGATE_USAGE_URL`, with `KEYGATE_INGEST_TOKEN`). Delivery is at
//! least once: a failed batch is retried by the queue, and the control plane counts each event id
//! once. Without a `USAGE` binding, nothing is sent and requests are unaffected.

use keygate_shared::UsageEvent;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Context, Env, MessageBatch, Result, console_error, js_sys, web_sys};

pub(crate) const USAGE_BINDING: &str = "USAGE";

/// Queues the event without delaying the response. It travels through the queue as the JSON
/// `POST /v1/usage/events` takes ([`UsageEvent::to_json`]), so the consumer only joins messages
/// into a batch.
pub(crate) fn report(ctx: &Context, env: &Env, event: &UsageEvent) {
    let Ok(queue) = env.queue(USAGE_BINDING) else {
        return;
    };
    let encoded = event.to_json();
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
