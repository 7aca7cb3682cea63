//! Leaked keys: GitHub's signed secret-scanning alerts (a local P-256 key pair stands in for
//! GitHub's) and a signed-in user's report. On SQLite and PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{GITHUB_KEY_ID, Response, TestApp};
use keygate_control_plane::scanning;
use keygate_shared::{Digest, Environment, KeyFormat};
use ring::signature::EcdsaKeyPair;
use serde_json::{Value, json};

both!(
    alerts_revoke_live_keys_and_label_everything_else_false,
    forged_or_oversized_alerts_revoke_nothing,
    a_regenerated_key_s_old_secret_ends_its_grace,
    a_batch_of_a_thousand_alerts,
    a_signed_in_user_reports_a_key_they_found,
);

const PATH: &str = "/v1/secret-scanning/github";

fn alerts(tokens: &[&str]) -> Vec<u8> {
    let alerts: Vec<Value> = tokens
        .iter()
        .enumerate()
        .map(|(n, token)| {
            json!({
                "token": token, "type": "keygate_api_key",
                "url": format!("https://github.com/octo/leaky/blob/main/config{n}.env"),
                "source": "content"
            })
        })
        .collect();
    serde_json::to_vec(&alerts).expect("json")
}

fn signature(pair: &EcdsaKeyPair, body: &[u8]) -> String {
    scanning::sign(pair, body)
}

/// Posts `body` with these signature headers (either may be left out).
async fn post(
    app: &TestApp,
    body: Vec<u8>,
    key_id: Option<&str>,
    signed: Option<&str>,
) -> Response {
    let mut request = Request::builder()
        .method("POST")
        .uri(PATH)
        .header("content-type", "application/json");
    if let Some(key_id) = key_id {
        request = request.header("Github-Public-Key-Identifier", key_id);
    }
    if let Some(signed) = signed {
        request = request.header("Github-Public-Key-Signature", signed);
    }
    app.raw(request.body(Body::from(body)).expect("a request"))
        .await
}

/// Posts `body` signed as GitHub signs.
async fn signed(app: &TestApp, body: Vec<u8>) -> Response {
    let signed = signature(common::github(), &body);
    post(app, body, Some(GITHUB_KEY_ID), Some(&signed)).await
}

async fn key(app: &TestApp, key_id: &str) -> Value {
    app.get(&format!("/v1/keys/{key_id}"), &app.admin)
        .await
        .expect(StatusCode::OK)
}

async fn leaked_events(app: &TestApp, key_id: &str) -> Vec<Value> {
    let log = app
        .get(
            &format!("/v1/audit-log?action=key.leaked&target_id={key_id}"),
            &app.admin,
        )
        .await
        .expect(StatusCode::OK);
    log["items"].as_array().expect("items").clone()
}

/// A well-formed key of this deployment (checksum and all) that was never issued.
fn never_issued() -> String {
    let format = KeyFormat::new("kg").expect("the test prefix");
    let mut rng = rand_core::UnwrapErr(rand_core::OsRng);
    format
        .generate(Environment::Production, &mut rng)
        .expose_secret()
        .to_owned()
}

