//! What `POST /v1/verify` reads from the database, kept for a moment (a few hundred
//! milliseconds) so that a service verifying the same keys over and over does not cost two
//! database round trips a call.
//!
//! How fast a change is seen:
//! - **On this replica, at once.** Every change made through this process's API (a key created,
//!   changed, revoked or deleted; a token revoked; a user deactivated or given another role)
//!   calls [`ReadCache::forget`] after its transaction commits, which makes every entry stale.
//! - **On another replica, within the TTL** (`KEYGATE_VERIFY_CACHE_MS`, 500 ms by default, at
//!   most 1,000 ms): an entry is used only while younger than the TTL, counted from before its
//!   read began, so any change committed before that read is in it.
//!
//! Only `POST /v1/verify` reads through the cache: it authenticates its caller and reads the
//! key through it. Every other route reads the database on each request, so what changes
//! things (and the dashboard) always acts on the current token, role and key.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use keygate_shared::{KeyId, SnapshotRecord};

use crate::store::users::TokenHolder;
use crate::store::{Db, StoreError, keys, users};

/// The most entries each kind keeps. Past it, stale entries go first, then everything: a flood of
/// made-up key ids costs this replica its cache, never its memory.
const MAX_ENTRIES: usize = 100_000;

/// The most a read may be kept, in milliseconds: the documented cross-replica bound.
pub(super) const MAX_TTL_MS: u32 = 1_000;

#[derive(Debug)]
pub(super) struct ReadCache {
    ttl_ms: i64,
    /// Bumped by [`ReadCache::forget`]; an entry read under an older generation is stale.
    generation: AtomicU64,
    tokens: Shelf<TokenHolder>,
    keys: Shelf<SnapshotRecord>,
}

impl ReadCache {
    /// Keeps reads for `ttl_ms` milliseconds (at most [`MAX_TTL_MS`]); 0 turns the cache off.
    pub(super) fn new(ttl_ms: u32) -> Self {
        Self {
            ttl_ms: i64::from(ttl_ms.min(MAX_TTL_MS)),
            generation: AtomicU64::new(0),
            tokens: Shelf::default(),
            keys: Shelf::default(),
        }
    }

    /// Something changed in this process: nothing read before now is used again.
    pub(super) fn forget(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The holder of the control-plane token `token_id`, as of at most the TTL ago.
    pub(super) async fn token_holder(
        &self,
        db: &Db,
        now_ms: i64,
        token_id: &KeyId,
    ) -> Result<Option<Arc<TokenHolder>>, StoreError> {
        self.read(&self.tokens, now_ms, token_id, || {
            users::token_holder(db, token_id)
        })
        .await
    }

    /// The current record of the key `key_id`, as of at most the TTL ago.
    pub(super) async fn key(
        &self,
        db: &Db,
        now_ms: i64,
        key_id: &KeyId,
    ) -> Result<Option<Arc<SnapshotRecord>>, StoreError> {
        self.read(&self.keys, now_ms, key_id, || async {
            Ok(keys::get(db, key_id).await?.map(|key| key.snapshot()))
        })
        .await
    }

    async fn read<T, Load, Loading>(
        &self,
        shelf: &Shelf<T>,
        now_ms: i64,
        id: &KeyId,
        load: Load,
    ) -> Result<Option<Arc<T>>, StoreError>
    where
        Load: FnOnce() -> Loading,
        Loading: Future<Output = Result<Option<T>, StoreError>>,
    {
        if self.ttl_ms == 0 {
            return Ok(load().await?.map(Arc::new));
        }
        // Taken before the read: a change that commits during it makes the entry stale.
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(value) = shelf.fresh(id.as_str(), now_ms, self.ttl_ms, generation) {
            return Ok(value);
        }
        let value = load().await?.map(Arc::new);
        shelf.keep(
            id.as_str(),
            Entry {
                value: value.clone(),
                read_at_ms: now_ms,
                generation,
            },
            self.ttl_ms,
        );
        Ok(value)
    }
}

#[derive(Debug)]
struct Shelf<T> {
    entries: Mutex<HashMap<String, Entry<T>>>,
}

impl<T> Default for Shelf<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

#[derive(Debug)]
struct Entry<T> {
    /// `None`: no such row (kept too, so unknown ids cost the database nothing either).
    value: Option<Arc<T>>,
    read_at_ms: i64,
    generation: u64,
}

impl<T> Entry<T> {
    /// Younger than the TTL and of the current generation. A clock that went back makes an
    /// entry stale, never older-looking-than-it-is fresh.
    fn is_fresh(&self, now_ms: i64, ttl_ms: i64, generation: u64) -> bool {
        self.generation == generation
            && (self.read_at_ms..self.read_at_ms + ttl_ms).contains(&now_ms)
    }
}

impl<T> Shelf<T> {
    /// `Some(value)` when a fresh entry holds it (`value` itself `None` for "no such row").
    fn fresh(&self, id: &str, now_ms: i64, ttl_ms: i64, generation: u64) -> Option<Option<Arc<T>>> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries
            .get(id)
            .filter(|entry| entry.is_fresh(now_ms, ttl_ms, generation))
            .map(|entry| entry.value.clone())
    }

    fn keep(&self, id: &str, entry: Entry<T>, ttl_ms: i64) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(id) {
            let (now_ms, generation) = (entry.read_at_ms, entry.generation);
            entries.retain(|_, kept| kept.is_fresh(now_ms, ttl_ms, generation));
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(id.to_owned(), entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(read_at_ms: i64, generation: u64) -> Entry<u8> {
        Entry {
            value: Some(Arc::new(7)),
            read_at_ms,
            generation,
        }
    }

    #[test]
    fn an_entry_is_fresh_for_the_ttl_of_its_generation_only() {
        let kept = entry(1_000, 3);
        assert!(kept.is_fresh(1_000, 500, 3));
        assert!(kept.is_fresh(1_499, 500, 3));
        assert!(!kept.is_fresh(1_500, 500, 3), "the TTL is an upper bound");
        assert!(!kept.is_fresh(999, 500, 3), "a clock that went back");
        assert!(!kept.is_fresh(1_000, 500, 4), "forgotten");
    }

    #[test]
    fn a_full_shelf_drops_stale_entries_then_everything_never_grows() {
        let shelf = Shelf::<u8>::default();
        for id in 0..MAX_ENTRIES {
            shelf.keep(&id.to_string(), entry(0, 0), 500);
        }
        shelf.keep("fresh", entry(100, 0), 500);
        let len = shelf.entries.lock().unwrap().len();
        assert_eq!(len, 1, "all {MAX_ENTRIES} fresh: cleared, then the new one");
        for id in 0..MAX_ENTRIES - 1 {
            shelf.keep(&id.to_string(), entry(100, 0), 500);
        }
        shelf.keep("late", entry(700, 0), 500);
        let entries = shelf.entries.lock().unwrap();
        assert_eq!(entries.len(), 1, "the old ones are stale at 700 and go");
        assert!(entries.contains_key("late"));
    }
}
