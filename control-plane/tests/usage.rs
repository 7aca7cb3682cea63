//! Usage from the edge: ingest (token, validation, idempotency), last used, counts per hour and
//! day, the request log and its scoping, and the unused-keys filter. On SQLite and PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::{INGEST_TOKEN, START, TestApp};
use serde_json::{Value, json};

both!(
    usage_is_ingested_once_counted_and_logged,
    ingest_refuses_strangers_and_bad_batches,
    unused_keys_are_found_by_last_use,
);

fn event(id: &str, key_id: &str, at_ms: i64, outcome: &str, status: u16) -> Value {
    json!({
        "event_id": id, "key_id": key_id, "occurred_at_ms": at_ms, "method": "GET",
        "route": "/v1/customers/cus_1", "outcome": outcome, "status": status,
        "colo": "local", "latency_ms": 3,
    })
}

async fn ingest(app: &TestApp, events: Vec<Value>) -> Value {
    app.send(
        "POST",
        "/v1/usage/events",
        Some(INGEST_TOKEN),
        Some(json!({ "events": events })),
    )
    .await
    .expect(StatusCode::OK)
}

async fn usage_is_ingested_once_counted_and_logged(app: &TestApp) {
    let owner = app.user("user@example.com", "member").await;
    let stranger = app.user("stranger@example.com", "member").await;
    let (_, key_id, created) = app.create_key(&owner, json!({ "name": "used" })).await;
    assert_eq!(created["last_used_at"], Value::Null);
    let at = START * 1000;
    let batch = vec![
        event("evt-1", &key_id, at - 7_200_000, "ok", 200),
        event("evt-2", &key_id, at - 60_000, "ok", 200),
        event(
            "evt-3",
            &key_id,
            at - 1_000,
            "insufficient_permissions",
            403,
        ),
        event("evt-4", "not a key id", at, "ok", 200),
        event("evt-5", &key_id, at, "ok", 999),
    ];
    let first = ingest(app, batch.clone()).await;
    assert_eq!(first["accepted"], 3, "{first}");
    assert_eq!(first["duplicates"], 0, "{first}");
    let rejected: Vec<i64> = first["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_i64().unwrap())
        .collect();
    assert_eq!(rejected, [3, 4], "{first}");
    assert!(
        first["rejected"][1]["message"]
            .as_str()
            .unwrap()
            .contains("status")
    );

    // At least once: the same batch again changes nothing.
    let again = ingest(app, batch).await;
    assert_eq!(
        (again["accepted"].as_i64(), again["duplicates"].as_i64()),
        (Some(0), Some(3))
    );

    let key = app
        .get(&format!("/v1/keys/{key_id}"), &owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(key["last_used_at"], "2026-11-21T23:59:59Z", "{key}");
    // An older event does not move it back; a change to the key does not clear it.
    ingest(
        app,
        vec![event("evt-old", &key_id, at - 86_400_000, "ok", 200)],
    )
    .await;
    app.send(
        "PATCH",
        &format!("/v1/keys/{key_id}"),
        Some(&owner.token),
        Some(json!({ "name": "renamed" })),
    )
    .await
    .expect(StatusCode::OK);
    let key = app
        .get(&format!("/v1/keys/{key_id}"), &owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(key["last_used_at"], "2026-11-21T23:59:59Z", "{key}");

    let hourly = app
        .get(
            &format!("/v1/keys/{key_id}/usage?from=2026-11-20T00:00:00Z&to=2026-11-23T00:00:00Z"),
            &owner,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        hourly["buckets"],
        json!([
            {"start": "2026-11-21T00:00:00Z", "allowed": 1, "denied": 0},
            {"start": "2026-11-21T22:00:00Z", "allowed": 1, "denied": 0},
            {"start": "2026-11-21T23:00:00Z", "allowed": 1, "denied": 1},
        ]),
        "{hourly}"
    );
    let daily = app
        .get(
            &format!(
                "/v1/keys/{key_id}/usage?granularity=day&from=2026-11-20T00:00:00Z&to=2026-11-23T00:00:00Z"
            ),
            &owner,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        daily["buckets"],
        json!([{"start": "2026-11-21T00:00:00Z", "allowed": 3, "denied": 1}]),
        "{daily}"
    );
    app.get(&format!("/v1/keys/{key_id}/usage"), &stranger)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.get(&format!("/v1/keys/{key_id}/usage?granularity=week"), &owner)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_query");

    // The log: newest first, in pages, filtered, members see their own keys' events only.
    let page = app
        .get(&format!("/v1/logs?key_id={key_id}&limit=2"), &owner)
        .await
        .expect(StatusCode::OK);
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["event_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&page), ["evt-3", "evt-2"]);
    assert_eq!(page["items"][0]["occurred_at"], "2026-11-21T23:59:59Z");
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = app
        .get(
            &format!("/v1/logs?key_id={key_id}&limit=2&cursor={cursor}"),
            &owner,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(&rest), ["evt-1", "evt-old"]);
    assert!(rest["next_cursor"].is_null());
    let denied = app
        .get("/v1/logs?outcome=insufficient_permissions", &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(&denied), ["evt-3"]);
    let windowed = app
        .get(
            "/v1/logs?since=2026-11-21T23:00:00Z&until=2026-11-21T23:59:59Z",
            &app.admin,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(&windowed), ["evt-2"]);
    let theirs = app.get("/v1/logs", &stranger).await.expect(StatusCode::OK);
    assert_eq!(ids(&theirs), Vec::<String>::new());
}

async fn ingest_refuses_strangers_and_bad_batches(app: &TestApp) {
    let (_, key_id, _) = app.create_key(&app.admin, json!({ "name": "k" })).await;
    let body = json!({ "events": [event("evt-a", &key_id, START * 1000, "ok", 200)] });
    for token in [
        None,
        Some(app.admin.token.as_str()),
        Some("not-the-ingest-token"),
    ] {
        app.send("POST", "/v1/usage/events", token, Some(body.clone()))
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // The token is checked before the body is read: without it, even a body that is not JSON,
    // or one over the 1 MiB limit, is 401, never 400 or 413.
    for body in ["not json at all".to_owned(), "x".repeat(2 * 1024 * 1024)] {
        let request = axum::http::Request::post("/v1/usage/events")
            .header("content-type", "application/json")
            .header("authorization", "Bearer not-the-ingest-token")
            .body(axum::body::Body::from(body))
            .unwrap();
        app.raw(request)
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let request = axum::http::Request::post("/v1/usage/events")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {INGEST_TOKEN}"))
        .body(axum::body::Body::from("not json at all"))
        .unwrap();
    app.raw(request).await.expect(StatusCode::BAD_REQUEST);
    let too_many: Vec<Value> = (0..1001)
        .map(|n| event(&format!("e{n}"), &key_id, START * 1000, "ok", 200))
        .collect();
    app.send(
        "POST",
        "/v1/usage/events",
        Some(INGEST_TOKEN),
        Some(json!({ "events": too_many })),
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "batch_too_large");
    app.send(
        "POST",
        "/v1/usage/events",
        Some(INGEST_TOKEN),
        Some(json!({ "events": [{"event_id": "x"}] })),
    )
    .await
    .expect(StatusCode::UNPROCESSABLE_ENTITY);
    // Older than the log keeps (30 days), or from the future: refused, the rest stored.
    let outcome = ingest(
        app,
        vec![
            event(
                "evt-ancient",
                &key_id,
                (START - 31 * 86_400) * 1000,
                "ok",
                200,
            ),
            event("evt-future", &key_id, (START + 3600) * 1000, "ok", 200),
            event("evt-fine", &key_id, START * 1000, "ok", 200),
        ],
    )
    .await;
    assert_eq!(outcome["accepted"], 1, "{outcome}");
    assert_eq!(
        outcome["rejected"].as_array().unwrap().len(),
        2,
        "{outcome}"
    );
}

async fn unused_keys_are_found_by_last_use(app: &TestApp) {
    let (_, used, _) = app.create_key(&app.admin, json!({ "name": "used" })).await;
    let (_, idle, _) = app.create_key(&app.admin, json!({ "name": "idle" })).await;
    ingest(app, vec![event("evt-u", &used, START * 1000, "ok", 200)]).await;
    app.clock.advance(10 * 86_400);
    let listed = |page: Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["key_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut unused = listed(
        app.get("/v1/keys?unused_days=5", &app.admin)
            .await
            .expect(StatusCode::OK),
    );
    unused.sort();
    let mut both = vec![used.clone(), idle.clone()];
    both.sort();
    assert_eq!(unused, both);
    ingest(
        app,
        vec![event(
            "evt-u2",
            &used,
            (START + 10 * 86_400) * 1000,
            "ok",
            200,
        )],
    )
    .await;
    let unused = listed(
        app.get("/v1/keys?unused_days=5", &app.admin)
            .await
            .expect(StatusCode::OK),
    );
    assert_eq!(unused, std::slice::from_ref(&idle));
    let unused = listed(
        app.get("/v1/keys?unused_days=11", &app.admin)
            .await
            .expect(StatusCode::OK),
    );
    assert!(unused.is_empty(), "{unused:?}");
}
