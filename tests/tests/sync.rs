//! Snapshot sync against the Cloudflare KV REST API, played by [`FakeKv`]: the client's wire format
//! checked against wrangler's own requests, then the real `keygate` binary's pusher through an
//! outage, a crash, two replicas on one PostgreSQL, drift, and a full rebuild.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use keygate_control_plane::sync::{ApiToken, CloudflareKv, KvEntry, KvSink, SinkError};
use keygate_e2e::fake_kv::{self, Failure, FakeKv};
use keygate_e2e::keygate::{Keygate, bootstrap};
use keygate_e2e::{poll, wrangler};
use keygate_shared::{RecordState, SnapshotRecord, Status};
use reqwest::Method;
use serde_json::{Value, json};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn client(fake: &FakeKv) -> CloudflareKv {
    CloudflareKv::new(
        &fake.base_url(),
        fake_kv::ACCOUNT,
        fake_kv::NAMESPACE,
        ApiToken::new(fake_kv::TOKEN.to_owned()),
        Duration::from_secs(10),
    )
    .expect("client")
}

/// `wrangler kv <args> --namespace-id NAMESPACE --remote` against the fake.
fn wrangler_remote(fake: &FakeKv, args: &[&str]) -> std::process::Output {
    wrangler()
        .arg("kv")
        .args(args)
        .args(["--namespace-id", fake_kv::NAMESPACE, "--remote"])
        .env("CLOUDFLARE_API_BASE_URL", fake.base_url())
        .env("CLOUDFLARE_API_TOKEN", fake_kv::TOKEN)
        .env("CLOUDFLARE_ACCOUNT_ID", fake_kv::ACCOUNT)
        .output()
        .expect("wrangler runs")
}

/// The shape of a JSON value: objects by their keys' shapes, arrays by their first element's.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), shape(value)))
                .collect(),
        ),
        Value::Array(items) => json!([items.first().map(shape)]),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => Value::Null,
    }
}

