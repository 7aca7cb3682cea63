//! Load benchmark of the real `keygate serve`, on SQLite and PostgreSQL side by side in one run:
//!
//! - key creation: throughput and latency percentiles with 32 concurrent clients;
//! - `GET /v1/keys`: the first page and a page 50 keys from the end, median and p99, with
//!   100,000 keys stored (`BENCH_KEYS=1000000` for a million), and key creation again with them;
//! - the dashboard's API Keys page with 50 rows: server time (p50, p99) and weight;
//! - GitHub's secret-scanning alerts: signed batches of 1,000, alerts per second;
//! - `POST /v1/verify` against `GET /healthz` (a trivial route through the same middleware), at
//!   32 concurrent clients: throughput of each and their ratio, with the read cache as served and
//!   on a second replica with it off.
//!
//! Run it with `scripts/bench-control-plane` (it builds the release binary and passes its path).
//! Usage: bench_api KEYGATE_BINARY [POSTGRES_ADMIN_URL]

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use keygate_control_plane::scanning;
use keygate_shared::{Environment, KeyFormat, KeyId};
use ring::signature::EcdsaKeyPair;
use serde_json::{Value, json};
use sqlx::Connection;

const CLIENTS: usize = 32;
/// Keys seeded before the listings are timed: `BENCH_KEYS` (a multiple of 500), 100,000 unless set.
fn stored_keys() -> usize {
    std::env::var("BENCH_KEYS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n >= 1_000)
        .map_or(100_000, |n| n / 500 * 500)
}
const CREATE_SECONDS: u64 = 10;
const VERIFY_SECONDS: u64 = 8;

struct Server {
    child: Child,
    url: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `keygate serve` on a fresh database, with the first admin's token.
fn start(binary: &str, database_url: &str) -> Server {
    let token_file =
        std::env::temp_dir().join(format!("keygate-bench-{}.token", std::process::id()));
    let _ = std::fs::remove_file(&token_file);
    let token_setting = token_file.display().to_string();
    let mut server = launch(
        binary,
        database_url,
        &[("KEYGATE_BOOTSTRAP_TOKEN_FILE", &token_setting)],
    );
    server.token = std::fs::read_to_string(&token_file)
        .expect("the bootstrap token file")
        .trim()
        .to_owned();
    let _ = std::fs::remove_file(&token_file);
    server
}

/// A `keygate serve` on `database_url` with these extra settings, listening (no token yet).
fn launch(binary: &str, database_url: &str, settings: &[(&str, &str)]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let github_keys = std::env::temp_dir().join(format!("keygate-bench-{port}.github.json"));
    std::fs::write(&github_keys, github_key_list()).expect("the key list");
    let child = Command::new(binary)
        .arg("serve")
        .env("KEYGATE_SECRET_SCANNING_KEYS_FILE", &github_keys)
        .env("DATABASE_URL", database_url)
        .env("KEYGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("KEYGATE_LOG", "warn")
        .env("KEYGATE_DB_MAX_CONNECTIONS", "16")
        .envs(settings.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("keygate serve starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "keygate serve did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        token: String::new(),
    }
}

#[derive(Debug, Default)]
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
    failures: usize,
}

impl Run {
    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort();
        let index = ((self.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        self.latencies.get(index).copied().unwrap_or_default()
    }
}

/// `CLIENTS` loops sending `request` for `seconds`.
async fn load<F, Fut>(seconds: u64, request: F) -> Run
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let request = Arc::clone(&request);
            tokio::spawn(async move {
                let mut run = Run::default();
                while Instant::now() < until {
                    let sent = Instant::now();
                    if request().await {
                        run.latencies.push(sent.elapsed());
                    } else {
                        run.failures += 1;
                    }
                }
                run
            })
        })
        .collect();
    let mut total = Run::default();
    for task in tasks {
        let run = task.await.expect("a load task");
        total.latencies.extend(run.latencies);
        total.failures += run.failures;
    }
    total.elapsed = started.elapsed();
    total
}

/// Copies one real key row [`stored_keys`] times with new ids and older creation times, in batches.
async fn seed(database_url: &str, template: &str) -> Duration {
    let started = Instant::now();
    let mut connection = sqlx::AnyConnection::connect(database_url)
        .await
        .expect("connect");
    let columns = "permissions, permission_sets, grants, customer_id, expires_at, \
        rate_limit_requests, rate_limit_window_seconds, ip_allowlist, metadata, owner_id, \
        created_by, revoked_at, revoked_reason, last_used_at, version";
    let mut rng = rand_core::UnwrapErr(rand_core::OsRng);
    for batch in 0..stored_keys() / 500 {
        let mut tx = connection.begin().await.expect("begin");
        let rows: Vec<String> = (0..500)
            .map(|row| format!("(${}, ${}, ${})", row * 3 + 1, row * 3 + 2, row * 3 + 3))
            .collect();
        let sql = format!(
            "INSERT INTO api_key (api_key_id, name, created_at, updated_at, description, environment, \
             status, digest, previous_digest, previous_expires_at, {columns}) \
             SELECT v.column1, v.column2, v.column3, v.column3, t.description, t.environment, \
             t.status, t.digest, t.previous_digest, t.previous_expires_at, {columns} \
             FROM (VALUES {}) AS v CROSS JOIN api_key t WHERE t.api_key_id = ${}",
            rows.join(", "),
            500 * 3 + 1
        );
        let mut query = sqlx::query(&sql);
        for row in 0..500 {
            let index = batch * 500 + row;
            query = query
                .bind(KeyId::generate(&mut rng).to_string())
                .bind(format!("seeded {index}"))
                .bind(1_700_000_000_i64 - index as i64);
        }
        query
            .bind(template)
            .execute(&mut *tx)
            .await
            .expect("seed a batch");
        tx.commit().await.expect("commit");
    }
    started.elapsed()
}

async fn bench(name: &str, binary: &str, database_url: &str) -> Vec<(String, String)> {
    let server = start(binary, database_url);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("a client");
    let auth = format!("Bearer {}", server.token);
    let permission = client
        .post(format!("{}/v1/permissions", server.url))
        .header("authorization", &auth)
        .json(&json!({ "name": "customer:read" }))
        .send()
        .await
        .expect("catalogue");
    assert!(permission.status().is_success());

    let create = {
        let (client, url, auth) = (
            client.clone(),
            format!("{}/v1/keys", server.url),
            auth.clone(),
        );
        move || {
            let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
            async move {
                let body = json!({ "name": "bench", "permissions": ["customer:read"], "expires_in_days": 30 });
                client
                    .post(&url)
                    .header("authorization", &auth)
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|response| response.status().as_u16() == 201)
            }
        }
    };
    let mut created = load(CREATE_SECONDS, create.clone()).await;
    eprintln!(
        "{name}: created {} keys ({} failed)",
        created.latencies.len(),
        created.failures
    );

    let first: Value = client
        .get(format!("{}/v1/keys?limit=1", server.url))
        .header("authorization", &auth)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let template = first["items"][0]["key_id"]
        .as_str()
        .expect("a key")
        .to_owned();
    let stored = stored_keys();
    let seeded = seed(database_url, &template).await;
    eprintln!("{name}: seeded {stored} keys in {seeded:.1?}");

    // A cursor 50 keys from the end: the listing's own cursor format (created_at:key_id, base64url).
    let mut connection = sqlx::AnyConnection::connect(database_url)
        .await
        .expect("connect");
    let deep: (i64, String) = sqlx::query_as(&format!(
        "SELECT created_at, api_key_id FROM api_key ORDER BY created_at DESC, api_key_id DESC \
         LIMIT 1 OFFSET {}",
        stored - 50
    ))
    .fetch_one(&mut connection)
    .await
    .expect("a deep row");
    let cursor =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", deep.0, deep.1));
    let page = |path: String| {
        let (client, auth) = (client.clone(), auth.clone());
        async move {
            let (mut run, body) = sequential(&client, &path, ("authorization", &auth)).await;
            let body: Value = serde_json::from_str(&body).expect("json");
            assert_eq!(body["items"].as_array().map(Vec::len), Some(50));
            (run.percentile(0.50), run.percentile(0.99))
        }
    };
    let first_page = page(format!("{}/v1/keys?limit=50", server.url)).await;
    let deep_page = page(format!("{}/v1/keys?limit=50&cursor={cursor}", server.url)).await;
    let mut created_later = load(CREATE_SECONDS, create).await;
    let (mut rendered, weight) = dashboard(&client, &server).await;
    let scanned = scanning(&client, &server).await;

    let key = create_key(
        &client,
        &server,
        json!({ "name": "verified", "permissions": ["customer:read"] }),
    )
    .await;
    let verify_body = json!({ "key": key["key"], "permissions": ["customer:read"] });
    let verify = |url: &str| {
        let (client, url, auth, body) = (
            client.clone(),
            format!("{url}/v1/verify"),
            auth.clone(),
            verify_body.clone(),
        );
        move || {
            let (client, url, auth, body) =
                (client.clone(), url.clone(), auth.clone(), body.clone());
            async move {
                match client
                    .post(&url)
                    .header("authorization", &auth)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(response) => response
                        .json::<Value>()
                        .await
                        .is_ok_and(|v| v["valid"] == true),
                    Err(_) => false,
                }
            }
        }
    };
    let health = {
        let (client, url) = (client.clone(), format!("{}/healthz", server.url));
        move || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                match client.get(&url).send().await {
                    Ok(response) => response.bytes().await.is_ok(),
                    Err(_) => false,
                }
            }
        }
    };
    // A second replica on the same database that reads it on every verification.
    let uncached = launch(binary, database_url, &[("KEYGATE_VERIFY_CACHE_MS", "0")]);
    let mut trivial = load(VERIFY_SECONDS, health).await;
    let mut verified = load(VERIFY_SECONDS, verify(&server.url)).await;
    let mut read_through = load(VERIFY_SECONDS, verify(&uncached.url)).await;
    drop(uncached);
    assert_eq!(verified.failures, 0, "every verification succeeds");
    assert_eq!(read_through.failures, 0, "every verification succeeds");

    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    vec![
        (
            "key creation, 32 clients".into(),
            format!("{:.0}/s", created.throughput()),
        ),
        ("  creation p50".into(), ms(created.percentile(0.50))),
        ("  creation p99".into(), ms(created.percentile(0.99))),
        (
            format!("GET /v1/keys first page ({stored} keys), median; p99"),
            format!("{}; {}", ms(first_page.0), ms(first_page.1)),
        ),
        (
            format!("GET /v1/keys {} deep, median; p99", stored - 50),
            format!("{}; {}", ms(deep_page.0), ms(deep_page.1)),
        ),
        (
            format!("key creation with {stored} keys stored, 32 clients"),
            format!(
                "{:.0}/s (p50 {}, p99 {})",
                created_later.throughput(),
                ms(created_later.percentile(0.50)),
                ms(created_later.percentile(0.99))
            ),
        ),
        (
            format!("dashboard GET /ui/keys, 50 rows ({stored} keys), p50"),
            ms(rendered.percentile(0.50)),
        ),
        ("  dashboard p99".into(), ms(rendered.percentile(0.99))),
        (
            "  page weight: HTML; with CSS + JS".into(),
            format!("{} B; {} B", weight.0, weight.1),
        ),
        (
            format!("secret-scanning alerts, batches of {ALERTS} ({LIVE_PER_BATCH} live keys)"),
            format!("{scanned:.0} alerts/s"),
        ),
        (
            "GET /healthz, 32 clients".into(),
            format!(
                "{:.0}/s (p99 {})",
                trivial.throughput(),
                ms(trivial.percentile(0.99))
            ),
        ),
        (
            "POST /v1/verify, 32 clients".into(),
            format!(
                "{:.0}/s (p99 {})",
                verified.throughput(),
                ms(verified.percentile(0.99))
            ),
        ),
        (
            "verify / healthz throughput".into(),
            format!("{:.2}", verified.throughput() / trivial.throughput()),
        ),
        (
            "POST /v1/verify, cache off (a replica with KEYGATE_VERIFY_CACHE_MS=0)".into(),
            format!(
                "{:.0}/s (p99 {})",
                read_through.throughput(),
                ms(read_through.percentile(0.99))
            ),
        ),
        (
            "  cache off: verify / healthz".into(),
            format!("{:.2}", read_through.throughput() / trivial.throughput()),
        ),
    ]
}

