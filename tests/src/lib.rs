//! Harness for keygate's end-to-end tests: the real Worker under `wrangler dev` (workerd), local KV
//! seeded through wrangler itself, and an in-process origin that echoes what it receives.
//!
//! Nothing here sleeps in place of synchronisation: readiness and propagation are polled.

pub mod browser;
pub mod fake_kv;
pub mod feed_fault;
pub mod keygate;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::HeaderMap;
use keygate_shared::{ApiKey, Grants, KeyRecord, OwnerId, RecordState, SnapshotRecord};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned()
}

pub fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// The first record of an active `key` with these grants and owner, as the control plane writes it.
pub fn active_record(key: &ApiKey, permissions: &[&str], owner: &str) -> SnapshotRecord {
    SnapshotRecord {
        key_id: key.key_id(),
        version: 1,
        state: RecordState::Present(KeyRecord::active(
            key.digest(),
            key.environment(),
            Grants::parse(permissions).expect("valid grants"),
            OwnerId::parse(owner).expect("valid owner"),
        )),
    }
}

/// The Ed25519 key the Workers of these tests sign identity assertions with (a fixed test key),
/// as the edge's private JWK.
pub fn assertion_key() -> keygate_shared::SigningJwk {
    keygate_origin::generate("kg-e2e", &[5; 32])
}

/// The JWKS origins verify the test Workers' assertions with.
pub fn assertion_jwks() -> String {
    json!({ "keys": [assertion_key().public()] }).to_string()
}

/// The key the control plane of these tests signs snapshot records with (a fixed test key).
pub fn record_key() -> keygate_shared::SigningJwk {
    keygate_origin::generate("rec-e2e", &[6; 32])
}

/// `KEYGATE_RECORD_KEYS` of the test Workers: the public half of [`record_key`].
pub fn record_keys() -> String {
    json!({ "keys": [record_key().public()] }).to_string()
}

/// [`record_key`] in a file (owner-only), for `keygate serve --record-signing-key-file`.
pub fn record_key_file() -> PathBuf {
    static FILE: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("record.jwk");
        let text = serde_json::to_string(&record_key()).expect("JSON");
        std::fs::write(&path, text).expect("the record key file");
        (dir, path)
    })
    .1
    .clone()
}

/// What the control plane appends to the test Workers' change feed with (`KEYGATE_FEED_TOKEN`).
pub const FEED_TOKEN: &str = "e2e-feed-token-0123456789abcdef0123456789abcdef";
/// The test Workers' change feed route.
pub const FEED_PATH: &str = "/.keygate/feed";

/// The key a rotation moves the control plane to (a fixed test key, another `kid`).
pub fn next_record_key() -> keygate_shared::SigningJwk {
    keygate_origin::generate("rec-e2e-next", &[7; 32])
}

/// `record` as the control plane would write it to KV: signed with [`record_key`].
pub fn seal(record: &SnapshotRecord) -> String {
    seal_with(record, &record_key())
}

/// `record` signed with `key` under `key`'s `kid`.
pub fn seal_with(record: &SnapshotRecord, key: &keygate_shared::SigningJwk) -> String {
    let secret: [u8; 32] = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        key.d.as_bytes(),
    )
    .expect("base64url")
    .try_into()
    .expect("32 bytes");
    let signing = ed25519_dalek::SigningKey::from_bytes(&secret);
    keygate_shared::seal(&record.encode(), &key.kid, |input| {
        ed25519_dalek::Signer::sign(&signing, input).to_bytes()
    })
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `wrangler` from the repository's node_modules, offline and quiet.
pub fn wrangler() -> Command {
    let mut command = Command::new(repo_root().join("node_modules/.bin/wrangler"));
    command
        .current_dir(repo_root())
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("NO_COLOR", "1");
    command
}

/// Runs a command to completion, failing with its output if it fails.
#[track_caller]
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    run_checked(command, &output)
}