#[test]
fn the_cloudflare_client_sends_what_wrangler_sends() {
    let runtime = runtime();
    let fake = FakeKv::start(&runtime);
    let dir = tempfile::tempdir().expect("temp dir");
    let entries = [("kid_one", "value one", 3u64), ("kid_two", "value two", 9)];

    // wrangler, the reference client.
    let bulk: Vec<Value> = entries
        .iter()
        .map(|(key, value, version)| json!({"key": key, "value": value, "metadata": {"version": version}}))
        .collect();
    let put_file = dir.path().join("put.json");
    std::fs::write(&put_file, serde_json::to_vec(&bulk).unwrap()).unwrap();
    let names = ["kid_one", "kid_two"];
    let delete_file = dir.path().join("delete.json");
    std::fs::write(&delete_file, serde_json::to_vec(&names).unwrap()).unwrap();
    let put = wrangler_remote(&fake, &["bulk", "put", put_file.to_str().unwrap()]);
    assert!(put.status.success(), "{put:?}");
    let listed_by_wrangler = wrangler_remote(&fake, &["key", "list"]);
    assert!(
        listed_by_wrangler.status.success(),
        "{listed_by_wrangler:?}"
    );
    let get_file = dir.path().join("get.json");
    let wanted = ["kid_two", "kid_none"];
    std::fs::write(&get_file, serde_json::to_vec(&wanted).unwrap()).unwrap();
    let read_by_wrangler = wrangler_remote(&fake, &["bulk", "get", get_file.to_str().unwrap()]);
    assert!(read_by_wrangler.status.success(), "{read_by_wrangler:?}");
    let delete = wrangler_remote(
        &fake,
        &["bulk", "delete", "--force", delete_file.to_str().unwrap()],
    );
    assert!(delete.status.success(), "{delete:?}");
    let reference = fake.state().requests.clone();
    assert_eq!(reference.len(), 4, "{reference:#?}");

    // keygate, the same operations.
    let ours = client(&fake);
    let kv_entries: Vec<KvEntry> = entries
        .iter()
        .map(|(key, value, version)| KvEntry {
            name: (*key).to_owned(),
            value: (*value).to_owned(),
            version: *version,
        })
        .collect();
    runtime.block_on(ours.put(&kv_entries)).expect("put");
    let listed = runtime.block_on(ours.list(None)).expect("list");
    let wanted: Vec<String> = wanted.iter().map(|name| (*name).to_owned()).collect();
    let read = runtime.block_on(ours.get(&wanted)).expect("get");
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    runtime.block_on(ours.delete(&names)).expect("delete");
    let mine = fake.state().requests[4..].to_vec();
    assert_eq!(mine.len(), 4);

    for (theirs, ours) in [
        (&reference[0], &mine[0]),
        (&reference[2], &mine[2]),
        (&reference[3], &mine[3]),
    ] {
        assert_eq!(ours.method, theirs.method);
        assert_eq!(ours.uri, theirs.uri);
        assert_eq!(ours.authorization, theirs.authorization);
        assert_eq!(ours.content_type, theirs.content_type);
        let (a, b): (Value, Value) = (
            serde_json::from_slice(&theirs.body).unwrap(),
            serde_json::from_slice(&ours.body).unwrap(),
        );
        assert_eq!(a, b, "the same entries give the same body");
        assert_eq!(shape(&a), shape(&b));
    }
    assert_eq!(
        [0, 2, 3].map(|n| reference[n].method.as_str()),
        ["PUT", "POST", "DELETE"]
    );
    // Bulk read: both see the value written and no value for a name KV does not hold.
    let printed = String::from_utf8_lossy(&read_by_wrangler.stdout);
    let wrangler_read: Value =
        serde_json::from_str(printed.trim().trim_end_matches("Success!").trim())
            .expect("wrangler prints the values as JSON");
    assert_eq!(
        wrangler_read,
        json!({"kid_two": "value two", "kid_none": null})
    );
    assert_eq!(read.len(), 2);
    assert_eq!(read["kid_two"].as_deref(), Some("value two"));
    assert_eq!(read["kid_none"], None);
    // Listing: the same endpoint (wrangler adds `prefix=`, keygate pages with `limit=`), and
    // both read the same entries and metadata from the fake's answer.
    let path = |uri: &str| uri.split('?').next().unwrap_or_default().to_owned();
    assert_eq!(path(&mine[1].uri), path(&reference[1].uri));
    assert_eq!(mine[1].authorization, reference[1].authorization);
    let wrangler_view: Value =
        serde_json::from_slice(&listed_by_wrangler.stdout).expect("wrangler prints JSON");
    let wrangler_versions: Vec<(String, Option<u64>)> = wrangler_view
        .as_array()
        .unwrap()
        .iter()
        .map(|key| {
            (
                key["name"].as_str().unwrap().to_owned(),
                key["metadata"]["version"].as_u64(),
            )
        })
        .collect();
    let our_versions: Vec<(String, Option<u64>)> = listed
        .entries
        .iter()
        .map(|entry| (entry.name.clone(), entry.version))
        .collect();
    assert_eq!(our_versions, wrangler_versions);
    assert_eq!(
        our_versions,
        [
            ("kid_one".to_owned(), Some(3)),
            ("kid_two".to_owned(), Some(9))
        ]
    );

    // A namespace longer than a page: wrangler follows the stand-in's cursor to the end, and so
    // does keygate, each name once and in order.
    let names: Vec<String> = (0..2_345).map(|n| format!("kid_{n:05}")).collect();
    fake.state().entries = names
        .iter()
        .map(|name| (name.clone(), ("v".to_owned(), None)))
        .collect();
    let by_wrangler = wrangler_remote(&fake, &["key", "list"]);
    assert!(by_wrangler.status.success(), "{by_wrangler:?}");
    let by_wrangler: Value = serde_json::from_slice(&by_wrangler.stdout).expect("JSON");
    let by_wrangler: Vec<&str> = by_wrangler
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|key| key["name"].as_str())
        .collect();
    assert_eq!(by_wrangler, names);
    let mut by_keygate = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = runtime
            .block_on(ours.list(cursor.as_deref()))
            .expect("list");
        pages += 1;
        by_keygate.extend(page.entries.into_iter().map(|entry| entry.name));
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(by_keygate, names);
    assert_eq!(pages, 3, "pages of 1,000");
}

