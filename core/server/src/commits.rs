//! The commits running now, so that a delivery can stop waiting for one that takes too long
//! (`limits.store_timeout_secs`: a database that stopped answering) and `/healthz` can say
//! so meanwhile.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The commits running now, by when each began.
#[derive(Debug, Default)]
pub struct Commits {
    running: Mutex<Running>,
}

#[derive(Debug, Default)]
struct Running {
    next: u64,
    /// (ticket, began): a handful at most, one per commit thread.
    began: Vec<(u64, Instant)>,
}

/// A commit being run; it ends when this is dropped.
#[derive(Debug)]
#[must_use = "the commit counts as running until this is dropped"]
pub struct Commit<'a> {
    commits: &'a Commits,
    ticket: u64,
}

impl Commits {
    /// A commit that began at `now`.
    pub fn begin(&self, now: Instant) -> Commit<'_> {
        let mut running = self.lock();
        let ticket = running.next;
        running.next = running.next.wrapping_add(1);
        running.began.push((ticket, now));
        Commit {
            commits: self,
            ticket,
        }
    }

    /// How long the longest-running commit has run at `now`; `None`: none is running.
    pub fn longest(&self, now: Instant) -> Option<Duration> {
        let running = self.lock();
        let first = running.began.iter().map(|&(_, began)| began).min()?;
        Some(now.saturating_duration_since(first))
    }

    fn lock(&self) -> MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Commit<'_> {
    fn drop(&mut self) {
        self.commits
            .lock()
            .began
            .retain(|&(ticket, _)| ticket != self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_running_commit_counts_until_it_ends() {
        let commits = Commits::default();
        let t0 = Instant::now();
        assert_eq!(commits.longest(t0), None);
        let first = commits.begin(t0);
        let second = commits.begin(t0 + Duration::from_secs(5));
        assert_eq!(
            commits.longest(t0 + Duration::from_secs(7)),
            Some(Duration::from_secs(7))
        );
        drop(first);
        assert_eq!(
            commits.longest(t0 + Duration::from_secs(7)),
            Some(Duration::from_secs(2))
        );
        drop(second);
        assert_eq!(commits.longest(t0 + Duration::from_secs(7)), None);
    }
}
