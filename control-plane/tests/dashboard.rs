//! Dashboard sessions on both backends, with a hand-set clock: the lifetimes, signing out, a
//! revoked token, sessions shared between replicas, and the cookie's attributes. (The pages
//! themselves are tested in a real browser: tests/tests/dashboard.rs.)

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{Backend, TestApp, send_to, settings};
use keygate_control_plane::http::UiSettings;
use keygate_control_plane::store::sessions::Lifetimes;
use keygate_control_plane::{AppState, app as router_of};
use serde_json::json;

const IDLE: i64 = 600;
const ABSOLUTE: i64 = 3_600;

fn ui(secure_cookie: bool) -> UiSettings {
    UiSettings {
        lifetimes: Lifetimes {
            idle_seconds: IDLE,
            absolute_seconds: ABSOLUTE,
        },
        secure_cookie,
    }
}

/// A replica of `app`'s control plane (same database and clock) with these dashboard settings.
fn replica(app: &TestApp, secure_cookie: bool) -> axum::Router {
    let settings = settings().with_ui(ui(secure_cookie));
    router_of(AppState::new(app.db().clone(), settings, app.clock.clone()))
}

/// Signs in with `token`; returns the `Set-Cookie` header.
async fn sign_in(router: &axum::Router, token: &str) -> String {
    let body = serde_urlencoded::to_string([("token", token)]).expect("a form");
    let response = send_to(
        router,
        Request::post("/ui/sign-in")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .body(Body::from(body))
            .expect("a request"),
    )
    .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.text);
    assert_eq!(response.headers[header::LOCATION], "/ui/keys");
    response.headers[header::SET_COOKIE]
        .to_str()
        .expect("ASCII")
        .to_owned()
}

/// `name=value` of a `Set-Cookie` header.
fn pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().expect("a pair")
}

/// Whether `GET /ui/keys` with `cookie` shows the page (not a redirect to sign in).
async fn signed_in(router: &axum::Router, cookie: &str) -> bool {
    let response = send_to(
        router,
        Request::get("/ui/keys")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .expect("a request"),
    )
    .await;
    match response.status {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => {
            assert_eq!(response.headers[header::LOCATION], "/ui/sign-in");
            false
        }
        other => panic!("{other}: {}", response.text),
    }
}

async fn session_lifetimes(app: &TestApp) {
    let router = replica(app, true);
    let cookie = sign_in(&router, &app.admin.token).await;
    let cookie = pair(&cookie);

    // Busy: a request every half idle lifetime keeps it going, up to the absolute lifetime.
    let mut at = 0;
    while at + IDLE / 2 < ABSOLUTE {
        app.clock.advance(IDLE / 2);
        at += IDLE / 2;
        assert!(signed_in(&router, cookie).await, "{at} s after sign-in");
    }
    app.clock.advance(ABSOLUTE - at);
    assert!(
        !signed_in(&router, cookie).await,
        "past the absolute lifetime"
    );

    // Idle: just under the idle lifetime still works; the idle lifetime itself does not.
    let cookie = sign_in(&router, &app.admin.token).await;
    let cookie = pair(&cookie);
    app.clock.advance(IDLE - 1);
    assert!(signed_in(&router, cookie).await);
    app.clock.advance(IDLE);
    assert!(
        !signed_in(&router, cookie).await,
        "idle for the idle lifetime"
    );
}

async fn sign_out_revocation_and_replicas(app: &TestApp) {
    let (one, other) = (replica(app, true), replica(app, true));
    let cookie = sign_in(&one, &app.admin.token).await;
    let cookie = pair(&cookie).to_owned();
    assert!(signed_in(&other, &cookie).await, "another replica knows it");

    let response = send_to(
        &other,
        Request::post("/ui/sign-out")
            .header(header::COOKIE, &cookie)
            .header("sec-fetch-site", "same-origin")
            .body(Body::empty())
            .expect("a request"),
    )
    .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert!(
        response.headers[header::SET_COOKIE]
            .to_str()
            .expect("ASCII")
            .contains("Max-Age=0")
    );
    assert!(!signed_in(&one, &cookie).await, "signed out everywhere");

    // A member's token revoked: their session ends with it.
    let member = app
        .post(
            "/v1/users",
            &app.admin,
            json!({"email": "m@example.com", "role": "member"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let user_id = member["user_id"].as_str().expect("an id");
    let issued = app
        .post(
            &format!("/v1/users/{user_id}/tokens"),
            &app.admin,
            json!({"name": "ui"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let cookie = sign_in(&one, issued["token"].as_str().expect("a token")).await;
    let cookie = pair(&cookie).to_owned();
    assert!(signed_in(&one, &cookie).await);
    let token_id = issued["token_id"].as_str().expect("an id");
    app.post(
        &format!("/v1/users/{user_id}/tokens/{token_id}/revoke"),
        &app.admin,
        json!({}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert!(!signed_in(&other, &cookie).await, "the token was revoked");
}

both!(session_lifetimes, sign_out_revocation_and_replicas);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_httponly_strict_and_host_bound_or_local_without_secure() {
    let Some(app) = TestApp::start(Backend::Sqlite).await else {
        return;
    };
    let secure = sign_in(&replica(&app, true), &app.admin.token).await;
    assert!(secure.starts_with("__Host-keygate_session="), "{secure}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(secure.contains(attribute), "{secure}");
    }
    assert!(!secure.contains("Domain"), "{secure}");
    let local = sign_in(&replica(&app, false), &app.admin.token).await;
    assert!(local.starts_with("keygate_session="), "{local}");
    assert!(!local.contains("Secure"), "{local}");
    assert!(local.contains("HttpOnly") && local.contains("SameSite=Strict"));
    // 32 random bytes, and only their digest is stored.
    let secret = pair(&local).split_once('=').expect("a value").1;
    assert_eq!(secret.len(), 43);
    let db = sqlx::SqlitePool::connect(&app.db_url)
        .await
        .expect("the database");
    let stored: Vec<String> = sqlx::query_scalar("SELECT session_digest FROM ui_session")
        .fetch_all(&db)
        .await
        .expect("the sessions");
    assert!(
        stored
            .iter()
            .all(|digest| digest.len() == 64 && digest != secret)
    );

    // Abandoned sessions go when a later one starts, once past their lifetime.
    app.clock.advance(IDLE);
    sign_in(&replica(&app, false), &app.admin.token).await;
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ui_session")
        .fetch_one(&db)
        .await
        .expect("a count");
    assert_eq!(left, 1, "only the new session is left");
}