#[test]
fn the_cloudflare_client_reads_errors_throttling_and_partial_writes() {
    let runtime = runtime();
    let fake = FakeKv::start(&runtime);
    let dir = tempfile::tempdir().expect("temp dir");
    let ours = client(&fake);
    let entries = vec![
        KvEntry {
            name: "a".into(),
            value: "1".into(),
            version: 1,
        },
        KvEntry {
            name: "b".into(),
            value: "2".into(),
            version: 1,
        },
    ];
    let put = |sink: &CloudflareKv| runtime.block_on(sink.put(&entries));

    // The fake's error envelope is an error to wrangler too, with the message shown.
    fake.state().fail_next.push_back(Failure {
        status: 400,
        retry_after: None,
        body: fake_kv::envelope_error(10021, "value too large"),
    });
    let file = dir.path().join("put.json");
    std::fs::write(&file, r#"[{"key":"a","value":"1"}]"#).unwrap();
    let refused = wrangler_remote(&fake, &["bulk", "put", file.to_str().unwrap()]);
    assert!(!refused.status.success());
    let printed = String::from_utf8_lossy(&refused.stderr).to_string()
        + &String::from_utf8_lossy(&refused.stdout);
    assert!(printed.contains("value too large"), "{printed}");

    fake.state().fail_next.push_back(Failure {
        status: 400,
        retry_after: None,
        body: fake_kv::envelope_error(10021, "value too large"),
    });
    match put(&ours) {
        Err(SinkError::Refused(message)) => {
            assert!(
                message.contains("value too large (code 10021)"),
                "{message}"
            );
            assert!(!message.contains(fake_kv::TOKEN));
        }
        other => panic!("{other:?}"),
    }
    // 200 with `success: false` is a refusal too.
    fake.state().fail_next.push_back(Failure {
        status: 200,
        retry_after: None,
        body: fake_kv::envelope_error(10001, "bulk write failed"),
    });
    assert!(matches!(put(&ours), Err(SinkError::Refused(m)) if m.contains("bulk write failed")));

    fake.state().fail_next.push_back(Failure::throttled(7));
    match put(&ours) {
        Err(error @ SinkError::Throttled { .. }) => {
            assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
        }
        other => panic!("{other:?}"),
    }
    fake.state().fail_next.push_back(Failure::server_error());
    assert!(
        matches!(put(&ours), Err(SinkError::Unavailable(m)) if m.contains("500") && m.contains("internal error"))
    );

    // A wrong token is refused, and the message does not carry it.
    let wrong = CloudflareKv::new(
        &fake.base_url(),
        fake_kv::ACCOUNT,
        fake_kv::NAMESPACE,
        ApiToken::new("not-the-token".into()),
        Duration::from_secs(5),
    )
    .unwrap();
    match put(&wrong) {
        Err(SinkError::Refused(message)) => {
            assert!(message.contains("403") && message.contains("Authentication error"));
            assert!(!message.contains("not-the-token"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(format!("{wrong:?}").contains("<redacted>"));
    assert!(!format!("{wrong:?}").contains("not-the-token"));

    // Partial success: the unsuccessful keys are named, the others written.
    fake.state().refuse_keys.insert("b".into(), 1);
    let written = put(&ours).expect("accepted");
    assert_eq!(written.unsuccessful, ["b"]);
    assert_eq!(fake.value("a").as_deref(), Some("1"));
    assert_eq!(fake.value("b"), None);

    // Nothing listening: unavailable, not a panic.
    let nobody = CloudflareKv::new(
        &format!("http://127.0.0.1:{}/client/v4", keygate_e2e::free_port()),
        fake_kv::ACCOUNT,
        fake_kv::NAMESPACE,
        ApiToken::new("t".into()),
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(matches!(put(&nobody), Err(SinkError::Unavailable(_))));
}

/// The pusher settings the fault tests run with: Cloudflare at the fake, quick retries.
fn pushing_to(fake: &FakeKv, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = fake.sink_env();
    for (name, value) in extra {
        env.retain(|(existing, _)| existing != name);
        env.push((name, (*value).to_owned()));
    }
    env
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("keygate.db").display())
}

fn create_key(keygate: &Keygate, name: &str) -> String {
    let (status, body) = keygate.call(
        Method::POST,
        "/v1/keys",
        Some(json!({"name": name, "environment": "development"})),
    );
    assert_eq!(status, 201, "{body}");
    body["key_id"].as_str().expect("key id").to_owned()
}

fn revoke(keygate: &Keygate, key_id: &str) {
    let (status, body) = keygate.call(
        Method::POST,
        &format!("/v1/keys/{key_id}/revoke"),
        Some(json!({"reason": "test"})),
    );
    assert_eq!(status, 200, "{body}");
}

/// Every key's (version, status) according to the control plane's API.
fn expected(keygate: &Keygate) -> BTreeMap<String, (u64, Status)> {
    let mut expected = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/keys?limit=500&cursor={cursor}"),
            None => "/v1/keys?limit=500".to_owned(),
        };
        let (status, page) = keygate.call(Method::GET, &path, None);
        assert_eq!(status, 200, "{page}");
        for key in page["items"].as_array().expect("items") {
            let state = match key["status"].as_str() {
                Some("revoked") => Status::Revoked,
                Some("disabled") => Status::Disabled,
                _ => Status::Active,
            };
            expected.insert(
                key["key_id"].as_str().unwrap().to_owned(),
                (key["version"].as_u64().unwrap(), state),
            );
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return expected,
        }
    }
}

/// The record of a signed KV entry, its signature checked with the test record key.
fn signed_record(key_id: &str, value: &str) -> SnapshotRecord {
    let envelope =
        keygate_shared::Envelope::decode(value.as_bytes()).expect("KV holds signed records");
    assert_eq!(envelope.kid(), keygate_e2e::record_key().kid);
    let public = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        keygate_e2e::record_key().x.as_bytes(),
    )
    .expect("base64url");
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public.try_into().expect("32 bytes"))
        .expect("a public key");
    let signature = ed25519_dalek::Signature::from_bytes(envelope.signature());
    ed25519_dalek::Verifier::verify(&verifying, &envelope.signed_bytes(), &signature)
        .expect("signed by the control plane's key");
    envelope
        .open_verified(&keygate_shared::KeyId::parse(key_id).expect("a key id"))
        .expect("a record")
}

/// What KV holds for a key: its record's version and status (`None` status: a tombstone).
fn held(fake: &FakeKv, key_id: &str) -> Option<(u64, Option<Status>)> {
    let (value, version) = fake.entry(key_id)?;
    let record = signed_record(key_id, &value);
    assert_eq!(version, Some(record.version), "metadata = record");
    Some((
        record.version,
        match record.state {
            RecordState::Present(body) => Some(body.status),
            RecordState::Deleted => None,
        },
    ))
}

/// Polls until KV holds exactly what the control plane says, and its outbox is empty.
#[track_caller]
fn converged(fake: &FakeKv, keygate: &Keygate, within: Duration) {
    let expected = expected(keygate);
    poll(within, "KV matches the database", || {
        let matches = expected.iter().all(|(key_id, (version, status))| {
            held(fake, key_id) == Some((*version, Some(*status)))
        });
        (matches && keygate.sync_status()["outbox_depth"] == 0).then_some(())
    });
}

/// Per key, the versions KV was given never go down: no change was reordered or replayed over a
/// newer one.
#[track_caller]
fn writes_in_order(fake: &FakeKv) {
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for (name, version) in &fake.state().writes {
        let version = version.expect("every write carries its version");
        if let Some(before) = last.insert(name.clone(), version) {
            assert!(
                version >= before,
                "{name}: version {version} written after {before}"
            );
        }
    }
}

#[test]
fn an_outage_during_a_burst_loses_nothing() {
    let runtime = runtime();
    let fake = FakeKv::start(&runtime);
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let token = bootstrap(&url);
    fake.state().down = Some(Failure::server_error());
    let keygate = Keygate::serve(&url, &token, &pushing_to(&fake, &[]), dir.path());

    // The API keeps answering while KV is down; the outbox grows.
    let keys: Vec<String> = (0..40)
        .map(|n| create_key(&keygate, &format!("burst-{n}")))
        .collect();
    for key_id in keys.iter().step_by(4) {
        revoke(&keygate, key_id);
    }
    let (status, _) = poll(Duration::from_secs(30), "the failure is reported", || {
        let status = keygate.sync_status();
        status["last_error"].is_string().then_some(status)
    });
    assert!(status["outbox_depth"].as_i64().unwrap() >= 40, "{status}");
    assert!(status["pending_keys"].as_i64().unwrap() == 40, "{status}");
    assert!(
        status["last_error"].as_str().unwrap().contains("500"),
        "{status}"
    );
    assert!(
        !status["last_error"]
            .as_str()
            .unwrap()
            .contains(fake_kv::TOKEN)
    );
    assert!(fake.state().entries.is_empty());
    let metrics = reqwest::blocking::get(keygate.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        !metrics.contains("keygate_sync_failed_requests_total 0\n"),
        "{metrics}"
    );
    assert!(metrics.contains("keygate_outbox_depth 50"), "{metrics}");

    // Throttled next, with Retry-After, then healthy: everything arrives, once, in order.
    {
        let mut state = fake.state();
        state.down = None;
        state.fail_next.push_back(Failure::throttled(1));
    }
    converged(&fake, &keygate, Duration::from_secs(30));
    writes_in_order(&fake);
    let requests = fake.state().requests.clone();
    let throttled = requests
        .iter()
        .position(|request| request.status == 429)
        .expect("one request was throttled");
    let waited = requests[throttled + 1].at - requests[throttled].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: the next request came after {waited:?}"
    );
    let status = keygate.sync_status();
    assert_eq!(status["pending_keys"], 0, "{status}");
    assert!(status["oldest_pending_age_seconds"].is_null(), "{status}");
    assert!(status["last_success_at"].is_string(), "{status}");
    // Only the newest record of each key was sent once KV came back.
    assert_eq!(fake.state().writes.len(), 40, "{:?}", fake.state().writes);
    assert!(!keygate.log().contains(fake_kv::TOKEN));
}

