//! Snapshot sync: the pusher that drains the outbox to Workers KV, and reconciliation.
//!
//! - Each round claims up to a batch of keys with pending records (see [`outbox`] for the claim
//!   rules), keys that must stop working first, and writes the newest record of each in bulk
//!   requests within KV's limits. A key's entry always carries its record's version, in the value
//!   and in the KV metadata; tombstones stay, so a replayed older write is recognisable and no
//!   revoked key comes back.
//! - A request that fails is tried again after an exponential backoff with jitter, or after the
//!   `Retry-After` KV asked for, whichever is longer; keys the bulk response lists as unsuccessful
//!   wait out their own backoff. Nothing is dropped: records leave the outbox only once written.
//! - Reconciliation lists KV and compares each entry's version (from its metadata) with the
//!   database: it queues the current record of every missing or stale key and deletes entries
//!   that no key or tombstone explains. It then reads the values of the entries whose version
//!   matched and compares each, byte for byte, with what this signer writes for that record
//!   (Ed25519 signatures are deterministic). Anyone who can write KV can also write the metadata,
//!   so only the value proves anything: an entry that differs is tampering (or a replay), and is
//!   rewritten, counted and logged as an error; one that holds the right record under another
//!   signing key (after a rotation) is re-signed quietly. Reconciliation runs periodically in
//!   `keygate serve` and at the end of `keygate sync --full`, which first queues every record
//!   again.

mod cloudflare;
mod feed;
mod signer;
mod sink;
mod wrangler;

#[cfg(test)]
mod tests;

pub use cloudflare::{ApiToken, CloudflareKv, DEFAULT_BASE_URL};
pub use feed::{FeedToken, FeedWriter};
pub use signer::RecordSigner;
pub use sink::{
    KvEntry, KvPage, KvSink, Listed, MAX_BULK_BYTES, MAX_BULK_GETS, MAX_BULK_PAIRS, SinkError,
    Written, batches,
};
pub use wrangler::WranglerKv;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore, UnwrapErr};
use tokio::sync::{Notify, watch};

use crate::Clock;
use crate::store::outbox::{self, Claimed};
use crate::store::snapshot;
use crate::store::{Db, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("gave up: {0}")]
    GaveUp(String),
}

/// What the HTTP layer and the pusher of one process share: the wake-up call after a key change,
/// which sink this process pushes to, and counters for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct SyncHandle(Arc<HandleInner>);

#[derive(Debug, Default)]
struct HandleInner {
    wake: Notify,
    feed_wake: Notify,
    sink: Option<String>,
    feed: Option<String>,
    records_pushed: AtomicU64,
    put_requests: AtomicU64,
    delete_requests: AtomicU64,
    list_requests: AtomicU64,
    get_requests: AtomicU64,
    feed_appends: AtomicU64,
    failed_requests: AtomicU64,
    keys_not_written: AtomicU64,
    tampered_entries: AtomicU64,
}

impl SyncHandle {
    /// A process whose pusher writes to `sink` (its [`KvSink::describe`]; `None`: no pusher),
    /// and to the change feed at `feed` first, if it has one.
    pub fn new(sink: Option<String>, feed: Option<String>) -> Self {
        Self(Arc::new(HandleInner {
            sink,
            feed,
            ..HandleInner::default()
        }))
    }

    /// Where this process's pusher appends to the change feed, if it does.
    pub fn feed(&self) -> Option<&str> {
        self.0.feed.as_deref()
    }

    /// A key changed: the pusher should look at the outbox now rather than at its next poll.
    pub fn changed(&self) {
        self.0.wake.notify_one();
        self.0.feed_wake.notify_one();
    }

    pub fn sink(&self) -> Option<&str> {
        self.0.sink.as_deref()
    }

