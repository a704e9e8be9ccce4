//! Failed logins per client address, across connections (A13, R6).
//!
//! Per-connection limits alone let an attacker reconnect and go on guessing. Here every
//! failure is remembered per address for a window: each further attempt from that address
//! is delayed a little more, and once `max_failures` are in the window, AUTH from it gets
//! `454 4.7.0` without the password being checked, until the oldest failure expires.
//!
//! - The same wrong password repeated (a client retrying stale credentials) counts once. We
//!   compare a keyed 64-bit hash of user name and password; the key comes from the hasher
//!   the runtime passes in (`RandomState` is seeded per process), so the fingerprints are
//!   useless outside this process, and the password itself is never stored.
//! - IPv6 clients are counted by their prefix (`limits.ipv6_prefix`, /64 by default), since
//!   one host usually holds a whole /64.
//! - Attempts in flight count against the budget too: at most as many checks as failures
//!   are still allowed run at once for an address, and the rest get `454 4.7.0` at once, so
//!   a burst of parallel guesses cannot outrun the record (20 connections guessing at once
//!   were all checked before). A host that logs many users in at the same moment (a NAT, a
//!   webmail) sees the same: `454` is temporary, and its clients retry.
//! - Memory is bounded: at most `max_addresses` addresses, each with at most `max_failures`
//!   fingerprints; when full, the address whose last failure is oldest is forgotten.
//! - A successful login does not clear the record: one known account must not let an
//!   attacker reset the counter for guessing others.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lock;
use crate::smtp::{AuthOutcome, AuthRequest};

/// How failed logins are counted and punished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Distinct failures within `window` after which AUTH gets `454 4.7.0`.
    pub max_failures: usize,
    /// How long a failure is remembered.
    pub window: Duration,
    /// Delay before checking a password, per failure remembered for the address.
    pub delay_per_failure: Duration,
    /// The longest such delay.
    pub max_delay: Duration,
    /// Addresses remembered at most.
    pub max_addresses: usize,
    /// IPv6 clients are counted by this many leading bits ([`super::client_key`]).
    pub ipv6_prefix: u8,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            delay_per_failure: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_addresses: 4096,
            ipv6_prefix: super::DEFAULT_IPV6_PREFIX,
        }
    }
}

/// AUTH from this address is refused for now: answer `454 4.7.0`, check nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled;

/// The failure record of every client address.
#[derive(Debug)]
pub struct AuthThrottle<S = RandomState> {
    config: ThrottleConfig,
    hasher: S,
    addresses: HashMap<IpAddr, Record>,
}

#[derive(Debug, Default)]
struct Record {
    /// Fingerprint and time of each distinct failure still in the window.
    failures: Vec<(u64, Instant)>,
    /// Attempts begun and not yet finished.
    in_flight: usize,
}

impl<S: BuildHasher> AuthThrottle<S> {
    /// An empty record; `hasher` keys the password fingerprints.
    pub fn new(config: ThrottleConfig, hasher: S) -> Self {
        AuthThrottle {
            config,
            hasher,
            addresses: HashMap::new(),
        }
    }

    /// Decides on an AUTH from `ip`: the delay to wait before checking the password, or
    /// [`Throttled`]. An `Ok` must be followed by exactly one [`AuthThrottle::finish`] or
    /// [`AuthThrottle::abandon`].
    pub fn begin(&mut self, ip: IpAddr, now: Instant) -> Result<Duration, Throttled> {
        let key = self.key(ip);
        let window = self.config.window;
        let record = self.addresses.entry(key).or_default();
        record.expire(now, window);
        let failures = record.failures.len();
        // Attempts in flight are failures-to-be: a burst of parallel guesses must not
        // outrun the record.
        if failures.saturating_add(record.in_flight) >= self.config.max_failures {
            self.forget_if_empty(key);
            return Err(Throttled);
        }
        record.in_flight += 1;
        let steps = u32::try_from(failures).unwrap_or(u32::MAX);
        let delay = self.config.delay_per_failure.saturating_mul(steps);
        self.make_room(key, now);
        Ok(delay.min(self.config.max_delay))
    }