#[test]
fn revocations_jump_ahead_of_pending_creates_and_partial_failures_are_retried() {
    let runtime = runtime();
    let fake = FakeKv::start(&runtime);
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let token = bootstrap(&url);
    fake.state().delay = Duration::from_millis(400);
    let keygate = Keygate::serve(
        &url,
        &token,
        &pushing_to(&fake, &[("KEYGATE_SYNC_BATCH_SIZE", "10")]),
        dir.path(),
    );
    let keys: Vec<String> = (0..80)
        .map(|n| create_key(&keygate, &format!("bulk-{n}")))
        .collect();
    // The newest keys, queued last: revoking them must not wait for the creates before them.
    let revoked: Vec<&String> = keys.iter().rev().take(3).collect();
    fake.state().refuse_keys.insert(revoked[0].clone(), 2);
    for key_id in &revoked {
        revoke(&keygate, key_id);
    }
    converged(&fake, &keygate, Duration::from_secs(60));
    writes_in_order(&fake);
    let writes = fake.state().writes.clone();
    let position = |key_id: &str| writes.iter().position(|(name, _)| name == key_id).unwrap();
    let last_create = keys
        .iter()
        .filter(|key_id| !revoked.contains(key_id))
        .map(|key_id| position(key_id))
        .max()
        .unwrap();
    for key_id in &revoked[1..] {
        assert!(
            position(key_id) < last_create,
            "the revocation of {key_id} waited for every create"
        );
    }
    // The key KV refused twice got there too, revoked.
    assert_eq!(held(&fake, revoked[0]).unwrap().1, Some(Status::Revoked));
    let metrics = reqwest::blocking::get(keygate.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("keygate_sync_keys_not_written_total 2"),
        "{metrics}"
    );
}

