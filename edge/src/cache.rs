//! Records cached in isolate memory, so a hot key costs no network call at all. Bounded in size
//! and in age; "no such key" is cached too, so repeated junk ids do not each reach KV. The clock
//! is passed in (milliseconds), keeping this testable natively.

use std::cell::OnceCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use keygate_shared::{Identity, KeyId, SnapshotRecord};

use crate::gateway::IdentityHeaders;

/// A record as cached: the record, and the identity headers it forwards with, built once on first
/// use (they depend only on the record), so a hot key pays for them once per cache lifetime.
#[derive(Debug)]
pub(crate) struct CachedRecord {
    pub(crate) record: SnapshotRecord,
    identity_headers: OnceCell<IdentityHeaders>,
}

impl CachedRecord {
    /// The key's rate limit, if it has one.
    pub(crate) fn rate_limit(&self) -> Option<keygate_shared::RateLimit> {
        match &self.record.state {
            keygate_shared::RecordState::Present(body) => body.rate_limit,
            keygate_shared::RecordState::Deleted => None,
        }
    }

    /// The identity headers of this key, built on first use from the decision's identity.
    pub(crate) fn identity_headers(&self, identity: &Identity<'_>) -> &IdentityHeaders {
        self.identity_headers
            .get_or_init(|| IdentityHeaders::new(identity))
    }

    pub(crate) fn new(record: SnapshotRecord) -> Self {
        Self {
            record,
            identity_headers: OnceCell::new(),
        }
    }
}

/// What KV said about a key id: its record, or that there is none.
pub(crate) type Lookup = Option<Rc<CachedRecord>>;

#[derive(Debug)]
pub(crate) struct RecordCache {
    entries: HashMap<KeyId, (Lookup, u64)>,
    /// Insertion order for eviction; may hold stale (id, time) pairs of re-inserted ids, which
    /// eviction skips and `compact` drops.
    order: VecDeque<(KeyId, u64)>,
    capacity: usize,
    ttl_ms: u64,
}

impl RecordCache {
    pub(crate) fn new(capacity: usize, ttl_ms: u64) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            ttl_ms,
        }
    }

    /// `Some(lookup)` when an answer younger than the TTL and than `max_age_ms` is cached, `None`
    /// when KV must be asked.
    pub(crate) fn get(&self, key_id: &KeyId, now_ms: u64, max_age_ms: u64) -> Option<Lookup> {
        let (lookup, stored_at) = self.entries.get(key_id)?;
        (now_ms.saturating_sub(*stored_at) < self.ttl_ms.min(max_age_ms)).then(|| lookup.clone())
    }

    pub(crate) fn insert(&mut self, key_id: KeyId, lookup: Lookup, now_ms: u64) {
        if self.ttl_ms == 0 {
            return;
        }
        if !self.entries.contains_key(&key_id) {
            while self.entries.len() >= self.capacity {
                let Some((oldest, stored_at)) = self.order.pop_front() else {
                    break;
                };
                if self
                    .entries
                    .get(&oldest)
                    .is_some_and(|(_, at)| *at == stored_at)
                {
                    self.entries.remove(&oldest);
                }
            }
        }
        self.entries.insert(key_id, (lookup, now_ms));
        self.order.push_back((key_id, now_ms));
        if self.order.len() > 2 * self.capacity {
            self.compact();
        }
    }

    /// Drops `key_id`'s entry: its next lookup asks again.
    pub(crate) fn forget(&mut self, key_id: &KeyId) {
        self.entries.remove(key_id);
    }

    /// Drops every entry.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    fn compact(&mut self) {
        let entries = &self.entries;
        self.order.retain(|(id, at)| {
            entries
                .get(id)
                .is_some_and(|(_, stored_at)| stored_at == at)
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_shared::{KeyFormat, RecordState};

    fn ids(count: usize) -> Vec<KeyId> {
        let format = KeyFormat::new("kg").unwrap();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        (0..count)
            .map(|_| {
                format
                    .generate(keygate_shared::Environment::Production, &mut rng)
                    .key_id()
            })
            .collect()
    }

    use rand_core::SeedableRng;

    fn tombstone(key_id: KeyId) -> Lookup {
        Some(Rc::new(CachedRecord::new(SnapshotRecord {
            key_id,
            version: 1,
            state: RecordState::Deleted,
        })))
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let id = ids(1)[0];
        let mut cache = RecordCache::new(10, 1_000);
        assert!(cache.get(&id, 0, u64::MAX).is_none());
        cache.insert(id, tombstone(id), 5_000);
        assert!(
            cache
                .get(&id, 5_999, u64::MAX)
                .is_some_and(|lookup| lookup.is_some())
        );
        assert!(cache.get(&id, 6_000, u64::MAX).is_none());
        // A shorter cap (the feed degraded) expires it sooner.
        assert!(cache.get(&id, 5_499, 500).is_some());
        assert!(cache.get(&id, 5_500, 500).is_none());
    }

    #[test]
    fn negative_answers_are_cached_too() {
        let id = ids(1)[0];
        let mut cache = RecordCache::new(10, 1_000);
        cache.insert(id, None, 0);
        assert!(matches!(cache.get(&id, 10, u64::MAX), Some(None)));
    }

    #[test]
    fn size_is_bounded_and_the_oldest_goes_first() {
        let ids = ids(5);
        let mut cache = RecordCache::new(3, 60_000);
        for (at, id) in ids.iter().enumerate() {
            cache.insert(*id, None, at as u64);
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&ids[0], 10, u64::MAX).is_none());
        assert!(cache.get(&ids[1], 10, u64::MAX).is_none());
        assert!(matches!(cache.get(&ids[4], 10, u64::MAX), Some(None)));
    }

    #[test]
    fn refreshing_one_hot_key_keeps_bookkeeping_bounded() {
        let ids = ids(3);
        let mut cache = RecordCache::new(3, 60_000);
        for now in 0..10_000 {
            cache.insert(ids[0], None, now);
        }
        assert!(cache.order.len() <= 6, "{}", cache.order.len());
        cache.insert(ids[1], None, 10_000);
        cache.insert(ids[2], None, 10_001);
        assert_eq!(cache.len(), 3);
        assert!(
            matches!(cache.get(&ids[0], 10_002, u64::MAX), Some(None)),
            "the refreshed key is not evicted early"
        );
    }

    #[test]
    fn a_zero_ttl_disables_caching() {
        let id = ids(1)[0];
        let mut cache = RecordCache::new(3, 0);
        cache.insert(id, None, 0);
        assert!(cache.get(&id, 0, u64::MAX).is_none());
    }
}
