//! The key lifecycle through the HTTP API, each test on SQLite and on PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::TestApp;
use keygate_control_plane::store::outbox;
use keygate_shared::{Digest, RecordState, Status, is_expired};
use serde_json::{Value, json};

both!(
    create_shows_the_key_once_and_stores_only_its_digest,
    invalid_creates_are_refused_and_write_nothing,
    expiry_in_the_future_then_past,
    expiry_in_sql_and_in_rust_agree_at_the_boundary,
    disable_enable_revoke_and_delete,
    regenerate_without_and_with_grace,
    patch_changes_only_what_it_names,
    listing_pages_are_stable_and_filters_apply,
    a_failed_transaction_leaves_nothing_behind,
);

async fn create_shows_the_key_once_and_stores_only_its_digest(app: &TestApp) {
    app.catalogue(&["customer:read", "customer:write", "invoice:read"])
        .await;
    app.send(
        "PUT",
        "/v1/permission-sets/billing",
        Some(&app.admin.token),
        Some(json!({ "permissions": ["invoice:read"] })),
    )
    .await
    .expect(StatusCode::CREATED);
    let (key, key_id, record) = app
        .create_key(
            &app.admin,
            json!({
                "name": "Billing sync",
                "description": "nightly",
                "environment": "staging",
                "permissions": ["customer:*"],
                "permission_sets": ["billing"],
                "customer_id": "acme",
                "expires_in_days": 30,
                "rate_limit": { "requests": 100, "window_seconds": 60 },
                "ip_allowlist": ["203.0.113.0/24"],
                "metadata": { "team": "billing" }
            }),
        )
        .await;
    assert!(key.starts_with(&format!("kg_test_{key_id}_")), "{key}");
    assert_eq!(record["status"], "active");
    assert_eq!(record["grants"], json!(["customer:*", "invoice:read"]));
    assert_eq!(record["expires_at"], "2026-12-22T00:00:00Z");
    assert_eq!(record["created_by"], app.admin.id.as_str());
    assert_eq!(record["version"], 1);

    let shown = app.get(&format!("/v1/keys/{key_id}"), &app.admin).await;
    assert!(!shown.text.contains(&key), "a lookup must not show the key");
    assert_eq!(shown.expect(StatusCode::OK), record);

    let listed = app.get("/v1/keys", &app.admin).await;
    assert!(!listed.text.contains(&key));

    // What the edge will get: the digest of the key, never the key.
    let queued = outbox::latest(app.db(), &key_id)
        .await
        .unwrap()
        .expect("an outbox row");
    assert_eq!(queued.version, 1);
    let RecordState::Present(stored) = queued.state else {
        panic!("a live record")
    };
    assert_eq!(stored.digest, Digest::of_key(&key));
    assert_eq!(stored.status, Status::Active);
    assert_eq!(
        stored.customer_id.map(|c| c.to_string()),
        Some("acme".to_owned())
    );

    let audit = app
        .get(&format!("/v1/audit-log?target_id={key_id}"), &app.admin)
        .await;
    assert!(!audit.text.contains(&key));
    let audit = audit.expect(StatusCode::OK);
    assert_eq!(audit["items"][0]["action"], "key.create");
    assert_eq!(audit["items"][0]["actor_id"], app.admin.id.as_str());

    let verified = app
        .verify(&key, json!({ "environment": "staging", "permissions": ["invoice:read"], "customer_id": "acme", "client_ip": "203.0.113.9" }))
        .await;
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["key_id"], key_id.as_str());
}