#[test]
fn a_pusher_killed_mid_drain_converges_after_restart_without_reviving_a_key() {
    let runtime = runtime();
    let fake = FakeKv::start(&runtime);
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let token = bootstrap(&url);
    let env = pushing_to(
        &fake,
        &[
            ("KEYGATE_SYNC_BATCH_SIZE", "10"),
            ("KEYGATE_SYNC_LEASE_SECONDS", "2"),
        ],
    );
    fake.state().delay = Duration::from_millis(300);
    let mut keygate = Keygate::serve(&url, &token, &env, dir.path());
    let keys: Vec<String> = (0..60)
        .map(|n| create_key(&keygate, &format!("crash-{n}")))
        .collect();
    let revoked: BTreeSet<&String> = keys.iter().step_by(3).collect();
    for key_id in &revoked {
        revoke(&keygate, key_id);
    }
    poll(Duration::from_secs(30), "a few pushes landed", || {
        (fake.state().writes.len() >= 10).then_some(())
    });
    keygate.kill();
    let written_before = fake.state().writes.len();
    assert!(
        written_before < 60,
        "the kill came mid-drain ({written_before} written)"
    );

    let keygate = Keygate::serve(&url, &token, &env, dir.path());
    converged(&fake, &keygate, Duration::from_secs(60));
    writes_in_order(&fake);
    for key_id in &revoked {
        assert_eq!(
            held(&fake, key_id).unwrap().1,
            Some(Status::Revoked),
            "{key_id}"
        );
    }
}

