//! The life of a server, the same under both runtimes: the state every connection shares, the
//! listening sockets (bound, or passed by systemd), the admission of a connection, what a
//! signal does, the end of the shutdown and of the store. The bookkeeping of one connection's
//! loop is pure and lives in the core ([`atacama_core::connection`]).
//!
//! A runtime adds only what blocks or waits: accepting, its timers, its way of telling
//! connections that the server stops, and the IO behind each event. The life of a server, in both runtimes:
//!
//! ```text
//! signals; let state = ServerState::open(&config)?; let sockets = server::bind(&config)?;
//! accept on each; server::ready(&mail, &web);         // `listening on …`, READY=1
//!   state.admit(peer, implicit_tls): serve the Admission (a refusal too) by the one loop
//!   state.admit_http(peer, local, now, wall): serve the WebConnection (a 503 too), see
//!   [`http`]
//! until state.on_signal(signal) == AfterSignal::ShutDown { SIGHUP reloads the certificate }
//! stop accepting; tell connections to stop;          // idle ones answer 421 4.3.0
//! sleep while state.next_drain_check(now, state.grace_deadline(stop)) says so;
//! if state.abort_open() > 0 { tell connections to abort; drain again, ABORT_WAIT }
//!                                                     // queued password checks: busy
//! server::close(shared, |shared| shared.state);      // store closed, `stopped`
//! ```

mod admission;
pub mod commit;
mod completion;
pub mod http;
pub mod keeper;
pub mod verify;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use admission::{Admission, Deadlines, Held};
pub use commit::{Deliveries, Submitted};
pub use http::WebConnection;
pub use keeper::StoreKeeper;

use crate::control::{CONTROL_SOCKET, ControlServer};
use crate::service::Services;
use crate::systemd::{self, ActivationError};
use crate::tls::{ReloadableTls, TlsError, TlsSource};
use crate::web::Web;
use atacama_core::config::Config;
use atacama_core::http::HttpConfig;
use atacama_core::logging;
use atacama_core::policy::{AuthGate, Gate, ServerLimits, Slots};
use atacama_core::smtp::SessionConfig;
use atacama_store::StoreError;
use atacama_store::data_dir::{DataDir, DataDirError};

/// How long an accept loop pauses after a failed accept (out of file descriptors, usually),
/// instead of spinning.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long connections may take to log their end once told to abort, and the store to be
/// let go of at exit.
pub const STORE_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How often the shutdown looks whether the open connections have ended.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// What every connection of a server shares, whatever the runtime.
#[derive(Debug)]
pub struct ServerState {
    /// The store and the work behind the session's requests; an `Arc` so that a runtime
    /// can hand it to a blocking pool.
    pub services: Arc<Services>,
    /// Where `Event::Deliver` goes: the committer, or the runtime's own blocking work.
    pub deliveries: Deliveries,
    /// Where the password checks run: `verifier_running` threads at a lower priority.
    pub verifier: verify::Verifier,
    /// The command line's way into the store while this server holds it.
    pub control: ControlServer,
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
    /// Reopens the store after an I/O error, and says when it cannot.
    pub keeper: StoreKeeper,
    /// The web read side: [`ServerState::respond`] answers each GET and HEAD.
    pub web: Web,
    /// The settings of every web connection (`http.idle_timeout_secs`).
    pub http: HttpConfig,
    /// Web connections open, idle ones included, at most `http.max_connections`: apart
    /// from the SMTP gate, so that browsers cannot crowd out mail, nor mail the web.
    pub http_slots: Slots,
}

/// One address to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// Where.
    pub address: SocketAddr,
    /// TLS from the first byte (port 465) rather than STARTTLS (port 587).
    pub implicit_tls: bool,
}

/// Every listening socket of a server (in blocking mode), by what it serves.
#[derive(Debug)]
pub struct Bound {
    /// SMTP submission, STARTTLS or implicit TLS.
    pub mail: Vec<BoundListener>,
    /// The web read side, plaintext HTTP (a reverse proxy terminates TLS).
    pub web: Vec<TcpListener>,
}

