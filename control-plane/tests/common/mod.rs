//! Helpers for the HTTP tests: a fresh database per test (a SQLite file in a temporary directory,
//! or a PostgreSQL database created for the test and dropped after it), the app driven through
//! `oneshot`, and shortcuts for the requests most tests make.

#![allow(
    dead_code,
    reason = "each test binary uses its own subset of these helpers"
)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use keygate_control_plane::scanning;
use keygate_control_plane::store::{Db, users};
use keygate_control_plane::{AppState, Clock, Settings, app};
use keygate_shared::Environment;
use ring::signature::EcdsaKeyPair;
use serde_json::{Value, json};
use std::sync::OnceLock;
use tower::ServiceExt;

/// A fixed start for the hand-set clock: 2026-11-22T00:00:00Z.
pub(crate) const START: i64 = 1_795_305_600;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body once per backend: `both!(name)` makes `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(app) = $crate::common::TestApp::start($crate::common::Backend::Sqlite).await {
                    super::$name(&app).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(app) = $crate::common::TestApp::start($crate::common::Backend::Postgres).await {
                    super::$name(&app).await;
                }
            }
        }
    )*};
}

pub(crate) enum Fresh {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Drop for Fresh {
    fn drop(&mut self) {
        if let Fresh::Postgres { admin_url, name } = self {
            let (url, database) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime; a thread of its own may block on another.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    use sqlx::Connection;
                    let mut admin = sqlx::PgConnection::connect(&url).await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await?;
                    Ok::<_, sqlx::Error>(())
                })?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test database {name}");
            }
        }
    }
}

/// The PostgreSQL server the tests create their databases on: `KEYGATE_TEST_POSTGRES_URL`.
/// Unset means "skip the PostgreSQL half" (scripts/test says so loudly; CI always sets it).
fn postgres_admin_url() -> Option<String> {
    std::env::var("KEYGATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// A database URL of its own for one test.
pub(crate) async fn fresh_database(backend: Backend) -> Option<(String, Fresh)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
            Some((url, Fresh::Sqlite(dir)))
        }
        Backend::Postgres => {
            let admin_url = postgres_admin_url()?;
            use sqlx::Connection;
            let mut admin = sqlx::PgConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|error| {
                    panic!(
                        "KEYGATE_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {error}"
                    )
                });
            let name = format!("keygate_test_{}", uuid_like());
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .expect("CREATE DATABASE");
            let (base, _) = admin_url
                .rsplit_once('/')
                .expect("KEYGATE_TEST_POSTGRES_URL ends in /DATABASE");
            let url = format!("{base}/{name}");
            Some((url, Fresh::Postgres { admin_url, name }))
        }
    }
}

fn uuid_like() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..16)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

pub(crate) struct TestApp {
    pub(crate) router: Router,
    pub(crate) state: AppState,
    pub(crate) clock: Clock,
    /// The bootstrap admin's token and id.
    pub(crate) admin: User,
    pub(crate) db_url: String,
    _fresh: Fresh,
}

#[derive(Clone, Debug)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) token: String,
}

/// What the edge's usage consumer presents to `POST /v1/usage/events` in these tests.
pub(crate) const INGEST_TOKEN: &str = "ingest-token-for-tests-0123456789abcdef";

pub(crate) fn settings() -> Settings {
    Settings::new("kg", "kgcp", Environment::Production, 16 * 1024)
        .expect("valid settings")
        .with_usage(Some(INGEST_TOKEN), 30)
        .with_secret_scanning(Some(&github_keys()))
        .expect("the stand-in's key list")
}

/// The key id under which [`github`] stands in for GitHub's secret-scanning key.
pub(crate) const GITHUB_KEY_ID: &str = "test-github-key";

/// A P-256 key pair standing in for GitHub's secret-scanning signing key (one per test binary).
pub(crate) fn github() -> &'static EcdsaKeyPair {
    static PAIR: OnceLock<EcdsaKeyPair> = OnceLock::new();
    PAIR.get_or_init(scanning::generate_pair)
}

/// [`github`]'s public key in GitHub's published shape.
fn github_keys() -> String {
    scanning::key_list(GITHUB_KEY_ID, github())
}

impl TestApp {
    /// A migrated, bootstrapped control plane on a database of its own; `None` when the backend
    /// is not available (PostgreSQL without `KEYGATE_TEST_POSTGRES_URL`).
    pub(crate) async fn start(backend: Backend) -> Option<TestApp> {
        Self::start_with(backend, settings()).await
    }

    /// [`TestApp::start`] with these settings.
    pub(crate) async fn start_with(backend: Backend, settings: Settings) -> Option<TestApp> {
        let (db_url, fresh) = fresh_database(backend).await?;
        let db = Db::connect(&db_url, 4).await.expect("connect and migrate");
        let (user, token) = users::bootstrap(
            &db,
            "admin@example.com",
            &settings.token_format,
            settings.environment,
            START,
        )
        .await
        .expect("bootstrap")
        .expect("a fresh database has no admin yet");
        let clock = Clock::manual(START);
        let state = AppState::new(db, settings, clock.clone());
        Some(TestApp {
            router: app(state.clone()),
            state,
            clock,
            admin: User {
                id: user.user_id,
                token: token.token.expose_secret().to_owned(),
            },
            db_url,
            _fresh: fresh,
        })
    }

    pub(crate) fn db(&self) -> &Db {
        self.state.db()
    }

    /// Sends one request; returns the status, the JSON body (Null if empty) and the headers.
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        self.raw(request.body(body).expect("a valid request")).await
    }

    pub(crate) async fn raw(&self, request: Request<Body>) -> Response {
        send_to(&self.router, request).await
    }

    pub(crate) async fn get(&self, path: &str, user: &User) -> Response {
        self.send("GET", path, Some(&user.token), None).await
    }

    pub(crate) async fn post(&self, path: &str, user: &User, body: Value) -> Response {
        self.send("POST", path, Some(&user.token), Some(body)).await
    }

    /// Catalogues these permissions (as the admin).
    pub(crate) async fn catalogue(&self, permissions: &[&str]) {
        for permission in permissions {
            let response = self
                .post(
                    "/v1/permissions",
                    &self.admin,
                    json!({ "name": permission }),
                )
                .await;
            response.expect(StatusCode::CREATED);
        }
    }

    /// A new user with this role and a token of their own.
    pub(crate) async fn user(&self, email: &str, role: &str) -> User {
        let created = self
            .post(
                "/v1/users",
                &self.admin,
                json!({ "email": email, "role": role }),
            )
            .await
            .expect(StatusCode::CREATED);
        let id = created["user_id"].as_str().expect("user_id").to_owned();
        let issued = self
            .post(
                &format!("/v1/users/{id}/tokens"),
                &self.admin,
                json!({ "name": "test" }),
            )
            .await
            .expect(StatusCode::CREATED);
        User {
            id,
            token: issued["token"].as_str().expect("token").to_owned(),
        }
    }

    /// Creates a key as `user`; returns (full key, key id, record).
    pub(crate) async fn create_key(&self, user: &User, body: Value) -> (String, String, Value) {
        let created = self
            .post("/v1/keys", user, body)
            .await
            .expect(StatusCode::CREATED);
        (
            created["key"].as_str().expect("key").to_owned(),
            created["key_id"].as_str().expect("key_id").to_owned(),
            created["record"].clone(),
        )
    }

    pub(crate) async fn verify(&self, key: &str, extra: Value) -> Value {
        let mut body = json!({ "key": key });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.post("/v1/verify", &self.admin, body)
            .await
            .expect(StatusCode::OK)
    }

    /// How many rows a table has.
    pub(crate) async fn count(&self, table: &str) -> i64 {
        let pool = sqlx::AnyPool::connect(&self.db_url).await.expect("connect");
        let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&pool)
            .await
            .expect("count");
        use sqlx::Row;
        let count = row.try_get("n").expect("n");
        pool.close().await;
        count
    }
}

#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) json: Value,
    pub(crate) text: String,
    pub(crate) headers: axum::http::HeaderMap,
}

impl Response {
    /// The body, after checking the status (the body is shown when it differs).
    #[track_caller]
    pub(crate) fn expect(self, status: StatusCode) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self.json
    }

    /// Checks an error answer: status, code, and the request id matching the header.
    #[track_caller]
    pub(crate) fn expect_error(self, status: StatusCode, code: &str) -> Value {
        let request_id = self
            .headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = self.expect(status);
        assert_eq!(body["error"]["code"], code, "error body: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert_eq!(body["error"]["request_id"].as_str(), request_id.as_deref());
        body
    }
}

/// Sends one request to `router` (this app's, or another replica's); reads the whole answer.
pub(crate) async fn send_to(router: &Router, request: Request<Body>) -> Response {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a readable body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::String(text.clone()))
    };
    Response {
        status,
        json,
        text,
        headers,
    }
}
