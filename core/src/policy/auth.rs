//! The admission of one AUTH and the bookkeeping of its verdict, shared by both runtimes.
//!
//! A runtime's whole part in an [`Event::Authenticate`](crate::smtp::Event) is:
//!
//! ```text
//! match gate.admit(ip, &request, now) {
//!     Err(outcome) => outcome,                          // throttled or queue full: 454
//!     Ok(ticket) => {
//!         sleep(ticket.delay());                        // the throttle's delay
//!         let verdict = verifier.verify(request)        // bcrypt on a verifier thread, or
//!                                                       // Busy past `verifier_wait_timeout`
//!         ticket.finish(&request, verdict, now)         // records, logs, returns the outcome
//!     }
//! }
//! ```
//!
//! Every path returns exactly one outcome, so every AUTH gets exactly one reply, and every
//! path logs one line (`auth success …` or `auth failure … reason=…`).

use std::collections::hash_map::RandomState;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::ServerLimits;
use super::slots::{Slot, Slots};
use super::throttle::{AuthAttempt, SharedThrottle};
use crate::logging::{self, AuthFailure};
use crate::smtp::{AuthOutcome, AuthRequest};

/// The verifier's answer on an admitted AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The password was checked: its outcome (`TemporaryFailure` if it could not be).
    Checked(AuthOutcome),
    /// No verdict in time: no verifier came free before the job's give-up deadline
    /// (`verifier_wait_timeout`), the check ran that long again without finishing, or the
    /// server is aborting.
    Busy,
}

/// The throttle and the verifier queue of one server. Clones share them.
#[derive(Debug, Clone)]
pub struct AuthGate {
    throttle: SharedThrottle,
    queue: Slots,
}

impl AuthGate {
    /// The gate for `limits`: its throttle, whose fingerprints are keyed by `key` (see
    /// [`SharedThrottle::new`]), and `verifier_running + verifier_waiting` places.
    pub fn new(limits: &ServerLimits, key: RandomState) -> AuthGate {
        AuthGate {
            throttle: SharedThrottle::new(limits.throttle.clone(), key),
            queue: Slots::new(
                limits
                    .verifier_running
                    .saturating_add(limits.verifier_waiting),
            ),
        }
    }

    /// Lets an AUTH from `ip` go on to the verifier, or answers it at once with
    /// `TemporaryFailure` (throttled, or the queue is full), logged.
    pub fn admit(
        &self,
        ip: IpAddr,
        request: &AuthRequest,
        now: Instant,
    ) -> Result<AuthTicket, AuthOutcome> {
        let refuse = |reason| {
            logging::auth_failure(&request.username, ip, reason);
            AuthOutcome::TemporaryFailure
        };
        let attempt = self
            .throttle
            .begin(ip, now)
            .map_err(|_| refuse(AuthFailure::Throttled))?;
        // On a full queue the attempt is dropped, which frees its place in the throttle.
        let slot = self
            .queue
            .try_enter()
            .ok_or_else(|| refuse(AuthFailure::Busy))?;
        Ok(AuthTicket {
            attempt,
            _slot: slot,
            ip,
        })
    }

    /// Distinct failed logins from `ip` still remembered at `now`.
    pub fn failures(&self, ip: IpAddr, now: Instant) -> usize {
        self.throttle.failures(ip, now)
    }
}

/// An AUTH admitted to the verifier queue. Dropping it unfinished frees its places and
/// counts as nothing.
#[derive(Debug)]
pub struct AuthTicket {
    attempt: AuthAttempt,
    _slot: Slot,
    ip: IpAddr,
}

impl AuthTicket {
    /// How long to wait before verifying: grows with recent failures from the address.
    pub fn delay(&self) -> Duration {
        self.attempt.delay()
    }

