//! Signed snapshot records on real components: the `keygate` binary (SQLite) pushing into the
//! local KV store of `wrangler dev`, the Worker in workerd, an echo origin. A record overwritten in
//! KV is refused at the edge and repaired by the next reconciliation pass; the record signing key
//! is rotated, as docs/operations.md describes, under steady traffic that never sees a failure.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keygate_e2e::keygate::{Keygate, bootstrap, pushing_to_wrangler};
use keygate_e2e::{EchoOrigin, WranglerDev, poll};
use keygate_shared::{Envelope, Grants, KeyId, RecordState, SigningJwk, SnapshotRecord};
use reqwest::Method;
use serde_json::{Value, json};

const ROUTES: &str = r#"[
  {"method": "GET", "path": "/v1/customers/{customer}/*", "permissions": ["customer:read"], "customer": "customer"},
  {"method": "POST", "path": "/v1/admin/*", "permissions": ["admin:write"]}
]"#;

const READ: &str = "/v1/customers/cus_1/profile";

/// How long a change may take to show at the edge here: a wrangler start per KV call (about
/// 1.5 s) and the 1 s isolate cache, on a 2-core machine that also builds.
const BOUND: Duration = Duration::from_secs(20);

/// How long a reconciliation pass may take to repair an entry here: a restarted keygate lists KV,
/// reads the entry and writes it back, three wrangler starts in a row, each several seconds while
/// the other end-to-end tests load the same two cores (20 s was once not enough in CI).
const REPAIR_BOUND: Duration = Duration::from_secs(60);

fn edge_vars(origin: &EchoOrigin, record_keys: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KEYGATE_ORIGIN", origin.url()),
        ("KEYGATE_ROUTES", ROUTES.to_owned()),
        ("KEYGATE_CACHE_TTL_MS", "1000".to_owned()),
        ("KEYGATE_RECORD_KEYS", record_keys.to_owned()),
    ]
}

fn borrowed<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    vars.iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

fn jwks(keys: &[&SigningJwk]) -> String {
    json!({ "keys": keys.iter().map(|key| key.public()).collect::<Vec<_>>() }).to_string()
}

/// `key` in an owner-only file, for `--record-signing-key-file`.
fn key_file(dir: &Path, key: &SigningJwk) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!("{}.jwk", key.kid));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .expect("a new key file");
    std::io::Write::write_all(&mut file, serde_json::to_string(key).unwrap().as_bytes())
        .expect("write");
    path
}

