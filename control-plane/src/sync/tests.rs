//! The pusher's rules, without a network: a SQLite file, a manual clock, a seeded generator, and
//! a scripted sink that records every request and can move the clock while it "works".

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keygate_shared::{
    Digest, Environment, Grants, KeyId, KeyRecord, OwnerId, RecordState, SnapshotRecord, Status,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{
    Jitter, KvEntry, KvPage, KvSink, PushSettings, Pusher, Round, SinkError, SyncHandle, Written,
    backoff,
};
use crate::Clock;
use crate::store::outbox::{Claimed, KvTakes};
use crate::store::{Db, outbox};

const START: i64 = 1_800_000_000;
const LEASE: Duration = Duration::from_secs(60);

/// What the scripted sink answers to the next put, and how long that put "takes".
enum Answer {
    Ok,
    Unsuccessful(Vec<String>),
    Fail(SinkError),
}

#[derive(Clone, Default)]
struct ScriptedKv {
    inner: Arc<Mutex<Script>>,
}

#[derive(Default)]
struct Script {
    answers: VecDeque<(Answer, Duration)>,
    puts: Vec<Vec<KvEntry>>,
    max_pairs: Option<usize>,
    clock: Option<Clock>,
}

impl ScriptedKv {
    fn new(clock: &Clock) -> Self {
        let sink = Self::default();
        sink.script().clock = Some(clock.clone());
        sink
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.inner.lock().expect("script")
    }

    fn answer(&self, answer: Answer, takes: Duration) -> &Self {
        self.script().answers.push_back((answer, takes));
        self
    }

    /// The key ids of each put, in the order they were sent.
    fn puts(&self) -> Vec<Vec<String>> {
        self.script()
            .puts
            .iter()
            .map(|batch| batch.iter().map(|entry| entry.name.clone()).collect())
            .collect()
    }
}

impl KvSink for ScriptedKv {
    fn describe(&self) -> String {
        "scripted".into()
    }

    fn max_pairs(&self) -> usize {
        self.script().max_pairs.unwrap_or(super::MAX_BULK_PAIRS)
    }

    async fn put(&self, entries: &[KvEntry]) -> Result<Written, SinkError> {
        let mut script = self.script();
        script.puts.push(entries.to_vec());
        let (answer, takes) = script
            .answers
            .pop_front()
            .unwrap_or((Answer::Ok, Duration::ZERO));
        if let Some(clock) = &script.clock {
            clock.advance_ms(takes.as_millis().try_into().expect("short"));
        }
        match answer {
            Answer::Ok => Ok(Written::default()),
            Answer::Unsuccessful(unsuccessful) => Ok(Written { unsuccessful }),
            Answer::Fail(error) => Err(error),
        }
    }

    async fn get(
        &self,
        _names: &[String],
    ) -> Result<std::collections::HashMap<String, Option<String>>, SinkError> {
        Ok(std::collections::HashMap::new())
    }

    async fn delete(&self, _names: &[String]) -> Result<Written, SinkError> {
        Ok(Written::default())
    }

    async fn list(&self, _cursor: Option<&str>) -> Result<KvPage, SinkError> {
        Ok(KvPage::default())
    }
}

struct Fixture {
    db: Db,
    clock: Clock,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("sync.db").display());
    Fixture {
        db: Db::connect(&url, 2).await.expect("database"),
        clock: Clock::manual(START),
        _dir: dir,
    }
}

impl Fixture {
    fn pusher(&self, sink: &ScriptedKv, seed: u64) -> Pusher<ScriptedKv> {
        let settings = PushSettings {
            batch_size: 100,
            poll_interval: Duration::from_millis(10),
            lease: LEASE,
            max_backoff: Duration::from_secs(60),
            reconcile_interval: None,
            reconcile_reads: 0,
            feed_hold: Duration::from_secs(5),
        };
        let jwk = keygate_origin::generate("rec-test", &[5; 32]);
        let signer = super::RecordSigner::from_jwk(&serde_json::to_string(&jwk).expect("JSON"))
            .expect("a record key");
        Pusher::new(
            self.db.clone(),
            sink.clone(),
            signer,
            settings,
            SyncHandle::new(Some("scripted".into()), None),
            self.clock.clone(),
            Jitter::new(StdRng::seed_from_u64(seed)),
        )
    }