/// A listening socket (in blocking mode) and what it serves.
#[derive(Debug)]
pub struct BoundListener {
    /// The socket.
    pub socket: TcpListener,
    /// TLS from the first byte (port 465) rather than STARTTLS (port 587).
    pub implicit_tls: bool,
}

/// A signal the server acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: read the certificate and key again.
    Hangup,
    /// SIGTERM: shut down (how systemd stops the service).
    Terminate,
    /// SIGINT: shut down (Ctrl-C).
    Interrupt,
}

/// What the server does after a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSignal {
    /// Go on serving.
    KeepServing,
    /// Begin the shutdown.
    ShutDown,
}

/// Why a server could not start. Each variant names what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// The data directory is refused: open to others, or another user's.
    DataDir(DataDirError),
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
    /// systemd passed sockets that cannot be used.
    Activation(ActivationError),
    /// The committer's threads could not be started.
    Committer(String),
    /// The password-check threads could not be started.
    Verifier(String),
    /// The store keeper's thread could not be started.
    Keeper(String),
    /// The command line's control socket could not be set up.
    Control {
        /// Where it would listen.
        socket: std::path::PathBuf,
        /// What the OS said.
        problem: String,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::DataDir(error) => error.fmt(f),
            StartError::Tls(error) => error.fmt(f),
            StartError::Store(error) => error.fmt(f),
            StartError::Listen { address, problem } => {
                write!(f, "cannot listen on {address}: {problem}")
            }
            StartError::Activation(error) => error.fmt(f),
            StartError::Committer(problem) => {
                write!(f, "cannot start the committer threads: {problem}")
            }
            StartError::Verifier(problem) => {
                write!(f, "cannot start the password-check threads: {problem}")
            }
            StartError::Keeper(problem) => {
                write!(f, "cannot start the store keeper thread: {problem}")
            }
            StartError::Control { socket, problem } => {
                write!(f, "cannot listen on {}: {problem}", socket.display())
            }
        }
    }
}

impl std::error::Error for StartError {}

/// Why a running server stopped on its own, exiting non-zero so that systemd restarts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// An I/O error left the database unusable, and reopening it failed for this long.
    StoreFailed {
        /// How long reopening was tried.
        after: Duration,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::StoreFailed { after } => write!(
                f,
                "the database could not be reopened for {} s after an I/O error",
                after.as_secs()
            ),
        }
    }
}

impl std::error::Error for RunError {}

impl Signal {
    /// Its name in log lines: `SIGHUP`, `SIGTERM`, `SIGINT`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hangup => "SIGHUP",
            Signal::Terminate => "SIGTERM",
            Signal::Interrupt => "SIGINT",
        }
    }
}

impl ServerState {
    /// Creates (or checks) the data directory before anything is written there, loads (or
    /// generates) the certificate and opens the store; binds nothing.
    pub fn open(config: &Config) -> Result<ServerState, StartError> {
        DataDir::prepare(&config.data_dir).map_err(StartError::DataDir)?;
        let tls = ReloadableTls::new(TlsSource::from_config(config)).map_err(StartError::Tls)?;
        let services = Arc::new(Services::open(config).map_err(StartError::Store)?);
        let deliveries = Deliveries::new(Arc::clone(&services), config.limits.group_commit)
            .map_err(|e| StartError::Committer(e.to_string()))?;
        let limits = ServerLimits::from_config(config);
        let verifier = verify::Verifier::start(
            Arc::clone(&services),
            limits.verifier_running,
            limits.verifier_wait_timeout,
        )
        .map_err(|e| StartError::Verifier(e.to_string()))?;
        let keeper = StoreKeeper::start(Arc::clone(&services))
            .map_err(|e| StartError::Keeper(e.to_string()))?;
        let control =
            ControlServer::start(&config.data_dir, Arc::clone(&services)).map_err(|e| {
                StartError::Control {
                    socket: config.data_dir.join(CONTROL_SOCKET),
                    problem: e.to_string(),
                }
            })?;
        Ok(ServerState {
            services,
            deliveries,
            verifier,
            control,
            session: config.session_config(),
            gate: Gate::from_limits(&limits),
            // The login throttle's fingerprint key: fresh OS randomness for each server.
            auth: AuthGate::new(&limits, RandomState::new()),
            refusals: Slots::new(limits.max_refusals_in_flight),
            limits,
            tls,
            keeper,
            web: Web::from_config(config),
            http: http::config(config),
            http_slots: Slots::new(config.http.max_connections),
        })
    }