fn with(
    env: &[(&'static str, String)],
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut env: Vec<_> = env
        .iter()
        .filter(|(name, _)| !extra.iter().any(|(other, _)| other == name))
        .cloned()
        .collect();
    env.extend(extra.iter().cloned());
    env
}

/// A development key holding `customer:read`: (the key, its id).
fn create_key(keygate: &Keygate, name: &str) -> (String, String) {
    let (status, body) = keygate.call(
        Method::POST,
        "/v1/keys",
        Some(json!({"name": name, "environment": "development", "permissions": ["customer:read"]})),
    );
    assert_eq!(status, 201, "{body}");
    (
        body["key"].as_str().unwrap().to_owned(),
        body["key_id"].as_str().unwrap().to_owned(),
    )
}

/// The edge's status and error code for `key` on `method path`.
fn ask(
    http: &reqwest::blocking::Client,
    edge: &str,
    method: Method,
    path: &str,
    key: &str,
) -> (u16, String) {
    match http
        .request(method, format!("{edge}{path}"))
        .bearer_auth(key)
        .send()
    {
        Ok(response) => {
            let status = response.status().as_u16();
            let body: Value = response.json().unwrap_or(Value::Null);
            (
                status,
                body["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
        Err(error) => (0, error.without_url().to_string()),
    }
}

/// The record inside a KV entry, and the `kid` it claims; the signature is not checked here.
fn unsealed(key_id: &str, value: &str) -> (SnapshotRecord, String) {
    let envelope = Envelope::decode(value.as_bytes()).expect("a signed entry");
    let kid = envelope.kid().to_owned();
    let record = envelope
        .open_verified(&KeyId::parse(key_id).unwrap())
        .expect("a record");
    (record, kid)
}

#[test]
fn a_record_overwritten_in_kv_is_refused_at_the_edge_and_repaired_by_reconciliation() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let origin = EchoOrigin::start(&runtime);
    let vars = edge_vars(&origin, &keygate_e2e::record_keys());
    let edge = WranglerDev::start(&borrowed(&vars));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
    let token = bootstrap(&url);
    let env = with(
        &pushing_to_wrangler(&edge),
        &[
            ("KEYGATE_SYNC_POLL_MS", "200".to_owned()),
            ("KEYGATE_RECONCILE_INTERVAL_SECONDS", "0".to_owned()),
        ],
    );
    let keygate = Keygate::serve(&url, &token, &env, dir.path());
    keygate.catalogue(&["customer:read", "admin:write"]);
    let (key, key_id) = create_key(&keygate, "overwritten");
    let http = reqwest::blocking::Client::new();
    let edge_url = edge.url("");
    poll(BOUND, "the key works at the edge", || {
        (ask(&http, &edge_url, Method::GET, READ, &key).0 == 200).then_some(())
    });
    let admin = |http: &reqwest::blocking::Client| {
        ask(http, &edge_url, Method::POST, "/v1/admin/users", &key)
    };
    assert_eq!(admin(&http), (403, "insufficient_permissions".to_owned()));

    // Someone with the KV token widens the key in place, at its version (metadata included), and
    // signs with a key of their own under keygate's kid.
    // The key may work through the change feed before its KV write lands.
    let (genuine, _) = poll(BOUND, "KV has the pushed entry", || edge.kv_get(&key_id));
    let (mut record, kid) = unsealed(&key_id, &genuine);
    let version = record.version;
    let RecordState::Present(body) = &mut record.state else {
        panic!("a key")
    };
    body.permissions = Grants::parse(&["*"]).unwrap();
    let mut forger = keygate_origin::generate("forger", &[66; 32]);
    forger.kid = kid;
    edge.kv_put_at_version(&key_id, &keygate_e2e::seal_with(&record, &forger), version);
    poll(BOUND, "the edge refuses the overwritten record", || {
        let reply = admin(&http);
        assert_ne!(reply.0, 200, "the widened record was trusted");
        (reply == (503, "unavailable".to_owned())).then_some(())
    });
    assert_eq!(
        ask(&http, &edge_url, Method::GET, READ, &key).0,
        503,
        "fails closed"
    );
    drop(keygate);

    // The next reconciliation pass (this keygate runs one at start, then every second) reads the
    // entry, finds it is not what keygate signed, and writes the genuine record back.
    let env = with(
        &env,
        &[("KEYGATE_RECONCILE_INTERVAL_SECONDS", "1".to_owned())],
    );
    let keygate = Keygate::serve(&url, &token, &env, dir.path());
    poll(REPAIR_BOUND, "reconciliation repairs the entry", || {
        (edge.kv_get(&key_id).as_deref() == Some(genuine.as_str())).then_some(())
    });
    poll(BOUND, "the key works again, with what it was given", || {
        let read = ask(&http, &edge_url, Method::GET, READ, &key);
        (read.0 == 200 && admin(&http) == (403, "insufficient_permissions".to_owned()))
            .then_some(())
    });
    let status = keygate.sync_status();
    assert_eq!(status["last_tampering_entries"], 1, "{status}");
    assert!(status["last_tampering_at"].is_string(), "{status}");
    assert!(
        keygate
            .log()
            .lines()
            .any(|line| line.contains("not what keygate signed") && line.contains(&key_id)),
        "{}",
        keygate.log()
    );
}

/// Steady traffic: one request after another for a key, to whichever deployment is current.
struct Traffic {
    target: Arc<Mutex<String>>,
    answers: Arc<Mutex<Vec<(u16, String)>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Traffic {
    fn start(edge: &WranglerDev, key: String) -> Self {
        let target = Arc::new(Mutex::new(edge.url("")));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (target, answers, stop) = (target.clone(), answers.clone(), stop.clone());
            move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let edge = target.lock().unwrap().clone();
                    let answer = ask(&http, &edge, Method::GET, READ, &key);
                    answers.lock().unwrap().push(answer);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Self {
            target,
            answers,
            stop,
            thread,
        }
    }

    fn answered(&self) -> usize {
        self.answers.lock().unwrap().len()
    }

    /// Sends what follows to `edge`, and returns once a request has been answered there: the one
    /// in flight to the previous deployment has finished, which may then go.
    fn move_to(&self, edge: &WranglerDev) {
        *self.target.lock().unwrap() = edge.url("");
        let switched = self.answered();
        poll(BOUND, "a request answered by the new deployment", || {
            (self.answered() >= switched + 2).then_some(())
        });
    }

    fn stop(self) -> Vec<(u16, String)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the traffic thread");
        std::mem::take(&mut *self.answers.lock().unwrap())
    }
}

#[test]
fn rotating_the_record_signing_key_fails_no_request() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let origin = EchoOrigin::start(&runtime);
    let (old, new) = (keygate_e2e::record_key(), keygate_e2e::next_record_key());
    // Each deployment here is its own `wrangler dev` on one local store; the change feed (a
    // Durable Object in that store) is left out, so that two of them never write one object.
    let edge_vars = |origin: &EchoOrigin, keys: &str| {
        let mut vars = edge_vars(origin, keys);
        vars.push(("KEYGATE_FEED", "off".to_owned()));
        vars
    };
    let first = WranglerDev::start(&borrowed(&edge_vars(&origin, &jwks(&[&old]))));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
    let token = bootstrap(&url);
    let mut env = with(
        &pushing_to_wrangler(&first),
        &[
            ("KEYGATE_SYNC_POLL_MS", "200".to_owned()),
            // The steps as documented: here `sync --full`, not a reconciliation pass, re-signs.
            ("KEYGATE_RECONCILE_INTERVAL_SECONDS", "0".to_owned()),
        ],
    );
    env.retain(|(name, _)| !name.starts_with("KEYGATE_FEED"));
    let keygate = Keygate::serve(&url, &token, &env, dir.path());
    keygate.catalogue(&["customer:read", "admin:write"]);
    let (key, key_id) = create_key(&keygate, "rotated");
    let http = reqwest::blocking::Client::new();
    poll(BOUND, "the key works at the edge", || {
        (ask(&http, &first.url(""), Method::GET, READ, &key).0 == 200).then_some(())
    });
    let traffic = Traffic::start(&first, key.clone());

    // 1. Deploy the edge with both public keys; traffic moves to it, the old deployment goes.
    let both = WranglerDev::beside(&first, &borrowed(&edge_vars(&origin, &jwks(&[&old, &new]))));
    poll(BOUND, "the new deployment serves the key", || {
        (ask(&http, &both.url(""), Method::GET, READ, &key).0 == 200).then_some(())
    });
    traffic.move_to(&both);
    drop(first);

    // 2. Switch the control plane to the new signing key. What it writes from now on is signed
    //    with it; what KV holds is still under the old one, and both verify.
    drop(keygate);
    let env = with(
        &env,
        &[(
            "KEYGATE_RECORD_SIGNING_KEY_FILE",
            key_file(dir.path(), &new).display().to_string(),
        )],
    );
    let keygate = Keygate::serve(&url, &token, &env, dir.path());
    let (later, later_id) = create_key(&keygate, "created after the switch");
    poll(BOUND, "a key signed with the new key works", || {
        (ask(&http, &both.url(""), Method::GET, READ, &later).0 == 200).then_some(())
    });
    let under_old = both.kv_get(&key_id).expect("an entry");
    assert_eq!(unsealed(&key_id, &under_old).1, old.kid);

    // 3. `keygate sync --full` re-signs everything.
    let output = std::process::Command::new(keygate_e2e::keygate::binary())
        .args(["sync", "--full"])
        .env("DATABASE_URL", &url)
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .env("KEYGATE_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for id in [&key_id, &later_id] {
        let value = both.kv_get(id).expect("an entry");
        assert_eq!(unsealed(id, &value).1, new.kid, "{id} is re-signed");
    }

    // 4. Deploy the edge with the new key alone; traffic moves to it.
    let last = WranglerDev::beside(&both, &borrowed(&edge_vars(&origin, &jwks(&[&new]))));
    poll(BOUND, "the last deployment serves both keys", || {
        let urls = last.url("");
        (ask(&http, &urls, Method::GET, READ, &key).0 == 200
            && ask(&http, &urls, Method::GET, READ, &later).0 == 200)
            .then_some(())
    });
    traffic.move_to(&last);
    drop(both);
    let on_last = traffic.answered();
    poll(BOUND, "traffic on the last deployment", || {
        (traffic.answered() >= on_last + 20).then_some(())
    });
    let answers = traffic.stop();
    let failed: Vec<&(u16, String)> = answers.iter().filter(|answer| answer.0 != 200).collect();
    assert!(answers.len() > 100, "{} requests", answers.len());
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        answers.len()
    );
    eprintln!("rotation: {} requests, none failed", answers.len());

    // The retired key is retired: an entry it signed is refused now.
    drop(keygate);
    let version = unsealed(&key_id, &under_old).0.version;
    last.kv_put_at_version(&key_id, &under_old, version);
    poll(BOUND, "a record under the retired key is refused", || {
        (ask(&http, &last.url(""), Method::GET, READ, &key) == (503, "unavailable".to_owned()))
            .then_some(())
    });
}
