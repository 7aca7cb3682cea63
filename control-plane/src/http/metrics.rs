//! Prometheus text for `/metrics`: request counts and latency per route, kept in memory here, and
//! gauges read from the database at scrape time (keys by status, outbox depth).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use keygate_shared::Method;

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<(String, String), Route>>,
}

#[derive(Debug, Default)]
struct Route {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

impl Metrics {
    /// `route` is the matched route template (`/v1/keys/{key_id}`), never the raw path, and a
    /// method outside the standard set is counted as `OTHER`: the label set stays bounded and
    /// nothing a client makes up becomes a label.
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = Method::parse(method).map_or("OTHER", Method::as_str);
        let seconds = elapsed.as_secs_f64();
        let mut routes = self
            .routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = routes
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        *entry.by_status.entry(status).or_default() += 1;
        entry.count += 1;
        entry.sum_seconds += seconds;
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            entry.buckets[bucket] += 1;
        }
    }

    pub fn render(&self, out: &mut String) {
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        out.push_str(
            "# HELP keygate_http_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE keygate_http_requests_total counter\n");
        for ((method, route), entry) in routes.iter() {
            for (status, count) in &entry.by_status {
                let _ = writeln!(
                    out,
                    "keygate_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
                );
            }
        }
        out.push_str("# HELP keygate_http_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE keygate_http_request_duration_seconds histogram\n");
        for ((method, route), entry) in routes.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(entry.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "keygate_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "keygate_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
                 keygate_http_request_duration_seconds_sum{{{labels}}} {}\n\
                 keygate_http_request_duration_seconds_count{{{labels}}} {}",
                entry.count, entry.sum_seconds, entry.count
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        let metrics = Metrics::default();
        for method in ["GET", "BREW", "X-ANYTHING", "get", "PROPFIND"] {
            metrics.observe(method, "unmatched", 405, Duration::from_millis(1));
        }
        let mut out = String::new();
        metrics.render(&mut out);
        let methods: std::collections::BTreeSet<&str> = out
            .lines()
            .filter_map(|line| line.split("method=\"").nth(1))
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert_eq!(methods, ["GET", "OTHER"].into_iter().collect());
        assert!(out.contains(
            "keygate_http_requests_total{method=\"OTHER\",route=\"unmatched\",status=\"405\"} 4"
        ));
    }
}