    /// Queues a change of `key_id` to `status`, as a key mutation does.
    async fn change(&self, key_id: KeyId, version: u64, status: Status) {
        let record = SnapshotRecord {
            key_id,
            version,
            state: RecordState::Present(KeyRecord {
                status,
                ..KeyRecord::active(
                    Digest::of_key("irrelevant"),
                    Environment::Production,
                    Grants::default(),
                    OwnerId::parse("usr_1").expect("owner"),
                )
            }),
        };
        let mut tx = self.db.begin().await.expect("begin");
        outbox::enqueue(&mut tx, &record, self.clock.now())
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
    }

    async fn keys(&self, count: usize) -> Vec<KeyId> {
        let mut rng = StdRng::seed_from_u64(7);
        let ids: Vec<KeyId> = (0..count).map(|_| KeyId::generate(&mut rng)).collect();
        for key_id in &ids {
            self.change(*key_id, 1, Status::Active).await;
        }
        ids
    }

    async fn depth(&self) -> i64 {
        outbox::depth(&self.db).await.expect("depth")
    }

    /// Who may claim now: the keys another pusher would get at this instant.
    async fn claimable(&self) -> Vec<String> {
        outbox::claim(
            &self.db,
            "observer",
            self.clock.manual_ms(),
            1,
            100,
            KvTakes::All,
        )
        .await
        .expect("claim")
        .into_iter()
        .map(|claimed| claimed.key_id)
        .collect()
    }
}

fn round_failed(round: Round) -> Duration {
    match round {
        Round::Failed(delay) => delay,
        Round::Idle => panic!("idle"),
        Round::Pushed(count) => panic!("pushed {count}"),
    }
}

#[tokio::test]
async fn a_claim_holds_a_key_until_its_lease_ends() {
    let f = fixture().await;
    let keys = f.keys(1).await;
    let held = outbox::claim(
        &f.db,
        "first",
        f.clock.manual_ms(),
        60_000,
        10,
        KvTakes::All,
    )
    .await
    .unwrap();
    assert_eq!(held.len(), 1);
    f.clock.advance_ms(59_999);
    assert!(f.claimable().await.is_empty(), "held until the lease ends");
    f.clock.advance_ms(1);
    assert_eq!(
        f.claimable().await,
        [keys[0].to_string()],
        "free once it ends"
    );
}

#[tokio::test]
async fn a_key_with_many_pending_versions_is_claimed_whole_and_hides_no_other_key() {
    let f = fixture().await;
    let busy = f.keys(1).await[0];
    for version in 2..=20 {
        f.change(busy, version, Status::Active).await;
    }
    let mut rng = StdRng::seed_from_u64(8);
    let mut others: Vec<String> = Vec::new();
    for _ in 0..3 {
        let key_id = KeyId::generate(&mut rng);
        f.change(key_id, 1, Status::Active).await;
        others.push(key_id.to_string());
    }
    // The busy key's 20 rows come first in the outbox, more than a small claim reads at once.
    let first = outbox::claim(&f.db, "first", f.clock.manual_ms(), 60_000, 2, KvTakes::All)
        .await
        .unwrap();
    assert_eq!(
        first[0].key_id,
        busy.to_string(),
        "the oldest row's key leads"
    );
    assert_eq!(first[0].version, 20, "its newest version is the one sent");
    let mut expected = others;
    expected.retain(|key_id| !first.iter().any(|held| &held.key_id == key_id));
    assert_eq!(
        f.claimable().await,
        expected,
        "the held keys' rows do not hide the rest"
    );
    let done: Vec<&Claimed> = first.iter().take(1).collect();
    outbox::pushed(&f.db, "first", &done, KvTakes::All)
        .await
        .unwrap();
    assert_eq!(f.depth().await, 3, "all 20 of its rows left, no other row");
}