#[test]
fn two_pushers_on_one_postgres_lose_and_reorder_nothing() {
    let Some(admin_url) = std::env::var("KEYGATE_TEST_POSTGRES_URL").ok() else {
        eprintln!("!!! KEYGATE_TEST_POSTGRES_URL is not set: two_pushers_on_one_postgres SKIPPED");
        return;
    };
    let runtime = runtime();
    let name = format!("keygate_e2e_{}", keygate_e2e::free_port());
    let database = runtime.block_on(async {
        use sqlx::Connection as _;
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        admin
    });
    let base = admin_url.rsplit_once('/').expect("URL ends in /DATABASE").0;
    let url = format!("{base}/{name}");
    let fake = FakeKv::start(&runtime);
    let dir = tempfile::tempdir().unwrap();
    let token = bootstrap(&url);
    fake.state().delay = Duration::from_millis(50);
    let env = pushing_to(&fake, &[("KEYGATE_SYNC_BATCH_SIZE", "5")]);
    let replicas = [
        Keygate::serve(&url, &token, &env, dir.path()),
        Keygate::serve(&url, &token, &env, dir.path()),
    ];
    // Every key is created on one replica and changed on the other, several times over.
    let keys: Vec<String> = (0..30)
        .map(|n| create_key(&replicas[n % 2], &format!("replica-{n}")))
        .collect();
    for round in 0..3 {
        for (n, key_id) in keys.iter().enumerate() {
            let (status, body) = replicas[(n + round + 1) % 2].call(
                Method::PATCH,
                &format!("/v1/keys/{key_id}"),
                Some(json!({"name": format!("replica-{n}-round-{round}")})),
            );
            assert_eq!(status, 200, "{body}");
        }
    }
    for (n, key_id) in keys.iter().enumerate().step_by(2) {
        revoke(&replicas[n % 2], key_id);
    }
    converged(&fake, &replicas[0], Duration::from_secs(60));
    writes_in_order(&fake);
    // Both replicas pushed: the work was shared, not just tolerated.
    let requests = fake.state().requests.len();
    let pushed: Vec<u64> = replicas
        .iter()
        .map(|replica| {
            let metrics = reqwest::blocking::get(replica.url("/metrics"))
                .unwrap()
                .text()
                .unwrap();
            metrics
                .lines()
                .find_map(|line| line.strip_prefix("keygate_sync_records_pushed_total "))
                .and_then(|count| count.parse().ok())
                .unwrap()
        })
        .collect();
    assert!(
        pushed.iter().all(|count| *count > 0),
        "{pushed:?} over {requests} requests"
    );
    drop(replicas);
    runtime.block_on(async {
        let mut admin = database;
        let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    });
}