    /// Whether the store failed for good: the runtime stops pinging the systemd watchdog and
    /// shuts down (its main loop is woken through [`ServerState::when_store_fails`]).
    pub fn store_failed(&self) -> bool {
        self.keeper.has_failed()
    }

    /// Calls `wake` (once, from another thread) when the store fails for good: the runtime
    /// passes what ends its wait for a stop signal.
    pub fn when_store_fails(&self, wake: impl FnOnce() + Send + 'static) {
        self.keeper.when_failed(wake);
    }

    /// What the runtime's `run` returns once shut down: an error if the store failed.
    pub fn run_error(&self) -> Option<RunError> {
        self.store_failed().then(|| RunError::StoreFailed {
            after: self.services.give_up_after(),
        })
    }

    /// Acts on `signal`: SIGHUP reloads the certificate (a bad new pair leaves the old one in
    /// use), telling systemd RELOADING then READY; SIGTERM and SIGINT begin the shutdown,
    /// logged and told to systemd (STOPPING).
    pub fn on_signal(&self, signal: Signal) -> AfterSignal {
        match signal {
            Signal::Hangup => {
                systemd::reloading();
                self.reload_certificate();
                systemd::ready(READY_STATUS);
                AfterSignal::KeepServing
            }
            Signal::Terminate | Signal::Interrupt => {
                logging::shutting_down(signal.name());
                systemd::stopping();
                AfterSignal::ShutDown
            }
        }
    }

    /// Reads the certificate and key again and logs the result; a bad new pair leaves the
    /// old one in use.
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

    /// When the grace period of a shutdown that began at `stop` ends.
    pub fn grace_deadline(&self, stop: Instant) -> Instant {
        stop + self.limits.shutdown_grace
    }

    /// Connections open now, mail and web.
    pub fn open_connections(&self) -> usize {
        self.gate.total() + self.http_slots.occupied()
    }

    /// During the shutdown: how long to pause before looking again whether the open
    /// connections (mail and web) have ended, or `None` once they have or `until` has
    /// passed.
    pub fn next_drain_check(&self, now: Instant, until: Instant) -> Option<Duration> {
        let left = until.checked_duration_since(now)?;
        (self.open_connections() > 0 && !left.is_zero()).then(|| left.min(DRAIN_POLL))
    }

    /// At the end of the grace period: how many connections are still open (logged if any);
    /// the runtime then tells them to abort. Password checks not yet started are answered
    /// busy, so a connection waiting for one ends too.
    pub fn abort_open(&self) -> usize {
        let open = self.open_connections();
        if open > 0 {
            logging::aborting(open);
            self.verifier.abort();
        }
        open
    }
}

/// The `Status=` systemd shows while the server accepts.
const READY_STATUS: &str = "accepting mail";

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

