use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use keygate_shared::UnixSeconds;

/// Where the control plane reads the time: the system clock, or a hand-set one in tests (expiry,
/// grace periods, sync leases and backoff are decided against it).
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock that stands still at `start` until [`Clock::advance`] moves it.
    pub fn manual(start: UnixSeconds) -> Self {
        Self(Some(Arc::new(AtomicI64::new(start.saturating_mul(1000)))))
    }

    pub fn advance(&self, seconds: i64) {
        self.advance_ms(seconds.saturating_mul(1000));
    }

    pub fn advance_ms(&self, millis: i64) {
        if let Some(now) = &self.0 {
            now.fetch_add(millis, Ordering::SeqCst);
        }
    }

    /// The hand-set time, or `None` for the system clock. What several replicas must agree on
    /// (sync leases) is measured by the database's clock, unless a test set the time by hand.
    pub fn manual_ms(&self) -> Option<i64> {
        self.0.as_ref().map(|now| now.load(Ordering::SeqCst))
    }

    pub fn now(&self) -> UnixSeconds {
        self.now_ms().div_euclid(1000)
    }

    /// Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Some(now) => now.load(Ordering::SeqCst),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| {
                    elapsed.as_millis().try_into().unwrap_or(i64::MAX)
                }),
        }
    }
}
