//! The change feed on real components: the `keygate` binary (SQLite) appending to the feed of a
//! running `wrangler dev` before it writes KV, the Worker's isolates following the feed, an echo
//! origin.

use std::time::Duration;

use keygate_e2e::feed_fault::{self, FeedMode, FeedSwitch};
use keygate_e2e::keygate::{Keygate, bootstrap, pushing_to_wrangler, slow_wrangler};
use keygate_e2e::{EchoOrigin, WranglerDev, poll};
use reqwest::Method;
use serde_json::{Value, json};

const ROUTES: &str = r#"[
  {"method": "GET", "path": "/needs-read", "permissions": ["customer:read"]},
  {"method": "*", "path": "/*", "any_key": true}
]"#;
/// A poll a second, a wrangler start per push (about 1.5 s), on a loaded 2-core machine.
const BOUND: Duration = Duration::from_secs(10);

fn status(http: &reqwest::blocking::Client, edge: &WranglerDev, key: &str) -> (u16, String) {
    status_at(http, edge, key, "/anything")
}

fn status_at(
    http: &reqwest::blocking::Client,
    edge: &WranglerDev,
    key: &str,
    path: &str,
) -> (u16, String) {
    let response = http
        .get(edge.url(path))
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

struct Loop {
    keygate: Keygate,
    edge: WranglerDev,
    http: reqwest::blocking::Client,
    /// The feed's switch, when the Worker reaches its feed through the fault proxy.
    switch: Option<FeedSwitch>,
    _origin: EchoOrigin,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl Drop for Loop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- wrangler dev:\n{}\n--- keygate:\n{}",
                self.edge.log(),
                self.keygate.log()
            );
        }
    }
}

/// How a [`Loop`] is set up.
#[derive(Default)]
struct Setup {
    /// The isolate cache's TTL.
    cache_ttl_ms: &'static str,
    /// Each KV write of the pusher takes this much longer.
    kv_delay: Option<Duration>,
    /// The feed sits behind a switch ([`FeedSwitch`]).
    switchable_feed: bool,
    /// More settings of `keygate serve`.
    keygate_env: Vec<(&'static str, String)>,
}

impl Loop {
    /// `wrangler dev` with an isolate cache of `cache_ttl_ms`, and `keygate serve` pushing to its
    /// feed and KV; with `kv_delay`, each KV write of the pusher takes that much longer.
    fn start(cache_ttl_ms: &'static str, kv_delay: Option<Duration>) -> Self {
        Self::with(Setup {
            cache_ttl_ms,
            kv_delay,
            ..Setup::default()
        })
    }

    fn with(setup: Setup) -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let origin = EchoOrigin::start(&runtime);
        let dir = tempfile::tempdir().unwrap();
        let vars = [
            ("KEYGATE_ORIGIN", origin.url()),
            ("KEYGATE_ROUTES", ROUTES.to_owned()),
            ("KEYGATE_CACHE_TTL_MS", setup.cache_ttl_ms.to_owned()),
        ];
        let vars: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let switch = setup.switchable_feed.then(|| FeedSwitch::start(&runtime));
        let edge = match &switch {
            Some(switch) => {
                WranglerDev::with_configs(&feed_fault::configs(dir.path(), switch), &vars)
            }
            None => WranglerDev::start(&vars),
        };
        let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
        let token = bootstrap(&url);
        let mut env = pushing_to_wrangler(&edge);
        if let Some(delay) = setup.kv_delay {
            env.retain(|(name, _)| *name != "KEYGATE_WRANGLER");
            env.push(("KEYGATE_WRANGLER", slow_wrangler(dir.path(), delay)));
        }
        env.push(("KEYGATE_SYNC_POLL_MS", "200".to_owned()));
        env.push(("KEYGATE_SYNC_MAX_BACKOFF_SECONDS", "1".to_owned()));
        env.push(("KEYGATE_RECONCILE_INTERVAL_SECONDS", "0".to_owned()));
        env.extend(setup.keygate_env);
        let keygate = Keygate::serve(&url, &token, &env, dir.path());
        keygate.catalogue(&["customer:read", "telemetry:write"]);
        Self {
            keygate,
            edge,
            http: reqwest::blocking::Client::new(),
            switch,
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
        self.live_key_with(name, &[])
    }

    /// A new key with `permissions` that works at the edge: (key, key id).
    fn live_key_with(&self, name: &str, permissions: &[&str]) -> (String, String) {
        let (code, body) = self.keygate.call(
            Method::POST,
            "/v1/keys",
            Some(json!({"name": name, "environment": "development", "permissions": permissions})),
        );
        assert_eq!(code, 201, "{body}");
        let key = body["key"].as_str().unwrap().to_owned();
        let (_, took) = poll(BOUND, "a new key works", || {
            (self.status(&key).0 == 200).then_some(())
        });
        eprintln!("create -> 200: {} ms", took.as_millis());
        (key, body["key_id"].as_str().unwrap().to_owned())
    }

