//! A fixed number of places for work that must not pile up without bound.
//!
//! Used for the queue in front of the password verifier (R6): bcrypt is slow on purpose (at
//! production costs one check is 50–200 ms of CPU), and a login storm must neither stall other
//! connections' mail nor build an unbounded backlog. The verifier runs at most
//! `verifier_running` checks at once (its threads) and lets at most `verifier_waiting` more
//! wait; [`Slots`] is the admission half, with a place for every check running or waiting,
//! and `454 4.7.0` for the AUTH that finds none. Also used to bound the refusals in flight on
//! the implicit-TLS port, where the `421` can only be sent after a handshake.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts work running or waiting; refuses beyond its capacity.
#[derive(Debug, Clone)]
pub struct Slots {
    occupied: Arc<AtomicUsize>,
    capacity: usize,
}

impl Slots {
    /// `capacity` places (at least one).
    pub fn new(capacity: usize) -> Slots {
        Slots {
            occupied: Arc::new(AtomicUsize::new(0)),
            capacity: capacity.max(1),
        }
    }

    /// A place, or `None` when all are taken.
    pub fn try_enter(&self) -> Option<Slot> {
        let entered = self
            .occupied
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok();
        entered.then(|| Slot {
            occupied: Arc::clone(&self.occupied),
        })
    }

    /// Places taken now.
    pub fn occupied(&self) -> usize {
        self.occupied.load(Ordering::Acquire)
    }
}

/// A place taken in [`Slots`]; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    occupied: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.occupied.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r6_refuses_beyond_capacity_and_frees_on_drop() {
        let queue = Slots::new(5);
        let slots: Vec<Slot> = (0..5).filter_map(|_| queue.try_enter()).collect();
        assert_eq!(slots.len(), 5);
        assert!(queue.try_enter().is_none());
        drop(slots);
        assert_eq!(queue.occupied(), 0);
        assert!(queue.try_enter().is_some());
    }

    #[test]
    fn zero_capacity_still_admits_one() {
        let queue = Slots::new(0);
        let slot = queue.try_enter();
        assert!(slot.is_some());
        assert!(queue.try_enter().is_none());
    }
}