/// `keygate serve` on a new SQLite database, pushing to a new stand-in and reconciling every
/// second.
struct Reconciling {
    fake: FakeKv,
    keygate: Keygate,
    url: String,
    _dir: tempfile::TempDir,
}

fn reconciling(runtime: &tokio::runtime::Runtime) -> Reconciling {
    let fake = FakeKv::start(runtime);
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let token = bootstrap(&url);
    let env = pushing_to(&fake, &[("KEYGATE_RECONCILE_INTERVAL_SECONDS", "1")]);
    let keygate = Keygate::serve(&url, &token, &env, dir.path());
    Reconciling {
        fake,
        keygate,
        url,
        _dir: dir,
    }
}

#[test]
fn reconciliation_repairs_drift_and_a_full_sync_rebuilds_the_snapshot() {
    let runtime = runtime();
    let Reconciling {
        fake,
        keygate,
        url,
        _dir,
    } = reconciling(&runtime);
    let keys: Vec<String> = (0..6)
        .map(|n| create_key(&keygate, &format!("drift-{n}")))
        .collect();
    let (status, _) = keygate.call(Method::DELETE, &format!("/v1/keys/{}", keys[5]), None);
    assert_eq!(status, 204);
    converged(&fake, &keygate, Duration::from_secs(30));
    assert_eq!(
        held(&fake, &keys[5]),
        Some((2, None)),
        "the deleted key is a tombstone"
    );

    // Drift: an entry lost, one rolled back to an old record, one nobody wrote, one tombstone lost.
    let old = fake.value(&keys[1]).unwrap();
    revoke(&keygate, &keys[1]);
    converged(&fake, &keygate, Duration::from_secs(30));
    {
        let mut state = fake.state();
        state.entries.remove(&keys[0]);
        state
            .entries
            .insert(keys[1].clone(), (old, Some(json!({"version": 1}))));
        state
            .entries
            .insert("stray-entry".into(), ("junk".into(), None));
        state.entries.remove(&keys[5]);
    }
    poll(
        Duration::from_secs(30),
        "reconciliation repairs the drift",
        || {
            let repaired = held(&fake, &keys[0]) == Some((1, Some(Status::Active)))
                && held(&fake, &keys[1]) == Some((2, Some(Status::Revoked)))
                && held(&fake, &keys[5]) == Some((2, None))
                && fake.value("stray-entry").is_none();
            repaired.then_some(())
        },
    );
    let status = keygate.sync_status();
    assert!(status["last_reconcile_at"].is_string(), "{status}");
    drop(keygate);

    // `keygate sync --full` into an empty namespace: one bulk write carries everything.
    let empty = FakeKv::start(&runtime);
    empty
        .state()
        .entries
        .insert("stray".into(), ("junk".into(), None));
    let output = std::process::Command::new(keygate_e2e::keygate::binary())
        .args(["sync", "--full"])
        .env("DATABASE_URL", &url)
        .envs(
            pushing_to(&empty, &[])
                .iter()
                .map(|(k, v)| (*k, v.as_str())),
        )
        .env("KEYGATE_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("6 records written") && stdout.contains("in 1 bulk requests"),
        "{stdout}"
    );
    assert_eq!(empty.count("PUT"), 1);
    assert_eq!(
        empty.state().entries.len(),
        6,
        "5 keys and 1 tombstone, the stray entry gone"
    );
    for key_id in &keys {
        assert_eq!(held(&empty, key_id), held(&fake, key_id), "{key_id}");
    }
    // With nothing pending, `keygate sync` has nothing to do.
    let output = std::process::Command::new(keygate_e2e::keygate::binary())
        .arg("sync")
        .env("DATABASE_URL", &url)
        .envs(
            pushing_to(&empty, &[])
                .iter()
                .map(|(k, v)| (*k, v.as_str())),
        )
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 records written"));
}

