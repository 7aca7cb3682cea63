//! Several replicas on one database: the first admin is created exactly once, concurrent
//! changes to one key from two replicas never lose an update nor reuse a version, sync leases
//! are measured by the database's clock, not each replica's, and `POST /v1/verify` sees a change
//! made on another replica within its cache's TTL.

mod common;

use axum::http::StatusCode;
use common::{Backend, TestApp, fresh_database, send_to, settings};
use keygate_control_plane::http::DEFAULT_VERIFY_CACHE_MS;
use keygate_control_plane::store::{Db, outbox, users};
use keygate_control_plane::{AppState, Clock, app};
use serde_json::json;

async fn bootstrap_happens_once(backend: Backend) {
    let Some((url, _fresh)) = fresh_database(backend).await else {
        return;
    };
    let settings = settings();
    let mut replicas = Vec::new();
    for _ in 0..4 {
        replicas.push(Db::connect(&url, 4).await.expect("connect"));
    }
    let attempts = replicas.iter().flat_map(|db| {
        let settings = &settings;
        (0..2).map(move |_| {
            users::bootstrap(
                db,
                "first@example.com",
                &settings.token_format,
                settings.environment,
                0,
            )
        })
    });
    let outcomes = futures::future::join_all(attempts).await;
    let created = outcomes
        .into_iter()
        .map(|outcome| outcome.expect("bootstrap never fails, it finds the admin made"))
        .filter(Option::is_some)
        .count();
    assert_eq!(created, 1, "exactly one first admin");
    assert_eq!(users::list(&replicas[0]).await.unwrap().len(), 1);
}

async fn concurrent_changes_keep_every_version(backend: Backend) {
    let Some(first) = TestApp::start(backend).await else {
        return;
    };
    let (_, key_id, _) = first
        .create_key(&first.admin, json!({ "name": "contended" }))
        .await;
    let second_db = Db::connect(&first.db_url, 4)
        .await
        .expect("a second replica");
    let second = app(AppState::new(
        second_db,
        settings(),
        Clock::manual(common::START),
    ));

    let routers = [first.router.clone(), second];
    let renames = concurrently(&routers, 24, |index| {
        axum::http::Request::patch(format!("/v1/keys/{key_id}"))
            .header("authorization", format!("Bearer {}", first.admin.token))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                json!({ "name": format!("name {index}") }).to_string(),
            ))
            .unwrap()
    })
    .await;
    let mut applied = 0;
    for status in renames {
        match status {
            StatusCode::OK => applied += 1,
            StatusCode::CONFLICT => {}
            other => panic!("a concurrent update answered {other}"),
        }
    }
    assert!(applied >= 1);
    let key = first
        .get(&format!("/v1/keys/{key_id}"), &first.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        key["version"],
        1 + applied,
        "each applied change is one version"
    );
    assert_eq!(
        first.count("outbox").await,
        1 + applied,
        "and one outbox record"
    );
    let trail = first
        .get(
            &format!("/v1/audit-log?action=key.update&target_id={key_id}&limit=100"),
            &first.admin,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(trail["items"].as_array().unwrap().len() as i64, applied);

    // Deleting from both replicas at once: one deletion, one tombstone.
    let deletes = concurrently(&routers, 8, |_| {
        axum::http::Request::delete(format!("/v1/keys/{key_id}"))
            .header("authorization", format!("Bearer {}", first.admin.token))
            .body(axum::body::Body::empty())
            .unwrap()
    })
    .await;
    let mut deleted = 0;
    for status in deletes {
        match status {
            StatusCode::NO_CONTENT => deleted += 1,
            StatusCode::NOT_FOUND | StatusCode::CONFLICT => {}
            other => panic!("a concurrent delete answered {other}"),
        }
    }
    assert_eq!(deleted, 1);
    assert_eq!(
        first.count("outbox").await,
        2 + applied,
        "exactly one tombstone"
    );
}