    /// Requests sent to KV by this process so far: (put, delete, list, get).
    pub fn requests(&self) -> (u64, u64, u64, u64) {
        (
            self.0.put_requests.load(Ordering::Relaxed),
            self.0.delete_requests.load(Ordering::Relaxed),
            self.0.list_requests.load(Ordering::Relaxed),
            self.0.get_requests.load(Ordering::Relaxed),
        )
    }

    pub fn records_pushed(&self) -> u64 {
        self.0.records_pushed.load(Ordering::Relaxed)
    }

    pub fn render_metrics(&self, out: &mut String) {
        let (put, delete, list, get) = self.requests();
        let _ = writeln!(
            out,
            "# HELP keygate_sync_requests_total Requests this process sent to KV.\n\
             # TYPE keygate_sync_requests_total counter\n\
             keygate_sync_requests_total{{operation=\"put\"}} {put}\n\
             keygate_sync_requests_total{{operation=\"delete\"}} {delete}\n\
             keygate_sync_requests_total{{operation=\"list\"}} {list}\n\
             keygate_sync_requests_total{{operation=\"get\"}} {get}\n\
             # HELP keygate_sync_feed_appends_total Appends this process sent to the edge's change feed.\n\
             # TYPE keygate_sync_feed_appends_total counter\n\
             keygate_sync_feed_appends_total {}\n\
             # HELP keygate_sync_failed_requests_total KV requests that failed and will be retried.\n\
             # TYPE keygate_sync_failed_requests_total counter\n\
             keygate_sync_failed_requests_total {}\n\
             # HELP keygate_sync_keys_not_written_total Keys a bulk write reported unsuccessful.\n\
             # TYPE keygate_sync_keys_not_written_total counter\n\
             keygate_sync_keys_not_written_total {}\n\
             # HELP keygate_sync_records_pushed_total Snapshot records this process wrote to KV.\n\
             # TYPE keygate_sync_records_pushed_total counter\n\
             keygate_sync_records_pushed_total {}\n\
             # HELP keygate_sync_tampered_entries_total KV entries reconciliation found unlike what \
             keygate signed, and rewrote. Alert on any increase.\n\
             # TYPE keygate_sync_tampered_entries_total counter\n\
             keygate_sync_tampered_entries_total {}",
            self.0.feed_appends.load(Ordering::Relaxed),
            self.0.failed_requests.load(Ordering::Relaxed),
            self.0.keys_not_written.load(Ordering::Relaxed),
            self.records_pushed(),
            self.0.tampered_entries.load(Ordering::Relaxed),
        );
    }

    fn count(&self, counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

/// How the pusher works; `keygate serve --help` documents each as a flag.
#[derive(Clone, Debug)]
pub struct PushSettings {
    /// Keys per round (and at most [`MAX_BULK_PAIRS`] per request).
    pub batch_size: usize,
    /// How often an idle pusher looks at the outbox for changes made by other replicas.
    pub poll_interval: Duration,
    /// How long a claim on a key lasts; a pusher that died holding one delays those keys by this.
    pub lease: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// Time between reconciliation passes; `None`: never.
    pub reconcile_interval: Option<Duration>,
    /// The most entries whose values one pass reads (in bulk reads of at most
    /// [`KvSink::max_gets`]); larger namespaces are read in turns, pass after pass.
    pub reconcile_reads: usize,
    /// With a change feed: how long KV waits for the feed to take a record before writing it
    /// anyway (the feed gets it later; nothing leaves the outbox before both have it).
    pub feed_hold: Duration,
}

/// What a one-shot run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub records_pushed: u64,
    pub put_requests: u64,
    pub queued_again: u64,
    pub repairs: u64,
    pub elapsed: Duration,
}

/// What one reconciliation pass found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    pub listed: u64,
    /// Keys KV lacks or holds at another version than the database: their records were queued.
    pub queued: u64,
    /// Entries no key or tombstone explains: deleted.
    pub deleted: u64,
    /// Entries whose values were read and compared.
    pub read: u64,
    /// Entries at the right version whose value is not what keygate signed: rewritten.
    pub tampered: u64,
    /// Entries holding the right record under another signing key: re-signed.
    pub resigned: u64,
}

