//! Limits that span connections, shared by both runtimes: pure bookkeeping, no IO, no clock
//! reads (time is an argument), no randomness (a hasher is passed in).
//!
//! - [`gate`]: how many connections are open, globally and per client address; over either
//!   cap the acceptor sends the `421 4.7.0` it is handed and closes (R3, R4).
//! - [`throttle`]: failed logins per client address across connections; past the limit AUTH
//!   gets `454 4.7.0` until the window expires, and before that every attempt from an
//!   address with failures is delayed (A13, R6).
//! - [`slots`]: bounded places, e.g. the queue in front of the password verifier, so a login
//!   storm gets `454 4.7.0` instead of an unbounded backlog (R6).
//! - [`auth`]: the whole admission of one AUTH (throttle, then verifier queue) and the
//!   recording and logging of its verdict, so both runtimes only wait and verify.
//!
//! The shared handles ([`Gate`], [`SharedThrottle`], [`Slots`], [`AuthGate`]) are cheap clones of
//! an `Arc` around a mutex or an atomic, and release what they hold when dropped, so an early
//! return or a cancelled task cannot leak a slot.

pub mod auth;
pub mod gate;
pub mod slots;
pub mod throttle;

use std::net::IpAddr;
use std::time::Duration;

pub use auth::{AuthGate, AuthTicket, Verdict};
pub use gate::{ConnectionGate, ConnectionPermit, Gate};
pub use slots::{Slot, Slots};
pub use throttle::{AuthAttempt, AuthThrottle, SharedThrottle, ThrottleConfig, Throttled};

use crate::config::Config;

/// The limits a runtime enforces around sessions rather than inside one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Our host name, for the `421` replies of the gate.
    pub hostname: String,
    /// Connections open at once over all listeners.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_ip: usize,
    /// IPv6 clients are counted by this many leading bits, by the gate and the throttle.
    pub ipv6_prefix: u8,
    /// How long a TLS handshake may take, on 465 or after STARTTLS (T11).
    pub tls_handshake_timeout: Duration,
    /// How long one write may wait for a client that does not read (P4).
    pub write_timeout: Duration,
    /// After SIGTERM, how long transactions in progress may take to finish.
    pub shutdown_grace: Duration,
    /// After our last reply, how long to wait for the client's close before dropping it.
    pub close_linger: Duration,
    /// Password checks running at once (each is ~50–200 ms of CPU at production costs).
    pub verifier_running: usize,
    /// Password checks waiting for a free verifier; beyond them AUTH gets `454 4.7.0`.
    pub verifier_waiting: usize,
    /// How long an AUTH may wait for a free verifier before it gets `454 4.7.0`, and again for
    /// a check that started and is starved of CPU.
    pub verifier_wait_timeout: Duration,
    /// The per-address failed-login throttle.
    pub throttle: ThrottleConfig,
    /// Connections over a cap on the implicit-TLS port that may be handshaking at once to be
    /// told `421`; beyond them a refused connection is closed without a word.
    pub max_refusals_in_flight: usize,
    /// How long writing the `421` to a connection over a cap may take on the plaintext port
    /// (a fresh socket takes it at once; this is a backstop).
    pub refusal_write_timeout: Duration,
    /// How long telling a connection over a cap `421` may take on the implicit-TLS port,
    /// handshake included (and never longer than `tls_handshake_timeout`).
    pub refusal_tls_timeout: Duration,
}

impl ServerLimits {
    /// The limits under `config`, with the built-in values for what it does not set.
    pub fn from_config(config: &Config) -> ServerLimits {
        ServerLimits {
            hostname: config.hostname.clone(),
            max_connections: config.limits.max_connections,
            max_connections_per_ip: config.limits.max_connections_per_ip,
            ipv6_prefix: config.limits.ipv6_prefix,
            throttle: ThrottleConfig {
                ipv6_prefix: config.limits.ipv6_prefix,
                ..ThrottleConfig::default()
            },
            ..ServerLimits::default()
        }
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            hostname: "localhost".to_string(),
            max_connections: 1000,
            max_connections_per_ip: 50,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            tls_handshake_timeout: Duration::from_secs(20),
            write_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
            close_linger: Duration::from_secs(2),
            // Two cores here: four running checks keep both busy (50 logins at once reached
            // 8.1/s against the 8.0/s that one 0.25 s cost-12 hash a core allows); more
            // would only queue for the CPU.
            verifier_running: 4,
            verifier_waiting: 64,
            verifier_wait_timeout: Duration::from_secs(30),
            throttle: ThrottleConfig::default(),
            max_refusals_in_flight: 32,
            refusal_write_timeout: Duration::from_secs(1),
            refusal_tls_timeout: Duration::from_secs(5),
        }
    }
}

/// The prefix length IPv6 clients are counted by unless configured: a host usually holds a
/// whole /64 (RFC 6177), so counting single addresses would let one host take every slot.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// The key a client is counted under: an IPv4 address (or an IPv4-mapped IPv6 one) as it
/// is, an IPv6 address by its first `ipv6_prefix` bits (at most 128).
pub fn client_key(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u32::from(ipv6_prefix.min(128));
            // A shift by 128 would overflow: a /0 keeps no bit.
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
        v4 => v4,
    }
}

/// Locks a mutex, taking the data over if a thread panicked while holding it: the counters
/// behind these mutexes stay consistent after every statement, so poisoning carries no news.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_keyed_by_their_prefix_and_ipv4_ones_by_address() {
        let key = |ip: &str, prefix| client_key(ip.parse().unwrap(), prefix).to_string();
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 64), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 48), "2001:db8:1::");
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 128), "2001:db8:1:2:3:4:5:6");
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 0), "::");
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 200), "2001:db8:1:2:3:4:5:6");
        assert_eq!(key("192.0.2.7", 64), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7", 64), "192.0.2.7");
    }
}
