//! The product loop on real components: the `keygate` binary (SQLite) pushing to the local KV store
//! of a running `wrangler dev` (`--kv-sink wrangler`), the edge Worker in workerd, and an echo
//! origin. Every change made through the control-plane API (permissions, status, secrets, rate
//! limit, deletion) must show at the edge within
//! [`LOCAL_BOUND`], polled; each step prints how long it took.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use keygate_control_plane::scanning;
use ring::signature::EcdsaKeyPair;

use keygate_e2e::browser::Browser;
use keygate_e2e::keygate::{Keygate, bootstrap, pushing_to_wrangler};
use keygate_e2e::{EchoOrigin, WranglerDev, free_port, now_seconds, poll};
use reqwest::Method;
use serde_json::{Value, json};

/// The local loop's documented bound (README, "Revocation delay"): a push is one `wrangler kv
/// bulk put` (about 1.5 s to start wrangler) plus the edge's 1 s isolate cache, with room for a
/// 2-core CI machine that also runs the build.
const LOCAL_BOUND: Duration = Duration::from_secs(15);

/// What the edge's usage consumer presents to the control plane here.
const INGEST_TOKEN: &str = "product-loop-ingest-token-0123456789abcdef";

const ROUTES: &str = r#"[
  {"method": "GET", "path": "/v1/customers/{customer}/*", "permissions": ["customer:read"], "customer": "customer"},
  {"method": "*", "path": "/*", "any_key": true}
]"#;

struct Loop {
    keygate: Keygate,
    edge: WranglerDev,
    http: reqwest::blocking::Client,
}

impl Loop {
    /// The edge's status and error code for `key` on the customer route.
    fn edge(&self, key: &str) -> (u16, String) {
        let response = self
            .http
            .get(self.edge.url("/v1/customers/cus_1/profile"))
            .bearer_auth(key)
            .send()
            .expect("the edge answers");
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

    /// Polls the edge until `key` gets `status` (and `code`, for errors); returns how long it took.
    #[track_caller]
    fn expect(&self, step: &str, key: &str, status: u16, code: &str) -> Duration {
        let (_, took) = poll(LOCAL_BOUND, step, || {
            let (got, got_code) = self.edge(key);
            (got == status && got_code == code).then_some(())
        });
        eprintln!("{step}: {} ms", took.as_millis());
        took
    }

    #[track_caller]
    fn api(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, reply) = self.keygate.call(method, path, body);
        assert!((200..300).contains(&status), "{path}: {status} {reply}");
        reply
    }
}