#[tokio::test]
async fn keys_that_must_stop_working_are_pushed_first() {
    let f = fixture().await;
    let keys = f.keys(5).await;
    f.change(keys[4], 2, Status::Revoked).await;
    f.change(keys[3], 2, Status::Disabled).await;
    let sink = ScriptedKv::new(&f.clock);
    sink.script().max_pairs = Some(2);
    let pusher = f.pusher(&sink, 1);
    assert!(matches!(pusher.round(0).await.unwrap(), Round::Pushed(5)));
    let puts = sink.puts();
    let mut sent_first = puts[0].clone();
    sent_first.sort();
    let mut stops = vec![keys[3].to_string(), keys[4].to_string()];
    stops.sort();
    assert_eq!(sent_first, stops, "the revoked and the disabled key lead");
    assert_eq!(
        puts.concat().len(),
        5,
        "each key once, at its newest version"
    );
    assert_eq!(f.depth().await, 0);
}

#[test]
fn backoff_doubles_to_its_cap_and_jitters_within_the_upper_half() {
    let mut rng = StdRng::seed_from_u64(3);
    let cap = Duration::from_secs(60);
    for failures in 0..24 {
        let ceiling = Duration::from_millis(500)
            .saturating_mul(1 << failures.min(16))
            .min(cap);
        let draws: Vec<Duration> = (0..200).map(|_| backoff(failures, cap, &mut rng)).collect();
        for draw in &draws {
            assert!(
                *draw >= ceiling / 2 && *draw < ceiling,
                "{failures}: {draw:?} outside [{:?}, {ceiling:?})",
                ceiling / 2
            );
        }
        let spread = draws
            .iter()
            .max()
            .unwrap()
            .saturating_sub(*draws.iter().min().unwrap());
        assert!(
            spread > ceiling / 8,
            "{failures}: draws are spread, not fixed"
        );
    }
}

#[tokio::test]
async fn a_failed_push_waits_its_backoff_or_the_retry_after_whichever_is_longer() {
    let f = fixture().await;
    let keys = f.keys(1).await;
    let sink = ScriptedKv::new(&f.clock);
    sink.answer(
        Answer::Fail(SinkError::Throttled {
            retry_after: Some(Duration::from_secs(7)),
        }),
        Duration::ZERO,
    )
    .answer(
        Answer::Fail(SinkError::Unavailable("502".into())),
        Duration::ZERO,
    );
    let pusher = f.pusher(&sink, 2);

    let delay = round_failed(pusher.round(0).await.unwrap());
    assert_eq!(
        delay,
        Duration::from_secs(7),
        "Retry-After beats a 0.25-0.5 s backoff"
    );
    f.clock.advance_ms(6_999);
    assert!(f.claimable().await.is_empty(), "not before Retry-After");
    f.clock.advance_ms(1);

    let delay = round_failed(pusher.round(3).await.unwrap());
    assert!(
        delay >= Duration::from_secs(2) && delay < Duration::from_secs(4),
        "a fourth failure waits 2-4 s: {delay:?}"
    );
    assert_eq!(
        f.depth().await,
        1,
        "nothing leaves the outbox until KV took it"
    );
    assert_eq!(sink.puts(), [[keys[0].to_string()], [keys[0].to_string()]]);
}

#[tokio::test]
async fn a_pusher_past_half_its_lease_hands_the_rest_back_unsent() {
    let f = fixture().await;
    let keys = f.keys(6).await;
    let sink = ScriptedKv::new(&f.clock);
    sink.script().max_pairs = Some(2);
    // The first bulk request takes just over half the lease.
    sink.answer(Answer::Ok, LEASE / 2 + Duration::from_millis(1));
    let pusher = f.pusher(&sink, 4);
    assert!(matches!(pusher.round(0).await.unwrap(), Round::Pushed(2)));
    assert_eq!(sink.puts().len(), 1, "no request after half the lease");
    let mut handed_back = f.claimable().await;
    handed_back.sort();
    let mut rest: Vec<String> = keys
        .iter()
        .map(ToString::to_string)
        .filter(|id| !sink.puts()[0].contains(id))
        .collect();
    rest.sort();
    assert_eq!(handed_back, rest, "the other pushers may take them at once");
    assert_eq!(f.depth().await, 4);
}

