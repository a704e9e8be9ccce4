//! When to reopen a database that an I/O error left unusable, and when to give up: pure
//! bookkeeping, time as an argument.
//!
//! After a failed write (`ENOSPC`, `EIO`) redb fails every later operation with "Previous I/O
//! error occurred. Please close and re-open the database" until the handle is closed: a full
//! disk that is then freed used to leave the daemon up, refusing every message for good. So
//! the store closes the database and opens it again, which rolls back to its last durable
//! commit and replays the journal ([`super::journal`]): at most once per [`REOPEN_EVERY`], on
//! the next delivery or on the server's timer, never in a loop. Meanwhile each delivery gets
//! the error that broke the database (`452 4.3.1` for a full disk) without touching the disk.
//!
//! On a disk still full the reopen fails too (redb's recovery of the file needs room, tried on
//! a 40 MiB tmpfs), and costs a read of the whole file: after a full disk, a reopen is tried
//! only once [`REOPEN_ROOM`] is free (one `statvfs` per operation meanwhile). The clients are
//! told `452` until then, and the first operation after there is room reopens the store. A restart could not make room, and a server that failed to
//! start again and again would be given up on by systemd and stay down once there was, so a
//! full disk never counts towards giving up. Reopens that fail otherwise (the file gone, the
//! disk dead) do: after [`GIVE_UP_AFTER`] of them (or `limits.store_reopen_timeout_secs`) the
//! store reports [`Health::Failed`], and the server exits non-zero so that systemd restarts
//! it, rather than stay up refusing all mail.

use std::time::{Duration, Instant};

use super::StoreError;

/// The least time between two reopen attempts.
pub const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// The room a full disk must have again before a reopen is tried: the database's zeros ahead
/// ([`super::zeroed::ZERO_AHEAD`]) and as much for the journal's. With less, the first
/// deliveries would fill it again.
pub const REOPEN_ROOM: u64 = 16 << 20;

/// How long reopens may go on failing (one per [`REOPEN_EVERY`], so about 60 of them) for
/// another reason than a full disk before the store gives up and the server exits; the
/// default of `limits.store_reopen_timeout_secs`.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Whether the store can take deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The database is open and was working at its last use.
    Working,
    /// An I/O error left the database unusable; reopening it is being tried.
    Recovering,
    /// Reopening has failed for [`GIVE_UP_AFTER`] (other than for a full disk): the process
    /// should exit non-zero.
    Failed,
}

/// The state of a store's recovery.
#[derive(Debug)]
pub(super) struct Recovery {
    /// How long reopens may fail before [`Health::Failed`].
    give_up_after: Duration,
    broken: Option<Broken>,
    /// When a reopen was last tried: kept across failures, so that a disk still full, which
    /// breaks the database again at the first write after each reopen, gets one a second.
    last_try: Option<Instant>,
}

#[derive(Debug)]
struct Broken {
    since: Instant,
    /// What deliveries are told meanwhile: the error that broke the database, then that of
    /// the last failed reopen.
    cause: StoreError,
    /// The first of the reopens that have failed in a row, other than for a full disk.
    failing_since: Option<Instant>,
    /// Operations refused without touching the disk.
    refused: u64,
}

/// What to do with an operation on the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Next {
    /// Go ahead: the database works.
    Proceed,
    /// Reopen the database first (and report how it went).
    Reopen,
    /// Fail with this, without touching the disk: a reopen is not due yet.
    Refuse(StoreError),
}

/// Who asks [`Recovery::next`]: only operations count as refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Asker {
    /// A delivery, a read, a change of users.
    Operation,
    /// The server's timer ([`super::Store::recover`]).
    Timer,
}

/// How long a recovered store was unusable, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outage {
    /// From the failure to the reopen.
    pub lasted: Duration,
    /// Operations refused meanwhile without touching the disk.
    pub refused: u64,
}

impl Recovery {
    /// A store that works, which gives up after `give_up_after` of failed reopens.
    pub fn new(give_up_after: Duration) -> Recovery {
        Recovery {
            give_up_after,
            broken: None,
            last_try: None,
        }
    }

    /// Changes how long reopens may fail before [`Health::Failed`].
    pub fn set_give_up_after(&mut self, after: Duration) {
        self.give_up_after = after;
    }

    /// How long reopens may fail before [`Health::Failed`].
    pub fn give_up_after(&self) -> Duration {
        self.give_up_after
    }

    /// An operation failed at `now` with `cause`, which leaves the database unusable; true if
    /// it was working until now (a later failure keeps the first cause: it says why).
    pub fn broke(&mut self, now: Instant, cause: StoreError) -> bool {
        if self.broken.is_some() {
            return false;
        }
        self.broken = Some(Broken {
            since: now,
            cause,
            failing_since: None,
            refused: 0,
        });
        true
    }