/// Alerts in a secret-scanning batch, and how many of them are live keys (revoked by it); the
/// rest are well-formed keys of this deployment that were never issued (each one looked up).
const ALERTS: usize = 1_000;
const LIVE_PER_BATCH: usize = 20;
const BATCHES: usize = 5;
const GITHUB_KEY_ID: &str = "bench-github-key";

/// A P-256 key pair standing in for GitHub's secret-scanning key.
fn github() -> &'static EcdsaKeyPair {
    static PAIR: OnceLock<EcdsaKeyPair> = OnceLock::new();
    PAIR.get_or_init(scanning::generate_pair)
}

fn github_key_list() -> String {
    scanning::key_list(GITHUB_KEY_ID, github())
}

/// Signed batches of secret-scanning alerts, one after another: alerts handled per second
/// (signature check, parse, lookups and revocations), over [`BATCHES`] batches.
async fn scanning(client: &reqwest::Client, server: &Server) -> f64 {
    let format = KeyFormat::new("kg").expect("the default prefix");
    let mut rng = rand_core::UnwrapErr(rand_core::OsRng);
    let mut busy = Duration::ZERO;
    for _ in 0..BATCHES {
        let mut tokens = Vec::with_capacity(ALERTS);
        for n in 0..LIVE_PER_BATCH {
            let created = create_key(client, server, json!({ "name": format!("leaky {n}") })).await;
            tokens.push(created["key"].as_str().expect("a key").to_owned());
        }
        while tokens.len() < ALERTS {
            let key = format.generate(Environment::Production, &mut rng);
            tokens.push(key.expose_secret().to_owned());
        }
        let alerts: Vec<Value> = tokens
            .iter()
            .map(|token| json!({"token": token, "type": "keygate_api_key", "url": "https://github.com/o/r", "source": "content"}))
            .collect();
        let body = serde_json::to_vec(&alerts).expect("json");
        let signature = scanning::sign(github(), &body);
        let started = Instant::now();
        let verdicts: Value = client
            .post(format!("{}/v1/secret-scanning/github", server.url))
            .header("content-type", "application/json")
            .header("Github-Public-Key-Identifier", GITHUB_KEY_ID)
            .header("Github-Public-Key-Signature", signature)
            .body(body)
            .send()
            .await
            .expect("alerts")
            .json()
            .await
            .expect("json");
        busy += started.elapsed();
        let positives = verdicts
            .as_array()
            .expect("verdicts")
            .iter()
            .filter(|verdict| verdict["label"] == "true_positive")
            .count();
        assert_eq!(positives, LIVE_PER_BATCH);
    }
    (BATCHES * ALERTS) as f64 / busy.as_secs_f64()
}