impl Repairs {
    /// Everything this pass queued again or deleted.
    pub fn total(&self) -> u64 {
        self.queued + self.deleted + self.tampered + self.resigned
    }
}

/// What a value read from KV is, next to what the signer writes for the key's current record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    /// Exactly what the signer writes.
    Genuine,
    /// The entry went between the listing and the read.
    Missing,
    /// The same record, signed under another key id: a rotation not yet rewritten.
    OtherKey,
    /// Anything else: another record (a replay, a widening), a bad signature, junk.
    Tampered,
}

fn judge(value: Option<&str>, expected: &str, signer: &RecordSigner, record: &str) -> Found {
    let Some(value) = value else {
        return Found::Missing;
    };
    if value == expected {
        return Found::Genuine;
    }
    match keygate_shared::Envelope::decode(value.as_bytes()) {
        Ok(envelope)
            if envelope.kid() != signer.kid() && envelope.unverified_record() == record =>
        {
            Found::OtherKey
        }
        _ => Found::Tampered,
    }
}

/// At most `limit` of `candidates` (sorted), starting after `after` and wrapping around, so that
/// pass after pass every candidate is read in turn.
fn in_turn(candidates: &[&String], after: &str, limit: usize) -> Vec<String> {
    let start = candidates.partition_point(|name| name.as_str() <= after);
    candidates[start..]
        .iter()
        .chain(&candidates[..start])
        .take(limit)
        .map(|name| (*name).clone())
        .collect()
}

enum Round {
    Idle,
    Pushed(u64),
    Failed(Duration),
}

/// The HTTP client the pusher's sinks use: keygate's user agent, and `timeout` per request.
fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("keygate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| format!("HTTP client: {error}"))
}

fn millis(duration: Duration) -> i64 {
    duration.as_millis().try_into().unwrap_or(i64::MAX)
}

/// The wait before attempt `failures + 1`: 0.5 s doubling up to `cap`, drawn uniformly from its
/// upper half so that pushers which failed together do not retry together.
pub fn backoff(failures: u32, cap: Duration, rng: &mut dyn RngCore) -> Duration {
    let ceiling = Duration::from_millis(500)
        .saturating_mul(1 << failures.min(16))
        .min(cap);
    let half = ceiling / 2;
    let jitter = rng.next_u64() % (millis(half).max(1) as u64);
    half + Duration::from_millis(jitter)
}

/// The pusher's randomness (claim holder names and backoff jitter), passed in so tests can fix it.
pub struct Jitter(Mutex<Box<dyn RngCore + Send>>);

impl Jitter {
    pub fn new(rng: impl RngCore + Send + 'static) -> Self {
        Self(Mutex::new(Box::new(rng)))
    }

    /// The operating system's generator.
    pub fn os() -> Self {
        Self::new(UnwrapErr(OsRng))
    }

    fn backoff(&self, failures: u32, cap: Duration) -> Duration {
        backoff(failures, cap, &mut **self.lock())
    }

    fn next_u64(&self) -> u64 {
        self.lock().next_u64()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Box<dyn RngCore + Send>> {
        // A panic while drawing a number leaves nothing half-done: the generator is still usable.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Jitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Jitter(..)")
    }
}

/// The pusher: one per process that has a sink.
#[derive(Debug)]
pub struct Pusher<S> {
    db: Db,
    sink: S,
    /// Seals every record it writes: the edge trusts no unsigned one.
    signer: RecordSigner,
    /// The edge's change feed, written before KV when there is one.
    feed: Option<FeedWriter>,
    settings: PushSettings,
    handle: SyncHandle,
    clock: Clock,
    jitter: Jitter,
    /// Who holds a claim: unique per pusher, so a restarted process never mistakes old claims
    /// for its own.
    holder: String,
    /// The last key whose value reconciliation read: the next pass reads on from there.
    read_after: Mutex<String>,
}

impl<S: KvSink> Pusher<S> {
    /// A pusher that signs with `signer`, reads the time from `clock` and draws its randomness
    /// from `jitter`.
    pub fn new(
        db: Db,
        sink: S,
        signer: RecordSigner,
        settings: PushSettings,
        handle: SyncHandle,
        clock: Clock,
        jitter: Jitter,
    ) -> Self {
        let holder = format!("{}-{:016x}", std::process::id(), jitter.next_u64());
        Self {
            db,
            sink,
            signer,
            feed: None,
            settings,
            handle,
            clock,
            jitter,
            holder,
            read_after: Mutex::new(String::new()),
        }
    }