    /// Records the verdict on an attempt [`AuthThrottle::begin`] let through.
    pub fn finish(
        &mut self,
        ip: IpAddr,
        request: &AuthRequest,
        outcome: AuthOutcome,
        now: Instant,
    ) {
        let key = self.key(ip);
        let fingerprint = self.fingerprint(request);
        let window = self.config.window;
        let max_failures = self.config.max_failures;
        let Some(record) = self.addresses.get_mut(&key) else {
            return;
        };
        record.in_flight = record.in_flight.saturating_sub(1);
        record.expire(now, window);
        if outcome == AuthOutcome::Rejected {
            let full = record.failures.len() >= max_failures;
            match record.failures.iter_mut().find(|(f, _)| *f == fingerprint) {
                // The same wrong password again: one failure, remembered from now.
                Some(entry) => entry.1 = now,
                None => {
                    if full {
                        // The oldest failure makes way; the count stays at the maximum.
                        record.failures.remove(0);
                    }
                    record.failures.push((fingerprint, now));
                }
            }
        }
        self.forget_if_empty(key);
    }

    /// Ends an attempt [`AuthThrottle::begin`] let through without a verdict (the client
    /// left, the verifier was busy): it frees its place and counts as nothing.
    pub fn abandon(&mut self, ip: IpAddr) {
        let key = self.key(ip);
        if let Some(record) = self.addresses.get_mut(&key) {
            record.in_flight = record.in_flight.saturating_sub(1);
        }
        self.forget_if_empty(key);
    }

    /// Distinct failures from `ip` still in the window at `now`.
    pub fn failures(&self, ip: IpAddr, now: Instant) -> usize {
        self.addresses.get(&self.key(ip)).map_or(0, |record| {
            record
                .failures
                .iter()
                .filter(|(_, at)| now.saturating_duration_since(*at) < self.config.window)
                .count()
        })
    }

    /// Addresses remembered now.
    pub fn addresses(&self) -> usize {
        self.addresses.len()
    }

    /// The address `ip` is counted under: IPv6 by its configured prefix.
    fn key(&self, ip: IpAddr) -> IpAddr {
        super::client_key(ip, self.config.ipv6_prefix)
    }

    fn fingerprint(&self, request: &AuthRequest) -> u64 {
        self.hasher
            .hash_one((request.username.as_str(), request.password.expose()))
    }

    fn forget_if_empty(&mut self, key: IpAddr) {
        if self
            .addresses
            .get(&key)
            .is_some_and(|r| r.failures.is_empty() && r.in_flight == 0)
        {
            self.addresses.remove(&key);
        }
    }

    /// Keeps at most `max_addresses` records, never dropping `keep` (just begun).
    fn make_room(&mut self, keep: IpAddr, now: Instant) {
        if self.addresses.len() <= self.config.max_addresses {
            return;
        }
        let window = self.config.window;
        self.addresses.retain(|key, record| {
            record.expire(now, window);
            *key == keep || !record.failures.is_empty() || record.in_flight > 0
        });
        while self.addresses.len() > self.config.max_addresses {
            let oldest = self
                .addresses
                .iter()
                .filter(|(key, _)| **key != keep)
                .min_by_key(|(_, record)| record.failures.iter().map(|(_, at)| *at).max())
                .map(|(key, _)| *key);
            match oldest {
                Some(key) => self.addresses.remove(&key),
                None => break,
            };
        }
    }
}

impl Record {
    fn expire(&mut self, now: Instant, window: Duration) {
        self.failures
            .retain(|(_, at)| now.saturating_duration_since(*at) < window);
    }
}

/// An [`AuthThrottle`] shared by every connection of a server.
#[derive(Debug, Clone)]
pub struct SharedThrottle(Arc<Mutex<AuthThrottle>>);

impl SharedThrottle {
    /// A shared record with fingerprints keyed by `key`: the server passes a fresh
    /// `RandomState::new()` (OS randomness, which the core does not read).
    pub fn new(config: ThrottleConfig, key: RandomState) -> SharedThrottle {
        SharedThrottle(Arc::new(Mutex::new(AuthThrottle::new(config, key))))
    }

    /// See [`AuthThrottle::begin`]; the attempt records itself as abandoned if dropped
    /// unfinished.
    pub fn begin(&self, ip: IpAddr, now: Instant) -> Result<AuthAttempt, Throttled> {
        let delay = lock(&self.0).begin(ip, now)?;
        Ok(AuthAttempt {
            throttle: self.clone(),
            ip,
            delay,
            finished: false,
        })
    }

    /// Distinct failures from `ip` still in the window at `now`.
    pub fn failures(&self, ip: IpAddr, now: Instant) -> usize {
        lock(&self.0).failures(ip, now)
    }
}