    /// What an operation arriving at `now` should do. Answering [`Next::Reopen`] counts as the
    /// attempt: the caller then reports [`Recovery::reopened`] or [`Recovery::reopen_failed`].
    /// After a full disk, `room` (asked only then) says whether [`REOPEN_ROOM`] is free: a
    /// reopen waits for it, and is tried as soon as it is, without waiting for its turn.
    pub fn next(&mut self, now: Instant, room: impl FnOnce() -> bool, asker: Asker) -> Next {
        let Some(broken) = &mut self.broken else {
            return Next::Proceed;
        };
        let due = self
            .last_try
            .is_none_or(|last| now.saturating_duration_since(last) >= REOPEN_EVERY);
        let waits_for_room = matches!(broken.cause, StoreError::NoSpace(_));
        if due && (!waits_for_room || room()) {
            self.last_try = Some(now);
            Next::Reopen
        } else {
            if asker == Asker::Operation {
                broken.refused = broken.refused.saturating_add(1);
            }
            Next::Refuse(broken.cause.clone())
        }
    }

    /// The reopen worked: the database is usable again.
    pub fn reopened(&mut self, now: Instant) -> Option<Outage> {
        self.broken.take().map(|broken| Outage {
            lasted: now.saturating_duration_since(broken.since),
            refused: broken.refused,
        })
    }

    /// The reopen tried at `now` failed with `error`, which deliveries are told from now on.
    /// A full disk starts the count towards giving up afresh: only room can help there.
    pub fn reopen_failed(&mut self, now: Instant, error: StoreError) {
        if let Some(broken) = &mut self.broken {
            if matches!(error, StoreError::NoSpace(_)) {
                broken.failing_since = None;
            } else {
                broken.failing_since.get_or_insert(now);
            }
            broken.cause = error;
        }
    }

