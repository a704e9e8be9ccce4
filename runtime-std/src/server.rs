//! Listeners, one accept thread each, one thread per admitted connection, signals and the
//! shutdown sequence: the life of a server as `atacama_server::server` lays it out, on threads.
//!
//! Threads are bounded by the connection gate: a thread is started only for a connection
//! the gate admitted, and a refused one is served its `421` by the accept thread (or, on
//! the implicit-TLS port, by one of a bounded number of refusal threads), through the same
//! loop as every connection.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use atacama_core::config::Config;
use atacama_core::logging;
use atacama_core::smtp::reply;
use atacama_server::server::{self, Admission, AfterSignal, ServerState};
use atacama_server::{priority, systemd};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::sockets::Sockets;
use crate::{connection, web};

/// What every connection shares.
pub struct Shared {
    /// What both runtimes share: store, limits, certificate, gate, throttle.
    pub state: ServerState,
    /// Set on SIGTERM or SIGINT: idle sessions answer `421 4.3.0` and close.
    pub stopping: AtomicBool,
    /// Set when the shutdown grace period is over: every connection closes.
    pub aborting: AtomicBool,
    /// The open connections' sockets, woken by the stop and the abort.
    pub sockets: Sockets,
}

impl Shared {
    /// Whether the server is stopping.
    pub fn is_stopping(&self) -> bool {
        // SeqCst, as the idle marks in `sockets`: see there.
        self.stopping.load(Ordering::SeqCst)
    }

    /// Whether connections still open must close now.
    pub fn is_aborting(&self) -> bool {
        self.aborting.load(Ordering::SeqCst)
    }

    /// Begins the stop: idle sessions are woken to answer `421 4.3.0`; the others learn
    /// of it when next they wake.
    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.sockets.wake_idle();
    }

    /// Ends the grace period: every connection is woken to end.
    fn abort(&self) {
        self.aborting.store(true, Ordering::SeqCst);
        self.sockets.wake_all();
    }
}

/// A bound server, ready to run.
pub struct Server {
    shared: Arc<Shared>,
    signals: Signals,
    listeners: Vec<(TcpListener, bool)>,
    /// The web read side's listeners.
    web_listeners: Vec<TcpListener>,
}

impl Server {
    /// Takes over the signals, opens the store, loads (or generates) the certificate and
    /// binds every listener (or takes those systemd passed); nothing is accepted yet.
    pub fn bind(config: &Config) -> Result<Server, Box<dyn std::error::Error>> {
        // Signals first: a SIGTERM that arrives once the ports answer must stop us cleanly.
        let signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        let state = ServerState::open(config)?;
        let bound = server::bind(config)?;
        let listeners = bound
            .mail
            .into_iter()
            .map(|bound| (bound.socket, bound.implicit_tls))
            .collect();
        let shared = Shared {
            state,
            stopping: AtomicBool::new(false),
            aborting: AtomicBool::new(false),
            sockets: Sockets::new(),
        };
        Ok(Server {
            shared: Arc::new(shared),
            signals,
            listeners,
            web_listeners: bound.web,
        })
    }

    /// Serves until SIGTERM or SIGINT, then shuts down: stop accepting, `421 4.3.0` to idle
    /// sessions, up to `shutdown_grace` for transactions in progress, close the store.
    pub fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        let Server {
            shared,
            mut signals,
            listeners,
            web_listeners,
        } = self;
        let mut listening = Vec::new();
        for (listener, implicit_tls) in listeners {
            let address = listener.local_addr()?;
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("accept {address}"))
                .spawn(move || accept_loop(&shared, &listener, implicit_tls))?;
            listening.push((address, implicit_tls));
        }
        let mut web_listening = Vec::new();
        for listener in web_listeners {
            let address = listener.local_addr()?;
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("accept http {address}"))
                .spawn(move || web_accept_loop(&shared, &listener))?;
            web_listening.push(address);
        }
        server::ready(&listening, &web_listening);
        let mut watchdog_thread = None;
        if let Some(interval) = systemd::watchdog_interval() {
            let shared = Arc::clone(&shared);
            let started = thread::Builder::new()
                .name("watchdog".into())
                .spawn(move || watchdog(&shared, interval))?;
            watchdog_thread = Some(started);
        }
        // A store that failed for good ends the wait as a stop signal would.
        let handle = signals.handle();
        shared.state.when_store_fails(move || handle.close());
        wait_for_stop(&mut signals, &shared.state);
        shared.stop();
        if let Some(watchdog) = &watchdog_thread {
            // So that it lets go of the state now rather than at its next ping.
            watchdog.thread().unpark();
        }
        // Each accept thread sees the flag once its accept returns; it then drops the
        // listener, so new connections are refused.
        for address in listening
            .iter()
            .map(|&(address, _)| address)
            .chain(web_listening)
        {
            wake(address);
        }
        let state = &shared.state;
        drain(state, state.grace_deadline(Instant::now()));
        if state.abort_open() > 0 {
            // Connection threads are woken, log their end, and let go.
            shared.abort();
            drain(state, Instant::now() + server::STORE_CLOSE_WAIT);
        }
        let failed = shared.state.run_error();
        server::close(shared, |shared| shared.state);
        failed.map_or(Ok(()), |error| Err(error.into()))
    }
}

