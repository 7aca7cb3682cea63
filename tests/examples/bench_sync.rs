//! `scripts/bench-sync`: what the snapshot sync costs and how fast it is, on this machine.
//!
//! 1. Revocation propagation on the local loop (release `keygate serve --kv-sink wrangler` +
//!    `wrangler dev`): from the revoke call returning to the edge answering 401, over N keys.
//! 2. Outbox drain rate: M keys created by a control plane without a sink, then the time from
//!    starting one with a sink (the fake Cloudflare API) to every key in KV and an empty outbox.
//! 3. Full resync: `keygate sync --full` of those M keys into an empty namespace: wall time and
//!    bulk requests. With `BENCH_BEFORE_KEYGATE` (another build of `keygate`, which knows the
//!    first `BENCH_BEFORE_MIGRATIONS` migrations), that build's full resync of a copy of the same
//!    database runs alternately with this one's, round after round: before and after in one run.
//!
//! Steps 2 and 3 run on SQLite, or on PostgreSQL with `BENCH_POSTGRES_URL` (an admin URL: the
//! benchmark creates and drops its own database there; no build before then).
//! `BENCH_SYNC_ROUNDS`: full resyncs per build (5).
//!
//! Usage: `bench_sync [revocations (50; 0 skips step 1)] [keys (100000)]`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keygate_e2e::fake_kv::FakeKv;
use keygate_e2e::keygate::{Keygate, binary, bootstrap, pushing_to_wrangler};
use keygate_e2e::{EchoOrigin, WranglerDev, poll};
use reqwest::Method;
use serde_json::json;

