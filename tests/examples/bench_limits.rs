//! `scripts/bench-rate-limits`: what a per-key rate limit costs at the edge, under `wrangler dev`.
//! A hot key without a limit and one with a limit it never reaches (1,000,000 per day), the
//! latter under `KEYGATE_RATE_LIMIT_MODE=exact` and, in a second `wrangler dev`, `fast`; loaded
//! in alternating rounds in one run by the same closed-loop client (32 connections).
//! Prints throughput and latency p50/p99 of each, and the ratios.
//!
//! Usage: `bench_limits [rounds (3)] [seconds per round (8)]`; `BENCH_CONNECTIONS=n` for other than 32.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate_e2e::{EchoOrigin, WranglerDev, active_record};
use keygate_shared::{ApiKey, Environment, KeyFormat, RateLimit, RecordState};

/// Concurrent connections: `BENCH_CONNECTIONS`, 32 unless set (1 shows latency without queueing).
fn connections() -> usize {
    std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(32)
}

struct Round {
    requests: usize,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

async fn load(client: reqwest::Client, url: String, key: Arc<String>, length: Duration) -> Round {
    let started = Instant::now();
    let workers = (0..connections()).map(|_| {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < length {
                let sent = Instant::now();
                let response = client.get(&url).bearer_auth(key.as_str()).send().await;
                let ok = match response {
                    Ok(response) => response.status() == 200 && response.bytes().await.is_ok(),
                    Err(_) => false,
                };
                assert!(ok, "a request failed");
                latencies.push(sent.elapsed());
            }
            latencies
        })
    });
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    Round {
        requests: latencies.len(),
        latencies,
        elapsed: started.elapsed(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(3);
    let seconds: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(8);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let origin = EchoOrigin::start(&runtime);
    let routes = r#"[{"method": "*", "path": "/*", "any_key": true}]"#;
    let exact = WranglerDev::start(&[
        ("KEYGATE_ORIGIN", &origin.url()),
        ("KEYGATE_ROUTES", routes),
    ]);
    let fast = WranglerDev::start(&[
        ("KEYGATE_ORIGIN", &origin.url()),
        ("KEYGATE_ROUTES", routes),
        ("KEYGATE_RATE_LIMIT_MODE", "fast"),
    ]);
    let format = KeyFormat::new("kg").expect("prefix");
    let mut rng = rand::rng();
    let free: ApiKey = format.generate(Environment::Development, &mut rng);
    let limited: ApiKey = format.generate(Environment::Development, &mut rng);
    let mut limited_record = active_record(&limited, &[], "usr_bench");
    if let RecordState::Present(body) = &mut limited_record.state {
        body.rate_limit = Some(RateLimit::new(1_000_000, 86_400).expect("limit"));
    }
    let records = [
        (
            free.key_id().to_string(),
            keygate_e2e::seal(&active_record(&free, &[], "usr_bench")),
        ),
        (
            limited.key_id().to_string(),
            keygate_e2e::seal(&limited_record),
        ),
    ];
    exact.kv_bulk_put(&records);
    fast.kv_bulk_put(&records);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections())
        .build()
        .expect("client");
    let keys = [
        (
            "no limit",
            exact.url("/bench"),
            Arc::new(free.expose_secret().to_owned()),
        ),
        (
            "limited, exact",
            exact.url("/bench"),
            Arc::new(limited.expose_secret().to_owned()),
        ),
        (
            "limited, fast",
            fast.url("/bench"),
            Arc::new(limited.expose_secret().to_owned()),
        ),
    ];
    // Warm-up: the keys cached in each isolate, the limiter objects created.
    for (_, url, key) in &keys {
        runtime.block_on(load(
            client.clone(),
            url.clone(),
            key.clone(),
            Duration::from_secs(2),
        ));
    }
    let mut results: Vec<(usize, Duration, Vec<Duration>)> =
        vec![(0, Duration::ZERO, Vec::new()); keys.len()];
    let mut per_round = Vec::new();
    for _ in 0..rounds {
        let mut rates = Vec::new();
        for (index, (_, url, key)) in keys.iter().enumerate() {
            let round = runtime.block_on(load(
                client.clone(),
                url.clone(),
                key.clone(),
                Duration::from_secs(seconds),
            ));
            rates.push(round.requests as f64 / round.elapsed.as_secs_f64());
            let total = &mut results[index];
            total.0 += round.requests;
            total.1 += round.elapsed;
            total.2.extend(round.latencies);
        }
        per_round.push((rates[1] / rates[0], rates[2] / rates[0]));
    }
    println!("| key | req/s | p50 | p99 |");
    println!("|---|---|---|---|");
    let mut summary = Vec::new();
    for ((name, _, _), (requests, elapsed, latencies)) in keys.iter().zip(results.iter_mut()) {
        latencies.sort();
        let rate = *requests as f64 / elapsed.as_secs_f64();
        let (p50, p99) = (percentile(latencies, 0.5), percentile(latencies, 0.99));
        println!(
            "| {name} | {rate:.0} | {:.2} ms | {:.2} ms |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        summary.push((rate, p50, p99));
    }
    for (mode, index) in [("exact", 1), ("fast", 2)] {
        let rounds: Vec<String> = per_round
            .iter()
            .map(|ratios| format!("{:.2}", if index == 1 { ratios.0 } else { ratios.1 }))
            .collect();
        println!(
            "\n{mode}: limited / no limit throughput {:.2} (rounds: {}); added latency p50 {:+.2} ms, p99 {:+.2} ms",
            summary[index].0 / summary[0].0,
            rounds.join(", "),
            (summary[index].1.as_secs_f64() - summary[0].1.as_secs_f64()) * 1e3,
            (summary[index].2.as_secs_f64() - summary[0].2.as_secs_f64()) * 1e3,
        );
    }
}