#[tokio::test]
async fn keys_kv_did_not_write_wait_their_own_backoff_and_the_rest_are_done() {
    let f = fixture().await;
    let keys = f.keys(3).await;
    let failed = keys[1].to_string();
    let sink = ScriptedKv::new(&f.clock);
    sink.answer(Answer::Unsuccessful(vec![failed.clone()]), Duration::ZERO);
    let pusher = f.pusher(&sink, 5);
    assert!(matches!(pusher.round(0).await.unwrap(), Round::Pushed(2)));
    assert_eq!(
        f.depth().await,
        1,
        "only the unwritten key is still pending"
    );
    assert!(
        f.claimable().await.is_empty(),
        "it waits out a backoff first"
    );
    f.clock.advance_ms(500);
    assert_eq!(
        f.claimable().await,
        std::slice::from_ref(&failed),
        "0.25-0.5 s on its first failure"
    );
    f.clock.advance_ms(1);
    // Its second try succeeds and takes it out of the outbox.
    assert!(matches!(pusher.round(0).await.unwrap(), Round::Pushed(1)));
    assert_eq!(sink.puts().last().unwrap(), &vec![failed]);
    assert_eq!(f.depth().await, 0);
}

#[test]
fn reconciliation_reads_a_large_namespace_in_turns() {
    let names: Vec<String> = (0..5).map(|n| format!("k{n}")).collect();
    let sorted: Vec<&String> = names.iter().collect();
    let mut after = String::new();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let turn = super::in_turn(&sorted, &after, 2);
        after = turn.last().expect("a turn").clone();
        seen.push(turn);
    }
    assert_eq!(seen, [["k0", "k1"], ["k2", "k3"], ["k4", "k0"]]);
    // A key gone since the last pass does not stop the turn; a limit above the count reads all.
    assert_eq!(super::in_turn(&sorted, "k25", 2), ["k3", "k4"]);
    assert_eq!(super::in_turn(&sorted, "k4", 10), names);
    assert!(super::in_turn(&[], "", 10).is_empty());
}

#[test]
fn only_what_the_signer_writes_is_genuine() {
    use super::Found;
    let signer = |seed: u8, kid: &str| {
        let jwk = keygate_origin::generate(kid, &[seed; 32]);
        super::RecordSigner::from_jwk(&serde_json::to_string(&jwk).expect("JSON")).expect("key")
    };
    let ours = signer(1, "rec-now");
    let record = |version: u64| {
        SnapshotRecord {
            key_id: KeyId::parse(&"a".repeat(22)).expect("key id"),
            version,
            state: RecordState::Deleted,
        }
        .encode()
    };
    let (now, before) = (record(3), record(2));
    let judge = |value: Option<&str>| super::judge(value, &ours.seal(&now), &ours, &now);
    assert_eq!(judge(Some(&ours.seal(&now))), Found::Genuine);
    assert_eq!(judge(None), Found::Missing);
    // The same record under the key it was signed with before a rotation.
    assert_eq!(
        judge(Some(&signer(2, "rec-before").seal(&now))),
        Found::OtherKey
    );
    // Anything else is tampering: a replayed older record, a forger using our kid or another,
    // an unsigned record, junk.
    for value in [
        ours.seal(&before),
        signer(3, "rec-now").seal(&now),
        signer(3, "rec-before").seal(&before),
        now.clone(),
        "junk".to_owned(),
    ] {
        assert_eq!(judge(Some(&value)), Found::Tampered, "{value}");
    }
}

