//! Following the change feed ([`crate::feed`]) from every isolate, off the hot path. Nothing can
//! push into an isolate, so each one polls:
//!
//! - At most once per `KEYGATE_FEED_POLL_MS`, a request starts a poll in `ctx.waitUntil` for the
//!   entries after the last one this isolate saw; the request itself does not wait for it.
//! - A poll only notes each entry (a JSON read, no signature check) and drops the key from the
//!   isolate cache, so the key's next request looks it up again. That lookup checks the entry's
//!   signature as a KV record's is (once), and takes whichever of KV's record and the feed's is
//!   newer: until the feed's retention ends, a stale KV read cannot undo a revocation. A poll costs
//!   no crypto however many keys changed; only keys in use pay, once each.
//! - Isolates of one location share their reads through the Cache API for
//!   `KEYGATE_FEED_SHARE_MS` ([`feed::read`]), so the object is read about once per location and
//!   window, not once per isolate.
//! - An isolate that has not heard from the feed for `KEYGATE_FEED_STALE_MS` (a new or idle one)
//!   makes its next request wait for one poll, at most `KEYGATE_FEED_TIMEOUT_MS`. If the feed
//!   cannot be reached, the isolate is degraded: it says so in the log, counts it, uses its cache
//!   for at most `KEYGATE_FEED_DEGRADED_CACHE_TTL_MS`, and decides from KV as before
//!   (`KEYGATE_FEED_UNREACHABLE=kv`, the default) or answers 503 (`closed`). While degraded, no
//!   request waits for the feed; a background poll each interval, bounded by the same timeout,
//!   notices when it is back.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures_util::future::{Either, select};
use keygate_shared::{FeedEntry, KeyId};
use worker::{Context, Delay, Env, console_error, console_warn};

use crate::Isolate;
use crate::cache::{CachedRecord, Lookup};
use crate::config::{FeedSettings, Unreachable};
use crate::feed;

/// The most pages one poll reads (of 500 entries each): a new isolate catches up over a few polls.
const MAX_PAGES_PER_POLL: usize = 20;

/// The request cannot be decided: the feed is stale and unreachable, and the deployment fails
/// closed.
#[derive(Debug)]
pub(crate) struct Stale;

/// One isolate's place in the feed.
#[derive(Debug, Default)]
pub(crate) struct Follower {
    /// The last sequence number applied.
    seq: Cell<u64>,
    /// When a poll last succeeded (0: never).
    heard_ms: Cell<i64>,
    /// When the last background poll started.
    started_ms: Cell<i64>,
    polling: Cell<bool>,
    /// The newest entry the feed brought for each key, with when it stops overriding KV.
    newer: RefCell<HashMap<KeyId, (Noted, i64)>>,
    /// Polls that failed or timed out, and whether the last one did.
    failures: Cell<u64>,
    degraded: Cell<bool>,
}

/// A feed entry as noted by a poll, then as checked by the first lookup that needs it.
#[derive(Debug)]
enum Noted {
    Unchecked { seq: u64, record: String },
    Checked(Rc<CachedRecord>),
}

impl Follower {
    /// What the lookup of `key_id` should answer, given what KV (or the cache) said: the feed's
    /// record instead when it is newer and still within the feed's retention. A feed entry whose
    /// signature does not check out is dropped (and logged), never used.
    pub(crate) async fn prefer_newer(
        &self,
        isolate: &Isolate,
        key_id: &KeyId,
        from_kv: Lookup,
        now_ms: i64,
    ) -> Lookup {
        let unchecked = match self.newer.borrow().get(key_id) {
            None => return from_kv,
            Some((_, until)) if now_ms >= *until => None,
            Some((Noted::Checked(record), _)) => return newest(from_kv, record),
            Some((Noted::Unchecked { seq, record }, _)) => Some((*seq, record.clone())),
        };
        let Some((seq, record)) = unchecked else {
            self.newer.borrow_mut().remove(key_id);
            return from_kv;
        };
        match isolate
            .records
            .open(&isolate.config.records, key_id, record.as_bytes())
            .await
        {
            Ok(record) => {
                let checked = Rc::new(CachedRecord::new(record));
                if let Some((noted, _)) = self.newer.borrow_mut().get_mut(key_id) {
                    *noted = Noted::Checked(checked.clone());
                }
                newest(from_kv, &checked)
            }
            Err(untrusted) => {
                console_error!(
                    "forged_record key_id={key_id} in the feed at seq {seq}: {untrusted:?}"
                );
                self.newer.borrow_mut().remove(key_id);
                from_kv
            }
        }
    }

    /// How long a cached record may be used: the cache's TTL, or less while the feed cannot be
    /// heard (degraded), when only the cache's age bounds how late a change arrives.
    pub(crate) fn cache_ttl_ms(&self, settings: Option<&FeedSettings>) -> u64 {
        match settings {
            Some(settings) if self.degraded.get() => settings.degraded_cache_ttl_ms,
            _ => u64::MAX,
        }
    }

    fn fresh(&self, settings: &FeedSettings, now_ms: i64) -> bool {
        self.heard_ms.get() > 0 && now_ms - self.heard_ms.get() <= settings.stale_ms
    }
}