/// The sockets to accept on: those systemd passed (socket activation, logged; `[listen]`
/// and `[http] listen` are then ignored, and the web side serves the sockets named `http`,
/// if any), else the addresses of `config`, bound now. Call it once, after installing the
/// signal handlers (a SIGTERM that comes once the ports answer must stop the server
/// cleanly), and accept only once the state is open.
pub fn bind(config: &Config) -> Result<Bound, StartError> {
    let (mail, web) = match systemd::activated_listeners().map_err(StartError::Activation)? {
        Some(activated) => {
            logging::using_activated_sockets();
            let plain = activated
                .submission
                .into_iter()
                .map(|socket| (socket, false));
            let implicit = activated
                .submissions
                .into_iter()
                .map(|socket| (socket, true));
            (plain.chain(implicit).collect::<Vec<_>>(), activated.http)
        }
        None => {
            let mut mail = Vec::new();
            for Listener {
                address,
                implicit_tls,
            } in listeners(config)
            {
                mail.push((listen(address)?, implicit_tls));
            }
            let web = config
                .http
                .listen
                .iter()
                .map(|&address| listen(address))
                .collect::<Result<Vec<_>, _>>()?;
            (mail, web)
        }
    };
    let mail = mail
        .into_iter()
        .map(|(socket, implicit_tls)| {
            Ok(BoundListener {
                socket: blocking(socket)?,
                implicit_tls,
            })
        })
        .collect::<Result<_, StartError>>()?;
    let web = web.into_iter().map(blocking).collect::<Result<_, _>>()?;
    Ok(Bound { mail, web })
}

/// A socket listening on `address`.
fn listen(address: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address).map_err(|e| StartError::Listen {
        address,
        problem: e.to_string(),
    })
}

/// `socket` in blocking mode. A passed socket may be non-blocking (`NonBlocking=yes`);
/// accept loops that block need it blocking, and async ones set their own mode.
fn blocking(socket: TcpListener) -> Result<TcpListener, StartError> {
    let address = socket.local_addr();
    socket
        .set_nonblocking(false)
        .map_err(|e| StartError::Listen {
            address: address.unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
            problem: e.to_string(),
        })?;
    Ok(socket)
}

/// Tells the world the server accepts: `listening on …` for each mail address (with
/// whether it is implicit TLS) and each web one, and READY=1 to systemd. Call it once
/// every listener accepts.
pub fn ready(mail: &[(SocketAddr, bool)], web: &[SocketAddr]) {
    for &(address, implicit_tls) in mail {
        logging::listening(address, implicit_tls);
    }
    for &address in web {
        logging::listening_http(address);
    }
    systemd::ready(READY_STATUS);
}

/// The end of a server: waits at most [`STORE_CLOSE_WAIT`] for `shared` to be the last
/// handle (connections finishing their close, blocking work in flight), then lets go of the
/// state it holds, closing the store once the blocking work that holds it has ended, and
/// logs `stopped`. What still holds the store then is logged.
pub fn close<T>(shared: Arc<T>, state: impl FnOnce(T) -> ServerState) {
    let deadline = Instant::now() + STORE_CLOSE_WAIT;
    match unwrap_by(shared, deadline) {
        Some(shared) => {
            let ServerState {
                services,
                deliveries,
                verifier,
                control,
                keeper,
                ..
            } = state(shared);
            // The control thread answers its request in hand and goes; the committer stores
            // what is queued, ends, and lets go of the store; the verifier threads end once
            // their queue is empty; the keeper ends at once, or after a reopen in hand.
            drop(control);
            drop(deliveries);
            drop(verifier);
            drop(keeper);
            if unwrap_by(services, deadline).is_none() {
                logging::store_still_in_use();
            }
        }
        None => logging::store_still_in_use(),
    }
    logging::stopped();
}

