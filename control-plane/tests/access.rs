//! Who may do what: tokens, roles, users, the catalogue, the audit log, verification, operations
//! and the OpenAPI document. Each test runs on SQLite and on PostgreSQL.

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::TestApp;
use serde_json::{Value, json};

both!(
    tokens_authenticate_and_stop_at_once,
    members_manage_only_their_own_keys,
    admins_manage_users_and_keep_one_admin,
    two_admins_demoting_each_other_at_once_leave_one,
    deactivating_a_user_disables_their_keys_unless_told_not_to,
    tokens_expire_and_users_manage_their_own,
    the_catalogue_is_read_by_all_and_extended_by_admins,
    the_audit_log_filters_pages_and_scopes_members,
    verify_gives_the_edge_decision,
    operations_answer_without_a_token,
    sync_status_reports_the_backlog_to_key_managers,
    the_openapi_document_lists_every_route_served,
    members_stay_within_their_grant_ceiling,
    a_narrower_ceiling_changes_no_key_but_stops_its_widening,
    restrictions_set_by_a_key_manager_stick,
);

/// Without a pusher in this process, the status shows every change waiting, its age, and no sink.
async fn sync_status_reports_the_backlog_to_key_managers(app: &TestApp) {
    let member = app.user("synced@example.com", "member").await;
    let manager = app.user("manager@example.com", "key_manager").await;
    app.get("/v1/sync/status", &member)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    app.send("GET", "/v1/sync/status", None, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let (_, key_id, _) = app.create_key(&member, json!({ "name": "pending" })).await;
    app.send(
        "POST",
        &format!("/v1/keys/{key_id}/disable"),
        Some(&member.token),
        None,
    )
    .await
    .expect(StatusCode::OK);
    app.clock.advance(42);
    let status = app
        .get("/v1/sync/status", &manager)
        .await
        .expect(StatusCode::OK);
    assert_eq!(status["sink"], Value::Null, "{status}");
    assert_eq!(status["outbox_depth"], 2, "{status}");
    assert_eq!(status["pending_keys"], 1, "{status}");
    assert_eq!(status["oldest_pending_age_seconds"], 42, "{status}");
    assert_eq!(status["last_success_at"], Value::Null, "{status}");
    let metrics = app.send("GET", "/metrics", None, None).await;
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l == "keygate_outbox_oldest_pending_seconds 42"),
        "{}",
        metrics.text
    );
}