    /// Revokes the key and waits for the edge to refuse it; how long that took.
    fn revoke(&self, key: &str, key_id: &str) -> Duration {
        self.change(
            "revoke",
            Method::POST,
            &format!("/v1/keys/{key_id}/revoke"),
            json!({"reason": "test"}),
        );
        self.until(key, "/anything", (401, "revoked"), BOUND)
    }

    /// One admin call that must succeed; its body.
    fn change(&self, what: &str, method: Method, path: &str, body: Value) -> Value {
        let (code, body) = self.keygate.call(method, path, Some(body));
        assert_eq!(code, 200, "{what}: {body}");
        body
    }

    /// Waits (at most `bound`) until the edge answers `key` on `path` with `expected` (status and
    /// error code); how long that took.
    fn until(&self, key: &str, path: &str, expected: (u16, &str), bound: Duration) -> Duration {
        let what = format!("{path} answers {expected:?}");
        let (_, took) = poll(bound, &what, || {
            let (status, code) = status_at(&self.http, &self.edge, key, path);
            (status == expected.0 && code == expected.1).then_some(())
        });
        eprintln!("{what}: after {} ms", took.as_millis());
        took
    }

    /// Waits until the control plane has appended everything to the feed.
    fn fed(&self) {
        poll(BOUND, "the feed has every change", || {
            (self.keygate.sync_status()["feed_pending"] == 0).then_some(())
        });
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
fn with_kv_slowed_by_30_s_a_disable_a_regeneration_and_a_removed_permission_reach_the_edge_in_seconds()
 {
    let world = Loop::start("60000", Some(Duration::from_secs(30)));
    let (reader, reader_id) = world.live_key_with("reader", &["customer:read"]);
    world.until(&reader, "/needs-read", (200, ""), BOUND);
    world.change(
        "remove the permission",
        Method::PATCH,
        &format!("/v1/keys/{reader_id}"),
        json!({"permissions": ["telemetry:write"]}),
    );
    world.until(
        &reader,
        "/needs-read",
        (403, "insufficient_permissions"),
        BOUND,
    );
    world.until(&reader, "/anything", (200, ""), BOUND);

    let (disabled, disabled_id) = world.live_key("disabled");
    world.change(
        "disable",
        Method::POST,
        &format!("/v1/keys/{disabled_id}/disable"),
        json!({}),
    );
    world.until(&disabled, "/anything", (401, "disabled"), BOUND);

    let (old, old_id) = world.live_key("regenerated");
    let body = world.change(
        "regenerate without grace",
        Method::POST,
        &format!("/v1/keys/{old_id}/regenerate"),
        json!({}),
    );
    let new = body["key"].as_str().expect("the new key");
    world.until(&old, "/anything", (401, "invalid_key"), BOUND);
    world.until(new, "/anything", (200, ""), BOUND);
    // None of it came through KV: its first write is still asleep.
    for key_id in [&reader_id, &disabled_id, &old_id] {
        assert_eq!(world.edge.kv_get(key_id), None, "KV has {key_id} already");
    }
}

#[test]
fn an_isolate_idle_for_10_s_honours_a_revocation_made_in_the_quiet_on_its_first_request() {
    // KV slowed past the test and a one-minute isolate cache: only the feed can tell.
    let world = Loop::start("60000", Some(Duration::from_secs(60)));
    let (key, key_id) = world.live_key("idle");
    world.change(
        "revoke",
        Method::POST,
        &format!("/v1/keys/{key_id}/revoke"),
        json!({"reason": "while the edge was quiet"}),
    );
    world.fed();
    // The quiet itself is what is tested: no request reaches the edge for 10 s.
    std::thread::sleep(Duration::from_secs(10));
    let started = std::time::Instant::now();
    assert_eq!(
        world.status(&key),
        (401, "revoked".to_owned()),
        "the first request after the quiet"
    );
    eprintln!(
        "first request after 10 s idle: 401 in {} ms",
        started.elapsed().as_millis()
    );
}

/// The longest a request may take while the feed fails: the poll timeout (1 s) plus a KV read and
/// the rest of the request, on a loaded 2-core machine.
const BLOCKED_AT_MOST: Duration = Duration::from_secs(4);

/// A request this slow waited for the feed (the poll timeout is 1 s; a request that does not wait
/// takes a few milliseconds).
const WAITED: Duration = Duration::from_millis(500);

#[test]
fn a_failing_or_stalled_feed_degrades_to_kv_within_the_bound_and_the_edge_recovers_on_its_own() {
    // KV's path is slower than the feed's but well inside the test: a change that arrives sooner
    // than the KV delay came through the feed.
    let kv_delay = Duration::from_secs(8);
    let world = Loop::with(Setup {
        cache_ttl_ms: "60000",
        kv_delay: Some(kv_delay),
        switchable_feed: true,
        keygate_env: vec![("KEYGATE_FEED_HOLD_SECONDS", "1".to_owned())],
    });
    let switch = world.switch.as_ref().expect("a switchable feed");
    // Degraded: the hold (1 s), the slowed KV write (8 s plus wrangler's start), the degraded
    // cache TTL (1 s), with room for a loaded machine.
    let degraded_bound = Duration::from_secs(30);
    let (first, first_id) = world.live_key("before the outage");
    let (second, second_id) = world.live_key("revoked during the stall");

    // The feed stalls while the edge is quiet for longer than KEYGATE_FEED_STALE_MS (3 s): the
    // next request waits for one poll, which only the poll's timeout (a timer in the request's
    // own future) ends, then decides from KV. The quiet itself is what is tested.
    switch.set(FeedMode::Stalled);
    std::thread::sleep(Duration::from_secs(4));
    let started = std::time::Instant::now();
    let answer = world.status(&first);
    let took = started.elapsed();
    assert_eq!(
        answer.0, 200,
        "the first request after the quiet: {answer:?}"
    );
    assert!(
        (WAITED..BLOCKED_AT_MOST).contains(&took),
        "the first request after the quiet took {took:?}: it should wait for the poll's timeout"
    );

    for (mode, key, key_id) in [
        (FeedMode::Failing, &first, &first_id),
        (FeedMode::Stalled, &second, &second_id),
    ] {
        switch.set(mode);
        world.change(
            "revoke",
            Method::POST,
            &format!("/v1/keys/{key_id}/revoke"),
            json!({"reason": "during an outage of the feed"}),
        );
        let (mut slowest, mut requests, mut waited) = (Duration::ZERO, 0, 0);
        let (_, took) = poll(
            degraded_bound,
            "the revocation reaches the edge through KV",
            || {
                let started = std::time::Instant::now();
                let answer = world.status(key);
                let elapsed = started.elapsed();
                slowest = slowest.max(elapsed);
                requests += 1;
                waited += usize::from(elapsed >= WAITED);
                (answer == (401, "revoked".to_owned())).then_some(())
            },
        );
        assert!(
            slowest < BLOCKED_AT_MOST,
            "{mode:?}: a request took {slowest:?}"
        );
        // Once degraded, requests decide from KV without waiting for the feed: only the one that
        // found it down (in each isolate) waited.
        assert!(
            waited <= 2,
            "{mode:?}: {waited} of {requests} requests waited for the feed"
        );
        assert!(
            world.edge.kv_get(key_id).is_some(),
            "{mode:?}: the revocation came through KV"
        );
        let status = world.keygate.sync_status();
        assert!(status["feed_pending"].as_i64() > Some(0), "{status}");
        eprintln!(
            "{mode:?}: revoke -> 401 through KV in {} ms, slowest request {} ms, {waited} of \
             {requests} requests waited for the feed",
            took.as_millis(),
            slowest.as_millis()
        );
    }
    assert!(
        world.edge.log().contains("feed_degraded"),
        "degraded mode is logged:\n{}",
        world.edge.log()
    );

    // The feed comes back: the control plane catches it up, the edge hears it again, and a
    // revocation is faster than KV could bring it.
    switch.set(FeedMode::Up);
    world.fed();
    let (third, third_id) = world.live_key("after the outage");
    poll(BOUND, "the edge hears the feed again", || {
        world.status(&third);
        world
            .edge
            .log()
            .contains("feed: reachable again")
            .then_some(())
    });
    let took = world.revoke(&third, &third_id);
    assert!(
        took < kv_delay,
        "the revocation took {took:?}: it came through KV, not the feed"
    );
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
    let version_of = |record: &str| {
        keygate_shared::Envelope::decode(record.as_bytes())
            .unwrap()
            .open_verified(&keygate_shared::KeyId::parse(&key_id).unwrap())
            .unwrap()
            .version
    };
    let version = version_of(&active);
    // The edge refused the key through the feed; the pusher's KV write of the revocation may
    // still be on its way. The replay must come after it, or that write would undo the replay.
    poll(BOUND, "KV has the revocation", || {
        world
            .edge
            .kv_get(&key_id)
            .filter(|record| version_of(record) > version)
    });
    // Someone with the KV token writes the key's older, genuinely signed, active record back.
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