    /// Appends every record to `feed` before writing it to KV.
    pub fn with_feed(mut self, feed: Option<FeedWriter>) -> Self {
        self.feed = feed;
        self
    }

    async fn write(&self, batch: &[KvEntry]) -> Result<Written, SinkError> {
        self.handle.count(&self.handle.0.put_requests, 1);
        self.sink.put(batch).await
    }

    /// Which rows KV may take: without a feed, all; with one, those the feed has taken, and
    /// those it has failed to take for longer than the hold, so a feed outage leaves the edge
    /// KV's bound rather than no bound at all.
    fn kv_takes(&self) -> outbox::KvTakes {
        match self.feed {
            None => outbox::KvTakes::All,
            Some(_) => outbox::KvTakes::FedOrQueuedBy(
                self.clock.now() - i64::try_from(self.settings.feed_hold.as_secs()).unwrap_or(0),
            ),
        }
    }

    /// Appends the rows the change feed has not had, stopped keys first, and marks them fed: KV
    /// takes fed rows (and, past the hold, rows the feed failed to take), so the feed is not
    /// behind it while it works, and a slow KV never holds the feed back. Returns how many rows
    /// were appended. A row appended twice (two replicas, a crash before the mark) is harmless:
    /// the edge keeps the newest version of each key.
    async fn feed_round(&self, feed: &FeedWriter) -> Result<usize, SyncError> {
        let rows = outbox::unfed(&self.db, keygate_shared::MAX_FEED_ENTRIES).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let entries: Vec<keygate_shared::Appended> = rows
            .iter()
            .map(|row| keygate_shared::Appended {
                key_id: row.key_id.clone(),
                record: self.signer.seal(&row.record),
            })
            .collect();
        self.handle.count(&self.handle.0.feed_appends, 1);
        feed.append(&entries).await.inspect_err(|_| {
            self.handle.count(&self.handle.0.failed_requests, 1);
        })?;
        outbox::fed(&self.db, &rows).await?;
        // Those rows are KV's to write now.
        self.handle.0.wake.notify_one();
        Ok(rows.len())
    }

    /// Appends to the feed until `shutdown`: at once after each change this process makes, every
    /// poll interval for other replicas' changes, after a backoff when the feed fails.
    async fn follow_feed(&self, feed: &FeedWriter, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0u32;
        while !*shutdown.borrow() {
            let wait = match self.feed_round(feed).await {
                Ok(0) => {
                    failures = 0;
                    None
                }
                Ok(_) => {
                    failures = 0;
                    continue;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let delay = self.jitter.backoff(failures, self.settings.max_backoff);
                    tracing::warn!(
                        retry_in_ms = millis(delay),
                        "change feed append failed: {error}"
                    );
                    Some(delay)
                }
            };
            tokio::select! {
                _ = shutdown.changed() => {}
                () = tokio::time::sleep(wait.unwrap_or(self.settings.poll_interval)) => {}
                () = self.handle.0.feed_wake.notified(), if wait.is_none() => {}
            }
        }
    }