async fn tokens_authenticate_and_stop_at_once(app: &TestApp) {
    app.send("GET", "/v1/keys", None, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let garbage = app
        .send("GET", "/v1/keys", Some("kgcp_live_nope"), None)
        .await;
    assert_eq!(garbage.headers["www-authenticate"], "Bearer");
    garbage.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // An API key is not a control-plane token, even a valid one.
    let (key, _, _) = app
        .create_key(&app.admin, json!({ "name": "not a token" }))
        .await;
    app.send("GET", "/v1/keys", Some(&key), None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // A token with one character changed fails its checksum; with a fresh checksum, its digest.
    let mut tampered = app.admin.token.clone().into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    app.send("GET", "/v1/keys", Some(&tampered), None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");

    let member = app.user("m@example.com", "member").await;
    app.get("/v1/users/me", &member)
        .await
        .expect(StatusCode::OK);
    let detail = app
        .get(&format!("/v1/users/{}", member.id), &app.admin)
        .await
        .expect(StatusCode::OK);
    let token_id = detail["tokens"][0]["token_id"].as_str().unwrap().to_owned();
    assert!(!detail.to_string().contains(&member.token));
    app.send(
        "POST",
        &format!("/v1/users/{}/tokens/{token_id}/revoke", member.id),
        Some(&app.admin.token),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.get("/v1/users/me", &member)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.send(
        "POST",
        &format!("/v1/users/{}/tokens/{token_id}/revoke", member.id),
        Some(&app.admin.token),
        None,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");

    let other = app.user("o@example.com", "key_manager").await;
    app.get("/v1/keys", &other).await.expect(StatusCode::OK);
    app.send(
        "POST",
        &format!("/v1/users/{}/deactivate", other.id),
        Some(&app.admin.token),
        None,
    )
    .await
    .expect(StatusCode::OK);
    app.get("/v1/keys", &other)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.post(
        &format!("/v1/users/{}/tokens", other.id),
        &app.admin,
        json!({ "name": "again" }),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "user_deactivated");
}

async fn members_manage_only_their_own_keys(app: &TestApp) {
    let alice = app.user("alice@example.com", "member").await;
    let bob = app.user("bob@example.com", "member").await;
    let manager = app.user("kim@example.com", "key_manager").await;

    let (_, own, record) = app.create_key(&alice, json!({ "name": "alice's" })).await;
    assert_eq!(record["owner_id"], alice.id.as_str());
    app.post(
        "/v1/keys",
        &alice,
        json!({ "name": "for bob", "owner_id": bob.id }),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");
    let (_, bobs, _) = app
        .create_key(&manager, json!({ "name": "bob's", "owner_id": bob.id }))
        .await;

    // Bob's key does not exist as far as Alice can tell.
    let path = format!("/v1/keys/{bobs}");
    app.get(&path, &alice)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.send(
        "PATCH",
        &path,
        Some(&alice.token),
        Some(json!({ "name": "mine" })),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
    for action in ["disable", "enable", "regenerate"] {
        app.send(
            "POST",
            &format!("{path}/{action}"),
            Some(&alice.token),
            None,
        )
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    app.post(&format!("{path}/revoke"), &alice, json!({ "reason": "x" }))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.send("DELETE", &path, Some(&alice.token), None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        app.get(&path, &bob).await.expect(StatusCode::OK)["name"],
        "bob's"
    );

    let listed = app.get("/v1/keys", &alice).await.expect(StatusCode::OK);
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["key_id"].as_str())
        .collect();
    assert_eq!(ids, [own.as_str()]);
    app.get(&format!("/v1/keys?owner_id={}", bob.id), &alice)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");

    // Key managers manage anyone's keys; admins too. Members manage their own, but cannot undo
    // what a key manager did to them.
    let disabled = app
        .send(
            "POST",
            &format!("/v1/keys/{own}/disable"),
            Some(&manager.token),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        disabled["restrictions"]["disabled"]["set_by"],
        manager.id.as_str()
    );
    app.send(
        "POST",
        &format!("/v1/keys/{own}/enable"),
        Some(&alice.token),
        None,
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "restricted");
    let enabled = app
        .send(
            "POST",
            &format!("/v1/keys/{own}/enable"),
            Some(&manager.token),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(enabled["restrictions"], json!({}));
    // What she did herself, she may undo.
    for action in ["disable", "enable"] {
        app.send(
            "POST",
            &format!("/v1/keys/{own}/{action}"),
            Some(&alice.token),
            None,
        )
        .await
        .expect(StatusCode::OK);
    }
    let all = app.get("/v1/keys", &manager).await.expect(StatusCode::OK);
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    app.send(
        "DELETE",
        &format!("/v1/keys/{own}"),
        Some(&alice.token),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);

    // Users are the admin's business alone.
    for user in [&alice, &manager] {
        app.get("/v1/users", user)
            .await
            .expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.post(
            "/v1/users",
            user,
            json!({ "email": "x@example.com", "role": "admin" }),
        )
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.post(
            &format!("/v1/users/{}/tokens", user.id),
            user,
            json!({ "name": "more" }),
        )
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    }
}

async fn admins_manage_users_and_keep_one_admin(app: &TestApp) {
    let created = app
        .post(
            "/v1/users",
            &app.admin,
            json!({ "email": "new@example.com", "role": "member" }),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(created["role"], "member");
    assert_eq!(created["active"], true);
    let id = created["user_id"].as_str().unwrap();
    app.post(
        "/v1/users",
        &app.admin,
        json!({ "email": "new@example.com", "role": "admin" }),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "user_exists");
    app.post(
        "/v1/users",
        &app.admin,
        json!({ "email": "not an email", "role": "member" }),
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_email");
    app.post(
        "/v1/users",
        &app.admin,
        json!({ "email": "a@b.c", "role": "owner" }),
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");

    let promoted = app
        .send(
            "PATCH",
            &format!("/v1/users/{id}"),
            Some(&app.admin.token),
            Some(json!({ "role": "admin" })),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(promoted["role"], "admin");
    let listed = app
        .get("/v1/users", &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);

    // Two admins: one may step down; the last may not.
    app.send(
        "PATCH",
        &format!("/v1/users/{id}"),
        Some(&app.admin.token),
        Some(json!({ "role": "member" })),
    )
    .await
    .expect(StatusCode::OK);
    app.send(
        "PATCH",
        &format!("/v1/users/{}", app.admin.id),
        Some(&app.admin.token),
        Some(json!({ "role": "member" })),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "last_admin");
    app.send(
        "POST",
        &format!("/v1/users/{}/deactivate", app.admin.id),
        Some(&app.admin.token),
        None,
    )
    .await
    .expect_error(StatusCode::CONFLICT, "last_admin");
    assert_eq!(
        app.get("/v1/users/me", &app.admin)
            .await
            .expect(StatusCode::OK)["role"],
        "admin"
    );
    app.get("/v1/users/usr_nobody", &app.admin)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    let trail = app
        .get(&format!("/v1/audit-log?target_id={id}"), &app.admin)
        .await
        .expect(StatusCode::OK);
    let actions: Vec<&str> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["user.role", "user.role", "user.create"]);
}

async fn the_catalogue_is_read_by_all_and_extended_by_admins(app: &TestApp) {
    let member = app.user("reader@example.com", "member").await;
    app.post(
        "/v1/permissions",
        &app.admin,
        json!({ "name": "license:manage", "description": "Manage licences" }),
    )
    .await
    .expect(StatusCode::CREATED);
    app.post(
        "/v1/permissions",
        &app.admin,
        json!({ "name": "license:manage" }),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "permission_exists");
    app.post("/v1/permissions", &app.admin, json!({ "name": "license" }))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_permission");
    app.post(
        "/v1/permissions",
        &app.admin,
        json!({ "name": "license:*" }),
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_permission");
    app.post(
        "/v1/permissions",
        &member,
        json!({ "name": "license:read" }),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");

    let put = |name: &str, body: Value| {
        let path = format!("/v1/permission-sets/{name}");
        async move {
            app.send("PUT", &path, Some(&app.admin.token), Some(body))
                .await
        }
    };
    put(
        "licensing",
        json!({ "permissions": ["license:manage"], "description": "all licences" }),
    )
    .await
    .expect(StatusCode::CREATED);
    put("licensing", json!({ "permissions": ["license:*"] }))
        .await
        .expect(StatusCode::OK);
    put("Bad%20Name", json!({ "permissions": [] }))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_name");
    put("other", json!({ "permissions": ["telemetry:write"] }))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "unknown_permission");
    app.send(
        "PUT",
        "/v1/permission-sets/mine",
        Some(&member.token),
        Some(json!({ "permissions": [] })),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");

    let catalogue = app
        .get("/v1/permissions", &member)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        catalogue["permissions"],
        json!([{ "name": "license:manage", "description": "Manage licences" }])
    );
    assert_eq!(
        catalogue["sets"],
        json!([{ "name": "licensing", "description": "", "permissions": ["license:*"] }])
    );
    // A set holding a wildcard is above a member's default ceiling, until an admin allows it.
    let with_set = json!({ "name": "set user", "permission_sets": ["licensing"] });
    app.post("/v1/keys", &member, with_set.clone())
        .await
        .expect_error(StatusCode::FORBIDDEN, "above_ceiling");
    app.send(
        "PUT",
        &format!("/v1/users/{}/ceiling", member.id),
        Some(&app.admin.token),
        Some(json!({ "permission_sets": ["licensing"] })),
    )
    .await
    .expect(StatusCode::OK);
    let (_, _, record) = app.create_key(&member, with_set).await;
    assert_eq!(record["grants"], json!(["license:*"]));
}

async fn the_audit_log_filters_pages_and_scopes_members(app: &TestApp) {
    let member = app.user("audited@example.com", "member").await;
    let (key, key_id, _) = app.create_key(&member, json!({ "name": "audited" })).await;
    app.send(
        "POST",
        &format!("/v1/keys/{key_id}/regenerate"),
        Some(&member.token),
        None,
    )
    .await
    .expect(StatusCode::OK);
    app.create_key(&app.admin, json!({ "name": "admin's" }))
        .await;

    let own = app.get("/v1/audit-log", &member).await;
    assert!(!own.text.contains(&key));
    let own = own.expect(StatusCode::OK);
    let actions: Vec<&str> = own["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["key.regenerate", "key.create"],
        "a member sees their own actions"
    );
    assert!(
        own["items"][0]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    app.get(&format!("/v1/audit-log?actor_id={}", app.admin.id), &member)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");

    let creates = app
        .get("/v1/audit-log?action=key.create", &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(creates["items"].as_array().unwrap().len(), 2);
    let mut seen = BTreeSet::new();
    let mut path = "/v1/audit-log?limit=2".to_owned();
    loop {
        let page = app.get(&path, &app.admin).await.expect(StatusCode::OK);
        for event in page["items"].as_array().unwrap() {
            assert!(seen.insert(event["id"].as_i64().unwrap()), "no event twice");
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/audit-log?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let everything = app
        .get("/v1/audit-log?limit=500", &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(seen.len(), everything["items"].as_array().unwrap().len());
    let later = app
        .get("/v1/audit-log?since=2030-01-01T00:00:00Z", &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(later["items"], json!([]));
    app.get("/v1/audit-log?since=yesterday", &app.admin)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
}

async fn verify_gives_the_edge_decision(app: &TestApp) {
    app.catalogue(&["customer:read", "customer:write"]).await;
    let (key, key_id, _) = app
        .create_key(&app.admin, json!({ "name": "scoped", "permissions": ["customer:read"], "customer_id": "acme", "ip_allowlist": ["10.0.0.0/8"] }))
        .await;
    let ok = app.verify(&key, json!({ "permissions": ["customer:read"], "customer_id": "acme", "client_ip": "10.1.2.3" })).await;
    assert_eq!(ok["valid"], true);
    assert_eq!(ok["code"], "ok");
    assert_eq!(ok["key_id"], key_id.as_str());
    assert_eq!(ok["owner_id"], app.admin.id.as_str());
    assert_eq!(ok["customer_id"], "acme");

    let cases = [
        (
            json!({ "client_ip": "10.0.0.1", "customer_id": "acme", "permissions": ["customer:write"] }),
            "insufficient_permissions",
        ),
        // A customer-scoped key where no customer is named: its scope fails closed.
        (
            json!({ "client_ip": "10.0.0.1", "permissions": ["customer:read"] }),
            "customer_required",
        ),
        (
            json!({ "client_ip": "10.0.0.1", "customer_id": "globex" }),
            "customer_mismatch",
        ),
        (json!({ "client_ip": "192.0.2.1" }), "ip_not_allowed"),
        (json!({ "environment": "staging" }), "wrong_environment"),
    ];
    for (extra, code) in cases {
        let denied = app.verify(&key, extra.clone()).await;
        assert_eq!(denied["valid"], false, "{extra}");
        assert_eq!(denied["code"], code, "{extra}");
        assert!(!denied.to_string().contains(&key));
    }
    let insufficient = app
        .verify(
            &key,
            json!({ "client_ip": "10.0.0.1", "customer_id": "acme", "permissions": ["customer:write"] }),
        )
        .await;
    assert_eq!(insufficient["required_permission"], "customer:write");
    assert_eq!(
        app.verify("kg_live_garbage", json!({})).await["code"],
        "invalid_key"
    );
    assert_eq!(app.verify("", json!({})).await["code"], "invalid_key");
    app.post(
        "/v1/verify",
        &app.admin,
        json!({ "key": key, "scope": "x" }),
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    app.send("POST", "/v1/verify", None, Some(json!({ "key": key })))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

async fn operations_answer_without_a_token(app: &TestApp) {
    assert_eq!(
        app.send("GET", "/healthz", None, None)
            .await
            .expect(StatusCode::OK)["status"],
        "ok"
    );
    assert_eq!(
        app.send("GET", "/readyz", None, None)
            .await
            .expect(StatusCode::OK)["status"],
        "ready"
    );
    app.create_key(&app.admin, json!({ "name": "counted" }))
        .await;
    let (_, revoked, _) = app.create_key(&app.admin, json!({ "name": "gone" })).await;
    app.post(
        &format!("/v1/keys/{revoked}/revoke"),
        &app.admin,
        json!({ "reason": "test" }),
    )
    .await
    .expect(StatusCode::OK);
    let metrics = app.send("GET", "/metrics", None, None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    for line in [
        "keygate_keys{status=\"active\"} 1",
        "keygate_keys{status=\"revoked\"} 1",
        "keygate_keys{status=\"expired\"} 0",
        "keygate_outbox_depth 3",
        "keygate_http_requests_total{method=\"POST\",route=\"/v1/keys\",status=\"201\"} 2",
        "keygate_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/keys/{key_id}/revoke\"} 1",
    ] {
        assert!(
            metrics.text.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            metrics.text
        );
    }
    app.send("GET", "/v1/nothing", Some(&app.admin.token), None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.send("PUT", "/v1/keys", Some(&app.admin.token), None)
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

async fn the_openapi_document_lists_every_route_served(app: &TestApp) {
    let served = app.send("GET", "/openapi.json", None, None).await;
    assert_eq!(served.status, StatusCode::OK);
    let spec = oas3::from_json(&served.text).expect("the document parses as OpenAPI 3");
    assert!(spec.openapi.starts_with("3."), "{}", spec.openapi);
    assert_eq!(
        serde_json::to_value(keygate_control_plane::http::openapi()).unwrap(),
        served.json
    );

    let mut operations = BTreeSet::new();
    for (path, item) in spec.paths.as_ref().expect("paths") {
        for (method, _) in item.methods() {
            operations.insert((method.as_str().to_owned(), path.clone()));
        }
    }
    let expected = [
        ("POST", "/v1/keys"),
        ("GET", "/v1/keys"),
        ("GET", "/v1/keys/{key_id}"),
        ("PATCH", "/v1/keys/{key_id}"),
        ("DELETE", "/v1/keys/{key_id}"),
        ("POST", "/v1/keys/{key_id}/disable"),
        ("POST", "/v1/keys/{key_id}/enable"),
        ("POST", "/v1/keys/{key_id}/revoke"),
        ("POST", "/v1/keys/{key_id}/regenerate"),
        ("POST", "/v1/verify"),
        ("POST", "/v1/secret-scanning/github"),
        ("POST", "/v1/leaks"),
        ("GET", "/v1/audit-log"),
        ("GET", "/v1/sync/status"),
        ("POST", "/v1/usage/events"),
        ("GET", "/v1/keys/{key_id}/usage"),
        ("GET", "/v1/logs"),
        ("GET", "/v1/users"),
        ("POST", "/v1/users"),
        ("GET", "/v1/users/me"),
        ("GET", "/v1/users/{user_id}"),
        ("PATCH", "/v1/users/{user_id}"),
        ("POST", "/v1/users/{user_id}/deactivate"),
        ("POST", "/v1/users/{user_id}/tokens"),
        ("POST", "/v1/users/{user_id}/tokens/{token_id}/revoke"),
        ("GET", "/v1/users/me/tokens"),
        ("POST", "/v1/users/me/tokens/{token_id}/revoke"),
        ("GET", "/v1/permissions"),
        ("POST", "/v1/permissions"),
        ("PUT", "/v1/permission-sets/{name}"),
        ("GET", "/v1/roles/{role}/ceiling"),
        ("PUT", "/v1/roles/{role}/ceiling"),
        ("DELETE", "/v1/roles/{role}/ceiling"),
        ("GET", "/v1/users/me/ceiling"),
        ("GET", "/v1/users/{user_id}/ceiling"),
        ("PUT", "/v1/users/{user_id}/ceiling"),
        ("DELETE", "/v1/users/{user_id}/ceiling"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/.well-known/jwks.json"),
    ];
    let expected: BTreeSet<(String, String)> = expected
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(operations, expected);

    // Every documented operation is served: the router answers it with something other than
    // "no such route" or "wrong method".
    for (method, path) in &operations {
        let concrete = path
            .replace("{key_id}", "AAAAAAAAAAAAAAAAAAAAAA")
            .replace("{user_id}", "usr_x")
            .replace("{token_id}", "t")
            .replace("{role}", "member")
            .replace("{name}", "n");
        let response = app
            .send(method, &concrete, Some(&app.admin.token), None)
            .await;
        assert_ne!(
            response.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_ne!(
            response.json["error"]["message"], "no such route",
            "{method} {path}"
        );
    }
    // And every error response is documented with the error body.
    let document = &served.json;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorResponse",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

/// The last-admin rule under concurrency: two admins demote each other at the same moment,
/// again and again. Each time exactly one demotion wins and one admin remains (on PostgreSQL the
/// active admins' rows are locked first; SQLite's writer is one at a time).
async fn two_admins_demoting_each_other_at_once_leave_one(app: &TestApp) {
    let first = app.user("first@example.com", "admin").await;
    let second = app.user("second@example.com", "admin").await;
    // The bootstrap admin steps down, so first and second are the only admins.
    app.send(
        "PATCH",
        &format!("/v1/users/{}", app.admin.id),
        Some(&first.token),
        Some(json!({ "role": "member" })),
    )
    .await
    .expect(StatusCode::OK);
    for round in 0..25 {
        let (second_path, first_path) = (
            format!("/v1/users/{}", second.id),
            format!("/v1/users/{}", first.id),
        );
        let (a, b) = tokio::join!(
            app.send(
                "PATCH",
                &second_path,
                Some(&first.token),
                Some(json!({ "role": "member" }))
            ),
            app.send(
                "PATCH",
                &first_path,
                Some(&second.token),
                Some(json!({ "role": "member" }))
            ),
        );
        let statuses = [a.status, b.status];
        let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        // The loser is refused by the rule (409), or, when the winner committed first, finds
        // itself no longer an admin (403).
        let lost = statuses
            .iter()
            .filter(|s| [StatusCode::CONFLICT, StatusCode::FORBIDDEN].contains(*s))
            .count();
        assert_eq!(
            (won, lost),
            (1, 1),
            "round {round}: {statuses:?}: {} {}",
            a.text,
            b.text
        );
        // Put the loser back for the next round.
        let (winner, loser) = if a.status == StatusCode::OK {
            (&first, &second)
        } else {
            (&second, &first)
        };
        app.send(
            "PATCH",
            &format!("/v1/users/{}", loser.id),
            Some(&winner.token),
            Some(json!({ "role": "admin" })),
        )
        .await
        .expect(StatusCode::OK);
    }
}

/// Deactivating a user disables every active key they own in the same transaction (by default),
/// each with its next version queued for the edge; with `disable_keys: false` the keys keep
/// working, and a listing finds them by their deactivated owner.
async fn deactivating_a_user_disables_their_keys_unless_told_not_to(app: &TestApp) {
    let leaver = app.user("leaver@example.com", "member").await;
    let stayer = app.user("stayer@example.com", "member").await;
    let (key, key_id, created) = app.create_key(&leaver, json!({ "name": "live" })).await;
    let (_, paused_id, _) = app.create_key(&leaver, json!({ "name": "paused" })).await;
    app.send(
        "POST",
        &format!("/v1/keys/{paused_id}/disable"),
        Some(&app.admin.token),
        None,
    )
    .await
    .expect(StatusCode::OK);
    let paused = app
        .get(&format!("/v1/keys/{paused_id}"), &app.admin)
        .await
        .expect(StatusCode::OK);
    app.send(
        "POST",
        &format!("/v1/users/{}/deactivate", leaver.id),
        Some(&app.admin.token),
        None,
    )
    .await
    .expect(StatusCode::OK);
    let live = app
        .get(&format!("/v1/keys/{key_id}"), &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(live["status"], "disabled");
    assert_eq!(live["version"], created["version"].as_u64().unwrap() + 1);
    // The admin's restriction: reactivated, the user could not switch the key back on.
    assert_eq!(
        live["restrictions"]["disabled"]["set_by"],
        app.admin.id.as_str()
    );
    let queued = keygate_control_plane::store::outbox::latest(app.db(), &key_id)
        .await
        .unwrap()
        .expect("the edge gets the change");
    assert!(matches!(
        queued.state,
        keygate_shared::RecordState::Present(ref body) if body.status == keygate_shared::Status::Disabled
    ));
    assert_eq!(app.verify(&key, json!({})).await["code"], "disabled");
    let untouched = app
        .get(&format!("/v1/keys/{paused_id}"), &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        untouched["version"], paused["version"],
        "an already disabled key is left as it is"
    );
    let audit = app
        .get(&format!("/v1/audit-log?target_id={key_id}"), &app.admin)
        .await
        .expect(StatusCode::OK);
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|item| item["action"] == "key.disable"),
        "{audit}"
    );

    let (_, kept_id, _) = app.create_key(&stayer, json!({ "name": "service" })).await;
    app.send(
        "POST",
        &format!("/v1/users/{}/deactivate", stayer.id),
        Some(&app.admin.token),
        Some(json!({ "disable_keys": false })),
    )
    .await
    .expect(StatusCode::OK);
    let kept = app
        .get(&format!("/v1/keys/{kept_id}"), &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(kept["status"], "active");
    let orphaned = app
        .get("/v1/keys?owner_deactivated=true", &app.admin)
        .await
        .expect(StatusCode::OK);
    let ids: BTreeSet<&str> = orphaned["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item["key_id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [key_id.as_str(), paused_id.as_str(), kept_id.as_str()]
            .into_iter()
            .collect()
    );
    let (_, admin_key, _) = app
        .create_key(&app.admin, json!({ "name": "admin's" }))
        .await;
    assert!(!ids.contains(admin_key.as_str()));
}

/// Tokens expire (90 days unless the admin says otherwise; the first admin's never), and every
/// user lists and revokes their own, and only their own.
async fn tokens_expire_and_users_manage_their_own(app: &TestApp) {
    let created = app
        .post(
            "/v1/users",
            &app.admin,
            json!({ "email": "t@example.com", "role": "member" }),
        )
        .await
        .expect(StatusCode::CREATED);
    let id = created["user_id"].as_str().unwrap();
    let tokens_path = format!("/v1/users/{id}/tokens");
    let issue = |body: Value| app.post(&tokens_path, &app.admin, body);
    let day = issue(json!({ "name": "day", "expires_in_days": 1 }))
        .await
        .expect(StatusCode::CREATED);
    let default = issue(json!({ "name": "default" }))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(day["expires_at"], "2026-11-23T00:00:00Z");
    assert_eq!(default["expires_at"], "2027-02-20T00:00:00Z", "90 days");
    for days in [0, 3651] {
        issue(json!({ "name": "x", "expires_in_days": days }))
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_expiry");
    }
    let day_token = day["token"].as_str().unwrap().to_owned();
    let default_token = default["token"].as_str().unwrap().to_owned();
    let me = app
        .send("GET", "/v1/users/me", Some(&day_token), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(me["token_expires_at"], "2026-11-23T00:00:00Z");
    assert_eq!(me["token_id"], day["token_id"]);
    let admin_me = app
        .get("/v1/users/me", &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        admin_me["token_expires_at"],
        Value::Null,
        "the first admin's token does not expire"
    );

    let listed = app
        .send("GET", "/v1/users/me/tokens", Some(&day_token), None)
        .await
        .expect(StatusCode::OK);
    // Both were issued in the same second of the test's clock: compare as a set.
    let names: BTreeSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["day", "default"].into_iter().collect(),
        "only the caller's own"
    );
    assert!(
        !listed.to_string().contains(&day_token),
        "never the tokens themselves"
    );

    app.clock.advance(86_400);
    let expired = app
        .send("GET", "/v1/users/me", Some(&day_token), None)
        .await;
    expired.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.send("GET", "/v1/users/me", Some(&default_token), None)
        .await
        .expect(StatusCode::OK);

    // Revoking someone else's token through /me is no more than "not found".
    let admin_token_id = app
        .get("/v1/users/me", &app.admin)
        .await
        .expect(StatusCode::OK)["token_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.send(
        "POST",
        &format!("/v1/users/me/tokens/{admin_token_id}/revoke"),
        Some(&default_token),
        None,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.get("/v1/users/me", &app.admin)
        .await
        .expect(StatusCode::OK);
    let own = default["token_id"].as_str().unwrap();
    let revoked = app
        .send(
            "POST",
            &format!("/v1/users/me/tokens/{own}/revoke"),
            Some(&default_token),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    app.send("GET", "/v1/users/me", Some(&default_token), None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// The within-ceiling key of the ceiling tests, with `change` applied to it.
fn key_body(change: Value) -> Value {
    let mut body = json!({
        "name": "orders",
        "permissions": ["orders:read"],
        "customer_id": "acme",
        "expires_in_days": 30,
        "rate_limit": { "requests": 100, "window_seconds": 60 },
    });
    for (field, value) in change.as_object().expect("an object") {
        if value.is_null() {
            body.as_object_mut().unwrap().remove(field);
        } else {
            body[field] = value.clone();
        }
    }
    body
}

/// Catalogue and member ceiling for the ceiling tests: `orders:read|write` and `billing:read`,
/// the sets `reader` (orders:read) and `billing` (billing:read); members may hold the orders
/// permissions, for 30 days at most, for one customer, at 100 requests a minute at most.
async fn ceiling_fixture(app: &TestApp) {
    app.catalogue(&["orders:read", "orders:write", "billing:read"])
        .await;
    for (set, grant) in [("reader", "orders:read"), ("billing", "billing:read")] {
        app.send(
            "PUT",
            &format!("/v1/permission-sets/{set}"),
            Some(&app.admin.token),
            Some(json!({ "permissions": [grant] })),
        )
        .await
        .expect(StatusCode::CREATED);
    }
    let set = app
        .send(
            "PUT",
            "/v1/roles/member/ceiling",
            Some(&app.admin.token),
            Some(json!({
                "permissions": ["orders:read", "orders:write"],
                "max_lifetime_days": 30,
                "require_customer": true,
                "max_rate_limit": { "requests": 100, "window_seconds": 60 },
            })),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(set["source"], "role");
    assert_eq!(set["updated_by"], app.admin.id.as_str());
}

async fn members_stay_within_their_grant_ceiling(app: &TestApp) {
    ceiling_fixture(app).await;
    let alice = app.user("alice@example.com", "member").await;
    let kim = app.user("kim@example.com", "key_manager").await;
    let mine = app
        .get("/v1/users/me/ceiling", &alice)
        .await
        .expect(StatusCode::OK);
    assert_eq!(mine["source"], "role");
    assert_eq!(mine["ceiling"]["max_lifetime_days"], 30);

    // Creating: every way above the ceiling is refused, and nothing is written.
    let keys_before = app.count("api_key").await;
    for change in [
        json!({ "permissions": ["orders:*"] }),
        json!({ "permissions": ["billing:read"] }),
        json!({ "permissions": [], "permission_sets": ["billing"] }),
        json!({ "customer_id": null }),
        json!({ "expires_in_days": 31 }),
        json!({ "expires_in_days": null }),
        json!({ "rate_limit": { "requests": 101, "window_seconds": 60 } }),
        json!({ "rate_limit": { "requests": 100, "window_seconds": 59 } }),
        json!({ "rate_limit": null }),
    ] {
        let body = key_body(change.clone());
        let refused = app
            .post("/v1/keys", &alice, body)
            .await
            .expect_error(StatusCode::FORBIDDEN, "above_ceiling");
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains("your grant ceiling"),
            "{change}: {refused}"
        );
    }
    assert_eq!(app.count("api_key").await, keys_before);
    // ... and within it, allowed: sets too, when what they hold fits.
    let (_, key_id, _) = app.create_key(&alice, key_body(json!({}))).await;
    app.create_key(
        &alice,
        key_body(json!({ "permissions": [], "permission_sets": ["reader"] })),
    )
    .await;
    // A key manager cannot give a member more than the member's ceiling either.
    app.post(
        "/v1/keys",
        &kim,
        json!({ "name": "wide", "permissions": ["*"], "owner_id": alice.id }),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "above_ceiling");

    // Updating: each field's widening is refused; narrowing, or widening within, is allowed.
    let path = format!("/v1/keys/{key_id}");
    for patch in [
        json!({ "permissions": ["billing:read"] }),
        json!({ "permissions": ["*"] }),
        json!({ "permission_sets": ["billing"] }),
        json!({ "customer_id": null }),
        json!({ "expires_at": null }),
        json!({ "expires_in_days": 31 }),
        json!({ "rate_limit": null }),
        json!({ "rate_limit": { "requests": 200, "window_seconds": 60 } }),
    ] {
        app.send("PATCH", &path, Some(&alice.token), Some(patch.clone()))
            .await
            .expect_error(StatusCode::FORBIDDEN, "above_ceiling");
    }
    for patch in [
        json!({ "permissions": ["orders:read", "orders:write"] }),
        json!({ "rate_limit": { "requests": 50, "window_seconds": 60 } }),
        json!({ "expires_in_days": 7 }),
        json!({ "customer_id": "globex" }),
    ] {
        app.send("PATCH", &path, Some(&alice.token), Some(patch))
            .await
            .expect(StatusCode::OK);
    }

    // A set redefined wider changes no key; expanding it again is held to the ceiling.
    let (_, set_key, _) = app
        .create_key(
            &alice,
            key_body(json!({ "permissions": [], "permission_sets": ["reader"] })),
        )
        .await;
    app.send(
        "PUT",
        "/v1/permission-sets/reader",
        Some(&app.admin.token),
        Some(json!({ "permissions": ["orders:read", "billing:read"] })),
    )
    .await
    .expect(StatusCode::OK);
    let set_path = format!("/v1/keys/{set_key}");
    let unchanged = app.get(&set_path, &alice).await.expect(StatusCode::OK);
    assert_eq!(unchanged["grants"], json!(["orders:read"]));
    app.send(
        "PATCH",
        &set_path,
        Some(&alice.token),
        Some(json!({ "permission_sets": ["reader"] })),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "above_ceiling");

    // Owner change: only key managers give keys away, and only within the new owner's ceiling.
    app.send(
        "PATCH",
        &path,
        Some(&alice.token),
        Some(json!({ "owner_id": kim.id })),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");
    let (_, kims, _) = app
        .create_key(&kim, json!({ "name": "kim's", "permissions": ["*"] }))
        .await;
    let kims_path = format!("/v1/keys/{kims}");
    let to_alice = json!({ "owner_id": alice.id });
    app.send(
        "PATCH",
        &kims_path,
        Some(&kim.token),
        Some(to_alice.clone()),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "above_ceiling");
    let mut fitting = key_body(json!({}));
    fitting["owner_id"] = json!(alice.id);
    fitting.as_object_mut().unwrap().remove("expires_in_days");
    fitting.as_object_mut().unwrap().remove("name");
    fitting["expires_in_days"] = json!(10);
    app.send("PATCH", &kims_path, Some(&kim.token), Some(fitting))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        app.get(&kims_path, &alice).await.expect(StatusCode::OK)["owner_id"],
        alice.id.as_str()
    );

    // Admins are not bound: they set the ceilings, and what they do is audited.
    app.create_key(
        &app.admin,
        json!({ "name": "granted", "permissions": ["*"], "owner_id": alice.id }),
    )
    .await;
}

async fn a_narrower_ceiling_changes_no_key_but_stops_its_widening(app: &TestApp) {
    ceiling_fixture(app).await;
    let alice = app.user("alice@example.com", "member").await;
    let (_, key_id, created) = app.create_key(&alice, key_body(json!({}))).await;
    let path = format!("/v1/keys/{key_id}");

    // Alice alone gets 10 a minute: her key is left above, unchanged, and listed.
    let narrowed = app
        .send(
            "PUT",
            &format!("/v1/users/{}/ceiling", alice.id),
            Some(&app.admin.token),
            Some(json!({
                "permissions": ["orders:read"],
                "max_rate_limit": { "requests": 10, "window_seconds": 60 },
            })),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(narrowed["source"], "user");
    assert_eq!(
        narrowed["keys_above"],
        json!({ "count": 1, "key_ids": [key_id] })
    );
    let now = app.get(&path, &alice).await.expect(StatusCode::OK);
    assert_eq!(now["rate_limit"], created["rate_limit"]);
    assert_eq!(now["version"], created["version"]);

    // She may rename or tighten it; not renew, re-enable or widen it. Once it fits, she may.
    let limit =
        |requests: u32| json!({ "rate_limit": { "requests": requests, "window_seconds": 60 } });
    let above = Err("above_ceiling");
    let steps = [
        ("PATCH", "", Some(json!({ "name": "renamed" })), Ok(())),
        ("POST", "/regenerate", None, above),
        ("POST", "/disable", None, Ok(())),
        ("POST", "/enable", None, above),
        ("PATCH", "", Some(limit(20)), Ok(())),
        ("POST", "/enable", None, above),
        ("PATCH", "", Some(limit(10)), Ok(())),
        ("POST", "/enable", None, Ok(())),
        ("POST", "/regenerate", None, Ok(())),
    ];
    for (method, suffix, body, expected) in steps {
        let answer = app
            .send(method, &format!("{path}{suffix}"), Some(&alice.token), body)
            .await;
        match expected {
            Ok(()) => drop(answer.expect(StatusCode::OK)),
            Err(code) => drop(answer.expect_error(StatusCode::FORBIDDEN, code)),
        }
    }

    // Back on the role's ceiling, nothing of hers is above it.
    let reset = app
        .send(
            "DELETE",
            &format!("/v1/users/{}/ceiling", alice.id),
            Some(&app.admin.token),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reset["source"], "role");
    assert_eq!(reset["keys_above"]["count"], 0);
    // Ceilings are the admin's: members cannot read others' or set any; admins have none.
    app.get("/v1/roles/member/ceiling", &alice)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    app.send(
        "PUT",
        &format!("/v1/users/{}/ceiling", alice.id),
        Some(&alice.token),
        Some(json!({ "permissions": ["*"] })),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");
    // Admins have no ceiling: not as a role (no such path), not one by one.
    app.send(
        "PUT",
        "/v1/roles/admin/ceiling",
        Some(&app.admin.token),
        Some(json!({})),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_request");
    app.send(
        "PUT",
        &format!("/v1/users/{}/ceiling", app.admin.id),
        Some(&app.admin.token),
        Some(json!({})),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "admin_unbounded");
    for (body, code) in [
        (json!({ "permissions": ["orders"] }), "invalid_permission"),
        (
            json!({ "permission_sets": ["nope"] }),
            "unknown_permission_set",
        ),
        (json!({ "max_lifetime_days": 0 }), "invalid_lifetime"),
    ] {
        app.send(
            "PUT",
            "/v1/roles/member/ceiling",
            Some(&app.admin.token),
            Some(body),
        )
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, code);
    }
    let default = app
        .send(
            "DELETE",
            "/v1/roles/member/ceiling",
            Some(&app.admin.token),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(default["source"], "default");
    assert_eq!(default["ceiling"]["permissions"], Value::Null);
    let audit = app
        .get("/v1/audit-log?action=ceiling.set", &app.admin)
        .await
        .expect(StatusCode::OK);
    let targets: BTreeSet<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event["target_id"].as_str())
        .collect();
    let user_subject = format!("user:{}", alice.id);
    assert_eq!(
        targets,
        BTreeSet::from(["role:member", user_subject.as_str()])
    );
}

async fn restrictions_set_by_a_key_manager_stick(app: &TestApp) {
    let alice = app.user("alice@example.com", "member").await;
    let kim = app.user("kim@example.com", "key_manager").await;
    let (_, key_id, _) = app.create_key(&alice, json!({ "name": "hers" })).await;
    let path = format!("/v1/keys/{key_id}");
    let restricted = app
        .send(
            "PATCH",
            &path,
            Some(&kim.token),
            Some(json!({
                "customer_id": "acme",
                "rate_limit": { "requests": 10, "window_seconds": 60 },
                "ip_allowlist": ["203.0.113.0/24"],
                "expires_in_days": 7,
            })),
        )
        .await
        .expect(StatusCode::OK);
    let fields: BTreeSet<&str> = restricted["restrictions"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from(["customer_id", "expires_at", "ip_allowlist", "rate_limit"])
    );
    assert_eq!(
        restricted["restrictions"]["rate_limit"]["set_by"],
        kim.id.as_str()
    );

    // Alice cannot loosen or lift any of them...
    let version = restricted["version"].clone();
    for patch in [
        json!({ "customer_id": null }),
        json!({ "customer_id": "globex" }),
        json!({ "rate_limit": null }),
        json!({ "rate_limit": { "requests": 20, "window_seconds": 60 } }),
        json!({ "ip_allowlist": [] }),
        json!({ "ip_allowlist": ["198.51.100.0/24"] }),
        json!({ "ip_allowlist": ["203.0.112.0/23"] }),
        json!({ "expires_at": null }),
        json!({ "expires_in_days": 30 }),
    ] {
        let refused = app
            .send("PATCH", &path, Some(&alice.token), Some(patch.clone()))
            .await
            .expect_error(StatusCode::FORBIDDEN, "restricted");
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&kim.id),
            "{patch}: {refused}"
        );
    }
    let unchanged = app.get(&path, &alice).await.expect(StatusCode::OK);
    assert_eq!(unchanged["version"], version);
    // ... but may tighten them.
    for patch in [
        json!({ "rate_limit": { "requests": 5, "window_seconds": 60 } }),
        json!({ "ip_allowlist": ["203.0.113.0/25"] }),
        json!({ "expires_in_days": 1 }),
        json!({ "name": "still hers" }),
    ] {
        app.send("PATCH", &path, Some(&alice.token), Some(patch))
            .await
            .expect(StatusCode::OK);
    }
    // A disable by a key manager sticks too; revoking stays hers to do.
    app.send("POST", &format!("{path}/disable"), Some(&kim.token), None)
        .await
        .expect(StatusCode::OK);
    app.send("POST", &format!("{path}/enable"), Some(&alice.token), None)
        .await
        .expect_error(StatusCode::FORBIDDEN, "restricted");

    // Kim lifts the rate limit: it is Alice's to set again, and the audit log says who did what.
    let lifted = app
        .send(
            "PATCH",
            &path,
            Some(&kim.token),
            Some(json!({ "rate_limit": null })),
        )
        .await
        .expect(StatusCode::OK);
    assert!(lifted["restrictions"].get("rate_limit").is_none());
    app.send(
        "PATCH",
        &path,
        Some(&alice.token),
        Some(json!({ "rate_limit": { "requests": 1000, "window_seconds": 60 } })),
    )
    .await
    .expect(StatusCode::OK);
    let audit = app
        .get(&format!("/v1/audit-log?target_id={key_id}"), &app.admin)
        .await
        .expect(StatusCode::OK);
    let by_kim: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["actor_id"] == kim.id.as_str())
        .collect();
    let noted = |field: &str| -> BTreeSet<String> {
        by_kim
            .iter()
            .flat_map(|event| {
                event["summary"][field]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|value| value.as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        noted("restricted"),
        [
            "customer_id",
            "disabled",
            "expires_at",
            "ip_allowlist",
            "rate_limit"
        ]
        .map(str::to_owned)
        .into()
    );
    assert_eq!(noted("lifted"), ["rate_limit".to_owned()].into());
    app.post(
        &format!("{path}/revoke"),
        &alice,
        json!({ "reason": "done" }),
    )
    .await
    .expect(StatusCode::OK);
}