async fn invalid_creates_are_refused_and_write_nothing(app: &TestApp) {
    app.catalogue(&["customer:read"]).await;
    app.send(
        "PUT",
        "/v1/permission-sets/reader",
        Some(&app.admin.token),
        Some(json!({ "permissions": ["customer:read"] })),
    )
    .await
    .expect(StatusCode::CREATED);
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({ "name": "x", "color": "red" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({ "name": "  " }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
        ),
        (
            json!({ "name": "x", "environment": "moon" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({ "name": "x", "permissions": ["customer:read", "customer:read"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "duplicate_permission",
        ),
        (
            json!({ "name": "x", "permissions": ["customer:delete"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_permission",
        ),
        (
            json!({ "name": "x", "permissions": ["invoice:*"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_permission",
        ),
        (
            json!({ "name": "x", "permissions": ["Customer:Read"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_permission",
        ),
        (
            json!({ "name": "x", "permission_sets": ["writers"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_permission_set",
        ),
        (
            json!({ "name": "x", "permission_sets": ["reader", "reader"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "duplicate_permission_set",
        ),
        (
            json!({ "name": "x", "expires_at": "2026-11-21T00:00:00Z" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "expiry_in_past",
        ),
        (
            json!({ "name": "x", "expires_at": "tomorrow" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_time",
        ),
        (
            json!({ "name": "x", "expires_in_days": 0 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_expiry",
        ),
        (
            json!({ "name": "x", "expires_in_days": 1, "expires_at": "2027-01-01T00:00:00Z" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "conflicting_expiry",
        ),
        (
            json!({ "name": "x", "rate_limit": { "requests": 0, "window_seconds": 60 } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_rate_limit",
        ),
        (
            json!({ "name": "x", "ip_allowlist": ["10.0.0.1/8"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_ip_allowlist",
        ),
        (
            json!({ "name": "x", "customer_id": "acme corp" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_customer_id",
        ),
        (
            json!({ "name": "x", "metadata": { "blob": "y".repeat(5000) } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "metadata_too_large",
        ),
        (
            json!({ "name": "x", "owner_id": "usr_nobody" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_owner",
        ),
        // Text that would steer a terminal, or hide or reorder what a person reads.
        (
            json!({ "name": "evil\u{1b}[2Jname" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
        ),
        (
            json!({ "name": "invoice\u{202e}gnp.exe" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
        ),
        (
            json!({ "name": "x", "description": "zero\u{200b}width" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_description",
        ),
    ];
    for (body, status, code) in cases {
        let response = app.post("/v1/keys", &app.admin, body.clone()).await;
        assert_eq!(response.status, status, "{body} -> {}", response.text);
        let field = code.trim_start_matches("invalid_");
        if ["name", "description"].contains(&field) {
            assert!(
                response.json["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(field),
                "{}",
                response.text
            );
        }
        response.expect_error(status, code);
    }

    let malformed = axum::http::Request::post("/v1/keys")
        .header("authorization", format!("Bearer {}", app.admin.token))
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{\"name\": \"x\""))
        .unwrap();
    app.raw(malformed)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "malformed_json");
    let not_json = axum::http::Request::post("/v1/keys")
        .header("authorization", format!("Bearer {}", app.admin.token))
        .header("content-type", "text/plain")
        .body(axum::body::Body::from("{\"name\": \"x\"}"))
        .unwrap();
    app.raw(not_json)
        .await
        .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let huge = json!({ "name": "x", "description": "d".repeat(20 * 1024) });
    app.post("/v1/keys", &app.admin, huge)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // A misplaced key must not be echoed back in the error.
    let (key, _, _) = app.create_key(&app.admin, json!({ "name": "real" })).await;
    let echoed = app
        .post(
            "/v1/keys",
            &app.admin,
            json!({ "name": "x", "environment": key }),
        )
        .await;
    assert!(!echoed.text.contains(&key), "{}", echoed.text);

    assert_eq!(
        app.count("api_key").await,
        1,
        "only the one valid create wrote a key"
    );
    assert_eq!(app.count("outbox").await, 1);
}

async fn expiry_in_the_future_then_past(app: &TestApp) {
    let (key, key_id, record) = app
        .create_key(
            &app.admin,
            json!({ "name": "short", "expires_at": "2026-11-22T01:00:00Z" }),
        )
        .await;
    assert_eq!(record["status"], "active");
    assert_eq!(app.verify(&key, json!({})).await["valid"], true);
    let expired = app
        .get("/v1/keys?status=expired", &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(expired["items"], json!([]));

    app.clock.advance(3_600);
    let shown = app
        .get(&format!("/v1/keys/{key_id}"), &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(shown["status"], "expired");
    let expired = app
        .get("/v1/keys?status=expired", &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(expired["items"][0]["key_id"], key_id.as_str());
    let active = app
        .get("/v1/keys?status=active", &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(active["items"], json!([]));
    assert_eq!(app.verify(&key, json!({})).await["code"], "expired");
}

async fn disable_enable_revoke_and_delete(app: &TestApp) {
    let (key, key_id, _) = app
        .create_key(&app.admin, json!({ "name": "toggle" }))
        .await;
    let path = |action: &str| format!("/v1/keys/{key_id}/{action}");

    let disabled = app
        .send("POST", &path("disable"), Some(&app.admin.token), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(disabled["status"], "disabled");
    assert_eq!(disabled["version"], 2);
    assert_eq!(app.verify(&key, json!({})).await["code"], "disabled");
    // Disabling again changes nothing and writes nothing.
    let again = app
        .send("POST", &path("disable"), Some(&app.admin.token), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(again["version"], 2);

    let enabled = app
        .send("POST", &path("enable"), Some(&app.admin.token), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(enabled["status"], "active");
    assert_eq!(app.verify(&key, json!({})).await["valid"], true);

    for reason in ["", "gone\u{1b}]0;pwned\u{7}"] {
        app.post(&path("revoke"), &app.admin, json!({ "reason": reason }))
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_reason");
    }
    let revoked = app
        .post(
            &path("revoke"),
            &app.admin,
            json!({ "reason": "leaked in a log" }),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revoked_reason"], "leaked in a log");
    assert_eq!(app.verify(&key, json!({})).await["code"], "revoked");

    for (method, action, body) in [
        ("POST", "enable", None),
        ("POST", "disable", None),
        ("POST", "regenerate", None),
        ("POST", "revoke", Some(json!({ "reason": "twice" }))),
    ] {
        app.send(method, &path(action), Some(&app.admin.token), body)
            .await
            .expect_error(StatusCode::CONFLICT, "key_revoked");
    }
    app.send(
        "PATCH",
        &format!("/v1/keys/{key_id}"),
        Some(&app.admin.token),
        Some(json!({ "name": "back" })),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "key_revoked");
    let still = app
        .get(&format!("/v1/keys/{key_id}"), &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(still["status"], "revoked");
    assert_eq!(still["version"], 4);

    app.send(
        "DELETE",
        &format!("/v1/keys/{key_id}"),
        Some(&app.admin.token),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.get(&format!("/v1/keys/{key_id}"), &app.admin)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.send(
        "DELETE",
        &format!("/v1/keys/{key_id}"),
        Some(&app.admin.token),
        None,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
    let tombstone = outbox::latest(app.db(), &key_id)
        .await
        .unwrap()
        .expect("a tombstone");
    assert_eq!(tombstone.version, 5);
    assert_eq!(tombstone.state, RecordState::Deleted);
    assert_eq!(app.verify(&key, json!({})).await["code"], "invalid_key");
    let trail = app
        .get(&format!("/v1/audit-log?target_id={key_id}"), &app.admin)
        .await
        .expect(StatusCode::OK);
    let actions: Vec<&str> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "key.delete",
            "key.revoke",
            "key.enable",
            "key.disable",
            "key.create"
        ]
    );
}

async fn regenerate_without_and_with_grace(app: &TestApp) {
    let (first, key_id, _) = app
        .create_key(&app.admin, json!({ "name": "rotating" }))
        .await;
    let path = format!("/v1/keys/{key_id}/regenerate");

    let second = app
        .send("POST", &path, Some(&app.admin.token), None)
        .await
        .expect(StatusCode::OK);
    let second_key = second["key"].as_str().unwrap().to_owned();
    assert_eq!(second["key_id"], key_id.as_str());
    assert_ne!(second_key, first);
    assert_eq!(second["record"]["name"], "rotating");
    assert_eq!(second["record"]["previous_secret_expires_at"], Value::Null);
    assert_eq!(app.verify(&first, json!({})).await["code"], "invalid_key");
    assert_eq!(app.verify(&second_key, json!({})).await["valid"], true);

    let third = app
        .post(&path, &app.admin, json!({ "grace_period_seconds": 60 }))
        .await
        .expect(StatusCode::OK);
    let third_key = third["key"].as_str().unwrap();
    assert_eq!(
        third["record"]["previous_secret_expires_at"],
        "2026-11-22T00:01:00Z"
    );
    let during = app.verify(&second_key, json!({})).await;
    assert_eq!(during["valid"], true);
    assert_eq!(during["previous_secret"], true);
    assert_eq!(
        app.verify(third_key, json!({})).await["previous_secret"],
        false
    );
    app.clock.advance(60);
    assert_eq!(
        app.verify(&second_key, json!({})).await["code"],
        "invalid_key"
    );
    assert_eq!(app.verify(third_key, json!({})).await["valid"], true);

    app.post(
        &path,
        &app.admin,
        json!({ "grace_period_seconds": 604_801 }),
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_grace_period");
    app.post(&path, &app.admin, json!({ "grace": 5 }))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
}

async fn patch_changes_only_what_it_names(app: &TestApp) {
    app.catalogue(&["customer:read", "customer:write"]).await;
    let (key, key_id, created) = app
        .create_key(
            &app.admin,
            json!({ "name": "patchy", "permissions": ["customer:read"], "customer_id": "acme", "expires_in_days": 10, "rate_limit": { "requests": 5, "window_seconds": 1 } }),
        )
        .await;
    let path = format!("/v1/keys/{key_id}");
    let patch = |body: Value| app.send("PATCH", &path, Some(&app.admin.token), Some(body));

    let unchanged = patch(json!({})).await.expect(StatusCode::OK);
    assert_eq!(unchanged["version"], 1);

    let renamed = patch(json!({ "name": "renamed", "permissions": ["customer:read", "customer:write"], "metadata": { "a": 1 } }))
        .await
        .expect(StatusCode::OK);
    assert_eq!(renamed["name"], "renamed");
    assert_eq!(
        renamed["grants"],
        json!(["customer:read", "customer:write"])
    );
    assert_eq!(renamed["customer_id"], "acme", "fields left out stay");
    assert_eq!(renamed["expires_at"], created["expires_at"]);
    assert_eq!(renamed["version"], 2);
    assert_eq!(
        app.verify(
            &key,
            json!({ "permissions": ["customer:write"], "customer_id": "acme" })
        )
        .await["valid"],
        true
    );

    let cleared = patch(json!({ "customer_id": null, "expires_at": null, "rate_limit": null, "ip_allowlist": ["10.0.0.0/8"] }))
        .await
        .expect(StatusCode::OK);
    assert_eq!(cleared["customer_id"], Value::Null);
    assert_eq!(cleared["expires_at"], Value::Null);
    assert_eq!(cleared["rate_limit"], Value::Null);
    assert_eq!(
        app.verify(&key, json!({ "client_ip": "192.0.2.1" })).await["code"],
        "ip_not_allowed"
    );

    patch(json!({ "permissions": ["customer:delete"] }))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "unknown_permission");
    patch(json!({ "expires_at": "2020-01-01T00:00:00Z" }))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "expiry_in_past");
    patch(json!({ "key": "kg_live_x" }))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let after = app.get(&path, &app.admin).await.expect(StatusCode::OK);
    assert_eq!(after["version"], 3, "refused patches write nothing");

    let trail = app
        .get(
            &format!("/v1/audit-log?target_id={key_id}&action=key.update"),
            &app.admin,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        trail["items"][1]["summary"]["changed"],
        json!(["name", "permissions", "grants", "metadata"])
    );
}

async fn listing_pages_are_stable_and_filters_apply(app: &TestApp) {
    let member = app.user("lister@example.com", "member").await;
    let mut made = Vec::new();
    for index in 0..7 {
        let environment = if index % 2 == 0 {
            "production"
        } else {
            "development"
        };
        let name = if index == 3 {
            "Special 100% key".to_owned()
        } else {
            format!("key {index}")
        };
        let owner = if index == 5 {
            &member.id
        } else {
            &app.admin.id
        };
        let (_, id, _) = app
            .create_key(&app.admin, json!({ "name": name, "environment": environment, "owner_id": owner, "customer_id": format!("c{}", index % 3) }))
            .await;
        made.push(id);
        if index % 3 == 0 {
            app.clock.advance(1);
        }
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/keys?limit=3&cursor={cursor}"),
            None => "/v1/keys?limit=3".to_owned(),
        };
        let page = app.get(&path, &app.admin).await.expect(StatusCode::OK);
        // A key created between pages must not shift what the next page holds.
        if cursor.is_none() {
            app.create_key(&app.admin, json!({ "name": "late" })).await;
        }
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["key_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    // Key i was created ceil(i / 3) seconds after the first.
    let mut newest_first: Vec<(usize, String)> = made
        .iter()
        .enumerate()
        .map(|(i, id)| (i.div_ceil(3), id.clone()))
        .collect();
    newest_first.sort_by(|a, b| b.cmp(a));
    let expected: Vec<String> = newest_first.into_iter().map(|(_, id)| id).collect();
    assert_eq!(seen, expected, "every key once, newest first, ties by id");

    let names = |page: Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let dev = app
        .get("/v1/keys?environment=development", &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(names(dev).len(), 3);
    let special = app
        .get("/v1/keys?name=special%20100%25", &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(names(special), ["Special 100% key"]);
    let percent_only = app
        .get("/v1/keys?name=%25", &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        names(percent_only),
        ["Special 100% key"],
        "% is matched literally"
    );
    let customer = app
        .get("/v1/keys?customer_id=c1", &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(names(customer), ["key 4", "key 1"]);
    let own = app.get("/v1/keys", &member).await.expect(StatusCode::OK);
    assert_eq!(names(own), ["key 5"]);

    app.get("/v1/keys?limit=0", &app.admin)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    app.get("/v1/keys?cursor=%%%", &app.admin)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_cursor");
    app.get("/v1/keys?cursor=bm9wZQ", &app.admin)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_cursor");
    app.get("/v1/keys?status=lost", &app.admin)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
}

async fn a_failed_transaction_leaves_nothing_behind(app: &TestApp) {
    let (_, key_id, _) = app.create_key(&app.admin, json!({ "name": "kept" })).await;
    // Break the audit log: every mutation must now fail as a whole.
    let pool = sqlx::AnyPool::connect(&app.db_url).await.unwrap();
    sqlx::query("DROP TABLE audit_event")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let failed = app
        .post("/v1/keys", &app.admin, json!({ "name": "lost" }))
        .await;
    let body = failed.expect_error(StatusCode::INTERNAL_SERVER_ERROR, "internal");
    assert!(
        !body.to_string().contains("audit_event"),
        "internals stay in the log: {body}"
    );
    app.post(
        &format!("/v1/keys/{key_id}/revoke"),
        &app.admin,
        json!({ "reason": "x" }),
    )
    .await
    .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "internal");

    assert_eq!(app.count("api_key").await, 1);
    assert_eq!(app.count("outbox").await, 1);
    let kept = app
        .get(&format!("/v1/keys/{key_id}"), &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(kept["status"], "active");
    assert_eq!(kept["version"], 1);
}

/// "Expired" is decided by keygate-shared (a lookup's status, `POST /v1/verify`) and mirrored in
/// SQL (the listing filters, the metrics' counts): one second before `expires_at`, at it, and one
/// second after, all of them agree.
async fn expiry_in_sql_and_in_rust_agree_at_the_boundary(app: &TestApp) {
    let (key, key_id, _) = app
        .create_key(&app.admin, json!({ "name": "edge", "expires_in_days": 1 }))
        .await;
    let expires_at = common::START + 86_400;
    app.clock.advance(86_400 - 1);
    for now in [expires_at - 1, expires_at, expires_at + 1] {
        assert_eq!(app.clock.now(), now);
        let expected = if is_expired(Some(expires_at), now) {
            "expired"
        } else {
            "active"
        };
        let shown = app
            .get(&format!("/v1/keys/{key_id}"), &app.admin)
            .await
            .expect(StatusCode::OK);
        assert_eq!(shown["status"], expected, "lookup at {now}");
        for status in ["active", "expired"] {
            let page = app
                .get(&format!("/v1/keys?status={status}"), &app.admin)
                .await
                .expect(StatusCode::OK);
            let listed = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|item| item["key_id"] == key_id.as_str());
            assert_eq!(listed, status == expected, "?status={status} at {now}");
            let metrics = app.send("GET", "/metrics", None, None).await;
            let line = format!(
                "keygate_keys{{status=\"{status}\"}} {}",
                u8::from(status == expected)
            );
            assert!(metrics.text.lines().any(|l| l == line), "{line} at {now}");
        }
        let verdict = app
            .post("/v1/verify", &app.admin, json!({ "key": key }))
            .await
            .expect(StatusCode::OK);
        let code = if expected == "expired" {
            "expired"
        } else {
            "ok"
        };
        assert_eq!(verdict["code"], code, "verify at {now}");
        app.clock.advance(1);
    }
}
