//! Connection counting: a global cap and a per-address cap (R3, R4).
//!
//! The acceptor asks before it starts a session. Over a cap it writes the `421 4.7.0` reply
//! it is handed and closes at once: never an accept-and-ignore, never a hang.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::lock;
use crate::smtp::Reply;
use crate::smtp::reply;

/// Open connections, counted globally and per client address.
#[derive(Debug)]
pub struct ConnectionGate {
    hostname: String,
    max_total: usize,
    max_per_ip: usize,
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
            total: 0,
            per_ip: HashMap::new(),
        }
    }

    /// Counts a new connection from `ip`, or returns the `421` to send before closing it.
    /// Every admitted connection must be [`ConnectionGate::release`]d exactly once.
    pub fn admit(&mut self, ip: IpAddr) -> Result<(), Reply> {
        let ip = ip.to_canonical();
        if self.total >= self.max_total {
            return Err(reply::too_many_connections(&self.hostname));
        }
        let count = self.per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return Err(reply::too_many_connections_from(&self.hostname, ip));
        }
        *count += 1;
        self.total += 1;
        Ok(())
    }

    /// Forgets a connection from `ip` that [`ConnectionGate::admit`] let in.
    pub fn release(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        if let Some(count) = self.per_ip.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // Keep the map as small as the set of connected addresses.
                self.per_ip.remove(&ip);
            }
            self.total = self.total.saturating_sub(1);
        }
    }

    /// Connections open now.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Connections open now from `ip`.
    pub fn from_ip(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

/// A [`ConnectionGate`] shared by every listener of a server.
#[derive(Debug, Clone)]
pub struct Gate(Arc<Mutex<ConnectionGate>>);

impl Gate {
    /// A shared gate; see [`ConnectionGate::new`].
    pub fn new(hostname: impl Into<String>, max_total: usize, max_per_ip: usize) -> Gate {
        Gate(Arc::new(Mutex::new(ConnectionGate::new(
            hostname, max_total, max_per_ip,
        ))))
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