async fn alerts_revoke_live_keys_and_label_everything_else_false(app: &TestApp) {
    let (leaked, leaked_id, _) = app.create_key(&app.admin, json!({"name": "leaked"})).await;
    let (_, bystander_id, _) = app
        .create_key(&app.admin, json!({"name": "bystander"}))
        .await;
    let (deleted, deleted_id, _) = app.create_key(&app.admin, json!({"name": "gone"})).await;
    app.send(
        "DELETE",
        &format!("/v1/keys/{deleted_id}"),
        Some(&app.admin.token),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let mut wrong_secret = leaked.clone();
    let last = wrong_secret.pop().expect("a character");
    wrong_secret.push(if last == 'A' { 'B' } else { 'A' });
    let unknown = never_issued();
    let tokens = [
        leaked.as_str(),
        "kg_live_not-a-key",
        unknown.as_str(),
        deleted.as_str(),
        wrong_secret.as_str(),
        "ghp_someone_elses_token",
        app.admin.token.as_str(),
    ];
    let body = alerts(&tokens);
    let verdicts = signed(app, body.clone()).await.expect(StatusCode::OK);
    let labels: Vec<&str> = verdicts
        .as_array()
        .expect("an array")
        .iter()
        .map(|verdict| verdict["label"].as_str().expect("a label"))
        .collect();
    let mut expected = vec!["false_positive"; tokens.len()];
    expected[0] = "true_positive";
    assert_eq!(labels, expected, "{verdicts}");
    for (verdict, token) in verdicts.as_array().expect("an array").iter().zip(tokens) {
        assert_eq!(verdict["token_hash"], Digest::of_key(token).to_hex());
        assert_eq!(verdict["token_type"], "keygate_api_key");
        assert!(verdict.get("token_raw").is_none(), "no token echoed");
    }
    assert!(
        !verdicts.to_string().contains(&leaked),
        "the answer holds no key"
    );

    let revoked = key(app, &leaked_id).await;
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(
        revoked["revoked_reason"],
        "leaked at https://github.com/octo/leaky/blob/main/config0.env"
    );
    assert_eq!(key(app, &bystander_id).await["status"], "active");
    let verdict = app.verify(&leaked, json!({})).await;
    assert_eq!(verdict["valid"], false);
    let events = leaked_events(app, &leaked_id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["actor_id"], "secret-scanning");
    assert_eq!(events[0]["summary"]["done"], "revoked");
    assert_eq!(events[0]["summary"]["via"], "github_secret_scanning");
    assert_eq!(events[0]["summary"]["source"], "content");

    // A replay is answered the same, and changes nothing.
    let again = signed(app, body).await.expect(StatusCode::OK);
    assert_eq!(again, verdicts);
    assert_eq!(leaked_events(app, &leaked_id).await.len(), 1);
    assert_eq!(key(app, &leaked_id).await["version"], revoked["version"]);
}

async fn forged_or_oversized_alerts_revoke_nothing(app: &TestApp) {
    let (leaked, leaked_id, _) = app.create_key(&app.admin, json!({"name": "leaked"})).await;
    let body = alerts(&[&leaked]);
    let genuine = signature(common::github(), &body);
    let impostor = scanning::generate_pair();
    let mut tampered = body.clone();
    let at = tampered.len() - 10;
    tampered[at] ^= 1;
    let cases = [
        ("unsigned", body.clone(), None, None),
        ("no signature", body.clone(), Some(GITHUB_KEY_ID), None),
        (
            "tampered body",
            tampered,
            Some(GITHUB_KEY_ID),
            Some(genuine.clone()),
        ),
        (
            "wrong key id",
            body.clone(),
            Some("another-key"),
            Some(genuine.clone()),
        ),
        (
            "an impostor's signature",
            body.clone(),
            Some(GITHUB_KEY_ID),
            Some(signature(&impostor, &body)),
        ),
        (
            "not base64",
            body.clone(),
            Some(GITHUB_KEY_ID),
            Some("%%%".to_owned()),
        ),
    ];
    for (case, body, key_id, signed) in cases {
        let response = post(app, body, key_id, signed.as_deref()).await;
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{case}: {}",
            response.text
        );
        assert!(!response.text.contains(&leaked), "{case}");
    }
    // Over 1 MiB: refused before it is read, signed or not.
    let huge = alerts(&[&"x".repeat(1024 * 1024)]);
    let signed_huge = signature(common::github(), &huge);
    let response = post(app, huge, Some(GITHUB_KEY_ID), Some(&signed_huge)).await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Signed but not alerts: refused, nothing revoked.
    let response = signed(app, br#"{"token": "x"}"#.to_vec()).await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(key(app, &leaked_id).await["status"], "active");
    assert!(leaked_events(app, &leaked_id).await.is_empty());
}

async fn a_regenerated_key_s_old_secret_ends_its_grace(app: &TestApp) {
    let (old, key_id, _) = app
        .create_key(&app.admin, json!({"name": "rotating"}))
        .await;
    let regenerated = app
        .post(
            &format!("/v1/keys/{key_id}/regenerate"),
            &app.admin,
            json!({"grace_period_seconds": 3600}),
        )
        .await
        .expect(StatusCode::OK);
    let new = regenerated["key"].as_str().expect("the new key").to_owned();
    assert_eq!(app.verify(&old, json!({})).await["valid"], true, "in grace");

    let verdicts = signed(app, alerts(&[&old])).await.expect(StatusCode::OK);
    assert_eq!(verdicts[0]["label"], "true_positive");
    let record = key(app, &key_id).await;
    assert_eq!(
        record["status"], "active",
        "the current secret was not leaked"
    );
    assert_eq!(record["previous_secret_expires_at"], Value::Null);
    assert_eq!(app.verify(&old, json!({})).await["valid"], false);
    assert_eq!(app.verify(&new, json!({})).await["valid"], true);
    let events = leaked_events(app, &key_id).await;
    assert_eq!(events[0]["summary"]["done"], "grace_ended");

    // Reported again after its grace ended: still ours, nothing left to do.
    let verdicts = signed(app, alerts(&[&old])).await.expect(StatusCode::OK);
    assert_eq!(verdicts[0]["label"], "true_positive");
    assert_eq!(leaked_events(app, &key_id).await.len(), 1);
}

/// GitHub waits a limited time for an answer; a full batch must come well within it.
const BATCH_BOUND: Duration = Duration::from_secs(10);

async fn a_batch_of_a_thousand_alerts(app: &TestApp) {
    let mut live = Vec::new();
    for n in 0..10 {
        let (key, key_id, _) = app
            .create_key(&app.admin, json!({"name": format!("batch {n}")}))
            .await;
        live.push((key, key_id));
    }
    let unknown: Vec<String> = (0..490).map(|_| never_issued()).collect();
    let garbage: Vec<String> = (0..500).map(|n| format!("kg_live_{n:0>40}")).collect();
    let mut tokens: Vec<&str> = live.iter().map(|(key, _)| key.as_str()).collect();
    tokens.extend(unknown.iter().map(String::as_str));
    tokens.extend(garbage.iter().map(String::as_str));
    assert_eq!(tokens.len(), 1_000);
    let started = Instant::now();
    let verdicts = signed(app, alerts(&tokens)).await.expect(StatusCode::OK);
    let took = started.elapsed();
    eprintln!(
        "1,000 alerts (10 live keys): {took:.2?}, {:.0} alerts/s",
        1_000.0 / took.as_secs_f64()
    );
    assert!(took < BATCH_BOUND, "{took:?}");
    let positives = verdicts
        .as_array()
        .expect("an array")
        .iter()
        .filter(|verdict| verdict["label"] == "true_positive")
        .count();
    assert_eq!(positives, 10);
    for (_, key_id) in &live {
        assert_eq!(key(app, key_id).await["status"], "revoked");
    }
    let too_many: Vec<&str> = (0..1_001).map(|_| "x").collect();
    let response = signed(app, alerts(&too_many)).await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn a_signed_in_user_reports_a_key_they_found(app: &TestApp) {
    let member = app.user("finder@example.com", "member").await;
    let (leaked, leaked_id, _) = app
        .create_key(&app.admin, json!({"name": "in a ticket"}))
        .await;
    for body in [
        json!({"key": leaked, "location": "support ticket 4411"}),
        json!({"key": "whatever they pasted"}),
        json!({"key": never_issued()}),
    ] {
        let answer = app
            .post("/v1/leaks", &member, body)
            .await
            .expect(StatusCode::ACCEPTED);
        assert_eq!(
            answer,
            json!({"status": "handled"}),
            "the same answer each time"
        );
    }
    let revoked = key(app, &leaked_id).await;
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(
        revoked["revoked_reason"],
        format!("leaked at support ticket 4411 (reported by {})", member.id)
    );
    let events = leaked_events(app, &leaked_id).await;
    assert_eq!(events[0]["actor_id"], member.id.as_str());
    assert_eq!(events[0]["summary"]["via"], "report");

    app.send("POST", "/v1/leaks", None, Some(json!({"key": leaked})))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.post(
        "/v1/leaks",
        &member,
        json!({"key": "x", "location": "a\u{202e}b"}),
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_location");
}
