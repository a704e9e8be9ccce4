//! The calls into the store running now (commits, and the keeper's probes), so that
//! `/healthz` can say when one has run longer than `limits.store_timeout_secs`: a database
//! that stopped answering, even when no delivery is waiting on it.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The store calls running now, by when each began.
#[derive(Debug, Default)]
pub struct StoreCalls {
    running: Mutex<Running>,
}

#[derive(Debug, Default)]
struct Running {
    next: u64,
    /// (ticket, began): a handful at most, one per commit thread and the keeper.
    began: Vec<(u64, Instant)>,
}

/// A store call being made; it ends when this is dropped.
#[derive(Debug)]
#[must_use = "the call counts as running until this is dropped"]
pub struct StoreCall<'a> {
    calls: &'a StoreCalls,
    ticket: u64,
}

impl StoreCalls {
    /// A call that began at `now`.
    pub fn begin(&self, now: Instant) -> StoreCall<'_> {
        let mut running = self.lock();
        let ticket = running.next;
        running.next = running.next.wrapping_add(1);
        running.began.push((ticket, now));
        StoreCall {
            calls: self,
            ticket,
        }
    }

    /// How long the longest-running call has run at `now`; `None`: none is running.
    pub fn longest(&self, now: Instant) -> Option<Duration> {
        let running = self.lock();
        let first = running.began.iter().map(|&(_, began)| began).min()?;
        Some(now.saturating_duration_since(first))
    }

    fn lock(&self) -> MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for StoreCall<'_> {
    fn drop(&mut self) {
        self.calls
            .lock()
            .began
            .retain(|&(ticket, _)| ticket != self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_running_call_counts_until_it_ends() {
        let calls = StoreCalls::default();
        let t0 = Instant::now();
        assert_eq!(calls.longest(t0), None);
        let first = calls.begin(t0);
        let second = calls.begin(t0 + Duration::from_secs(5));
        assert_eq!(
            calls.longest(t0 + Duration::from_secs(7)),
            Some(Duration::from_secs(7))
        );
        drop(first);
        assert_eq!(
            calls.longest(t0 + Duration::from_secs(7)),
            Some(Duration::from_secs(2))
        );
        drop(second);
        assert_eq!(calls.longest(t0 + Duration::from_secs(7)), None);
    }
}
