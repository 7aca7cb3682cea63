//! `scripts/bench-ingest`: how fast the control plane (release `keygate serve`) takes usage events
//! from the edge, on SQLite and on PostgreSQL (`KEYGATE_TEST_POSTGRES_URL`) in one run: batches
//! of 1,000 events over 100 keys, 4 concurrent senders, as the edge's queue consumer sends them.
//!
//! Usage: `bench_ingest [events (100000)]`

use std::time::Instant;

use keygate_e2e::keygate::{Keygate, bootstrap};
use serde_json::{Value, json};

const TOKEN: &str = "bench-ingest-token-0123456789abcdef0123";
const BATCH: usize = 1000;
const SENDERS: usize = 4;

fn run(url: &str, events: usize, dir: &std::path::Path) -> (f64, usize) {
    let token = bootstrap(url);
    let keygate = Keygate::serve(
        url,
        &token,
        &[
            ("KEYGATE_INGEST_TOKEN", TOKEN.to_owned()),
            ("KEYGATE_LOG", "warn".to_owned()),
        ],
        dir,
    );
    let key_ids: Vec<String> = (0..100)
        .map(|n| {
            let (status, body) = keygate.call(
                reqwest::Method::POST,
                "/v1/keys",
                Some(json!({"name": format!("bench-{n}")})),
            );
            assert_eq!(status, 201, "{body}");
            body["key_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let batches: Vec<Value> = (0..events.div_ceil(BATCH))
        .map(|batch| {
            let events: Vec<Value> = (0..BATCH)
                .map(|n| {
                    let i = batch * BATCH + n;
                    json!({
                        "event_id": format!("evt-{i}"), "key_id": key_ids[i % key_ids.len()],
                        "occurred_at_ms": now_ms - (i as i64 % 86_400) * 1000, "method": "GET",
                        "route": "/v1/customers/cus_1/profile",
                        "outcome": if i.is_multiple_of(10) { "rate_limited" } else { "ok" },
                        "status": if i.is_multiple_of(10) { 429 } else { 200 }, "colo": "DFW", "latency_ms": 3,
                    })
                })
                .collect();
            json!({ "events": events })
        })
        .collect();
    let http = reqwest::blocking::Client::new();
    let send = |body: &Value| -> Value {
        let response = http
            .post(keygate.url("/v1/usage/events"))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .expect("the control plane answers");
        assert_eq!(response.status(), 200);
        response.json().expect("json")
    };
    let started = Instant::now();
    std::thread::scope(|scope| {
        for sender in 0..SENDERS {
            let (batches, send) = (&batches, &send);
            scope.spawn(move || {
                for body in batches.iter().skip(sender).step_by(SENDERS) {
                    assert_eq!(send(body)["accepted"], BATCH);
                }
            });
        }
    });
    let rate = (batches.len() * BATCH) as f64 / started.elapsed().as_secs_f64();
    // A redelivered batch changes nothing.
    let replay = send(&batches[0]);
    assert_eq!(replay["duplicates"], BATCH, "{replay}");
    (rate, batches.len() * BATCH)
}

fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rows = vec![(
        "SQLite",
        run(
            &format!("sqlite://{}", dir.path().join("ingest.db").display()),
            events,
            dir.path(),
        ),
    )];
    if let Ok(admin_url) = std::env::var("KEYGATE_TEST_POSTGRES_URL") {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let name = "keygate_bench_ingest";
        let admin = |sql: String| {
            runtime.block_on(async {
                use sqlx::Connection as _;
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .expect("PostgreSQL");
                sqlx::query(&sql).execute(&mut admin).await.map(drop)
            })
        };
        let _ = admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        admin(format!("CREATE DATABASE {name}")).expect("CREATE DATABASE");
        let base = admin_url.rsplit_once('/').expect("URL ends in /DATABASE").0;
        rows.push((
            "PostgreSQL",
            run(&format!("{base}/{name}"), events, dir.path()),
        ));
        let _ = admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
    println!("| database | events | ingest rate |");
    println!("|---|---|---|");
    for (database, (rate, events)) in rows {
        println!("| {database} | {events} | {rate:.0} events/s |");
    }
}