/// The API Keys page with 50 rows, signed in as the admin: its server time (200 sequential
/// loads, each timed to the last byte) and its weight: (the HTML, the HTML with the script and
/// style sheet it links), uncompressed.
async fn dashboard(client: &reqwest::Client, server: &Server) -> (Run, (usize, usize)) {
    // The sign-in answers with a redirect that carries the cookie: not followed.
    let signed_in = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
        .post(format!("{}/ui/sign-in", server.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("token", &server.token)]).expect("a form"))
        .send()
        .await
        .expect("sign in");
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let url = format!("{}/ui/keys", server.url);
    let (run, html) = sequential(client, &url, ("cookie", &cookie)).await;
    assert_eq!(html.matches("<tr>").count(), 51, "a header row and 50 keys");
    let mut files = vec![html.into_bytes()];
    for asset in html_assets(std::str::from_utf8(&files[0]).expect("utf-8")) {
        let body = client
            .get(format!("{}{asset}", server.url))
            .send()
            .await
            .expect("an asset")
            .bytes()
            .await
            .expect("its body");
        files.push(body.to_vec());
    }
    let html = files[0].len();
    (run, (html, files.iter().map(Vec::len).sum()))
}

/// `POST /v1/keys` with `body`, as the admin: the created key's answer.
async fn create_key(client: &reqwest::Client, server: &Server, body: Value) -> Value {
    client
        .post(format!("{}/v1/keys", server.url))
        .header("authorization", format!("Bearer {}", server.token))
        .json(&body)
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json")
}