#[test]
fn reconciliation_reads_values_and_rewrites_what_keygate_did_not_sign() {
    let runtime = runtime();
    let Reconciling {
        fake,
        keygate,
        url: _,
        _dir,
    } = reconciling(&runtime);
    let keys: Vec<String> = (0..5)
        .map(|n| create_key(&keygate, &format!("signed-{n}")))
        .collect();
    converged(&fake, &keygate, Duration::from_secs(30));
    let active_of_1 = fake.value(&keys[1]).unwrap();
    revoke(&keygate, &keys[1]);
    converged(&fake, &keygate, Duration::from_secs(30));
    let genuine: Vec<String> = keys.iter().map(|key| fake.value(key).unwrap()).collect();

    // A pass over an untouched namespace reads every entry and finds nothing wrong.
    let since = keygate.sync_status()["last_reconcile_at"].clone();
    let (status, _) = poll(Duration::from_secs(30), "a reconciliation pass", || {
        let status = keygate.sync_status();
        (status["last_reconcile_at"] != since && status["last_reconcile_at"].is_string())
            .then_some(status)
    });
    assert_eq!(status["last_reconcile_tampered"], 0, "{status}");
    assert_eq!(status["last_tampering_at"], Value::Null, "{status}");

    // Someone with the KV token writes entries at the versions the metadata expects: each
    // listing still looks right.
    let record_of = |n: usize| signed_record(&keys[n], &genuine[n]);
    let widened = {
        let mut record = record_of(0);
        let RecordState::Present(body) = &mut record.state else {
            panic!("a key")
        };
        body.permissions = keygate_shared::Grants::parse(&["*"]).unwrap();
        // Signed by the attacker's own key under keygate's kid.
        let mut forger = keygate_origin::generate("rec-e2e", &[66; 32]);
        forger.kid = keygate_e2e::record_key().kid;
        keygate_e2e::seal_with(&record, &forger)
    };
    let rotated = keygate_e2e::seal_with(&record_of(3), &keygate_e2e::next_record_key());
    let replayed_version = record_of(1).version;
    {
        let mut state = fake.state();
        let mut overwrite = |n: usize, value: String, version: u64| {
            state.entries.insert(
                keys[n].clone(),
                (value, Some(json!({ "version": version }))),
            );
        };
        overwrite(0, widened, record_of(0).version);
        // The key's older, genuinely signed, active record, under its current version.
        overwrite(1, active_of_1.clone(), replayed_version);
        overwrite(2, "{\"format\":1}".to_owned(), record_of(2).version);
        // The right record under another signing key (a rotation): re-signed, not tampering.
        overwrite(3, rotated, record_of(3).version);
    }
    poll(
        Duration::from_secs(30),
        "reconciliation rewrites the entries",
        || {
            (0..5)
                .all(|n| fake.value(&keys[n]).as_ref() == Some(&genuine[n]))
                .then_some(())
        },
    );
    let status = keygate.sync_status();
    assert_eq!(status["last_tampering_entries"], 3, "{status}");
    assert!(status["last_tampering_at"].is_string(), "{status}");
    let metrics = reqwest::blocking::get(keygate.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("keygate_sync_tampered_entries_total 3\n"),
        "{metrics}"
    );
    let log = keygate.log();
    for key_id in &keys[..3] {
        assert!(
            log.lines()
                .any(|line| line.contains("not what keygate signed") && line.contains(key_id)),
            "the log names {key_id}: {log}"
        );
    }
    assert!(
        !log.lines()
            .any(|line| line.contains("not what keygate signed") && line.contains(&keys[3])),
        "a record under another signing key is no alarm: {log}"
    );

    // The next clean pass keeps the finding for an alert to see.
    let since = keygate.sync_status()["last_reconcile_at"].clone();
    let (status, _) = poll(Duration::from_secs(30), "a clean pass", || {
        let status = keygate.sync_status();
        (status["last_reconcile_at"] != since && status["last_reconcile_tampered"] == 0)
            .then_some(status)
    });
    assert_eq!(status["last_tampering_entries"], 3, "{status}");
}
