//! Listeners, one accept thread each, one thread per admitted connection, signals and the
//! shutdown sequence.
//!
//! Threads are bounded by the connection gate: a thread is started only for a connection
//! the gate admitted, and a refused one gets its `421` from the accept thread (or, on the
//! implicit-TLS port, from one of a bounded number of refusal threads).

use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use atacama_core::config::Config;
use atacama_core::logging;
use atacama_core::policy::{AuthGate, ConnectionPermit, Gate, ServerLimits, Slots};
use atacama_core::service::Services;
use atacama_core::smtp::{Reply, SessionConfig, reply};
use atacama_core::tls::{ReloadableTls, TlsSource};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::connection;
use crate::semaphore::Semaphore;
use crate::stream::Stream;

/// What every connection shares.
pub struct Shared {
    /// The store and the work behind the session's requests.
    pub services: Services,
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
    /// Password checks running at once.
    pub verifiers: Semaphore,
    /// Refusals on the implicit-TLS port handshaking at once.
    pub refusals: Slots,
    /// Set on SIGTERM or SIGINT: idle sessions answer `421 4.3.0` and close.
    pub stopping: AtomicBool,
    /// Set when the shutdown grace period is over: every connection closes.
    pub aborting: AtomicBool,
}

impl Shared {
    /// Whether the server is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Whether connections still open must close now.
    pub fn is_aborting(&self) -> bool {
        self.aborting.load(Ordering::Acquire)
    }
}

/// A bound server, ready to run.
pub struct Server {
    shared: Arc<Shared>,
    signals: Signals,
    listeners: Vec<(TcpListener, bool)>,
}

impl Server {
    /// Takes over the signals, opens the store, loads (or generates) the certificate and
    /// binds every listener; nothing is accepted yet.
    pub fn bind(config: &Config) -> Result<Server, Box<dyn std::error::Error>> {
        // Signals first: a SIGTERM that arrives once the ports answer must stop us cleanly.
        let signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        let tls = ReloadableTls::new(TlsSource::from_config(config))?;
        let services = Services::open(config)?;
        let limits = ServerLimits::from_config(config);
        let mut listeners = Vec::new();
        for (addresses, implicit) in [
            (&config.listen.submission, false),
            (&config.listen.submissions, true),
        ] {
            for address in addresses {
                let listener = TcpListener::bind(address)
                    .map_err(|e| format!("cannot listen on {address}: {e}"))?;
                listeners.push((listener, implicit));
            }
        }
        let shared = Shared {
            services,
            session: config.session_config(),
            gate: Gate::new(
                limits.hostname.clone(),
                limits.max_connections,
                limits.max_connections_per_ip,
            ),
            auth: AuthGate::new(&limits),
            verifiers: Semaphore::new(limits.verifier_running),
            refusals: Slots::new(limits.max_refusals_in_flight),
            limits,
            tls,
            stopping: AtomicBool::new(false),
            aborting: AtomicBool::new(false),
        };
        Ok(Server {
            shared: Arc::new(shared),
            signals,
            listeners,
        })
    }

    /// Serves until SIGTERM or SIGINT, then shuts down: stop accepting, `421 4.3.0` to idle
    /// sessions, up to `shutdown_grace` for transactions in progress, close the store.
    pub fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        let Server {
            shared,
            mut signals,
            listeners,
        } = self;
        let mut bound = Vec::new();
        for (listener, implicit) in listeners {
            let address = listener.local_addr()?;
            let kind = if implicit {
                "submissions (implicit TLS)"
            } else {
                "submission (STARTTLS)"
            };
            log::info!("listening on {address} for {kind}");
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("accept {address}"))
                .spawn(move || accept_loop(&shared, &listener, implicit))?;
            bound.push(address);
        }
        wait_for_stop(&mut signals, &shared);
        shared.stopping.store(true, Ordering::Release);
        // Each accept thread sees the flag once its accept returns; it then drops the
        // listener, so new connections are refused.
        for address in bound {
            wake(address);
        }
        shut_down(&shared);
        let open = shared.gate.total();
        if open > 0 {
            log::warn!("{open} connections still open after the grace period are aborted");
        }
        shared.aborting.store(true, Ordering::Release);
        close_store(shared);
        log::info!("stopped");
        Ok(())
    }
}