#[track_caller]
fn run_checked(command: &Command, output: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `wrangler dev` serving the Worker with its KV state in a temporary directory. Killed, with the
/// workerd processes it started, when dropped.
#[derive(Debug)]
pub struct WranglerDev {
    child: Child,
    pub port: u16,
    state: tempfile::TempDir,
    /// Its local KV store, shared with the deployments started [`WranglerDev::beside`] it: the
    /// directory lives as long as any of them.
    store: std::sync::Arc<tempfile::TempDir>,
    log: PathBuf,
    /// One `wrangler kv` writer at a time: the local store is one SQLite file, and concurrent
    /// writers from parallel scenarios fail with SQLITE_BUSY instead of waiting.
    kv_writer: std::sync::Mutex<()>,
}

impl WranglerDev {
    /// Starts `wrangler dev` with `vars` overriding wrangler.toml's, and waits until it answers.
    /// The Worker signs assertions with [`assertion_key`] unless `vars` say otherwise.
    pub fn start(vars: &[(&str, &str)]) -> Self {
        Self::launch(vars, None, &[])
    }

    /// `wrangler dev` of several Workers in one workerd (`--config` each, the one served first),
    /// as [`feed_fault::configs`] writes them.
    pub fn with_configs(configs: &[PathBuf], vars: &[(&str, &str)]) -> Self {
        Self::launch(vars, None, configs)
    }

    /// A second `wrangler dev` of the Worker with other `vars`, reading `other`'s local KV store:
    /// a new deployment of the Worker next to the running one, as a rollout has it for a while.
    pub fn beside(other: &WranglerDev, vars: &[(&str, &str)]) -> Self {
        Self::launch(vars, Some(other.store.clone()), &[])
    }

    fn launch(
        vars: &[(&str, &str)],
        store: Option<std::sync::Arc<tempfile::TempDir>>,
        configs: &[PathBuf],
    ) -> Self {
        let state = tempfile::tempdir().expect("temp dir");
        let store = store.unwrap_or_else(|| {
            std::sync::Arc::new(tempfile::tempdir().expect("a directory for the KV store"))
        });
        let persist = store.path().to_owned();
        let port = free_port();
        let log = state.path().join("wrangler.log");
        let mut command = wrangler();
        command.args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()]);
        command.args([
            "--inspector-port",
            &free_port().to_string(),
            "--show-interactive-dev-session=false",
        ]);
        command.arg("--persist-to").arg(&persist);
        for config in configs {
            command.arg("--config").arg(config);
        }
        let key = serde_json::to_string(&assertion_key()).expect("JSON");
        if !vars
            .iter()
            .any(|(name, _)| name.starts_with("KEYGATE_ASSERTION"))
        {
            command.args(["--var", &format!("KEYGATE_ASSERTION_KEY:{key}")]);
        }
        if !vars.iter().any(|(name, _)| *name == "KEYGATE_RECORD_KEYS") {
            command.args(["--var", &format!("KEYGATE_RECORD_KEYS:{}", record_keys())]);
        }
        if !vars.iter().any(|(name, _)| *name == "KEYGATE_FEED_TOKEN") {
            command.args(["--var", &format!("KEYGATE_FEED_TOKEN:{FEED_TOKEN}")]);
        }
        for (name, value) in vars {
            command.args(["--var", &format!("{name}:{value}")]);
        }
        let log_file = std::fs::File::create(&log).expect("log file");
        command
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .stdin(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("wrangler dev starts");
        let mut dev = Self {
            child,
            port,
            state,
            store,
            log,
            kv_writer: std::sync::Mutex::new(()),
        };
        dev.wait_ready(Duration::from_secs(300));
        dev
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Its `--persist-to` directory: where its local KV store lives.
    pub fn persist_dir(&self) -> PathBuf {
        self.store.path().to_owned()
    }

    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!(
                    "wrangler dev exited ({exit}) before it was ready:\n{}",
                    self.log()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && std::fs::read_to_string(&self.log).is_ok_and(|log| log.contains("Ready on"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "wrangler dev did not start within {limit:?}:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Writes many KV entries in one `wrangler kv bulk put --local`, into the store the running
    /// `wrangler dev` reads.
    pub fn kv_bulk_put(&self, entries: &[(String, String)]) {
        let file = self.state.path().join(format!("bulk-{}.json", free_port()));
        let body: Vec<Value> = entries
            .iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        std::fs::write(&file, serde_json::to_vec(&body).expect("json")).expect("bulk file");
        self.kv(&["bulk".as_ref(), "put".as_ref(), file.as_os_str()]);
    }

    /// Writes one KV entry with keygate's metadata (`{"version": version}`), as someone holding a
    /// KV token could: a listing then shows the version the database expects.
    pub fn kv_put_at_version(&self, key: &str, value: &str, version: u64) {
        let file = self.state.path().join(format!("bulk-{}.json", free_port()));
        let body = json!([{"key": key, "value": value, "metadata": {"version": version}}]);
        std::fs::write(&file, serde_json::to_vec(&body).expect("json")).expect("bulk file");
        self.kv(&["bulk".as_ref(), "put".as_ref(), file.as_os_str()]);
    }

    /// The value of one KV entry (`wrangler kv key get --local`); `None` if there is none.
    pub fn kv_get(&self, key: &str) -> Option<String> {
        let _one_at_a_time = self
            .kv_writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut command = wrangler();
        command
            .args([
                "kv",
                "key",
                "get",
                key,
                "--binding",
                "KEYS",
                "--local",
                "--text",
            ])
            .arg("--persist-to")
            .arg(self.store.path());
        let output = command.output().expect("wrangler runs");
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        (output.status.success() && stdout != "Value not found").then_some(stdout)
    }

    /// Writes one KV entry with `wrangler kv key put --local`, as an operator would by hand.
    pub fn kv_put(&self, key: &str, value: &str) {
        self.kv(&["key", "put", key, value].map(std::ffi::OsStr::new));
    }

    /// `wrangler kv <args> --binding KEYS --local`, on the store this `wrangler dev` reads. The
    /// running workerd may still hold that file's lock for a moment, which wrangler reports as
    /// SQLITE_BUSY rather than waiting: such a write is tried again, a few times at most.
    fn kv(&self, args: &[&std::ffi::OsStr]) {
        let _one_writer = self
            .kv_writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for attempt in 1.. {
            let mut command = wrangler();
            command
                .arg("kv")
                .args(args)
                .args(["--binding", "KEYS", "--local", "--persist-to"]);
            command.arg(self.store.path());
            let output = command.output().expect("wrangler runs");
            let busy = String::from_utf8_lossy(&output.stdout).contains("SQLITE_BUSY")
                || String::from_utf8_lossy(&output.stderr).contains("SQLITE_BUSY");
            if output.status.success() || !busy || attempt == 5 {
                run_checked(&command, &output);
                return;
            }
        }
    }
}

impl Drop for WranglerDev {
    fn drop(&mut self) {
        // The whole process group (wrangler's node process and the workerd it started), by a direct
        // killpg: never by shelling out to `kill`, whose parsing of a negative pid varies.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// The built Worker under standalone workerd (`node_modules/.bin/workerd`), with its `KEYS` KV
/// binding served by `kv_js`, a JavaScript module of our own: for what `wrangler dev` cannot
/// stage, such as a KV that fails. The lookup limiter is miniflare's, as under `wrangler dev`.
#[derive(Debug)]
pub struct StandaloneWorkerd {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl StandaloneWorkerd {
    /// `vars` are extra text bindings, such as KEYGATE_RATE_LIMIT_UNAVAILABLE, or replace the
    /// defaults of KEYGATE_ROUTES (every path needs a key) and KEYGATE_RECORD_KEYS. There is no
    /// KEY_LIMITER binding: a rate-limited key finds its limiter unreachable.
    pub fn start(kv_js: &str, vars: &[(&str, &str)]) -> Self {
        let root = repo_root();
        let dir = tempfile::tempdir().expect("temp dir");
        for file in ["index.js", "index_bg.wasm"] {
            std::fs::copy(root.join("edge/build").join(file), dir.path().join(file))
                .expect("the Worker is built (scripts/build-edge)");
        }
        std::fs::copy(
            root.join("node_modules/miniflare/dist/src/workers/ratelimit/ratelimit.worker.js"),
            dir.path().join("ratelimit.js"),
        )
        .expect("miniflare's rate limiter (npm ci)");
        std::fs::write(dir.path().join("kv.js"), kv_js).expect("kv.js");
        let port = free_port();
        let key = serde_json::to_string(&assertion_key()).expect("JSON");
        let mut extra: String = vars
            .iter()
            .map(|(name, value)| format!("\n    (name = {name:?}, text = {value:?}),"))
            .collect();
        if !vars.iter().any(|(name, _)| *name == "KEYGATE_ROUTES") {
            extra.push_str(&format!(
                "\n    (name = \"KEYGATE_ROUTES\", text = {:?}),",
                r#"[{"method": "*", "path": "/*", "any_key": true}]"#
            ));
        }
        if !vars.iter().any(|(name, _)| *name == "KEYGATE_RECORD_KEYS") {
            extra.push_str(&format!(
                "\n    (name = \"KEYGATE_RECORD_KEYS\", text = {:?}),",
                record_keys()
            ));
        }
        let config = format!(
            r#"using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [(name = "keygate", worker = .keygate), (name = "kv", worker = .kv)],
  sockets = [(name = "http", address = "127.0.0.1:{port}", http = (), service = "keygate")],
  extensions = [(modules = [(name = "cloudflare-internal:ratelimit:module", esModule = embed "ratelimit.js", internal = true)])],
);
const keygate :Workerd.Worker = (
  modules = [(name = "index.js", esModule = embed "index.js"), (name = "index_bg.wasm", wasm = embed "index_bg.wasm")],
  compatibilityDate = "2026-04-01",
  bindings = [
    (name = "KEYGATE_ENVIRONMENT", text = "production"),
    (name = "KEYGATE_ISSUER_PREFIX", text = "kg"),
    (name = "KEYGATE_ORIGIN", text = "http://origin.invalid"),
    (name = "KEYGATE_ASSERTION_KEY", text = {key:?}),
    (name = "KEYS", kvNamespace = (name = "kv")),{extra}
    (name = "LOOKUP_LIMITER", wrapped = (moduleName = "cloudflare-internal:ratelimit:module",
      innerBindings = [(name = "namespaceId", json = "\"1\""), (name = "limit", json = "1000"), (name = "period", json = "60")])),
  ],
);
const kv :Workerd.Worker = (
  modules = [(name = "kv.js", esModule = embed "kv.js")],
  compatibilityDate = "2026-04-01",
);
"#
        );
        std::fs::write(dir.path().join("config.capnp"), config).expect("config.capnp");
        let log = std::fs::File::create(dir.path().join("workerd.log")).expect("log file");
        let child = Command::new(root.join("node_modules/.bin/workerd"))
            .arg("serve")
            .arg(dir.path().join("config.capnp"))
            .arg("config")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("workerd starts");
        let workerd = Self { child, port, dir };
        poll(Duration::from_secs(60), "workerd listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        workerd
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("workerd.log")).unwrap_or_default()
    }
}

impl Drop for StandaloneWorkerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An origin on a free port that answers every request with a JSON echo of it.
#[derive(Debug)]
pub struct EchoOrigin {
    pub port: u16,
}

impl EchoOrigin {
    pub fn start(runtime: &tokio::runtime::Runtime) -> Self {
        Self::bind(runtime, 0)
    }

    /// On `port` (0: any free port).
    pub fn bind(runtime: &tokio::runtime::Runtime, port: u16) -> Self {
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let app = axum::Router::new().fallback(echo);
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self { port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

async fn echo(request: Request) -> axum::Json<Value> {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    axum::Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers_json(&parts.headers),
        "body": String::from_utf8_lossy(&body),
    }))
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        map.insert(
            name.as_str().to_owned(),
            json!(value.to_str().unwrap_or("<binary>")),
        );
    }
    Value::Object(map)
}

/// Polls `check` until it returns `Some`, or fails after `limit`.
#[track_caller]
pub fn poll<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return (value, start.elapsed());
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A reply read off the wire by [`raw_request`].
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

/// Sends `method target` exactly as written, on a socket of its own: no client library
/// normalises the request target first (reqwest would resolve `..` and re-encode escapes).
pub fn raw_request(port: u16, method: &str, target: &str, headers: &[(&str, &str)]) -> RawReply {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    // Read one response, by its own framing: the server may keep the connection open.
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let text = loop {
        let read = stream.read(&mut buffer).unwrap_or(0);
        raw.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if read == 0 || response_complete(&text, method == "HEAD") {
            break text;
        }
    };
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    RawReply {
        status,
        headers,
        body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
    }
}

/// Whether `text` holds a whole response: headers, then a body of its `Content-Length`, or a
/// chunked body up to its last chunk (no body for HEAD).
fn response_complete(text: &str, head_request: bool) -> bool {
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let header = |wanted: &str| {
        head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_ascii_lowercase())
        })
    };
    if head_request {
        return true;
    }
    if header("transfer-encoding").is_some_and(|value| value.contains("chunked")) {
        return body.ends_with("0\r\n\r\n");
    }
    header("content-length")
        .and_then(|length| length.parse::<usize>().ok())
        .is_none_or(|length| body.len() >= length)
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