    /// Claims a batch of keys and writes their newest records.
    async fn round(&self, failures: u32) -> Result<Round, StoreError> {
        let claimed_at = self.clock.now_ms();
        let claimed = outbox::claim(
            &self.db,
            &self.holder,
            self.clock.manual_ms(),
            millis(self.settings.lease),
            self.settings.batch_size.clamp(1, MAX_BULK_PAIRS),
            self.kv_takes(),
        )
        .await?;
        if claimed.is_empty() {
            return Ok(Round::Idle);
        }
        let entries: Vec<KvEntry> = claimed
            .iter()
            .map(|key| KvEntry {
                name: key.key_id.clone(),
                value: self.signer.seal(&key.record),
                version: key.version,
            })
            .collect();
        let mut pushed = 0;
        let mut start = 0;
        for batch in batches(&entries, self.sink.max_pairs(), MAX_BULK_BYTES) {
            let keys = &claimed[start..start + batch.len()];
            start += batch.len();
            // Past half the lease (as this process measures time passing), another pusher may
            // soon take these keys: hand them back rather than race it.
            if self.clock.now_ms() - claimed_at > millis(self.settings.lease / 2) {
                self.retry_in(&claimed[start - batch.len()..], 0).await?;
                break;
            }
            match self.write(batch).await {
                Ok(written) => pushed += self.written(keys, &written).await?,
                Err(error) => {
                    self.handle.count(&self.handle.0.failed_requests, 1);
                    let delay = error
                        .retry_after()
                        .unwrap_or_default()
                        .max(self.jitter.backoff(failures, self.settings.max_backoff));
                    let rest = &claimed[start - batch.len()..];
                    self.retry_in(rest, millis(delay)).await?;
                    tracing::warn!(
                        keys = rest.len(),
                        retry_in_ms = millis(delay),
                        "KV write failed: {error}"
                    );
                    self.outcome(Err(error.to_string())).await?;
                    return Ok(Round::Failed(delay));
                }
            }
        }
        self.outcome(Ok(())).await?;
        Ok(Round::Pushed(pushed))
    }

    /// Settles a bulk write: written keys leave the outbox, the others wait their own backoff.
    async fn written(&self, keys: &[Claimed], written: &Written) -> Result<u64, StoreError> {
        let failed: HashSet<&str> = written.unsuccessful.iter().map(String::as_str).collect();
        let (bad, good): (Vec<&Claimed>, Vec<&Claimed>) = keys
            .iter()
            .partition(|key| failed.contains(key.key_id.as_str()));
        outbox::pushed(&self.db, &self.holder, &good, self.kv_takes()).await?;
        let count = good.len() as u64;
        self.handle.count(&self.handle.0.records_pushed, count);
        if !bad.is_empty() {
            self.handle
                .count(&self.handle.0.keys_not_written, bad.len() as u64);
            let mut by_attempts: BTreeMap<u32, Vec<&Claimed>> = BTreeMap::new();
            for key in bad {
                by_attempts.entry(key.attempts).or_default().push(key);
            }
            for (attempts, keys) in &by_attempts {
                let delay = self.jitter.backoff(*attempts, self.settings.max_backoff);
                let now = self.clock.manual_ms();
                outbox::retry_later(&self.db, &self.holder, keys, now, millis(delay)).await?;
            }
            let message = format!(
                "KV did not write {} of {} keys; they will be retried",
                by_attempts.values().map(Vec::len).sum::<usize>(),
                keys.len()
            );
            tracing::warn!("{message}");
            self.outcome(Err(message)).await?;
        }
        Ok(count)
    }

    async fn retry_in(&self, keys: &[Claimed], delay_ms: i64) -> Result<(), StoreError> {
        let keys: Vec<&Claimed> = keys.iter().collect();
        let now = self.clock.manual_ms();
        outbox::retry_later(&self.db, &self.holder, &keys, now, delay_ms).await
    }

    async fn outcome(&self, outcome: Result<(), String>) -> Result<(), StoreError> {
        outbox::record_outcome(
            &self.db,
            outcome.as_ref().map(|_| ()).map_err(String::as_str),
            self.clock.now(),
        )
        .await
    }

