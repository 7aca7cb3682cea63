//! `scripts/bench-sync`: what the snapshot sync costs and how fast it is, on this machine.
//!
//! 1. Revocation propagation on the local loop (release `keygate serve --kv-sink wrangler` +
//!    `wrangler dev`): from the revoke call returning to the edge answering 401, over N keys.
//! 2. Outbox drain rate: M keys created by a control plane without a sink, then the time from
//!    starting one with a sink (the fake Cloudflare API) to an empty outbox.
//! 3. Full resync: `keygate sync --full` of those M keys into an empty namespace: wall time and
//!    bulk requests.
//!
//! Usage: `bench_sync [revocations (50)] [keys (100000)]`

use std::time::{Duration, Instant};

use keygate_e2e::fake_kv::FakeKv;
use keygate_e2e::keygate::{Keygate, binary, bootstrap, pushing_to_wrangler};
use keygate_e2e::{EchoOrigin, WranglerDev, poll};
use reqwest::Method;
use serde_json::json;

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

    // 1. Revocation propagation, local loop.
    let origin = EchoOrigin::start(&runtime);
    let edge = WranglerDev::start(&[
        ("KEYGATE_ORIGIN", &origin.url()),
        (
            "KEYGATE_ROUTES",
            r#"[{"method": "*", "path": "/*", "any_key": true}]"#,
        ),
    ]);
    let url = format!("sqlite://{}", dir.path().join("loop.db").display());
    let token = bootstrap(&url);
    let keygate = Keygate::serve(&url, &token, &pushing_to_wrangler(&edge), dir.path());
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

    // 2. Outbox drain: keys made while KV is down, then KV back.
    let fake = FakeKv::start(&runtime);
    let sink = |fake: &FakeKv| {
        let mut env = fake.sink_env();
        env.push(("KEYGATE_LOG", "warn".to_owned()));
        env
    };
    let url = format!("sqlite://{}", dir.path().join("bulk.db").display());
    let token = bootstrap(&url);
    let no_sink = [("KEYGATE_LOG", "warn".to_owned())];
    let keygate = Keygate::serve(&url, &token, &no_sink, dir.path());
    let creating = Instant::now();
    std::thread::scope(|scope| {
        for worker in 0..8 {
            let keygate = &keygate;
            scope.spawn(move || {
                for n in (worker..keys).step_by(8) {
                    create(keygate, &format!("bulk-{n}"));
                }
            });
        }
    });
    let creation = creating.elapsed();
    drop(keygate);
    // The same database, now with a pusher: from its start to an empty outbox.
    let draining = Instant::now();
    let keygate = Keygate::serve(&url, &token, &sink(&fake), dir.path());
    poll(Duration::from_secs(1800), "outbox drained", || {
        (keygate.sync_status()["outbox_depth"] == 0).then_some(())
    });
    let drain = draining.elapsed();
    let drain_puts = fake.count("PUT");
    assert_eq!(fake.state().entries.len(), keys);
    drop(keygate);

    // 3. Full resync into an empty namespace.
    let empty = FakeKv::start(&runtime);
    let started = Instant::now();
    let output = std::process::Command::new(binary())
        .args(["sync", "--full"])
        .env("DATABASE_URL", &url)
        .envs(sink(&empty).iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("keygate sync runs");
    let resync = started.elapsed();
    assert!(output.status.success(), "{output:?}");
    let puts = empty.count("PUT");
    let lists = empty.count("GET");
    let bytes: usize = empty
        .state()
        .requests
        .iter()
        .map(|request| request.body.len())
        .sum();
    assert_eq!(empty.state().entries.len(), keys);

    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| revocation -> edge 401, local loop ({revocations} revocations) | p50 {} ms, p99 {} ms, max {} ms |",
        percentile(&delays, 0.5).as_millis(),
        percentile(&delays, 0.99).as_millis(),
        delays.last().unwrap().as_millis()
    );
    println!(
        "| {keys} keys created through the API (8 clients, no pusher) | {:.1} s ({:.0}/s) |",
        creation.as_secs_f64(),
        keys as f64 / creation.as_secs_f64()
    );
    println!(
        "| outbox drain: `keygate serve` start to empty outbox, {keys} records | {:.2} s, {:.0} records/s, {drain_puts} bulk writes |",
        drain.as_secs_f64(),
        keys as f64 / drain.as_secs_f64()
    );
    println!(
        "| `keygate sync --full`, {keys} keys into an empty namespace | {:.2} s wall, {puts} bulk writes + {lists} list, {:.1} MB sent |",
        resync.as_secs_f64(),
        bytes as f64 / 1e6
    );
    eprintln!(
        "keygate sync said: {}",
        String::from_utf8_lossy(&output.stdout).trim()
    );
}