#[tokio::test]
async fn with_a_change_feed_kv_takes_only_what_the_feed_already_has() {
    let f = fixture().await;
    let keys = f.keys(3).await;
    let claim = |takes| outbox::claim(&f.db, "kv", f.clock.manual_ms(), 1, 10, takes);
    let fed_only = KvTakes::FedOrQueuedBy(0);
    assert!(
        claim(fed_only).await.unwrap().is_empty(),
        "nothing is fed yet"
    );
    assert_eq!(
        claim(KvTakes::All).await.unwrap().len(),
        3,
        "without a feed, all"
    );
    f.clock.advance_ms(2);

    // The feed takes keys that must stop working first.
    f.change(keys[2], 2, Status::Revoked).await;
    let first = outbox::unfed(&f.db, 1).await.unwrap();
    assert_eq!(first[0].key_id, keys[2].to_string());
    let two = outbox::unfed(&f.db, 2).await.unwrap();
    outbox::fed(&f.db, &two).await.unwrap();
    let mut held: Vec<String> = claim(fed_only)
        .await
        .unwrap()
        .into_iter()
        .map(|claimed| claimed.key_id)
        .collect();
    held.sort();
    let mut fed: Vec<String> = two.iter().map(|row| row.key_id.clone()).collect();
    fed.sort();
    fed.dedup();
    assert_eq!(held, fed, "only the fed keys");
    assert_eq!(
        outbox::unfed(&f.db, 10).await.unwrap().len(),
        2,
        "the rest wait for the feed"
    );
}

#[tokio::test]
async fn while_the_feed_fails_kv_takes_each_record_after_the_hold_and_the_feed_still_gets_it() {
    let f = fixture().await;
    let keys = f.keys(2).await;
    let hold = 5;
    let takes = || KvTakes::FedOrQueuedBy(f.clock.now() - hold);
    let claim = || outbox::claim(&f.db, "kv", f.clock.manual_ms(), 1, 10, takes());
    assert!(
        claim().await.unwrap().is_empty(),
        "within the hold, KV waits"
    );
    f.clock.advance_ms(1_000 * (hold - 1));
    assert!(claim().await.unwrap().is_empty(), "still within the hold");

    // The feed has failed for the whole hold: KV writes both records anyway.
    f.clock.advance_ms(1_000);
    let held = claim().await.unwrap();
    assert_eq!(held.len(), 2, "past the hold, KV takes what the feed lacks");
    let done: Vec<&Claimed> = held.iter().collect();
    outbox::pushed(&f.db, "kv", &done, takes()).await.unwrap();
    let backlog = outbox::backlog(&f.db).await.unwrap();
    assert_eq!(backlog.depth, 0, "KV has everything");
    assert_eq!(
        backlog.unfed, 2,
        "the feed does not, and the rows stay for it"
    );
    f.clock.advance_ms(LEASE.as_millis() as i64);
    assert!(
        claim().await.unwrap().is_empty(),
        "KV does not write them twice"
    );

    // A change made now goes to the feed first again once the feed is back.
    f.change(keys[0], 2, Status::Revoked).await;
    assert!(
        claim().await.unwrap().is_empty(),
        "a new change waits for the feed"
    );
    let unfed = outbox::unfed(&f.db, 10).await.unwrap();
    assert_eq!(
        unfed.len(),
        3,
        "the feed gets the two KV has, and the new one"
    );
    assert_eq!(unfed[0].key_id, keys[0].to_string(), "the revocation first");
    outbox::fed(&f.db, &unfed).await.unwrap();
    let held = claim().await.unwrap();
    assert_eq!(held.len(), 1, "KV takes only the change it has not written");
    assert_eq!(held[0].key_id, keys[0].to_string());
    assert_eq!(held[0].version, 2);
    let done: Vec<&Claimed> = held.iter().collect();
    outbox::pushed(&f.db, "kv", &done, takes()).await.unwrap();
    let backlog = outbox::backlog(&f.db).await.unwrap();
    assert_eq!((backlog.depth, backlog.unfed), (0, 0), "{backlog:?}");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(f.db.reader())
        .await
        .unwrap();
    assert_eq!(rows, 0, "both have every record: the outbox is empty");
}