    /// Pushes until `shutdown` turns true: at once after each change this process makes, every
    /// poll interval for other replicas' changes, and reconciling every reconcile interval.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        tracing::info!(sink = %self.sink.describe(), "snapshot pusher started");
        match &self.feed {
            Some(feed) => {
                tokio::join!(
                    self.follow_feed(feed, shutdown.clone()),
                    self.push_to_kv(shutdown)
                );
            }
            None => self.push_to_kv(shutdown).await,
        }
        tracing::info!("snapshot pusher stopped");
    }

    async fn push_to_kv(&self, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0u32;
        let mut next_reconcile_ms = self.clock.now_ms();
        while !*shutdown.borrow() {
            let wait = match self.round(failures).await {
                Ok(Round::Pushed(count)) => {
                    failures = 0;
                    tracing::debug!(count, "snapshot records pushed");
                    continue;
                }
                Ok(Round::Idle) => {
                    failures = 0;
                    if let Some(interval) = self.settings.reconcile_interval
                        && self.clock.now_ms() >= next_reconcile_ms
                    {
                        next_reconcile_ms = self.clock.now_ms() + millis(interval);
                        match self.reconcile(true).await {
                            Ok(repairs) if repairs.total() > 0 => {
                                tracing::warn!(?repairs, "reconciliation repaired drift in KV");
                                continue;
                            }
                            Ok(repairs) => tracing::debug!(?repairs, "KV matches the database"),
                            Err(error) => tracing::warn!("reconciliation failed: {error}"),
                        }
                    }
                    None
                }
                Ok(Round::Failed(delay)) => {
                    failures = failures.saturating_add(1);
                    Some(delay)
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::error!("snapshot pusher: {error}");
                    Some(self.jitter.backoff(failures, self.settings.max_backoff))
                }
            };
            tokio::select! {
                _ = shutdown.changed() => {}
                () = tokio::time::sleep(wait.unwrap_or(self.settings.poll_interval)) => {}
                () = self.handle.0.wake.notified(), if wait.is_none() => {}
            }
        }
    }