    /// Records and logs the verifier's verdict, and returns the outcome to report. `Busy` is
    /// a `TemporaryFailure` that does not count against the address.
    pub fn finish(self, request: &AuthRequest, verdict: Verdict, now: Instant) -> AuthOutcome {
        let verdict = match verdict {
            Verdict::Checked(outcome) => outcome,
            Verdict::Busy => {
                logging::auth_failure(&request.username, self.ip, AuthFailure::Busy);
                // The attempt is dropped unfinished, which records nothing.
                return AuthOutcome::TemporaryFailure;
            }
        };
        match verdict {
            AuthOutcome::Accepted => {
                logging::auth_success(&request.username, self.ip, request.mechanism);
            }
            AuthOutcome::Rejected => {
                logging::auth_failure(&request.username, self.ip, AuthFailure::BadCredentials);
            }
            AuthOutcome::TemporaryFailure => {
                logging::auth_failure(&request.username, self.ip, AuthFailure::Unavailable);
            }
        }
        self.attempt.finish(request, verdict, now);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ThrottleConfig;
    use crate::smtp::Mechanism;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    fn req(password: &str) -> AuthRequest {
        AuthRequest {
            mechanism: Mechanism::Plain,
            username: "alice".into(),
            password: password.into(),
        }
    }

    fn gate(running: usize, waiting: usize) -> AuthGate {
        AuthGate::new(
            &ServerLimits {
                verifier_running: running,
                verifier_waiting: waiting,
                throttle: ThrottleConfig {
                    max_failures: 3,
                    ..ThrottleConfig::default()
                },
                ..ServerLimits::default()
            },
            RandomState::new(),
        )
    }

    #[test]
    fn r6_a_full_queue_answers_454_at_once() {
        let gate = gate(1, 1);
        let now = Instant::now();
        let other = |i: u8| IpAddr::from([198, 51, 100, i]);
        let _a = gate.admit(other(1), &req("x"), now).unwrap();
        let _b = gate.admit(other(2), &req("x"), now).unwrap();
        assert_eq!(
            gate.admit(other(3), &req("x"), now).unwrap_err(),
            AuthOutcome::TemporaryFailure
        );
        drop(_a);
        assert!(gate.admit(other(3), &req("x"), now).is_ok());
    }

    #[test]
    fn a13_failures_across_tickets_lead_to_454_without_verifying() {
        let gate = gate(4, 4);
        let now = Instant::now();
        for i in 0..3 {
            let ticket = gate.admit(IP, &req(&i.to_string()), now).unwrap();
            let outcome = ticket.finish(
                &req(&i.to_string()),
                Verdict::Checked(AuthOutcome::Rejected),
                now,
            );
            assert_eq!(outcome, AuthOutcome::Rejected);
        }
        assert_eq!(gate.failures(IP, now), 3);
        assert_eq!(
            gate.admit(IP, &req("right"), now).unwrap_err(),
            AuthOutcome::TemporaryFailure
        );
    }

    #[test]
    fn a_busy_ticket_is_a_temporary_failure_that_does_not_count() {
        let gate = gate(1, 0);
        let now = Instant::now();
        let ticket = gate.admit(IP, &req("x"), now).unwrap();
        assert_eq!(
            ticket.finish(&req("x"), Verdict::Busy, now),
            AuthOutcome::TemporaryFailure
        );
        assert_eq!(gate.failures(IP, now), 0);
        assert!(
            gate.admit(IP, &req("x"), now).is_ok(),
            "its place is free again"
        );
    }

    #[test]
    fn delay_grows_after_a_failure() {
        let gate = gate(4, 4);
        let now = Instant::now();
        let first = gate.admit(IP, &req("bad"), now).unwrap();
        assert_eq!(first.delay(), Duration::ZERO);
        first.finish(&req("bad"), Verdict::Checked(AuthOutcome::Rejected), now);
        let second = gate.admit(IP, &req("good"), now).unwrap();
        assert!(second.delay() > Duration::ZERO);
    }
}