/// Keeps this isolate up with the feed before a request is decided: a background poll when one is
/// due, or, when the isolate is stale, one poll the request waits for (bounded). A degraded
/// isolate does not make its requests wait: each would only add the timeout while the feed is
/// down; a background poll each interval notices when it is back.
pub(crate) async fn keep_up(
    isolate: &'static Isolate,
    env: &Env,
    ctx: &Context,
    origin: &str,
    now_ms: i64,
) -> Result<(), Stale> {
    let Some(settings) = &isolate.config.feed else {
        return Ok(());
    };
    let follower = &isolate.follower;
    let fresh = follower.fresh(settings, now_ms);
    if fresh || follower.degraded.get() {
        if now_ms - follower.started_ms.get() >= settings.poll_ms && !follower.polling.get() {
            follower.polling.set(true);
            follower.started_ms.set(now_ms);
            let (env, origin) = (env.clone(), origin.to_owned());
            ctx.wait_until(async move {
                if let Some(settings) = &isolate.config.feed {
                    poll_within_timeout(isolate, settings, &env, &origin, now_ms).await;
                }
                isolate.follower.polling.set(false);
            });
        }
    } else {
        follower.started_ms.set(now_ms);
        poll_within_timeout(isolate, settings, env, origin, now_ms).await;
    }
    if follower.fresh(settings, now_ms) || settings.unreachable == Unreachable::Kv {
        Ok(())
    } else {
        Err(Stale)
    }
}

/// One poll, given up after `KEYGATE_FEED_TIMEOUT_MS`: a stalled feed holds neither a request nor
/// the next background poll.
async fn poll_within_timeout(
    isolate: &Isolate,
    settings: &FeedSettings,
    env: &Env,
    origin: &str,
    now_ms: i64,
) {
    let timeout = Delay::from(std::time::Duration::from_millis(settings.timeout_ms));
    let polled = std::pin::pin!(poll_and_record(isolate, settings, env, origin, now_ms));
    if let Either::Right(_) = select(polled, timeout).await {
        note_failure(&isolate.follower, "timed out");
    }
}

async fn poll_and_record(
    isolate: &Isolate,
    settings: &FeedSettings,
    env: &Env,
    origin: &str,
    now_ms: i64,
) {
    match poll(isolate, settings, env, origin, now_ms).await {
        Ok(()) => {
            let follower = &isolate.follower;
            follower.heard_ms.set(now_ms);
            if follower.degraded.replace(false) {
                console_warn!("feed: reachable again at seq {}", follower.seq.get());
            }
        }
        Err(error) => note_failure(&isolate.follower, &error.to_string()),
    }
}

fn note_failure(follower: &Follower, why: &str) {
    follower.failures.set(follower.failures.get() + 1);
    if !follower.degraded.replace(true) {
        console_error!(
            "feed_degraded why=\"{why}\" failures_in_isolate={}: deciding from KV alone until it answers",
            follower.failures.get()
        );
    }
}

/// Reads the entries after this isolate's last, checks each, and applies the newer ones.
async fn poll(
    isolate: &Isolate,
    settings: &FeedSettings,
    env: &Env,
    origin: &str,
    now_ms: i64,
) -> worker::Result<()> {
    let follower = &isolate.follower;
    let sharing = (settings.share_ms > 0).then(|| feed::Sharing {
        origin,
        window: now_ms.div_euclid(settings.share_ms as i64),
        share_ms: settings.share_ms,
    });
    for _ in 0..MAX_PAGES_PER_POLL {
        let after = follower.seq.get();
        let page = feed::read(env, after, sharing).await?;
        if page.missed(after) {
            // Entries this isolate never saw are gone: anything it holds may be outdated.
            isolate.cache.borrow_mut().clear();
            follower.newer.borrow_mut().clear();
        }
        for entry in &page.entries {
            if let Ok(key_id) = KeyId::parse(&entry.key_id) {
                note(isolate, settings, key_id, entry, now_ms);
            }
        }
        follower
            .seq
            .set(page.entries.last().map_or(page.head, |last| last.seq));
        if !page.more() {
            break;
        }
    }
    Ok(())
}

/// Notes a feed entry for its key (the newest wins) and drops the key from the isolate cache, so
/// its next request looks it up again and meets the entry.
fn note(isolate: &Isolate, settings: &FeedSettings, key_id: KeyId, entry: &FeedEntry, now_ms: i64) {
    let mut newer = isolate.follower.newer.borrow_mut();
    if newer.len() >= isolate.config.cache_capacity {
        newer.retain(|_, (_, until)| *until > now_ms);
    }
    if newer.len() >= isolate.config.cache_capacity {
        // More changes within the retention than the isolate keeps: as after a gap, it forgets
        // what it holds and looks every key up again.
        console_warn!(
            "feed: more than {} keys changed within the retention; cache cleared",
            newer.len()
        );
        newer.clear();
        isolate.cache.borrow_mut().clear();
    }
    let noted = Noted::Unchecked {
        seq: entry.seq,
        record: entry.record.clone(),
    };
    newer.insert(key_id, (noted, now_ms + settings.retention_ms));
    isolate.cache.borrow_mut().forget(&key_id);
}

/// The newer of KV's record and the feed's, by version (no record at all is older than any).
fn newest(from_kv: Lookup, from_feed: &Rc<CachedRecord>) -> Lookup {
    match &from_kv {
        Some(kv) if kv.record.version >= from_feed.record.version => from_kv,
        _ => Some(from_feed.clone()),
    }
}