/// One AUTH let through by the throttle.
#[derive(Debug)]
pub struct AuthAttempt {
    throttle: SharedThrottle,
    ip: IpAddr,
    delay: Duration,
    finished: bool,
}

impl AuthAttempt {
    /// How long to wait before checking the password.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Records the verdict; dropping the attempt instead records nothing.
    pub fn finish(mut self, request: &AuthRequest, outcome: AuthOutcome, now: Instant) {
        self.finished = true;
        lock(&self.throttle.0).finish(self.ip, request, outcome, now);
    }
}

impl Drop for AuthAttempt {
    fn drop(&mut self) {
        if !self.finished {
            lock(&self.throttle.0).abandon(self.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::Mechanism;
    use std::hash::{BuildHasherDefault, DefaultHasher};

    type Fixed = BuildHasherDefault<DefaultHasher>;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn throttle() -> AuthThrottle<Fixed> {
        AuthThrottle::new(ThrottleConfig::default(), Fixed::default())
    }

    fn req(user: &str, password: &str) -> AuthRequest {
        AuthRequest {
            mechanism: Mechanism::Plain,
            username: user.into(),
            password: password.into(),
        }
    }

    /// One attempt from `ip` that fails with `password`.
    fn fail(t: &mut AuthThrottle<Fixed>, ip: IpAddr, password: &str, now: Instant) {
        t.begin(ip, now).unwrap();
        t.finish(ip, &req("alice", password), AuthOutcome::Rejected, now);
    }

    #[test]
    fn a13_distinct_failures_up_to_the_limit_then_throttled() {
        let mut t = throttle();
        let now = Instant::now();
        for i in 0..5 {
            fail(&mut t, IP, &format!("guess{i}"), now);
        }
        assert_eq!(t.failures(IP, now), 5);
        assert_eq!(t.begin(IP, now), Err(Throttled));
        assert!(
            t.begin(OTHER, now).is_ok(),
            "other addresses are unaffected"
        );
    }

    #[test]
    fn delay_grows_with_failures_and_is_capped() {
        let mut t = AuthThrottle::new(
            ThrottleConfig {
                max_failures: 100,
                ..ThrottleConfig::default()
            },
            Fixed::default(),
        );
        let now = Instant::now();
        let mut delays = Vec::new();
        for i in 0..12 {
            delays.push(t.begin(IP, now).unwrap().as_millis());
            t.finish(IP, &req("a", &i.to_string()), AuthOutcome::Rejected, now);
        }
        assert_eq!(
            delays,
            [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1000]
        );
    }

    #[test]
    fn the_same_wrong_password_counts_once() {
        let mut t = throttle();
        let now = Instant::now();
        for _ in 0..20 {
            fail(&mut t, IP, "stale", now);
        }
        assert_eq!(t.failures(IP, now), 1);
        assert!(t.begin(IP, now).is_ok());
    }

    #[test]
    fn the_same_password_for_another_user_counts_again() {
        let mut t = throttle();
        let now = Instant::now();
        t.begin(IP, now).unwrap();
        t.finish(IP, &req("alice", "pw"), AuthOutcome::Rejected, now);
        t.begin(IP, now).unwrap();
        t.finish(IP, &req("bob", "pw"), AuthOutcome::Rejected, now);
        assert_eq!(t.failures(IP, now), 2);
    }

    #[test]
    fn failures_expire_after_the_window() {
        let mut t = throttle();
        let start = Instant::now();
        for i in 0..5 {
            fail(&mut t, IP, &i.to_string(), start);
        }
        let window = ThrottleConfig::default().window;
        assert_eq!(
            t.begin(IP, start + window - Duration::from_secs(1)),
            Err(Throttled)
        );
        assert_eq!(t.begin(IP, start + window), Ok(Duration::ZERO));
        assert_eq!(t.failures(IP, start + window), 0);
    }

    #[test]
    fn successes_and_temporary_failures_do_not_count_or_reset() {
        let mut t = throttle();
        let now = Instant::now();
        fail(&mut t, IP, "x", now);
        for outcome in [AuthOutcome::Accepted, AuthOutcome::TemporaryFailure] {
            t.begin(IP, now).unwrap();
            t.finish(IP, &req("alice", "right"), outcome, now);
        }
        assert_eq!(t.failures(IP, now), 1);
    }

    #[test]
    fn attempts_in_flight_count_once_failures_exist() {
        let mut t = throttle();
        let now = Instant::now();
        fail(&mut t, IP, "x", now);
        // 1 failure + 4 in flight reaches the limit of 5.
        for _ in 0..4 {
            t.begin(IP, now).unwrap();
        }
        assert_eq!(t.begin(IP, now), Err(Throttled));
        // Abandoned attempts free their place without counting.
        t.abandon(IP);
        assert!(t.begin(IP, now).is_ok());
        assert_eq!(t.failures(IP, now), 1);
    }

    #[test]
    fn parallel_attempts_beyond_the_budget_are_throttled_before_any_failure() {
        // Issue 24 item 6: 20 guesses at once were all checked; now at most the budget is.
        let mut t = throttle();
        let now = Instant::now();
        let admitted = (0..20).filter(|_| t.begin(IP, now).is_ok()).count();
        assert_eq!(admitted, 5);
        assert!(
            t.begin(OTHER, now).is_ok(),
            "other addresses are unaffected"
        );
        // Verdicts free the places; failures then take them for good.
        for i in 0..5 {
            t.finish(
                IP,
                &req("alice", &format!("g{i}")),
                AuthOutcome::Rejected,
                now,
            );
        }
        assert_eq!(t.failures(IP, now), 5);
        assert_eq!(t.begin(IP, now), Err(Throttled));
    }

    #[test]
    fn parallel_successes_free_their_place() {
        let mut t = throttle();
        let now = Instant::now();
        for _ in 0..50 {
            assert_eq!(t.begin(IP, now), Ok(Duration::ZERO));
            t.finish(IP, &req("alice", "right"), AuthOutcome::Accepted, now);
        }
    }

    #[test]
    fn ipv6_prefix_is_configurable() {
        let mut t = AuthThrottle::new(
            ThrottleConfig {
                ipv6_prefix: 48,
                ..ThrottleConfig::default()
            },
            Fixed::default(),
        );
        let now = Instant::now();
        for i in 0..5 {
            let ip: IpAddr = format!("2001:db8:1:{i}::1").parse().unwrap();
            fail(&mut t, ip, &i.to_string(), now);
        }
        let same_48: IpAddr = "2001:db8:1:ffff::1".parse().unwrap();
        let other_48: IpAddr = "2001:db8:2::1".parse().unwrap();
        assert_eq!(t.begin(same_48, now), Err(Throttled));
        assert!(t.begin(other_48, now).is_ok());
    }

    #[test]
    fn ipv6_is_counted_per_slash_64() {
        let mut t = throttle();
        let now = Instant::now();
        for i in 0..5 {
            let ip: IpAddr = format!("2001:db8:1:2::{i}").parse().unwrap();
            fail(&mut t, ip, &i.to_string(), now);
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(t.begin(same_64, now), Err(Throttled));
        assert!(t.begin(other_64, now).is_ok());
    }

    #[test]
    fn memory_is_bounded_by_max_addresses() {
        let mut t = AuthThrottle::new(
            ThrottleConfig {
                max_addresses: 8,
                ..ThrottleConfig::default()
            },
            Fixed::default(),
        );
        let start = Instant::now();
        for i in 0..100u32 {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            fail(&mut t, ip, "x", start + Duration::from_millis(u64::from(i)));
            assert!(t.addresses() <= 8);
        }
        // The most recent offender is still remembered.
        let last = IpAddr::from((0x0a00_0000u32 + 99).to_be_bytes());
        assert_eq!(t.failures(last, start + Duration::from_secs(1)), 1);
    }

    #[test]
    fn addresses_without_failures_are_not_kept() {
        let mut t = throttle();
        let now = Instant::now();
        t.begin(IP, now).unwrap();
        t.finish(IP, &req("alice", "right"), AuthOutcome::Accepted, now);
        assert_eq!(t.addresses(), 0);
    }

    #[test]
    fn shared_attempts_release_their_place_when_dropped() {
        let shared = SharedThrottle::new(ThrottleConfig::default(), RandomState::new());
        let now = Instant::now();
        for _ in 0..20 {
            let attempt = shared.begin(IP, now).unwrap();
            drop(attempt);
        }
        let attempt = shared.begin(IP, now).unwrap();
        attempt.finish(&req("alice", "bad"), AuthOutcome::Rejected, now);
        assert_eq!(shared.failures(IP, now), 1);
    }
}