/// What `shared` holds, once it is the last handle; `None` if it is not by `deadline`.
fn unwrap_by<T>(shared: Arc<T>, deadline: Instant) -> Option<T> {
    let mut shared = shared;
    loop {
        match Arc::try_unwrap(shared) {
            Ok(owned) => return Some(owned),
            Err(still_shared) if Instant::now() < deadline => {
                shared = still_shared;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return None,
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

    fn state() -> (tempfile::TempDir, ServerState) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.auth.bcrypt_cost = 4;
        let state = ServerState::open(&config).unwrap();
        (dir, state)
    }

    #[test]
    fn open_generates_a_certificate_and_opens_the_store() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, state) = state();
        // Created private before the certificate went there (it once made it 0755).
        let mode = std::fs::metadata(dir.path().join("data"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let config = Config::default();
        assert!(state.tls.source().cert_path().exists());
        assert_eq!(state.gate.total(), 0);
        assert_eq!(
            state.session.max_recipients,
            config.session_config().max_recipients
        );
        assert!(state.refusal_tls_timeout() <= state.limits.tls_handshake_timeout);
        state.reload_certificate();
        assert!(state.tls.source().key_path().exists());
    }

    #[test]
    fn open_refuses_a_data_dir_open_to_others_before_writing_there() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
        let config = Config {
            data_dir: data.clone(),
            ..Config::default()
        };
        let error = ServerState::open(&config).unwrap_err();
        assert!(matches!(
            error,
            StartError::DataDir(DataDirError::Mode { mode: 0o750, .. })
        ));
        assert!(
            error
                .to_string()
                .ends_with(&format!("chmod 700 {}", data.display()))
        );
        assert_eq!(
            std::fs::read_dir(&data).unwrap().count(),
            0,
            "nothing written"
        );
    }

    #[test]
    fn unwrap_by_waits_for_the_other_handles() {
        let shared = Arc::new(7);
        let other = Arc::clone(&shared);
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            drop(other);
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(unwrap_by(shared, deadline), Some(7));
        holder.join().unwrap();
        let kept = Arc::new(());
        let _other = Arc::clone(&kept);
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(unwrap_by(kept, soon), None);
    }

    #[test]
    fn the_drain_pauses_while_connections_are_open_and_until_the_deadline() {
        let (_dir, state) = state();
        let now = Instant::now();
        let until = state.grace_deadline(now);
        assert_eq!(until, now + state.limits.shutdown_grace);
        assert_eq!(
            state.next_drain_check(now, until),
            None,
            "nobody is connected"
        );
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let admitted = state.admit(peer, false).unwrap();
        assert!(!admitted.is_refusal() && !admitted.inline);
        assert_eq!(state.next_drain_check(now, until), Some(DRAIN_POLL));
        let almost = until - Duration::from_millis(5);
        assert_eq!(
            state.next_drain_check(almost, until),
            Some(Duration::from_millis(5))
        );
        assert_eq!(
            state.next_drain_check(until, until),
            None,
            "the grace is over"
        );
        assert_eq!(state.abort_open(), 1);
        drop(admitted);
        assert_eq!(state.abort_open(), 0);
    }

    #[test]
    fn hangup_keeps_serving_and_term_or_int_shut_down() {
        let (_dir, state) = state();
        assert_eq!(state.on_signal(Signal::Hangup), AfterSignal::KeepServing);
        assert_eq!(state.on_signal(Signal::Terminate), AfterSignal::ShutDown);
        assert_eq!(state.on_signal(Signal::Interrupt), AfterSignal::ShutDown);
        assert_eq!(Signal::Terminate.name(), "SIGTERM");
    }

    #[test]
    fn bind_serves_the_configured_addresses_in_blocking_mode() {
        let mut config = Config::default();
        config.listen.submission = vec!["127.0.0.1:0".parse().unwrap()];
        config.listen.submissions = vec!["127.0.0.1:0".parse().unwrap()];
        config.http.listen = vec!["127.0.0.1:0".parse().unwrap()];
        let bound = bind(&config).unwrap();
        let kinds: Vec<bool> = bound.mail.iter().map(|l| l.implicit_tls).collect();
        assert_eq!(kinds, [false, true]);
        assert_eq!(bound.web.len(), 1);
        let web = bound.web[0].local_addr().unwrap();
        config.http.listen = vec![web];
        assert!(matches!(
            bind(&config),
            Err(StartError::Listen { address, .. }) if address == web
        ));
        config.http.listen = Vec::new();
        let taken = bound.mail[0].socket.local_addr().unwrap();
        config.listen.submission = vec![taken];
        assert!(matches!(
            bind(&config),
            Err(StartError::Listen { address, .. }) if address == taken
        ));
    }
}