/// Handles SIGHUP until SIGTERM or SIGINT.
fn wait_for_stop(signals: &mut Signals, state: &ServerState) {
    for signal in signals.forever() {
        let signal = match signal {
            SIGHUP => server::Signal::Hangup,
            SIGTERM => server::Signal::Terminate,
            SIGINT => server::Signal::Interrupt,
            // Not registered for any other.
            _ => continue,
        };
        if state.on_signal(signal) == AfterSignal::ShutDown {
            return;
        }
    }
}

/// Tells systemd the server is alive every `interval`, until it stops or its store fails for
/// good. The accept and connection threads block on their sockets and cannot ping, and there
/// is no executor to get stuck: a thread of its own pings.
/// A store that fails for good stops the server too, and so this thread.
fn watchdog(shared: &Shared, interval: Duration) {
    while !shared.is_stopping() && !shared.state.store_failed() {
        systemd::watchdog();
        let next = Instant::now() + interval;
        // Parked until the next ping, or until the stop unparks it; a spurious wake-up loops.
        while let Some(left) = next.checked_duration_since(Instant::now())
            && !left.is_zero()
            && !shared.is_stopping()
        {
            thread::park_timeout(left);
        }
    }
}

/// Waits for the open connections to end, until `until` at most.
fn drain(state: &ServerState, until: Instant) {
    while let Some(pause) = state.next_drain_check(Instant::now(), until) {
        thread::sleep(pause);
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
    while let Some((tcp, peer)) = next_connection(shared, listener) {
        if let Some(admission) = shared.state.admit(peer, implicit_tls) {
            start(shared, tcp, admission);
        }
    }
}

/// The next connection `listener` accepts, with Nagle off; `None` once the server stops.
fn next_connection(shared: &Shared, listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = listener.accept();
        if shared.is_stopping() {
            return None;
        }
        match accepted {
            Ok((tcp, peer)) => {
                // Without it a TLS 1.3 ticket write and the next reply (or the next web
                // request's response) meet the client's delayed ACK: a 40 ms stall.
                if let Err(error) = tcp.set_nodelay(true) {
                    logging::nodelay_failed(peer, &error);
                }
                return Some((tcp, peer));
            }
            Err(error) => {
                logging::accept_failed(&error);
                thread::sleep(server::ACCEPT_BACKOFF);
            }
        }
    }
}

/// Serves the connection on a thread of its own, or (a refusal on the plaintext port) here.
/// If the system will not give a thread, an admitted client is refused like one over the cap.
fn start(shared: &Arc<Shared>, tcp: TcpStream, admission: Admission) {
    if admission.inline {
        return connection::serve(shared, tcp, admission);
    }
    let (peer, implicit_tls, refusal) = (
        admission.peer(),
        admission.implicit_tls,
        admission.is_refusal(),
    );
    // For the refusal that replaces an admitted connection no thread can be had for.
    let spare = (!refusal).then(|| tcp.try_clone());
    let thread_shared = Arc::clone(shared);
    let started = thread::Builder::new()
        .name(if refusal { "refuse" } else { "smtp" }.into())
        .spawn(move || connection::serve(&thread_shared, tcp, admission));
    let Err(error) = started else {
        return;
    };
    if refusal {
        return logging::refused_without_reply(peer, &error);
    }
    // The closure, with what it held and its socket, is gone; `spare` is the same socket.
    logging::no_thread_for(peer, &error);
    let reply = reply::too_many_connections(&shared.state.limits.hostname);
    if let Some(Ok(tcp)) = spare
        && let Some(refusal) = shared.state.refuse(peer, reply, implicit_tls)
    {
        start(shared, tcp, refusal);
    }
}

/// Accepts web connections: one thread each under `http.max_connections`; over it, the
/// `503` is served here.
fn web_accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    // A thread starts at its creator's nice value: the connections' threads get it too.
    priority::lower_thread_priority(priority::WEB_NICE);
    while let Some((tcp, peer)) = next_connection(shared, listener) {
        let local = tcp.local_addr().ok();
        let conn = shared
            .state
            .admit_http(peer, local, Instant::now(), SystemTime::now());
        if conn.inline {
            web::serve(shared, tcp, conn);
            continue;
        }
        let thread_shared = Arc::clone(shared);
        let started = thread::Builder::new()
            .name("http".into())
            .spawn(move || web::serve(&thread_shared, tcp, conn));
        if let Err(error) = started {
            // The closure, with the connection and its place under the cap, is gone: the
            // client sees a close.
            logging::no_thread_for(peer, &error);
        }
    }
}