/// Full resyncs per build: `BENCH_SYNC_ROUNDS`, 5 unless set.
fn rounds() -> usize {
    std::env::var("BENCH_SYNC_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5)
}

/// Concurrent clients creating the keys.
const CREATORS: usize = 16;

/// A fresh PostgreSQL database for steps 2 and 3, dropped at the end of the run.
struct Postgres {
    admin_url: String,
    url: String,
}

const BENCH_DATABASE: &str = "keygate_bench_sync";

impl Postgres {
    fn create(runtime: &tokio::runtime::Runtime, admin_url: String) -> Self {
        Self::run(
            runtime,
            &admin_url,
            &format!("DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)"),
        );
        Self::run(
            runtime,
            &admin_url,
            &format!("CREATE DATABASE {BENCH_DATABASE}"),
        );
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("the URL ends in /DATABASE");
        let url = format!("{base}/{BENCH_DATABASE}");
        Self { admin_url, url }
    }

    fn run(runtime: &tokio::runtime::Runtime, admin_url: &str, sql: &str) {
        use sqlx::Connection;
        runtime.block_on(async {
            let mut admin = sqlx::PgConnection::connect(admin_url)
                .await
                .expect("PostgreSQL");
            sqlx::query(sql).execute(&mut admin).await.expect(sql);
        });
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn create(keygate: &Keygate, name: &str) -> (String, String) {
    let (status, body) = keygate.call(
        Method::POST,
        "/v1/keys",
        Some(json!({"name": name, "environment": "development"})),
    );
    assert_eq!(status, 201, "{body}");
    (
        body["key"].as_str().unwrap().to_owned(),
        body["key_id"].as_str().unwrap().to_owned(),
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let revocations: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(50);
    let keys: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");

    // 1. Revocation propagation, local loop (skipped with 0 revocations).
    let delays = if revocations > 0 {
        revocation_delays(&runtime, dir.path(), revocations)
    } else {
        Vec::new()
    };

    // 2. Outbox drain: keys made while KV is down, then KV back.
    let fake = FakeKv::start(&runtime);
    let sink = |fake: &FakeKv| {
        let mut env = fake.sink_env();
        env.push(("KEYGATE_LOG", "warn".to_owned()));
        env
    };
    let postgres = std::env::var("BENCH_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .map(|admin_url| Postgres::create(&runtime, admin_url));
    let url = match &postgres {
        Some(postgres) => postgres.url.clone(),
        None => format!("sqlite://{}", dir.path().join("bulk.db").display()),
    };
    let token = bootstrap(&url);
    let no_sink = [("KEYGATE_LOG", "warn".to_owned())];
    let keygate = Keygate::serve(&url, &token, &no_sink, dir.path());
    let creating = Instant::now();
    std::thread::scope(|scope| {
        for worker in 0..CREATORS {
            let keygate = &keygate;
            scope.spawn(move || {
                for n in (worker..keys).step_by(CREATORS) {
                    create(keygate, &format!("bulk-{n}"));
                }
            });
        }
    });
    let creation = creating.elapsed();
    drop(keygate);
    // The same database, now with a pusher: from its start to every key in KV and an empty outbox.
    let draining = Instant::now();
    let keygate = Keygate::serve(&url, &token, &sink(&fake), dir.path());
    // Watched at KV, not through `/v1/sync/status`: that counts the whole outbox on each call, and
    // polled every 50 ms it would compete with the pusher it measures.
    poll(Duration::from_secs(1800), "every key in KV", || {
        (fake.state().entries.len() == keys).then_some(())
    });
    poll(Duration::from_secs(60), "outbox drained", || {
        (keygate.sync_status()["outbox_depth"] == 0).then_some(())
    });
    let drain = draining.elapsed();
    let drain_puts = fake.count("PUT");
    drop(keygate);

    // 3. Full resync into an empty namespace, by this build and, alternately, the one before.
    let before = std::env::var_os("BENCH_BEFORE_KEYGATE")
        .filter(|_| postgres.is_none())
        .map(|binary| {
            let known: i64 = std::env::var("BENCH_BEFORE_MIGRATIONS")
                .ok()
                .and_then(|n| n.parse().ok())
                .expect("BENCH_BEFORE_MIGRATIONS: how many migrations that build knows");
            let copy = dir.path().join("before.db");
            copy_for_a_build_before(&runtime, &dir.path().join("bulk.db"), &copy, known);
            (
                PathBuf::from(binary),
                format!("sqlite://{}", copy.display()),
            )
        });
    let mut resyncs = Vec::new();
    let mut resyncs_before = Vec::new();
    let mut last = None;
    let rounds = rounds();
    for round in 0..rounds {
        // Each build goes first every other round, so a drift of the machine favours neither.
        let now_first = round % 2 == 1 || before.is_none();
        if now_first {
            let resync = full_sync(&runtime, &binary(), &url, keys, &sink);
            resyncs.push(resync.elapsed);
            last = Some(resync);
        }
        if let Some((binary, url)) = &before {
            resyncs_before.push(full_sync(&runtime, binary, url, keys, &sink).elapsed);
        }
        if !now_first {
            let resync = full_sync(&runtime, &binary(), &url, keys, &sink);
            resyncs.push(resync.elapsed);
            last = Some(resync);
        }
    }
    let pairs: Vec<String> = resyncs_before
        .iter()
        .zip(&resyncs)
        .map(|(before, now)| format!("{:.2} s / {:.2} s", before.as_secs_f64(), now.as_secs_f64()))
        .collect();
    let Resync {
        puts,
        lists,
        bytes,
        stdout,
        ..
    } = last.expect("at least one round");
    resyncs.sort();
    resyncs_before.sort();
    let resync = resyncs[rounds / 2];

    let database = if postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("| measurement ({database}) | result |");
    println!("|---|---|");
    if let Some(max) = delays.last() {
        println!(
            "| revocation -> edge 401, local loop ({revocations} revocations) | p50 {} ms, p99 {} ms, max {} ms |",
            percentile(&delays, 0.5).as_millis(),
            percentile(&delays, 0.99).as_millis(),
            max.as_millis()
        );
    }
    println!(
        "| {keys} keys created through the API ({CREATORS} clients, no pusher) | {:.1} s ({:.0}/s) |",
        creation.as_secs_f64(),
        keys as f64 / creation.as_secs_f64()
    );
    println!(
        "| outbox drain: `keygate serve` start to empty outbox, {keys} records | {:.2} s, {:.0} records/s, {drain_puts} bulk writes |",
        drain.as_secs_f64(),
        keys as f64 / drain.as_secs_f64()
    );
    println!(
        "| `keygate sync --full`, {keys} keys into an empty namespace (median of {rounds}) | {:.2} s wall, {puts} bulk writes + {lists} list, {:.1} MB sent |",
        resync.as_secs_f64(),
        bytes as f64 / 1e6
    );
    if let Some(before) = resyncs_before.get(rounds / 2) {
        println!(
            "| the same by the build before (`BENCH_BEFORE_KEYGATE`), alternating rounds | {:.2} s wall (median); this build / before: {:.2} (rounds, before / now: {}) |",
            before.as_secs_f64(),
            resync.as_secs_f64() / before.as_secs_f64(),
            pairs.join(", ")
        );
    }
    eprintln!("keygate sync said: {}", stdout.trim());
    if let Some(postgres) = postgres {
        let drop = format!("DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)");
        Postgres::run(&runtime, &postgres.admin_url, &drop);
    }
}

struct Resync {
    elapsed: Duration,
    puts: usize,
    lists: usize,
    bytes: usize,
    stdout: String,
}

/// `binary sync --full` of the database at `url` into a new, empty fake namespace.
fn full_sync(
    runtime: &tokio::runtime::Runtime,
    binary: &Path,
    url: &str,
    keys: usize,
    sink: &dyn Fn(&FakeKv) -> Vec<(&'static str, String)>,
) -> Resync {
    let empty = FakeKv::start(runtime);
    let started = Instant::now();
    let output = std::process::Command::new(binary)
        .args(["sync", "--full"])
        .env("DATABASE_URL", url)
        .envs(sink(&empty).iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("keygate sync runs");
    let elapsed = started.elapsed();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(empty.state().entries.len(), keys);
    let bytes = empty
        .state()
        .requests
        .iter()
        .map(|request| request.body.len())
        .sum();
    Resync {
        elapsed,
        puts: empty.count("PUT"),
        lists: empty.count("GET"),
        bytes,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    }
}

/// A consistent copy (`VACUUM INTO`) of the SQLite database at `from`, readable by a build that
/// knows only its first `known` migrations: the later ones added columns that build never reads,
/// so only their bookkeeping rows are removed from the copy.
fn copy_for_a_build_before(runtime: &tokio::runtime::Runtime, from: &Path, to: &Path, known: i64) {
    runtime.block_on(async {
        use sqlx::Connection;
        let open = |path: &Path| {
            let url = format!("sqlite://{}", path.display());
            async move { sqlx::SqliteConnection::connect(&url).await.expect("open") }
        };
        let mut source = open(from).await;
        sqlx::query("VACUUM INTO $1")
            .bind(to.display().to_string())
            .execute(&mut source)
            .await
            .expect("copy the database");
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version > $1")
            .bind(known)
            .execute(&mut open(to).await)
            .await
            .expect("forget the later migrations");
    });
}

/// Revocation -> edge 401 on the local loop, for each of `revocations` keys, sorted.
fn revocation_delays(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    revocations: usize,
) -> Vec<Duration> {
    let origin = EchoOrigin::start(runtime);
    let edge = WranglerDev::start(&[
        ("KEYGATE_ORIGIN", &origin.url()),
        (
            "KEYGATE_ROUTES",
            r#"[{"method": "*", "path": "/*", "any_key": true}]"#,
        ),
    ]);
    let url = format!("sqlite://{}", dir.join("loop.db").display());
    let token = bootstrap(&url);
    let keygate = Keygate::serve(&url, &token, &pushing_to_wrangler(&edge), dir);
    let http = reqwest::blocking::Client::new();
    let edge_status = |key: &str| {
        http.get(edge.url("/anything"))
            .bearer_auth(key)
            .send()
            .map(|response| response.status().as_u16())
            .unwrap_or(0)
    };
    let created: Vec<(String, String)> = (0..revocations)
        .map(|n| create(&keygate, &format!("revoke-{n}")))
        .collect();
    for (key, _) in &created {
        poll(Duration::from_secs(60), "key live at the edge", || {
            (edge_status(key) == 200).then_some(())
        });
    }
    let mut delays = Vec::new();
    for (key, key_id) in &created {
        let (status, body) = keygate.call(
            Method::POST,
            &format!("/v1/keys/{key_id}/revoke"),
            Some(json!({"reason": "benchmark"})),
        );
        assert_eq!(status, 200, "{body}");
        let returned = Instant::now();
        poll(Duration::from_secs(60), "revocation at the edge", || {
            (edge_status(key) == 401).then_some(())
        });
        delays.push(returned.elapsed());
    }
    delays.sort();
    drop(keygate);
    drop(edge);
    delays
}
