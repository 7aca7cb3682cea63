//! Finding a key's record: isolate cache first (no I/O), then, limited per client, KV.

use std::net::IpAddr;
use std::rc::Rc;

use keygate_shared::{KeyId, RecordError};
use worker::Env;

use crate::Isolate;
use crate::cache::{CachedRecord, Lookup};
use crate::records::Untrusted;

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
    /// KV holds a record the control plane did not sign (unsigned, unknown key, bad signature):
    /// fail closed, and say so loudly.
    Forged(&'static str),
}

pub(crate) async fn record(
    isolate: &Isolate,
    env: &Env,
    key_id: KeyId,
    client: Option<IpAddr>,
    now_ms: i64,
) -> Result<Lookup, LookupError> {
    let now_ms = u64::try_from(now_ms).unwrap_or_default();
    let max_age_ms = isolate.follower.cache_ttl_ms(isolate.config.feed.as_ref());
    if let Some(hit) = isolate.cache.borrow().get(&key_id, now_ms, max_age_ms) {
        return Ok(hit);
    }
    // A checksum is no secret, so valid-looking junk can reach this point; each client gets a
    // bounded number of KV reads, and junk cannot turn into a KV bill.
    let limiter = env
        .rate_limiter(LIMITER_BINDING)
        .map_err(|error| unavailable(LIMITER_BINDING, error))?;
    let outcome = limiter
        .limit(client.map_or_else(|| "unknown".to_owned(), client_bucket))
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
        Some(bytes) => {
            let record = isolate
                .records
                .open(&isolate.config.records, &key_id, &bytes)
                .await
                .map_err(|untrusted| match untrusted {
                    Untrusted::Unreadable(error) => LookupError::Unreadable(error),
                    Untrusted::Forged(why) => LookupError::Forged(why),
                })?;
            Some(Rc::new(CachedRecord::new(record)))
        }
    };
    // KV may still serve a version older than the change feed brought (its propagation, its
    // edge cache): the newer one wins.
    let lookup = isolate
        .follower
        .prefer_newer(
            isolate,
            &key_id,
            lookup,
            i64::try_from(now_ms).unwrap_or(i64::MAX),
        )
        .await;
    isolate
        .cache
        .borrow_mut()
        .insert(key_id, lookup.clone(), now_ms);
    Ok(lookup)
}

/// Whose budget a lookup spends: the client's address, or for IPv6 its /64, which one subscriber
/// usually holds whole (so rotating through its addresses buys no more lookups).
pub(crate) fn client_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
            }
        },
    }
}

fn unavailable(binding: &str, error: impl std::fmt::Display) -> LookupError {
    LookupError::Unavailable(format!("{binding}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::client_bucket;

    #[test]
    fn ipv6_clients_share_a_budget_per_64_and_ipv4_per_address() {
        let bucket = |text: &str| client_bucket(text.parse().unwrap());
        assert_eq!(
            bucket("2001:db8:1:2:aaaa::1"),
            bucket("2001:db8:1:2:ffff:1:2:3")
        );
        assert_ne!(bucket("2001:db8:1:2::1"), bucket("2001:db8:1:3::1"));
        assert_eq!(bucket("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(bucket("192.0.2.7"), "192.0.2.7");
        assert_ne!(bucket("192.0.2.7"), bucket("192.0.2.8"));
        assert_eq!(bucket("::ffff:192.0.2.7"), "192.0.2.7");
    }
}