/// `url` loaded 200 times one after another with `header`, each timed to its last byte: the
/// times, and the last body.
async fn sequential(client: &reqwest::Client, url: &str, header: (&str, &str)) -> (Run, String) {
    let mut run = Run::default();
    let started = Instant::now();
    let mut body = String::new();
    for _ in 0..200 {
        let sent = Instant::now();
        let response = client
            .get(url)
            .header(header.0, header.1)
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), 200);
        body = response.text().await.expect("a body");
        run.latencies.push(sent.elapsed());
    }
    run.elapsed = started.elapsed();
    (run, body)
}

/// The `/assets/...` URLs a page links (its script and style sheet; the icon is left out).
fn html_assets(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|part| {
            part.starts_with("/assets/") && (part.ends_with(".js") || part.ends_with(".css"))
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .expect("usage: bench_api KEYGATE_BINARY [POSTGRES_ADMIN_URL]");
    let postgres = args.next();
    sqlx::any::install_default_drivers();

    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mut columns = vec![("sqlite", bench("sqlite", &binary, &sqlite_url).await)];

    if let Some(admin_url) = postgres {
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("PostgreSQL");
        sqlx::query("DROP DATABASE IF EXISTS keygate_bench WITH (FORCE)")
            .execute(&mut admin)
            .await
            .expect("drop");
        sqlx::query("CREATE DATABASE keygate_bench")
            .execute(&mut admin)
            .await
            .expect("create");
        let (base, _) = admin_url.rsplit_once('/').expect("URL ends in /DATABASE");
        let url = format!("{base}/keygate_bench");
        columns.push(("postgres", bench("postgres", &binary, &url).await));
        sqlx::query("DROP DATABASE IF EXISTS keygate_bench WITH (FORCE)")
            .execute(&mut admin)
            .await
            .expect("drop");
    }

    println!(
        "\n| measure | {} |",
        columns
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(columns.len()));
    for row in 0..columns[0].1.len() {
        let cells: Vec<&str> = columns
            .iter()
            .map(|(_, rows)| rows[row].1.as_str())
            .collect();
        println!("| {} | {} |", columns[0].1[row].0, cells.join(" | "));
    }
}
