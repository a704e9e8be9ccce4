//! What `/metrics` reports, counted live: atomics bumped where each event happens, read as
//! one [`Counters`] snapshot when a scrape asks.
//!
//! [`Services`](crate::service::Services) owns them, so the commit path, the password checks
//! and the web side share one set whatever the runtime. SMTP connections are not counted
//! here: the gate already counts them ([`crate::server::ServerState::counters`] adds them).

use std::sync::atomic::{AtomicU64, Ordering};

use atacama_core::web::{Counters, HttpRequests};

/// The server's counters since it started. Every method is one relaxed atomic operation:
/// a scrape may see one counter a moment ahead of another, which Prometheus tolerates.
#[derive(Debug, Default)]
pub struct LiveCounters {
    messages_accepted: AtomicU64,
    deliveries_failed: AtomicU64,
    auth_failures: AtomicU64,
    http_connections_open: AtomicU64,
    http_2xx: AtomicU64,
    http_3xx: AtomicU64,
    http_4xx: AtomicU64,
    http_5xx: AtomicU64,
}

impl LiveCounters {
    /// Fresh counters, all zero.
    pub fn new() -> LiveCounters {
        LiveCounters::default()
    }

    /// `count` messages were committed to the store.
    pub fn messages_accepted(&self, count: u64) {
        self.messages_accepted.fetch_add(count, Ordering::Relaxed);
    }

    /// `count` deliveries failed: their clients got a 4xx or 5xx after DATA.
    pub fn deliveries_failed(&self, count: u64) {
        self.deliveries_failed.fetch_add(count, Ordering::Relaxed);
    }

    /// An AUTH attempt was rejected (wrong password, unknown or disabled user).
    pub fn auth_failed(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A web connection was accepted (idle keep-alive ones stay counted until closed). Pair
    /// each call with one [`LiveCounters::http_connection_closed`].
    pub fn http_connection_opened(&self) {
        self.http_connections_open.fetch_add(1, Ordering::Relaxed);
    }

    /// A web connection was closed. Never goes below zero, so an unpaired call cannot wrap
    /// the gauge to 2^64.
    pub fn http_connection_closed(&self) {
        // The closure never returns None: fetch_update cannot fail.
        let _ =
            self.http_connections_open
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
                    Some(open.saturating_sub(1))
                });
    }

    /// One HTTP response of `status` was sent (304s included); a status outside 200–599 is
    /// not counted.
    pub fn record(&self, status: u16) {
        let class = match status {
            200..=299 => &self.http_2xx,
            300..=399 => &self.http_3xx,
            400..=499 => &self.http_4xx,
            500..=599 => &self.http_5xx,
            _ => return,
        };
        class.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as `/metrics` writes them, with the SMTP connections open now (the gate's
    /// count).
    pub fn snapshot(&self, smtp_connections_open: u64) -> Counters {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Counters {
            smtp_connections_open,
            http_connections_open: load(&self.http_connections_open),
            messages_accepted: load(&self.messages_accepted),
            deliveries_failed: load(&self.deliveries_failed),
            auth_failures: load(&self.auth_failures),
            http_requests: HttpRequests {
                class_2xx: load(&self.http_2xx),
                class_3xx: load(&self.http_3xx),
                class_4xx: load(&self.http_4xx),
                class_5xx: load(&self.http_5xx),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_moves_its_own_counter() {
        let c = LiveCounters::new();
        c.messages_accepted(3);
        c.deliveries_failed(2);
        c.auth_failed();
        c.http_connection_opened();
        c.http_connection_opened();
        c.http_connection_closed();
        for status in [200, 204, 304, 404, 401, 503, 100, 600] {
            c.record(status);
        }
        let snapshot = c.snapshot(5);
        assert_eq!(
            snapshot,
            Counters {
                smtp_connections_open: 5,
                http_connections_open: 1,
                messages_accepted: 3,
                deliveries_failed: 2,
                auth_failures: 1,
                http_requests: HttpRequests {
                    class_2xx: 2,
                    class_3xx: 1,
                    class_4xx: 2,
                    class_5xx: 1,
                },
            }
        );
        c.http_connection_closed();
        c.http_connection_closed();
        assert_eq!(c.snapshot(0).http_connections_open, 0, "never below zero");
    }
}
