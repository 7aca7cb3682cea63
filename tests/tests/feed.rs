//! The change feed on real components: the `keygate` binary (SQLite) appending to the feed of a
//! running `wrangler dev` before it writes KV, the Worker's isolates following the feed, an echo
//! origin.

use std::time::Duration;

use keygate_e2e::keygate::{Keygate, bootstrap, pushing_to_wrangler};
use keygate_e2e::{EchoOrigin, WranglerDev, poll};
use reqwest::Method;
use serde_json::{Value, json};

const ROUTES: &str = r#"[{"method": "*", "path": "/*", "any_key": true}]"#;
/// A poll a second, a wrangler start per push (about 1.5 s), on a loaded 2-core machine.
const BOUND: Duration = Duration::from_secs(10);

fn status(http: &reqwest::blocking::Client, edge: &WranglerDev, key: &str) -> (u16, String) {
    let response = http
        .get(edge.url("/anything"))
        .bearer_auth(key)
        .send()
        .expect("the edge answers");
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, code)
}

/// A `wrangler` that sleeps `delay` before each `kv bulk put`: KV's path made slow, the feed's not.
fn slow_wrangler(dir: &std::path::Path, delay: Duration) -> String {
    use std::os::unix::fs::PermissionsExt;
    let real = keygate_e2e::repo_root().join("node_modules/.bin/wrangler");
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

struct Loop {
    keygate: Keygate,
    edge: WranglerDev,
    http: reqwest::blocking::Client,
    _origin: EchoOrigin,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl Loop {
    /// `wrangler dev` with an isolate cache of `cache_ttl_ms`, and `keygate serve` pushing to its
    /// feed and KV; with `kv_delay`, each KV write of the pusher takes that much longer.
    fn start(cache_ttl_ms: &str, kv_delay: Option<Duration>) -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let origin = EchoOrigin::start(&runtime);
        let edge = WranglerDev::start(&[
            ("KEYGATE_ORIGIN", &origin.url()),
            ("KEYGATE_ROUTES", ROUTES),
            ("KEYGATE_CACHE_TTL_MS", cache_ttl_ms),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
        let token = bootstrap(&url);
        let mut env = pushing_to_wrangler(&edge);
        if let Some(delay) = kv_delay {
            env.retain(|(name, _)| *name != "KEYGATE_WRANGLER");
            env.push(("KEYGATE_WRANGLER", slow_wrangler(dir.path(), delay)));
        }
        env.push(("KEYGATE_SYNC_POLL_MS", "200".to_owned()));
        env.push(("KEYGATE_RECONCILE_INTERVAL_SECONDS", "0".to_owned()));
        let keygate = Keygate::serve(&url, &token, &env, dir.path());
        Self {
            keygate,
            edge,
            http: reqwest::blocking::Client::new(),
            _origin: origin,
            _dir: dir,
            _runtime: runtime,
        }
    }

    fn status(&self, key: &str) -> (u16, String) {
        status(&self.http, &self.edge, key)
    }

    /// A new key that works at the edge: (key, key id).
    fn live_key(&self, name: &str) -> (String, String) {
        let (code, body) = self.keygate.call(
            Method::POST,
            "/v1/keys",
            Some(json!({"name": name, "environment": "development"})),
        );
        assert_eq!(code, 201, "{body}");
        let key = body["key"].as_str().unwrap().to_owned();
        let (_, took) = poll(BOUND, "a new key works", || {
            (self.status(&key).0 == 200).then_some(())
        });
        eprintln!("create -> 200: {} ms", took.as_millis());
        (key, body["key_id"].as_str().unwrap().to_owned())
    }

    /// Revokes the key and waits for the edge to refuse it.
    fn revoke(&self, key: &str, key_id: &str) {
        let (code, body) = self.keygate.call(
            Method::POST,
            &format!("/v1/keys/{key_id}/revoke"),
            Some(json!({"reason": "test"})),
        );
        assert_eq!(code, 200, "{body}");
        let (_, took) = poll(BOUND, "the revocation reaches the edge", || {
            (self.status(key) == (401, "revoked".to_owned())).then_some(())
        });
        eprintln!("revoke -> 401: {} ms", took.as_millis());
    }
}

#[test]
fn a_revocation_reaches_a_warm_isolate_through_the_feed_long_before_its_cache_expires() {
    // The isolate keeps what it read for a minute: only the feed can bring a change sooner.
    let world = Loop::start("60000", None);
    let (key, key_id) = world.live_key("warm");
    world.revoke(&key, &key_id);
}

#[test]
fn a_replayed_kv_record_does_not_bring_a_revoked_key_back() {
    // The isolate reads KV again every second, so it meets whatever KV holds.
    let world = Loop::start("1000", None);
    let (key, key_id) = world.live_key("replayed");
    // The key may work through the feed before its KV write lands.
    let (active, _) = poll(BOUND, "KV has the active record", || {
        world.edge.kv_get(&key_id)
    });
    world.revoke(&key, &key_id);
    // Someone with the KV token writes the key's older, genuinely signed, active record back.
    let version = keygate_shared::Envelope::decode(active.as_bytes())
        .unwrap()
        .open_verified(&keygate_shared::KeyId::parse(&key_id).unwrap())
        .unwrap()
        .version;
    world.edge.kv_put_at_version(&key_id, &active, version);
    // For several cache lifetimes, every read of KV meets the replay, and the feed's newer
    // record wins over it each time.
    let until = std::time::Instant::now() + Duration::from_secs(4);
    let mut answers = 0;
    while std::time::Instant::now() < until {
        assert_eq!(
            world.status(&key),
            (401, "revoked".to_owned()),
            "a replayed KV record brought a revoked key back"
        );
        answers += 1;
    }
    assert_eq!(
        world.edge.kv_get(&key_id).as_deref(),
        Some(active.as_str()),
        "KV holds the replay"
    );
    eprintln!("{answers} requests over 4 s, all refused");
}

#[test]
fn with_kv_slowed_by_20_s_a_new_key_and_its_revocation_still_reach_the_edge_in_seconds() {
    let world = Loop::start("60000", Some(Duration::from_secs(20)));
    let (key, key_id) = world.live_key("slow kv");
    assert_eq!(
        world.edge.kv_get(&key_id),
        None,
        "KV does not have the key yet"
    );
    world.revoke(&key, &key_id);
    // KV may have the key by now (its first write lands about 20 s after the create), but not
    // the revocation: the edge learnt it from the feed.
    let in_kv = world.edge.kv_get(&key_id).map(|value| {
        let envelope = keygate_shared::Envelope::decode(value.as_bytes()).unwrap();
        let record = envelope
            .open_verified(&keygate_shared::KeyId::parse(&key_id).unwrap())
            .unwrap();
        match record.state {
            keygate_shared::RecordState::Present(body) => body.status,
            keygate_shared::RecordState::Deleted => keygate_shared::Status::Revoked,
        }
    });
    assert_ne!(
        in_kv,
        Some(keygate_shared::Status::Revoked),
        "KV has the revocation already"
    );
    // The sync status shows it: the feed has everything, KV is behind.
    let status = world.keygate.sync_status();
    assert!(
        status["feed"]
            .as_str()
            .is_some_and(|feed| feed.ends_with(keygate_e2e::FEED_PATH)),
        "{status}"
    );
    assert_eq!(status["feed_pending"], 0, "{status}");
    assert!(status["outbox_depth"].as_i64() > Some(0), "{status}");
}
