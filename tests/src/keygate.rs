//! The real `keygate` binary, as an operator runs it: `bootstrap` once, then `serve` with the
//! settings a test gives, on a free port. Killed with SIGKILL when dropped (or on demand, to test
//! crash recovery).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{WranglerDev, free_port, poll, repo_root};

/// `target/<profile>/keygate`, next to this test's own `deps/` directory (`cargo test
/// --workspace` builds it for the control plane's tests).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>")
        .join("keygate");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p keygate-control-plane` (or `cargo test --workspace`)",
        binary.display()
    );
    binary
}

/// The settings of a `keygate serve` that pushes into the local KV store `edge` reads, and to its
/// change feed first.
pub fn pushing_to_wrangler(edge: &WranglerDev) -> Vec<(&'static str, String)> {
    let root = repo_root();
    let path = |path: PathBuf| path.display().to_string();
    vec![
        ("KEYGATE_KV_SINK", "wrangler".to_owned()),
        (
            "KEYGATE_WRANGLER",
            path(root.join("node_modules/.bin/wrangler")),
        ),
        ("KEYGATE_WRANGLER_CONFIG", path(root.join("wrangler.toml"))),
        ("KEYGATE_WRANGLER_PERSIST_TO", path(edge.persist_dir())),
        (
            "KEYGATE_RECORD_SIGNING_KEY_FILE",
            path(crate::record_key_file()),
        ),
        ("KEYGATE_FEED_URL", edge.url(crate::FEED_PATH)),
        ("KEYGATE_FEED_TOKEN", crate::FEED_TOKEN.to_owned()),
    ]
}

/// A `wrangler` that sleeps `delay` before each `kv bulk put`, written into `dir`: KV's path made
/// slow (as KV's propagation is, in production), the feed's not. For `KEYGATE_WRANGLER`.
pub fn slow_wrangler(dir: &std::path::Path, delay: Duration) -> String {
    use std::os::unix::fs::PermissionsExt;
    let real = repo_root().join("node_modules/.bin/wrangler");
    let path = dir.join("slow-wrangler");
    let script = format!(
        "#!/bin/sh\nif [ \"$2 $3\" = \"bulk put\" ]; then sleep {}; fi\nexec '{}' \"$@\"\n",
        delay.as_secs(),
        real.display()
    );
    std::fs::write(&path, script).expect("the wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

/// Creates the first admin of `database_url` and returns its token, read from the owner-only
/// file `keygate bootstrap` writes it to.
pub fn bootstrap(database_url: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("admin.token");
    let output = Command::new(binary())
        .arg("bootstrap")
        .arg("--bootstrap-token-file")
        .arg(&file)
        .env("DATABASE_URL", database_url)
        .env("KEYGATE_LOG", "warn")
        .output()
        .expect("keygate bootstrap runs");
    assert!(
        output.status.success(),
        "bootstrap failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(&file)
        .expect("the token file")
        .trim()
        .to_owned()
}

#[derive(Debug)]
pub struct Keygate {
    child: Child,
    pub port: u16,
    pub token: String,
    log: PathBuf,
    http: reqwest::blocking::Client,
}

impl Keygate {
    /// `keygate serve` on `database_url` with `env` (KEYGATE_*, DATABASE_URL, ...), logging into
    /// `log_dir`; returns once `/healthz` answers.
    pub fn serve(
        database_url: &str,
        token: &str,
        env: &[(&str, String)],
        log_dir: &std::path::Path,
    ) -> Self {
        // A port the caller chose (KEYGATE_LISTEN), or any free one.
        let port = env
            .iter()
            .find(|(name, _)| *name == "KEYGATE_LISTEN")
            .and_then(|(_, listen)| listen.rsplit(':').next()?.parse().ok())
            .unwrap_or_else(free_port);
        let log = log_dir.join(format!("keygate-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("KEYGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "KEYGATE_LOG",
                "info,keygate_control_plane::sync=debug,sqlx=warn",
            )
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = command.spawn().expect("keygate serve starts");
        let keygate = Self {
            child,
            port,
            token: token.to_owned(),
            log,
            http: reqwest::blocking::Client::new(),
        };
        poll(
            Duration::from_secs(60),
            "keygate serve answers /healthz",
            || {
                keygate
                    .http
                    .get(keygate.url("/healthz"))
                    .send()
                    .ok()
                    .filter(|response| response.status().is_success())
            },
        );
        keygate
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One API call with the admin token: the status and the JSON body (null if none).
    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().expect("the control plane answers");
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Adds `permissions` to the catalogue, so keys may be given them.
    pub fn catalogue(&self, permissions: &[&str]) {
        for permission in permissions {
            let (status, body) = self.call(
                reqwest::Method::POST,
                "/v1/permissions",
                Some(serde_json::json!({ "name": permission })),
            );
            assert_eq!(status, 201, "{body}");
        }
    }

    /// Reports usage of `key_id` as the edge does (`POST /v1/usage/events` with `ingest_token`):
    /// one event per `(outcome, route, seconds ago)`, ids made from `tag` and the position.
    pub fn report_usage(
        &self,
        ingest_token: &str,
        tag: &str,
        key_id: &str,
        events: impl IntoIterator<Item = (&'static str, &'static str, i64)>,
    ) {
        let now_ms = crate::now_seconds() * 1000;
        let events: Vec<Value> = events
            .into_iter()
            .enumerate()
            .map(|(n, (outcome, route, ago))| {
                serde_json::json!({
                    "event_id": format!("{tag}-{n}"), "key_id": key_id,
                    "occurred_at_ms": now_ms - ago * 1000, "method": "GET", "route": route,
                    "outcome": outcome, "status": if outcome == "ok" { 200 } else { 429 },
                    "colo": "local", "latency_ms": 3
                })
            })
            .collect();
        let response = self
            .http
            .post(self.url("/v1/usage/events"))
            .bearer_auth(ingest_token)
            .json(&serde_json::json!({ "events": events }))
            .send()
            .expect("the control plane answers");
        assert!(response.status().is_success(), "{:?}", response.text());
    }

    /// `GET /v1/sync/status`.
    pub fn sync_status(&self) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, "/v1/sync/status", None);
        assert_eq!(status, 200, "{body}");
        body
    }

    /// SIGKILL: no shutdown, no cleanup, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Keygate {
    fn drop(&mut self) {
        self.kill();
    }
}