/// `POST /v1/verify` reads through a cache. A key revoked and a user deactivated on one replica:
/// that replica refuses them at once, the other within the cache's TTL (and not before, which is
/// what shows the cache is used), while its other routes refuse the deactivated user at once.
async fn verify_sees_another_replicas_change_within_the_ttl(backend: Backend) {
    let Some(first) = TestApp::start(backend).await else {
        return;
    };
    let second_clock = Clock::manual(common::START);
    let second_db = Db::connect(&first.db_url, 4)
        .await
        .expect("a second replica");
    let second = app(AppState::new(second_db, settings(), second_clock.clone()));
    let member = first.user("member@example.com", "member").await;
    let (key, key_id, _) = first
        .create_key(&member, json!({ "name": "verified often" }))
        .await;
    let verify_on = async |router: &axum::Router, token: &str| {
        let request = axum::http::Request::post("/v1/verify")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(json!({ "key": key }).to_string()))
            .unwrap();
        send_to(router, request).await
    };
    let code = |answer: common::Response| {
        let body = answer.expect(StatusCode::OK);
        body["code"].as_str().expect("code").to_owned()
    };
    // Both replicas have read the key, and the second the member's token.
    assert_eq!(
        code(verify_on(&first.router, &first.admin.token).await),
        "ok"
    );
    assert_eq!(code(verify_on(&second, &member.token).await), "ok");

    first
        .post(
            &format!("/v1/keys/{key_id}/revoke"),
            &first.admin,
            json!({ "reason": "rotated" }),
        )
        .await
        .expect(StatusCode::OK);
    first
        .post(
            &format!("/v1/users/{}/deactivate", member.id),
            &first.admin,
            json!({ "disable_keys": false }),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        code(verify_on(&first.router, &first.admin.token).await),
        "revoked",
        "the replica that made the change sees it at once"
    );
    let listing = axum::http::Request::get("/v1/keys")
        .header("authorization", format!("Bearer {}", member.token))
        .body(axum::body::Body::empty())
        .unwrap();
    send_to(&second, listing)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");

    let ttl = i64::from(DEFAULT_VERIFY_CACHE_MS);
    second_clock.advance_ms(ttl - 1);
    assert_eq!(
        code(verify_on(&second, &member.token).await),
        "ok",
        "within the TTL the other replica still answers from what it read"
    );
    second_clock.advance_ms(1);
    verify_on(&second, &member.token)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        code(verify_on(&second, &first.admin.token).await),
        "revoked",
        "after the TTL the other replica reads the change"
    );
}

/// Sends `count` requests at once, alternating between the replicas' routers.
async fn leases_are_measured_by_the_database_clock(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    app.create_key(&app.admin, json!({ "name": "pending" }))
        .await;
    let db = app.db();
    let system_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let before = outbox::database_now_ms(db).await.unwrap();
    // Unix milliseconds: this machine's database shares its clock.
    assert!(
        (before - system_ms).abs() < 5_000,
        "{before} vs {system_ms}"
    );

    // The app's clock is hand-set years away; the lease (no time given) is the database's.
    let held = outbox::claim(db, "first", None, 60_000, 10, outbox::KvTakes::All)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    let after = outbox::database_now_ms(db).await.unwrap();
    let pool = sqlx::AnyPool::connect(&app.db_url).await.unwrap();
    let until: i64 = sqlx::Row::try_get(
        &sqlx::query("SELECT until_ms FROM sync_claim WHERE holder = 'first'")
            .fetch_one(&pool)
            .await
            .unwrap(),
        "until_ms",
    )
    .unwrap();
    assert!(
        (before + 60_000..=after + 60_000).contains(&until),
        "{before} + lease <= {until} <= {after} + lease"
    );
    // Another replica, whatever its own clock says, finds the key held...
    assert!(
        outbox::claim(db, "second", None, 60_000, 10, outbox::KvTakes::All)
            .await
            .unwrap()
            .is_empty()
    );
    // ... until the holder hands it back, also by the database's clock.
    let held: Vec<&outbox::Claimed> = held.iter().collect();
    outbox::retry_later(db, "first", &held, None, 0)
        .await
        .unwrap();
    assert_eq!(
        outbox::claim(db, "second", None, 60_000, 10, outbox::KvTakes::All)
            .await
            .unwrap()
            .len(),
        1
    );
    pool.close().await;
}

async fn concurrently(
    routers: &[axum::Router],
    count: usize,
    request: impl Fn(usize) -> axum::http::Request<axum::body::Body>,
) -> Vec<StatusCode> {
    use tower::ServiceExt;
    let tasks: Vec<_> = (0..count)
        .map(|index| {
            let router = routers[index % routers.len()].clone();
            let request = request(index);
            tokio::spawn(async move { router.oneshot(request).await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::with_capacity(count);
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_happens_once_on_sqlite() {
    bootstrap_happens_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_happens_once_on_postgres() {
    bootstrap_happens_once(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_keep_every_version_on_sqlite() {
    concurrent_changes_keep_every_version(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_keep_every_version_on_postgres() {
    concurrent_changes_keep_every_version(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_are_measured_by_the_database_clock_on_sqlite() {
    leases_are_measured_by_the_database_clock(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_are_measured_by_the_database_clock_on_postgres() {
    leases_are_measured_by_the_database_clock(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_sees_another_replicas_change_within_the_ttl_on_sqlite() {
    verify_sees_another_replicas_change_within_the_ttl(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_sees_another_replicas_change_within_the_ttl_on_postgres() {
    verify_sees_another_replicas_change_within_the_ttl(Backend::Postgres).await;
}
