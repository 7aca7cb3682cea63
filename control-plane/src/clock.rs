use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use keygate_shared::UnixSeconds;

/// Where the control plane reads the time: the system clock, or a hand-set one in tests (expiry
/// and grace periods are decided against it).
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock that stands still at `start` until [`Clock::advance`] moves it.
    pub fn manual(start: UnixSeconds) -> Self {
        Self(Some(Arc::new(AtomicI64::new(start))))
    }

    pub fn advance(&self, seconds: i64) {
        if let Some(now) = &self.0 {
            now.fetch_add(seconds, Ordering::SeqCst);
        }
    }

    pub fn now(&self) -> UnixSeconds {
        match &self.0 {
            Some(now) => now.load(Ordering::SeqCst),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| {
                    elapsed.as_secs().try_into().unwrap_or(i64::MAX)
                }),
        }
    }
}