/// The loop running: an echo origin, `wrangler dev`, and `keygate serve` pushing to it.
struct Running {
    world: Loop,
    _origin: EchoOrigin,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn start() -> Running {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let origin = EchoOrigin::start(&runtime);
    let control_port = free_port();
    let usage_url = format!("http://127.0.0.1:{control_port}/v1/usage/events");
    let edge = WranglerDev::start(&[
        ("KEYGATE_ORIGIN", &origin.url()),
        ("KEYGATE_ROUTES", ROUTES),
        ("KEYGATE_CACHE_TTL_MS", "1000"),
        ("KEYGATE_USAGE_URL", &usage_url),
        ("KEYGATE_INGEST_TOKEN", INGEST_TOKEN),
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
    let token = bootstrap(&url);
    let mut env = pushing_to_wrangler(&edge);
    env.push(("KEYGATE_SYNC_POLL_MS", "200".to_owned()));
    env.push(("KEYGATE_LISTEN", format!("127.0.0.1:{control_port}")));
    env.push(("KEYGATE_INGEST_TOKEN", INGEST_TOKEN.to_owned()));
    let scanning_keys = dir.path().join("github-keys.json");
    std::fs::write(&scanning_keys, github_keys()).expect("the key list");
    env.push((
        "KEYGATE_SECRET_SCANNING_KEYS_FILE",
        scanning_keys.display().to_string(),
    ));
    let keygate = Keygate::serve(&url, &token, &env, dir.path());
    Running {
        world: Loop {
            keygate,
            edge,
            http: reqwest::blocking::Client::new(),
        },
        _origin: origin,
        _runtime: runtime,
        _dir: dir,
    }
}

#[test]
fn changes_made_in_the_control_plane_reach_the_edge() {
    let running = start();
    let world = &running.world;
    for permission in ["customer:read", "telemetry:write"] {
        world.api(
            Method::POST,
            "/v1/permissions",
            Some(json!({ "name": permission })),
        );
    }
    let create = |name: &str, extra: Value| {
        let mut body =
            json!({"name": name, "environment": "development", "permissions": ["customer:read"]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let created = world.api(Method::POST, "/v1/keys", Some(body));
        (
            created["key"].as_str().unwrap().to_owned(),
            created["key_id"].as_str().unwrap().to_owned(),
        )
    };

    // Create -> 200.
    let (key, key_id) = create("loop", json!({}));
    world.expect("create", &key, 200, "");

    // A permission change -> 403, and back -> 200.
    let path = format!("/v1/keys/{key_id}");
    world.api(
        Method::PATCH,
        &path,
        Some(json!({"permissions": ["telemetry:write"]})),
    );
    world.expect("permission removed", &key, 403, "insufficient_permissions");
    world.api(
        Method::PATCH,
        &path,
        Some(json!({"permissions": ["customer:read"]})),
    );
    world.expect("permission restored", &key, 200, "");

    // Disable -> 401 disabled; enable -> 200.
    world.api(Method::POST, &format!("{path}/disable"), None);
    world.expect("disable", &key, 401, "disabled");
    world.api(Method::POST, &format!("{path}/enable"), None);
    world.expect("enable", &key, 200, "");

    // Regenerate without grace: the new secret works, the old one stops.
    let fresh = world.api(Method::POST, &format!("{path}/regenerate"), Some(json!({})));
    let second = fresh["key"].as_str().unwrap().to_owned();
    world.expect("regenerate: new secret", &second, 200, "");
    world.expect("regenerate: old secret", &key, 401, "invalid_key");

    // With grace: both work until the grace period ends, then only the new one.
    let grace = 6;
    let started = Instant::now();
    let fresh = world.api(
        Method::POST,
        &format!("{path}/regenerate"),
        Some(json!({ "grace_period_seconds": grace })),
    );
    let third = fresh["key"].as_str().unwrap().to_owned();
    world.expect("regenerate with grace: new secret", &third, 200, "");
    let (status, _) = world.edge(&second);
    assert!(
        status == 200 || started.elapsed() >= Duration::from_secs(grace),
        "the old secret stopped inside its grace period"
    );
    let (_, took) = poll(
        LOCAL_BOUND + Duration::from_secs(grace),
        "the old secret stops when the grace ends",
        || (world.edge(&second).0 == 401).then_some(()),
    );
    assert!(
        started.elapsed() >= Duration::from_secs(grace - 1),
        "the old secret stopped after {took:?}, before its grace period ended"
    );
    world.expect("regenerate with grace: new secret still", &third, 200, "");

    // A rate limit set in the control plane reaches the edge: 2 per hour, then 429.
    world.api(
        Method::PATCH,
        &path,
        Some(json!({"rate_limit": {"requests": 2, "window_seconds": 3600}})),
    );
    let (_, took) = poll(LOCAL_BOUND, "the rate limit reaches the edge", || {
        (world.edge(&third) == (429, "rate_limited".to_owned())).then_some(())
    });
    eprintln!("rate limit set: {} ms", took.as_millis());
    world.api(Method::PATCH, &path, Some(json!({ "rate_limit": null })));
    world.expect("rate limit removed", &third, 200, "");

    // Revoke -> 401 revoked.
    world.api(
        Method::POST,
        &format!("{path}/revoke"),
        Some(json!({"reason": "the loop test"})),
    );
    world.expect("revoke", &third, 401, "revoked");

    // Delete -> 401 invalid_key (a tombstone reads as no key).
    let (doomed, doomed_id) = create("doomed", json!({}));
    world.expect("create before delete", &doomed, 200, "");
    let (status, _) = world
        .keygate
        .call(Method::DELETE, &format!("/v1/keys/{doomed_id}"), None);
    assert_eq!(status, 204);
    world.expect("delete", &doomed, 401, "invalid_key");

    // Expiry: the edge decides it by its own clock, from the pushed record.
    let expires_at = now_seconds() + 8;
    let at = time_rfc3339(expires_at);
    let (mortal, _) = create("mortal", json!({ "expires_at": at }));
    world.expect("create expiring", &mortal, 200, "");
    let (_, took) = poll(LOCAL_BOUND, "expiry", || {
        let (status, code) = world.edge(&mortal);
        (status == 401 && code == "expired").then_some(())
    });
    assert!(now_seconds() >= expires_at, "expired early ({took:?})");

    // Usage came back: edge -> queue -> control plane. Every decision that identified the key is
    // in its log; the wrong-secret attempts (the old secrets after regeneration) are not.
    let (outcomes, took) = poll(LOCAL_BOUND, "usage events reach the control plane", || {
        let log = world.api(
            Method::GET,
            &format!("/v1/logs?key_id={key_id}&limit=500"),
            None,
        );
        let outcomes: std::collections::BTreeSet<String> = log["items"]
            .as_array()?
            .iter()
            .filter_map(|item| item["outcome"].as_str().map(str::to_owned))
            .collect();
        let expected = [
            "ok",
            "insufficient_permissions",
            "disabled",
            "rate_limited",
            "revoked",
        ];
        expected
            .iter()
            .all(|outcome| outcomes.contains(*outcome))
            .then_some(outcomes)
    });
    eprintln!(
        "usage events complete in the log after {} ms",
        took.as_millis()
    );
    assert!(!outcomes.contains("invalid_key"), "{outcomes:?}");
    let key = world.api(Method::GET, &path, None);
    assert!(key["last_used_at"].is_string(), "{key}");
    let usage = world.api(Method::GET, &format!("{path}/usage?granularity=day"), None);
    let allowed: i64 = usage["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bucket| bucket["allowed"].as_i64().unwrap())
        .sum();
    assert!(allowed >= 5, "{usage}");

    let status = world.keygate.sync_status();
    assert_eq!(status["outbox_depth"], 0, "{status}");
    assert!(
        status["sink"]
            .as_str()
            .unwrap()
            .starts_with("wrangler-local:KEYS:"),
        "{status}"
    );
}

fn time_rfc3339(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .expect("a valid time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}

#[test]
fn a_key_created_and_revoked_in_the_browser_works_then_stops_at_the_edge() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let running = start();
    let world = &running.world;
    world.api(
        Method::POST,
        "/v1/permissions",
        Some(json!({ "name": "customer:read" })),
    );
    browser.goto(&world.keygate.url("/ui/sign-in"));
    browser.fill("#token", &world.keygate.token);
    browser.click("main button[type=submit]");
    browser.wait_for_path("/ui/keys");

    // Create in the browser, with the permission the route needs; download the key.
    browser.click("#create-key");
    browser.wait_for("dialog#create-dialog:modal #c-name");
    browser.fill("#c-name", "from the browser");
    browser.run("document.querySelector('#c-environment').value = 'development'");
    browser.click("input[name=permissions][value='customer:read']");
    browser.click("#create-dialog button[type=submit]");
    browser.wait_for("dialog[data-show-once]:modal input.secret");
    browser.click("[data-download]");
    let file = browser.dir.path().join("downloads/from-the-browser.apikey");
    let (key, _) = poll(LOCAL_BOUND, "the downloaded key", || {
        std::fs::read_to_string(&file).ok()
    });
    let key = key.trim().to_owned();
    world.expect("created in the browser -> 200 at the edge", &key, 200, "");

    // Close the key's dialog, then revoke it from its row.
    browser.click("[data-close-once]");
    browser.wait_for("#once-confirm[open]");
    browser.click("[data-confirm-close]");
    browser.wait_for("a[aria-label='Revoke from the browser']");
    browser.click("a[aria-label='Revoke from the browser']");
    browser.wait_for("dialog#action-dialog:modal #a-reason");
    browser.fill("#a-reason", "the loop is done");
    browser.click("#action-dialog button[type=submit]");
    browser.wait_for("tbody .status-revoked");
    world.expect(
        "revoked in the browser -> 401 at the edge",
        &key,
        401,
        "revoked",
    );
}

/// The key id under which [`github`] stands in for GitHub's secret-scanning key.
const GITHUB_KEY_ID: &str = "e2e-github-key";

/// A P-256 key pair standing in for GitHub's secret-scanning signing key.
fn github() -> &'static EcdsaKeyPair {
    static PAIR: OnceLock<EcdsaKeyPair> = OnceLock::new();
    PAIR.get_or_init(scanning::generate_pair)
}

/// [`github`]'s public key, as GitHub publishes its keys.
fn github_keys() -> String {
    scanning::key_list(GITHUB_KEY_ID, github())
}

/// Sends GitHub's alert for `key`, signed by `signer`; the status and the labels.
fn alert(world: &Loop, key: &str, signer: &EcdsaKeyPair) -> (u16, Value) {
    let body = json!([{
        "token": key, "type": "keygate_api_key", "source": "content",
        "url": "https://github.com/octo/leaky/blob/main/.env"
    }])
    .to_string();
    let response = world
        .http
        .post(world.keygate.url("/v1/secret-scanning/github"))
        .header("content-type", "application/json")
        .header("Github-Public-Key-Identifier", GITHUB_KEY_ID)
        .header(
            "Github-Public-Key-Signature",
            scanning::sign(signer, body.as_bytes()),
        )
        .body(body)
        .send()
        .expect("keygate answers");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// Reports from the answered webhook to the edge's 401.
const REPORTS: usize = 20;

#[test]
fn a_key_leaked_on_github_answers_401_at_the_edge() {
    let running = start();
    let world = &running.world;
    world.api(
        Method::POST,
        "/v1/permissions",
        Some(json!({ "name": "customer:read" })),
    );
    let keys: Vec<String> = (0..REPORTS)
        .map(|n| {
            let created = world.api(
                Method::POST,
                "/v1/keys",
                Some(json!({"name": format!("leaky {n}"), "environment": "development", "permissions": ["customer:read"]})),
            );
            created["key"].as_str().expect("a key").to_owned()
        })
        .collect();
    for key in &keys {
        world.expect("created", key, 200, "");
    }

    // A forged alert (another key pair under GitHub's key id) revokes nothing, and is logged.
    let forger = scanning::generate_pair();
    let (status, _) = alert(world, &keys[0], &forger);
    assert_eq!(status, 401);
    assert!(world.keygate.log().contains("secret_scanning_refused"));

    let mut took = Vec::new();
    for key in &keys {
        let (status, labels) = alert(world, key, github());
        assert_eq!(status, 200, "{labels}");
        assert_eq!(labels[0]["label"], "true_positive");
        took.push(world.expect("reported on GitHub -> 401 at the edge", key, 401, "revoked"));
    }
    took.sort();
    let ms = |at: usize| took[at].as_millis();
    eprintln!(
        "webhook answered -> 401 at the edge, {REPORTS} reports: p50 {} ms, p99 {} ms",
        ms(REPORTS / 2),
        ms(REPORTS - 1)
    );
    let log = world.keygate.log();
    assert!(
        keys.iter().all(|key| !log.contains(key.as_str())),
        "no key in the log"
    );
}
