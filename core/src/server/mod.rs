//! What a running server is made of, the same under both runtimes (cargo features `store`
//! and `tls`): the state every connection shares, the addresses to listen on, the
//! certificate reload, the end of the store, and [`Accepted`]/[`Connection`], the
//! bookkeeping of one connection's loop.
//!
//! A runtime adds only what blocks or waits: binding and accepting, its semaphore for the
//! verifiers, its timers, and its way of telling connections that the server stops.

mod connection;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use connection::{Accepted, Connection, Wait};

use crate::config::Config;
use crate::logging;
use crate::policy::{AuthGate, Gate, ServerLimits, Slots};
use crate::service::Services;
use crate::smtp::SessionConfig;
use crate::store::StoreError;
use crate::tls::{ReloadableTls, TlsError, TlsSource};

/// What every connection of a server shares, whatever the runtime.
#[derive(Debug)]
pub struct ServerState {
    /// The store and the work behind the session's requests; an `Arc` so that a runtime
    /// can hand it to a blocking pool.
    pub services: Arc<Services>,
    /// The settings of every session.
    pub session: SessionConfig,
    /// Limits around sessions.
    pub limits: ServerLimits,
    /// The certificate in use, swapped on SIGHUP.
    pub tls: ReloadableTls,
    /// Connection counts.
    pub gate: Gate,
    /// Login throttle and verifier queue.
    pub auth: AuthGate,
    /// Refusals on the implicit-TLS port handshaking at once.
    pub refusals: Slots,
}

/// One address to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// Where.
    pub address: SocketAddr,
    /// TLS from the first byte (port 465) rather than STARTTLS (port 587).
    pub implicit_tls: bool,
}

/// Why a server could not start. Each variant names what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// The certificate or key could not be loaded or generated.
    Tls(TlsError),
    /// The store could not be opened.
    Store(StoreError),
    /// An address could not be bound.
    Listen {
        /// The address.
        address: SocketAddr,
        /// What the OS said.
        problem: String,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Tls(error) => error.fmt(f),
            StartError::Store(error) => error.fmt(f),
            StartError::Listen { address, problem } => {
                write!(f, "cannot listen on {address}: {problem}")
            }
        }
    }
}

impl std::error::Error for StartError {}

impl ServerState {
    /// Loads (or generates) the certificate and opens the store; binds nothing.
    pub fn open(config: &Config) -> Result<ServerState, StartError> {
        let tls = ReloadableTls::new(TlsSource::from_config(config)).map_err(StartError::Tls)?;
        let services = Services::open(config).map_err(StartError::Store)?;
        let limits = ServerLimits::from_config(config);
        Ok(ServerState {
            services: Arc::new(services),
            session: config.session_config(),
            gate: Gate::new(
                limits.hostname.clone(),
                limits.max_connections,
                limits.max_connections_per_ip,
            ),
            auth: AuthGate::new(&limits),
            refusals: Slots::new(limits.max_refusals_in_flight),
            limits,
            tls,
        })
    }

    /// SIGHUP: reads the certificate and key again and logs the result; a bad new pair
    /// leaves the old one in use.
    pub fn reload_certificate(&self) {
        match self.tls.reload() {
            Ok(()) => logging::certificate_reloaded(&self.tls.source().cert_path()),
            Err(error) => logging::certificate_reload_failed(&error),
        }
    }

    /// How long the handshake and `421` for a refused connection on 465 may take.
    pub fn refusal_tls_timeout(&self) -> Duration {
        self.limits
            .refusal_tls_timeout
            .min(self.limits.tls_handshake_timeout)
    }
}

/// The addresses `config` asks for: the submission ones (STARTTLS) first.
pub fn listeners(config: &Config) -> Vec<Listener> {
    let plain = config.listen.submission.iter().map(|&address| Listener {
        address,
        implicit_tls: false,
    });
    let implicit = config.listen.submissions.iter().map(|&address| Listener {
        address,
        implicit_tls: true,
    });
    plain.chain(implicit).collect()
}

/// How long [`drop_when_unshared`] should wait at exit for work still holding the store.
pub const STORE_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Drops `shared` once no other handle on it is left, waiting at most `within` (a commit
/// in progress finishes; it was never acknowledged if its connection is gone). Returns
/// whether it was the last handle; if not, logs that the store is still in use.
pub fn drop_when_unshared<T>(shared: Arc<T>, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut shared = shared;
    loop {
        match Arc::try_unwrap(shared) {
            Ok(owned) => {
                drop(owned);
                return true;
            }
            Err(still_shared) if Instant::now() < deadline => {
                shared = still_shared;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => {
                logging::store_still_in_use();
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_put_starttls_first_and_mark_implicit_tls() {
        let mut config = Config::default();
        config.listen.submission = vec!["127.0.0.1:587".parse().unwrap()];
        config.listen.submissions = vec![
            "127.0.0.1:465".parse().unwrap(),
            "[::1]:465".parse().unwrap(),
        ];
        let found: Vec<(String, bool)> = listeners(&config)
            .iter()
            .map(|l| (l.address.to_string(), l.implicit_tls))
            .collect();
        assert_eq!(
            found,
            [
                ("127.0.0.1:587".to_string(), false),
                ("127.0.0.1:465".to_string(), true),
                ("[::1]:465".to_string(), true),
            ]
        );
    }

    #[test]
    fn open_generates_a_certificate_and_opens_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.auth.bcrypt_cost = 4;
        let state = ServerState::open(&config).unwrap();
        assert!(state.tls.source().cert_path().exists());
        assert_eq!(state.gate.total(), 0);
        assert_eq!(state.session, config.session_config());
        assert!(state.refusal_tls_timeout() <= state.limits.tls_handshake_timeout);
        state.reload_certificate();
        assert!(state.tls.source().key_path().exists());
    }

    #[test]
    fn drop_when_unshared_waits_for_the_other_handles() {
        let shared = Arc::new(());
        let other = Arc::clone(&shared);
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            drop(other);
        });
        assert!(drop_when_unshared(shared, Duration::from_secs(5)));
        holder.join().unwrap();
        let kept = Arc::new(());
        let _other = Arc::clone(&kept);
        assert!(!drop_when_unshared(kept, Duration::from_millis(20)));
    }
}