/// Handles SIGHUP (reload the certificate) until SIGTERM or SIGINT.
fn wait_for_stop(signals: &mut Signals, shared: &Shared) {
    for signal in signals.forever() {
        match signal {
            SIGHUP => match shared.tls.reload() {
                Ok(()) => log::info!(
                    "reloaded the certificate from {}",
                    shared.tls.source().cert_path().display()
                ),
                Err(error) => {
                    log::error!("certificate reload failed, keeping the old one: {error}")
                }
            },
            SIGTERM => return log::info!("Term received: shutting down"),
            _ => return log::info!("Int received: shutting down"),
        }
    }
}

/// Waits for open connections to end, at most the grace period.
fn shut_down(shared: &Shared) {
    let deadline = Instant::now() + shared.limits.shutdown_grace;
    while shared.gate.total() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
}

/// Drops the last handle on the store, waiting briefly for threads that still hold one (a
/// commit in progress finishes; it was never acknowledged if the connection is gone).
fn close_store(shared: Arc<Shared>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut shared = shared;
    loop {
        match Arc::try_unwrap(shared) {
            Ok(owned) => return drop(owned),
            Err(still_shared) if Instant::now() < deadline => {
                shared = still_shared;
                thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return log::warn!("store still in use at exit"),
        }
    }
}

/// Wakes the accept thread of `address` with a connection of our own.
fn wake(address: SocketAddr) {
    let target = match address {
        SocketAddr::V4(a) if a.ip().is_unspecified() => (Ipv4Addr::LOCALHOST, a.port()).into(),
        SocketAddr::V6(a) if a.ip().is_unspecified() => (Ipv6Addr::LOCALHOST, a.port()).into(),
        other => other,
    };
    // If it fails, the thread stays in accept until exit; nothing is admitted any more.
    let _ = TcpStream::connect_timeout(&target, Duration::from_secs(1));
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener, implicit_tls: bool) {
    loop {
        let accepted = listener.accept();
        if shared.is_stopping() {
            return;
        }
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, usually: back off instead of spinning.
                log::warn!("accept failed: {error}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        // Without it a TLS 1.3 ticket write and the next reply meet the client's delayed
        // ACK: a 40 ms stall per connection.
        if let Err(error) = tcp.set_nodelay(true) {
            log::debug!("TCP_NODELAY failed for {peer}: {error}");
        }
        match shared.gate.admit(peer.ip()) {
            Ok(permit) => start(shared, tcp, peer, implicit_tls, permit),
            Err(reply) => {
                logging::connection_refused(peer, &reply);
                refuse(shared, tcp, peer, reply, implicit_tls);
            }
        }
    }
}

/// Starts the connection's thread; if the system will not give one, the client is told
/// `421` like any connection over the cap.
fn start(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    permit: ConnectionPermit,
) {
    let spare = tcp.try_clone();
    let thread_shared = Arc::clone(shared);
    let started = thread::Builder::new()
        .name("smtp".into())
        .spawn(move || connection::serve(&thread_shared, tcp, peer, implicit_tls, permit));
    if let Err(error) = started {
        // The closure, with its permit and socket, is gone; `spare` is the same socket.
        log::error!("cannot start a thread for {peer}: {error}");
        if let Ok(tcp) = spare {
            let reply = reply::too_many_connections(&shared.limits.hostname);
            refuse(shared, tcp, peer, reply, implicit_tls);
        }
    }
}

/// Sends the gate's `421` and closes; never waits on the client for long.
fn refuse(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    reply: Reply,
    implicit_tls: bool,
) {
    let bytes = reply.to_bytes();
    if !implicit_tls {
        // A fresh socket's send buffer takes a few bytes at once; the deadline is a backstop.
        let mut stream = Stream::new(tcp, Duration::from_secs(1));
        let _ = stream.write_all(&bytes);
        let _ = stream.tcp().shutdown(Shutdown::Write);
        return;
    }
    // On 465 the reply can only go inside TLS: handshake in a thread, a bounded number at once.
    let Some(slot) = shared.refusals.try_enter() else {
        log::debug!("closing {peer} without a reply: too many refusals in flight");
        return;
    };
    let deadline = shared
        .limits
        .tls_handshake_timeout
        .min(Duration::from_secs(5));
    let shared = Arc::clone(shared);
    let started = thread::Builder::new().name("refuse".into()).spawn(move || {
        let _slot = slot;
        let mut stream = Stream::new(tcp, deadline);
        if stream
            .upgrade(shared.tls.current(), deadline, &shared.aborting)
            .is_ok()
            && stream.write_all(&bytes).is_ok()
        {
            stream.close(Duration::ZERO);
        }
    });
    if let Err(error) = started {
        log::debug!("closing {peer} without a reply: {error}");
    }
}
