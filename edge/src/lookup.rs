//! Finding a key's record: isolate cache first (no I/O), then, limited per client, KV.

use std::net::IpAddr;
use std::rc::Rc;

use keygate_shared::{KeyId, RecordError, SnapshotRecord};
use worker::Env;

use crate::Isolate;
use crate::cache::{CachedRecord, Lookup};

pub(crate) const KV_BINDING: &str = "KEYS";
pub(crate) const LIMITER_BINDING: &str = "LOOKUP_LIMITER";

#[derive(Debug)]
pub(crate) enum LookupError {
    /// This client has made too many lookups that missed the isolate cache.
    Limited,
    /// KV or the limiter could not be reached: fail closed.
    Unavailable(String),
    /// KV holds something this build cannot read: fail closed.
    Unreadable(RecordError),
}

pub(crate) async fn record(
    isolate: &Isolate,
    env: &Env,
    key_id: KeyId,
    client: Option<IpAddr>,
    now_ms: i64,
) -> Result<Lookup, LookupError> {
    let now_ms = u64::try_from(now_ms).unwrap_or_default();
    if let Some(hit) = isolate.cache.borrow().get(&key_id, now_ms) {
        return Ok(hit);
    }
    // A checksum is no secret, so valid-looking junk can reach this point; each client gets a
    // bounded number of KV reads, and junk cannot turn into a KV bill.
    let limiter = env
        .rate_limiter(LIMITER_BINDING)
        .map_err(|error| unavailable(LIMITER_BINDING, error))?;
    let outcome = limiter
        .limit(client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()))
        .await
        .map_err(|error| unavailable(LIMITER_BINDING, error))?;
    if !outcome.success {
        return Err(LookupError::Limited);
    }
    let kv = env
        .kv(KV_BINDING)
        .map_err(|error| unavailable(KV_BINDING, error))?;
    let bytes = kv
        .get(key_id.as_str())
        .cache_ttl(isolate.config.kv_cache_ttl)
        .bytes()
        .await
        .map_err(|error| unavailable(KV_BINDING, error))?;
    let lookup = match bytes {
        None => None,
        Some(bytes) => Some(Rc::new(CachedRecord::new(
            SnapshotRecord::decode(&bytes).map_err(LookupError::Unreadable)?,
        ))),
    };
    isolate
        .cache
        .borrow_mut()
        .insert(key_id, lookup.clone(), now_ms);
    Ok(lookup)
}

fn unavailable(binding: &str, error: impl std::fmt::Display) -> LookupError {
    LookupError::Unavailable(format!("{binding}: {error}"))
}
