//! Per-key rate limiting: a token bucket holding at most `requests` tokens that refills at
//! `requests` per `window_seconds`, continuously. A burst of up to `requests` passes at once; after
//! that one request passes each `window / requests`, and a full window of silence refills it all.
//!
//! The arithmetic is integer and exact: the level is kept in units of one token / window_ms, so a
//! millisecond adds exactly `requests` units and a request costs exactly `window_ms` units. The
//! edge keeps one bucket per key in a Durable Object, which serialises requests, so a burst of N
//! concurrent requests lets exactly `requests` through.

use serde::{Deserialize, Serialize};

use crate::record::RateLimit;

/// A key's bucket, as the edge stores it between requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBucket {
    /// The limit this bucket was filled for; another limit starts a new, full bucket.
    requests: u32,
    window_seconds: u32,
    /// Tokens × window_ms.
    level: u64,
    /// When `level` was last brought up to date (Unix milliseconds).
    updated_ms: i64,
}

/// The outcome of one request against a bucket, with what the RateLimit headers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    pub allowed: bool,
    pub limit: u32,
    /// Whole tokens left after this request.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_seconds: u64,
    /// Seconds until the next request would pass (0 when this one did).
    pub retry_after_seconds: u64,
}

impl TokenBucket {
    /// A full bucket for `limit`.
    pub fn full(limit: RateLimit, now_ms: i64) -> Self {
        Self {
            requests: limit.requests(),
            window_seconds: limit.window_seconds(),
            level: capacity(limit),
            updated_ms: now_ms,
        }
    }

    fn limit(&self) -> Option<RateLimit> {
        RateLimit::new(self.requests, self.window_seconds).ok()
    }

    /// Takes one token if there is one, at `now_ms`, under `limit`. A bucket kept for another
    /// limit (the key's limit was changed) starts again full under the new one.
    pub fn take(bucket: Option<Self>, limit: RateLimit, now_ms: i64) -> (Self, Admission) {
        let mut bucket = match bucket {
            Some(bucket) if bucket.limit() == Some(limit) => bucket,
            _ => Self::full(limit, now_ms),
        };
        let rate = u64::from(limit.requests());
        let cost = window_ms(limit);
        let elapsed = u64::try_from(now_ms.saturating_sub(bucket.updated_ms)).unwrap_or(0);
        bucket.level = bucket
            .level
            .saturating_add(elapsed.saturating_mul(rate))
            .min(capacity(limit));
        // A clock that went backwards adds nothing and keeps the later mark.
        bucket.updated_ms = bucket.updated_ms.max(now_ms);
        let allowed = bucket.level >= cost;
        if allowed {
            bucket.level -= cost;
        }
        let seconds = |units: u64| units.div_ceil(rate).div_ceil(1000);
        let admission = Admission {
            allowed,
            limit: limit.requests(),
            remaining: u32::try_from(bucket.level / cost).unwrap_or(u32::MAX),
            reset_seconds: seconds(capacity(limit) - bucket.level),
            retry_after_seconds: if allowed {
                0
            } else {
                seconds(cost - bucket.level).max(1)
            },
        };
        (bucket, admission)
    }
}

fn window_ms(limit: RateLimit) -> u64 {
    u64::from(limit.window_seconds()) * 1000
}

fn capacity(limit: RateLimit) -> u64 {
    u64::from(limit.requests()) * window_ms(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: u32, window_seconds: u32) -> RateLimit {
        RateLimit::new(requests, window_seconds).expect("valid")
    }

    /// Runs `times` requests at `now_ms`; returns how many passed.
    fn burst(bucket: &mut Option<TokenBucket>, limit: RateLimit, now_ms: i64, times: u32) -> u32 {
        (0..times)
            .filter(|_| {
                let (next, admission) = TokenBucket::take(*bucket, limit, now_ms);
                *bucket = Some(next);
                admission.allowed
            })
            .count() as u32
    }

    #[test]
    fn a_burst_gets_exactly_the_limit_then_refills_at_the_rate() {
        let five = limit(5, 60);
        let mut bucket = None;
        assert_eq!(burst(&mut bucket, five, 1_000_000, 20), 5);
        let (_, denied) = TokenBucket::take(bucket, five, 1_000_000);
        assert_eq!(
            denied,
            Admission {
                allowed: false,
                limit: 5,
                remaining: 0,
                reset_seconds: 60,
                retry_after_seconds: 12,
            }
        );
        // One token per 12 s: not at 11.999 s, yes at 12 s, and only one.
        assert_eq!(burst(&mut bucket, five, 1_011_999, 3), 0);
        assert_eq!(burst(&mut bucket, five, 1_012_000, 3), 1);
        // A full window of silence refills everything, never more.
        assert_eq!(burst(&mut bucket, five, 10_000_000, 20), 5);
    }

    #[test]
    fn headers_count_down_and_a_new_limit_starts_full() {
        let three = limit(3, 30);
        let (bucket, first) = TokenBucket::take(None, three, 0);
        assert_eq!(
            (first.allowed, first.remaining, first.reset_seconds),
            (true, 2, 10)
        );
        let (bucket, second) = TokenBucket::take(Some(bucket), three, 0);
        assert_eq!((second.remaining, second.reset_seconds), (1, 20));
        let (bucket, _) = TokenBucket::take(Some(bucket), three, 0);
        let (bucket, fourth) = TokenBucket::take(Some(bucket), three, 0);
        assert!(!fourth.allowed);
        let (_, raised) = TokenBucket::take(Some(bucket), limit(10, 30), 0);
        assert_eq!((raised.allowed, raised.remaining), (true, 9));
        // A clock that steps back neither refills nor panics.
        let (bucket, _) = TokenBucket::take(None, limit(1, 1), 5_000);
        let (_, earlier) = TokenBucket::take(Some(bucket), limit(1, 1), 1_000);
        assert!(!earlier.allowed);
    }

    #[test]
    fn the_largest_limits_do_not_overflow() {
        let most = limit(
            crate::record::MAX_RATE_LIMIT_REQUESTS,
            crate::record::MAX_RATE_LIMIT_WINDOW_SECONDS,
        );
        let (bucket, admission) = TokenBucket::take(None, most, i64::MIN);
        assert!(admission.allowed);
        let (_, later) = TokenBucket::take(Some(bucket), most, i64::MAX);
        assert_eq!(later.remaining, crate::record::MAX_RATE_LIMIT_REQUESTS - 1);
    }
}
