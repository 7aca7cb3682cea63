//! `scripts/bench-feed`: how fast a change reaches the edge through the change feed, under
//! `wrangler dev` with KV's path slowed (every KV write of the pusher waits 30 s first, as KV's
//! propagation does in production) and an isolate cache of a minute: only the feed can bring a
//! change sooner. For each of N keys, sequentially: create it and time until the edge answers 200;
//! revoke it and time until the edge answers 401. The edge is asked every 10 ms, which also keeps
//! its isolate busy, as a production isolate is. Prints p50/p99/max of both.
//!
//! Usage: `bench_feed [revocations (50)]`

use std::time::{Duration, Instant};

use keygate_e2e::keygate::{Keygate, bootstrap, pushing_to_wrangler, slow_wrangler};
use keygate_e2e::{EchoOrigin, WranglerDev};
use serde_json::{Value, json};

const KV_DELAY: Duration = Duration::from_secs(30);
const ASK_EVERY: Duration = Duration::from_millis(10);
const LIMIT: Duration = Duration::from_secs(20);

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map_or(50, |n| n.parse().expect("a number of revocations"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let origin = EchoOrigin::start(&runtime);
    let edge = WranglerDev::start(&[
        ("KEYGATE_ORIGIN", &origin.url()),
        (
            "KEYGATE_ROUTES",
            r#"[{"method": "*", "path": "/*", "any_key": true}]"#,
        ),
        ("KEYGATE_CACHE_TTL_MS", "60000"),
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
    let token = bootstrap(&url);
    let mut env = pushing_to_wrangler(&edge);
    env.retain(|(name, _)| *name != "KEYGATE_WRANGLER");
    env.push(("KEYGATE_WRANGLER", slow_wrangler(dir.path(), KV_DELAY)));
    env.push(("KEYGATE_RECONCILE_INTERVAL_SECONDS", "0".to_owned()));
    let keygate = Keygate::serve(&url, &token, &env, dir.path());
    let http = reqwest::blocking::Client::new();
    let answer = |key: &str| -> u16 {
        http.get(edge.url("/anything"))
            .bearer_auth(key)
            .send()
            .map_or(0, |response| response.status().as_u16())
    };
    let until = |key: &str, status: u16, what: &str| -> Duration {
        let started = Instant::now();
        while answer(key) != status {
            assert!(
                started.elapsed() < LIMIT,
                "{what}: no {status} within {LIMIT:?}\n{}",
                edge.log()
            );
            std::thread::sleep(ASK_EVERY);
        }
        started.elapsed()
    };
    let (mut created, mut revoked) = (Vec::new(), Vec::new());
    for n in 0..count {
        let (code, body) = keygate.call(
            reqwest::Method::POST,
            "/v1/keys",
            Some(json!({"name": format!("bench {n}"), "environment": "development"})),
        );
        assert_eq!(code, 201, "{body}");
        let key = body["key"].as_str().expect("key").to_owned();
        created.push(until(&key, 200, "create"));
        let key_id = body["key_id"].as_str().expect("key id");
        let (code, body): (u16, Value) = keygate.call(
            reqwest::Method::POST,
            &format!("/v1/keys/{key_id}/revoke"),
            Some(json!({"reason": "bench"})),
        );
        assert_eq!(code, 200, "{body}");
        revoked.push(until(&key, 401, "revoke"));
        eprintln!(
            "{n}: create -> 200 {} ms, revoke -> 401 {} ms",
            created[n].as_millis(),
            revoked[n].as_millis()
        );
    }
    let status = keygate.sync_status();
    println!(
        "\n{count} keys, KV writes slowed by {} s (KV still held {} of the changes at the end), isolate cache 60 s",
        KV_DELAY.as_secs(),
        status["outbox_depth"]
    );
    for (what, times) in [
        ("create -> 200", &mut created),
        ("revoke -> 401", &mut revoked),
    ] {
        times.sort();
        let at =
            |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        println!(
            "{what}: p50 {} ms, p99 {} ms, max {} ms",
            at(0.50).as_millis(),
            at(0.99).as_millis(),
            times[times.len() - 1].as_millis()
        );
    }
}