    /// The store's health as of `now`.
    pub fn health(&self, now: Instant) -> Health {
        match &self.broken {
            None => Health::Working,
            Some(Broken {
                failing_since: Some(first),
                ..
            }) if now.saturating_duration_since(*first) >= self.give_up_after => Health::Failed,
            Some(_) => Health::Recovering,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn room() -> bool {
        true
    }

    fn full() -> StoreError {
        StoreError::NoSpace("No space left on device (os error 28)".into())
    }

    #[test]
    fn a_working_store_proceeds() {
        let mut r = Recovery::new(GIVE_UP_AFTER);
        assert_eq!(
            r.next(Instant::now(), room, Asker::Operation),
            Next::Proceed
        );
        assert_eq!(r.health(Instant::now()), Health::Working);
    }

    #[test]
    fn the_first_operation_after_a_failure_reopens_then_one_per_second_at_most() {
        let t0 = Instant::now();
        let mut r = Recovery::new(GIVE_UP_AFTER);
        assert!(r.broke(t0, full()));
        assert!(!r.broke(t0, StoreError::Io("previous I/O error".into())));
        assert_eq!(r.health(t0), Health::Recovering);
        assert_eq!(r.next(t0, room, Asker::Operation), Next::Reopen);
        r.reopen_failed(t0, full());
        // Within the second: refused with the cause, no disk touched.
        for i in 1..1000u32 {
            assert_eq!(
                r.next(t0 + S * i / 1000, room, Asker::Operation),
                Next::Refuse(full())
            );
        }
        assert_eq!(r.next(t0 + S, room, Asker::Operation), Next::Reopen);
        assert_eq!(
            r.reopened(t0 + 1500 * S / 1000),
            Some(Outage {
                lasted: 1500 * S / 1000,
                refused: 999
            })
        );
        assert_eq!(r.next(t0 + 2 * S, room, Asker::Operation), Next::Proceed);
        assert_eq!(r.health(t0 + 2 * S), Health::Working);
    }

    #[test]
    fn a_disk_that_stays_full_never_gives_up() {
        let t0 = Instant::now();
        let mut r = Recovery::new(GIVE_UP_AFTER);
        r.broke(t0, full());
        let mut now = t0;
        // An hour of reopens failing for want of room.
        while now < t0 + 3600 * S {
            assert_eq!(r.next(now, room, Asker::Operation), Next::Reopen);
            r.reopen_failed(now, full());
            now += S;
        }
        assert_eq!(r.health(now), Health::Recovering);
        // Another failure starts the count; a full disk again stops it.
        r.reopen_failed(now, StoreError::Io("EIO".into()));
        r.reopen_failed(now + 59 * S, full());
        r.reopen_failed(now + 60 * S, StoreError::Io("EIO".into()));
        assert_eq!(r.health(now + 61 * S), Health::Recovering);
        assert_eq!(r.health(now + 120 * S), Health::Failed);
    }

    #[test]
    fn a_full_disk_waits_for_room_then_reopens_at_once_and_other_causes_do_not_wait() {
        let t0 = Instant::now();
        let mut r = Recovery::new(GIVE_UP_AFTER);
        r.broke(t0, full());
        let mut asked = 0;
        for i in 0..10u32 {
            let full_disk = || {
                asked += 1;
                false
            };
            assert_eq!(
                r.next(t0 + S * i / 10, full_disk, Asker::Operation),
                Next::Refuse(full())
            );
        }
        assert_eq!(asked, 10, "the room is asked about each time");
        // Room at last: at once, not a second after the last look.
        assert_eq!(r.next(t0 + S, room, Asker::Operation), Next::Reopen);
        r.reopen_failed(t0 + S, StoreError::Io("EISDIR".into()));
        let never = || panic!("only a full disk asks about room");
        assert_eq!(
            r.next(t0 + 3 * S / 2, never, Asker::Operation),
            Next::Refuse(StoreError::Io("EISDIR".into()))
        );
        assert_eq!(r.next(t0 + 2 * S, never, Asker::Operation), Next::Reopen);
        assert_eq!(r.reopened(t0 + 2 * S).map(|o| o.refused), Some(11));
    }

    #[test]
    fn the_timer_is_not_counted_as_refused() {
        let t0 = Instant::now();
        let mut r = Recovery::new(GIVE_UP_AFTER);
        r.broke(t0, full());
        let no_room = || false;
        assert_eq!(r.next(t0, no_room, Asker::Timer), Next::Refuse(full()));
        assert_eq!(r.next(t0, no_room, Asker::Operation), Next::Refuse(full()));
        assert_eq!(r.next(t0 + S, room, Asker::Timer), Next::Reopen);
        assert_eq!(r.reopened(t0 + S).map(|o| o.refused), Some(1));
    }

    #[test]
    fn breaking_again_right_after_a_reopen_waits_for_the_next_second() {
        let t0 = Instant::now();
        let mut r = Recovery::new(GIVE_UP_AFTER);
        r.broke(t0, full());
        assert_eq!(r.next(t0, room, Asker::Operation), Next::Reopen);
        assert!(r.reopened(t0).is_some());
        // The disk is still full: the first write breaks it again.
        r.broke(t0 + S / 10, full());
        assert_eq!(
            r.next(t0 + S / 5, room, Asker::Operation),
            Next::Refuse(full())
        );
        assert_eq!(r.next(t0 + S, room, Asker::Operation), Next::Reopen);
    }

    #[test]
    fn the_first_cause_is_kept_until_a_reopen_fails_with_another() {
        let t0 = Instant::now();
        let mut r = Recovery::new(GIVE_UP_AFTER);
        r.broke(t0, full());
        r.broke(t0, StoreError::Io("previous".into()));
        assert_eq!(r.next(t0, room, Asker::Operation), Next::Reopen);
        assert_eq!(r.next(t0, room, Asker::Operation), Next::Refuse(full()));
        r.reopen_failed(t0, StoreError::Io("EIO".into()));
        assert_eq!(
            r.next(t0, room, Asker::Operation),
            Next::Refuse(StoreError::Io("EIO".into()))
        );
    }

    #[test]
    fn reopens_failing_for_a_minute_give_up_and_a_success_resets() {
        let t0 = Instant::now();
        let mut r = Recovery::new(GIVE_UP_AFTER);
        r.broke(t0, full());
        // A minute of breaking again and again, with reopens that work in between (a disk that
        // stays full): never a reason to exit.
        let mut now = t0;
        for _ in 0..100 {
            assert_eq!(r.next(now, room, Asker::Operation), Next::Reopen);
            assert!(r.reopened(now).is_some());
            now += S;
            r.broke(now, full());
        }
        assert_eq!(r.health(now), Health::Recovering);
        // Then reopens that fail, one a second.
        let first = now;
        while now < first + GIVE_UP_AFTER {
            assert_eq!(r.health(now), Health::Recovering);
            assert_eq!(r.next(now, room, Asker::Operation), Next::Reopen);
            r.reopen_failed(now, StoreError::Io("EIO".into()));
            now += S;
        }
        assert_eq!(r.health(now), Health::Failed);
        assert_eq!(
            r.next(now, room, Asker::Operation),
            Next::Reopen,
            "still tried while the server exits"
        );
        assert!(r.reopened(now).is_some());
        assert_eq!(r.health(now), Health::Working);
    }
}
