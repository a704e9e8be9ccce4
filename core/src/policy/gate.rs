//! Connection counting: a global cap and a per-address cap (R3, R4). IPv6 clients are
//! counted by their prefix (`limits.ipv6_prefix`, /64 by default), as the login throttle
//! counts them: keyed on whole addresses, one host with a /64 could take every slot.
//!
//! The acceptor asks before it starts a session. Over a cap it writes the `421 4.7.0` reply
//! it is handed and closes at once: never an accept-and-ignore, never a hang.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::{ServerLimits, lock};
use crate::smtp::Reply;
use crate::smtp::reply;

/// Open connections, counted globally and per client address.
#[derive(Debug)]
pub struct ConnectionGate {
    hostname: String,
    max_total: usize,
    max_per_ip: usize,
    ipv6_prefix: u8,
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl ConnectionGate {
    /// A gate admitting at most `max_total` connections, `max_per_ip` from one address.
    pub fn new(hostname: impl Into<String>, max_total: usize, max_per_ip: usize) -> Self {
        ConnectionGate {
            hostname: hostname.into(),
            max_total,
            max_per_ip,
            ipv6_prefix: super::DEFAULT_IPV6_PREFIX,
            total: 0,
            per_ip: HashMap::new(),
        }
    }

    /// Counts IPv6 clients by their first `prefix` bits instead of the default /64.
    pub fn with_ipv6_prefix(mut self, prefix: u8) -> Self {
        self.ipv6_prefix = prefix;
        self
    }

    /// Counts a new connection from `ip`, or returns the `421` to send before closing it.
    /// Every admitted connection must be [`ConnectionGate::release`]d exactly once.
    pub fn admit(&mut self, ip: IpAddr) -> Result<(), Reply> {
        if self.total >= self.max_total {
            return Err(reply::too_many_connections(&self.hostname));
        }
        let count = self.per_ip.entry(self.key(ip)).or_insert(0);
        if *count >= self.max_per_ip {
            return Err(reply::too_many_connections_from(
                &self.hostname,
                ip.to_canonical(),
            ));
        }
        *count += 1;
        self.total += 1;
        Ok(())
    }

    /// Forgets a connection from `ip` that [`ConnectionGate::admit`] let in.
    pub fn release(&mut self, ip: IpAddr) {
        let key = self.key(ip);
        if let Some(count) = self.per_ip.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // Keep the map as small as the set of connected addresses.
                self.per_ip.remove(&key);
            }
            self.total = self.total.saturating_sub(1);
        }
    }

    /// Connections open now.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Connections open now from `ip` (for IPv6: from its prefix).
    pub fn from_ip(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&self.key(ip)).copied().unwrap_or(0)
    }

    fn key(&self, ip: IpAddr) -> IpAddr {
        super::client_key(ip, self.ipv6_prefix)
    }
}

/// A [`ConnectionGate`] shared by every listener of a server.
#[derive(Debug, Clone)]
pub struct Gate(Arc<Mutex<ConnectionGate>>);

impl Gate {
    /// A shared gate; see [`ConnectionGate::new`].
    pub fn new(hostname: impl Into<String>, max_total: usize, max_per_ip: usize) -> Gate {
        Gate::shared(ConnectionGate::new(hostname, max_total, max_per_ip))
    }

    /// The gate of a server under `limits`: its caps and its IPv6 prefix.
    pub fn from_limits(limits: &ServerLimits) -> Gate {
        Gate::shared(
            ConnectionGate::new(
                limits.hostname.clone(),
                limits.max_connections,
                limits.max_connections_per_ip,
            )
            .with_ipv6_prefix(limits.ipv6_prefix),
        )
    }

    fn shared(gate: ConnectionGate) -> Gate {
        Gate(Arc::new(Mutex::new(gate)))
    }

    /// Admits a connection from `ip`; the permit releases it when dropped.
    pub fn admit(&self, ip: IpAddr) -> Result<ConnectionPermit, Reply> {
        lock(&self.0).admit(ip)?;
        Ok(ConnectionPermit {
            gate: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn total(&self) -> usize {
        lock(&self.0).total()
    }
}

/// One admitted connection; dropping it gives the slot back.
#[derive(Debug)]
pub struct ConnectionPermit {
    gate: Gate,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        lock(&self.gate.0).release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn per_ip_cap_refuses_with_421_naming_the_address() {
        let mut gate = ConnectionGate::new("mx.test", 10, 2);
        assert_eq!(gate.admit(A), Ok(()));
        assert_eq!(gate.admit(A), Ok(()));
        let refused = gate.admit(A).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "421 4.7.0 mx.test Error: too many connections from 192.0.2.1\r\n"
        );
        assert_eq!(gate.admit(B), Ok(()), "other addresses are unaffected");
        gate.release(A);
        assert_eq!(gate.admit(A), Ok(()), "a released slot is free again");
    }

    #[test]
    fn global_cap_refuses_everyone_with_421() {
        let mut gate = ConnectionGate::new("mx.test", 2, 5);
        gate.admit(A).unwrap();
        gate.admit(B).unwrap();
        let refused = gate.admit(IpAddr::from([192, 0, 2, 3])).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "421 4.7.0 mx.test Error: too many connections\r\n"
        );
        assert_eq!(gate.total(), 2);
    }

    #[test]
    fn mapped_ipv6_counts_as_its_ipv4_address() {
        let mut gate = ConnectionGate::new("mx.test", 10, 1);
        gate.admit(A).unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(gate.admit(mapped).is_err());
        gate.release(mapped);
        assert_eq!(gate.from_ip(A), 0);
    }

    #[test]
    fn ipv6_clients_of_one_prefix_share_the_per_ip_cap() {
        // Issue 24 item 4: one host with a /64 could take every slot.
        let mut gate = ConnectionGate::new("mx.test", 100, 2);
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        gate.admit(ip("2001:db8:1:2::1")).unwrap();
        gate.admit(ip("2001:db8:1:2::2")).unwrap();
        let refused = gate.admit(ip("2001:db8:1:2:ffff::3")).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "421 4.7.0 mx.test Error: too many connections from 2001:db8:1:2:ffff::3\r\n"
        );
        assert!(gate.admit(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        gate.release(ip("2001:db8:1:2::1"));
        assert_eq!(gate.from_ip(ip("2001:db8:1:2::9")), 1);
        assert!(gate.admit(ip("2001:db8:1:2::9")).is_ok());

        let mut wide = ConnectionGate::new("mx.test", 100, 1).with_ipv6_prefix(48);
        wide.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(wide.admit(ip("2001:db8:1:3::1")).is_err(), "same /48");
        let mut exact = ConnectionGate::new("mx.test", 100, 1).with_ipv6_prefix(128);
        exact.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(
            exact.admit(ip("2001:db8:1:2::2")).is_ok(),
            "/128: each address"
        );
    }

    #[test]
    fn releasing_an_unknown_address_changes_nothing() {
        let mut gate = ConnectionGate::new("mx.test", 10, 1);
        gate.admit(A).unwrap();
        gate.release(B);
        assert_eq!(gate.total(), 1);
    }

    #[test]
    fn permits_release_on_drop() {
        let gate = Gate::new("mx.test", 1, 1);
        let permit = gate.admit(A).unwrap();
        assert!(gate.admit(B).is_err());
        drop(permit);
        assert_eq!(gate.total(), 0);
        assert!(gate.admit(B).is_ok());
    }
}
