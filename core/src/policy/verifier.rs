//! The bounded queue in front of the password verifier (R6).
//!
//! bcrypt is slow on purpose: at production costs one check is 50–200 ms of CPU. A login
//! storm must neither stall other connections' mail nor build an unbounded backlog, so a
//! runtime runs at most `verifier_running` checks at once (a semaphore of its own kind: async
//! in smol, a condition variable with threads) and lets at most `verifier_waiting` more wait.
//! This queue is the admission half: a slot for every check running or waiting, and
//! `454 4.7.0` for the AUTH that finds none.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts password checks running or waiting; refuses beyond its capacity.
#[derive(Debug, Clone)]
pub struct VerifierQueue {
    occupied: Arc<AtomicUsize>,
    capacity: usize,
}

impl VerifierQueue {
    /// A queue holding at most `running + waiting` checks.
    pub fn new(running: usize, waiting: usize) -> VerifierQueue {
        VerifierQueue {
            occupied: Arc::new(AtomicUsize::new(0)),
            capacity: running.saturating_add(waiting).max(1),
        }
    }

    /// A place in the queue, or `None` when it is full (answer `454 4.7.0`).
    pub fn try_enter(&self) -> Option<QueueSlot> {
        let entered = self
            .occupied
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok();
        entered.then(|| QueueSlot {
            occupied: Arc::clone(&self.occupied),
        })
    }

    /// Checks running or waiting now.
    pub fn occupied(&self) -> usize {
        self.occupied.load(Ordering::Acquire)
    }
}

/// A place in the [`VerifierQueue`]; dropping it frees the place.
#[derive(Debug)]
pub struct QueueSlot {
    occupied: Arc<AtomicUsize>,
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.occupied.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r6_refuses_beyond_running_plus_waiting_and_frees_on_drop() {
        let queue = VerifierQueue::new(2, 3);
        let slots: Vec<QueueSlot> = (0..5).filter_map(|_| queue.try_enter()).collect();
        assert_eq!(slots.len(), 5);
        assert!(queue.try_enter().is_none());
        drop(slots);
        assert_eq!(queue.occupied(), 0);
        assert!(queue.try_enter().is_some());
    }

    #[test]
    fn a_zero_sized_queue_still_admits_one() {
        let queue = VerifierQueue::new(0, 0);
        let slot = queue.try_enter();
        assert!(slot.is_some());
        assert!(queue.try_enter().is_none());
    }
}