    /// Pushes until the outbox is empty (`keygate sync`); fails after `give_up` or once the
    /// same failure has been retried `max_failures` times.
    pub async fn drain(&self, give_up: Duration, max_failures: u32) -> Result<Report, SyncError> {
        let started = Instant::now();
        let puts_before = self.handle.requests().0;
        let mut report = Report::default();
        let mut failures = 0;
        loop {
            if let Some(feed) = &self.feed {
                let mut fed = Ok(1);
                while matches!(fed, Ok(n) if n > 0) {
                    fed = self.feed_round(feed).await;
                }
                if let Err(error) = fed {
                    failures += 1;
                    if failures >= max_failures {
                        return Err(SyncError::GaveUp(format!("the change feed: {error}")));
                    }
                    tokio::time::sleep(self.jitter.backoff(failures, self.settings.max_backoff))
                        .await;
                    continue;
                }
            }
            match self.round(failures).await? {
                Round::Pushed(count) => {
                    report.records_pushed += count;
                    failures = 0;
                    continue;
                }
                Round::Idle if outbox::depth(&self.db).await? == 0 => break,
                // Held by another pusher or waiting out a backoff.
                Round::Idle => tokio::time::sleep(self.settings.poll_interval).await,
                Round::Failed(delay) => {
                    failures += 1;
                    if failures >= max_failures {
                        let state = outbox::sync_state(&self.db).await?;
                        return Err(SyncError::GaveUp(state.last_error.unwrap_or_default()));
                    }
                    tokio::time::sleep(delay).await;
                }
            }
            if started.elapsed() > give_up {
                return Err(SyncError::GaveUp(format!(
                    "the outbox is not empty after {give_up:?}"
                )));
            }
        }
        report.put_requests = self.handle.requests().0 - puts_before;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// `keygate sync --full`: queues every key's current record, pushes them all, then
    /// reconciles (which also deletes entries nothing explains), without reading back what it
    /// has just written.
    pub async fn rebuild(&self, give_up: Duration, max_failures: u32) -> Result<Report, SyncError> {
        let started = Instant::now();
        let queued = snapshot::enqueue_everything(&self.db, self.clock.now()).await?;
        let mut report = self.drain(give_up, max_failures).await?;
        let repairs = self.reconcile(false).await?;
        if repairs.queued > 0 {
            let more = self.drain(give_up, max_failures).await?;
            report.records_pushed += more.records_pushed;
            report.put_requests += more.put_requests;
        }
        report.queued_again = queued;
        report.repairs = repairs.total();
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// One anti-entropy pass, reading values when `read_values` is set. KV is listed (and read)
    /// before the database is: every entry in KV was committed before it was pushed, so the later
    /// read knows it, and a key created in between is never mistaken for an unknown entry.
    pub async fn reconcile(&self, read_values: bool) -> Result<Repairs, SyncError> {
        let mut listed: HashMap<String, Option<u64>> = HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            self.handle.count(&self.handle.0.list_requests, 1);
            let page = self.sink.list(cursor.as_deref()).await.inspect_err(|_| {
                self.handle.count(&self.handle.0.failed_requests, 1);
            })?;
            listed.extend(
                page.entries
                    .into_iter()
                    .map(|entry| (entry.name, entry.version)),
            );
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let expected = snapshot::expected_versions(&self.db).await?;
        let (mut current, mut drifted): (Vec<&String>, Vec<String>) = (Vec::new(), Vec::new());
        for (key_id, version) in &expected {
            if listed.get(key_id).copied().flatten() == Some(*version) {
                current.push(key_id);
            } else {
                drifted.push(key_id.clone());
            }
        }
        let unknown: Vec<String> = listed
            .keys()
            .filter(|name| !expected.contains_key(*name))
            .cloned()
            .collect();
        let mut repairs = Repairs {
            listed: listed.len() as u64,
            ..Repairs::default()
        };
        if read_values && self.settings.reconcile_reads > 0 {
            current.sort_unstable();
            let (rewrite, found) = self.check_values(&current, &expected).await?;
            repairs.read = found.len() as u64;
            for (key_id, found) in &found {
                match found {
                    Found::Genuine => {}
                    Found::Missing => drifted.push(key_id.clone()),
                    Found::OtherKey => repairs.resigned += 1,
                    Found::Tampered => repairs.tampered += 1,
                }
            }
            self.report_tampering(&found);
            snapshot::enqueue_current(&self.db, &rewrite, self.clock.now()).await?;
        }
        repairs.queued = snapshot::enqueue_current(&self.db, &drifted, self.clock.now()).await?;
        for names in unknown.chunks(self.sink.max_pairs()) {
            self.handle.count(&self.handle.0.delete_requests, 1);
            let written = self.sink.delete(names).await.inspect_err(|_| {
                self.handle.count(&self.handle.0.failed_requests, 1);
            })?;
            repairs.deleted += (names.len() - written.unsuccessful.len()) as u64;
        }
        self.handle
            .count(&self.handle.0.tampered_entries, repairs.tampered);
        outbox::record_reconcile(
            &self.db,
            repairs.total(),
            repairs.tampered,
            self.clock.now(),
        )
        .await?;
        if repairs.queued + repairs.tampered + repairs.resigned > 0 {
            self.handle.changed();
        }
        Ok(repairs)
    }

    /// Reads the values of this pass's turn of `current` (keys KV holds at the database's
    /// version) and judges each against what this signer writes for the key's record. Returns
    /// the keys to rewrite, and what was found for each key read.
    async fn check_values(
        &self,
        current: &[&String],
        expected: &HashMap<String, u64>,
    ) -> Result<(Vec<String>, Vec<(String, Found)>), SyncError> {
        let turn = {
            let after = self
                .read_after
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            in_turn(current, &after, self.settings.reconcile_reads)
        };
        let mut values: HashMap<String, Option<String>> = HashMap::with_capacity(turn.len());
        for chunk in turn.chunks(self.sink.max_gets().max(1)) {
            self.handle.count(&self.handle.0.get_requests, 1);
            values.extend(self.sink.get(chunk).await.inspect_err(|_| {
                self.handle.count(&self.handle.0.failed_requests, 1);
            })?);
        }
        if let Some(last) = turn.last() {
            *self
                .read_after
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = last.clone();
        }
        let records: HashMap<String, String> = snapshot::current(&self.db, &turn)
            .await?
            .into_iter()
            // A key changed since the listing is the pusher's to write, not a finding.
            .filter(|record| expected.get(record.key_id.as_str()) == Some(&record.version))
            .map(|record| (record.key_id.as_str().to_owned(), record.encode()))
            .collect();
        let mut rewrite = Vec::new();
        let mut found = Vec::with_capacity(turn.len());
        for key_id in turn {
            let Some(record) = records.get(key_id.as_str()) else {
                continue;
            };
            let value = values.get(key_id.as_str()).and_then(Option::as_deref);
            let verdict = judge(value, &self.signer.seal(record), &self.signer, record);
            if matches!(verdict, Found::OtherKey | Found::Tampered) {
                rewrite.push(key_id.clone());
            }
            found.push((key_id, verdict));
        }
        Ok((rewrite, found))
    }

    /// One error line per tampered entry (the first few by name), worth an alert.
    fn report_tampering(&self, found: &[(String, Found)]) {
        const NAMED: usize = 20;
        let tampered: Vec<&String> = found
            .iter()
            .filter(|(_, found)| *found == Found::Tampered)
            .map(|(key_id, _)| key_id)
            .collect();
        for key_id in tampered.iter().take(NAMED) {
            tracing::error!(
                key_id = %key_id,
                "KV entry is not what keygate signed (tampering or a replay); rewriting it"
            );
        }
        if tampered.len() > NAMED {
            tracing::error!(
                count = tampered.len(),
                "KV entries are not what keygate signed; {} more than named above are rewritten",
                tampered.len() - NAMED
            );
        }
    }
}

/// The sink a process was configured with.
#[derive(Debug, Clone)]
pub enum Sink {
    Cloudflare(CloudflareKv),
    Wrangler(WranglerKv),
}

impl KvSink for Sink {
    fn describe(&self) -> String {
        match self {
            Self::Cloudflare(sink) => sink.describe(),
            Self::Wrangler(sink) => sink.describe(),
        }
    }

    async fn put(&self, entries: &[KvEntry]) -> Result<Written, SinkError> {
        match self {
            Self::Cloudflare(sink) => sink.put(entries).await,
            Self::Wrangler(sink) => sink.put(entries).await,
        }
    }

    fn max_gets(&self) -> usize {
        match self {
            Self::Cloudflare(sink) => sink.max_gets(),
            Self::Wrangler(sink) => sink.max_gets(),
        }
    }

    async fn get(&self, names: &[String]) -> Result<HashMap<String, Option<String>>, SinkError> {
        match self {
            Self::Cloudflare(sink) => sink.get(names).await,
            Self::Wrangler(sink) => sink.get(names).await,
        }
    }

    async fn delete(&self, names: &[String]) -> Result<Written, SinkError> {
        match self {
            Self::Cloudflare(sink) => sink.delete(names).await,
            Self::Wrangler(sink) => sink.delete(names).await,
        }
    }

    async fn list(&self, cursor: Option<&str>) -> Result<KvPage, SinkError> {
        match self {
            Self::Cloudflare(sink) => sink.list(cursor).await,
            Self::Wrangler(sink) => sink.list(cursor).await,
        }
    }
}
