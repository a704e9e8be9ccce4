//! A counting semaphore for threads: std has none. Bounds the password checks running at
//! once; the core's `AuthGate` bounds how many may wait here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long one wait for a free place lasts at most, so that the abort is seen this soon
/// (only while an AUTH waits for a verifier, never on an idle connection).
const TICK: Duration = Duration::from_millis(100);

/// `permits` places; a thread waits for one, at most for a given time.
#[derive(Debug)]
pub struct Semaphore {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A place taken in a [`Semaphore`]; dropping it frees the place.
#[derive(Debug)]
pub struct Permit<'a> {
    semaphore: &'a Semaphore,
}

impl Semaphore {
    /// A semaphore with `permits` places (at least one).
    pub fn new(permits: usize) -> Semaphore {
        Semaphore {
            free: Mutex::new(permits.max(1)),
            freed: Condvar::new(),
        }
    }

    /// A place, once one is free; `None` if none became free within `timeout`, or once
    /// `abort` is set (seen within a [`TICK`]).
    pub fn acquire(&self, timeout: Duration, abort: &AtomicBool) -> Option<Permit<'_>> {
        let deadline = Instant::now() + timeout;
        // The count stays consistent after every statement, so a poisoned lock carries no
        // news.
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || abort.load(Ordering::Acquire) {
                return None;
            }
            free = self
                .freed
                .wait_timeout(free, left.min(TICK))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *free -= 1;
        Some(Permit { semaphore: self })
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut free = self
            .semaphore
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *free += 1;
        self.semaphore.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_free_place_and_gives_up_after_the_timeout() {
        let semaphore = Semaphore::new(1);
        let running = AtomicBool::new(false);
        let first = semaphore.acquire(Duration::ZERO, &running);
        assert!(first.is_some());
        assert!(
            semaphore
                .acquire(Duration::from_millis(10), &running)
                .is_none()
        );
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                semaphore
                    .acquire(Duration::from_secs(5), &running)
                    .is_some()
            });
            drop(first);
            assert!(waiter.join().unwrap_or(false));
        });
    }

    #[test]
    fn a_waiter_gives_up_when_the_server_aborts() {
        let semaphore = Semaphore::new(1);
        let abort = AtomicBool::new(false);
        let _held = semaphore.acquire(Duration::ZERO, &abort);
        let started = Instant::now();
        std::thread::scope(|scope| {
            let waiter =
                scope.spawn(|| semaphore.acquire(Duration::from_secs(30), &abort).is_some());
            abort.store(true, Ordering::Release);
            assert!(!waiter.join().unwrap_or(true));
        });
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
