//! Listeners, one accept thread each, one thread per admitted connection, signals and the
//! shutdown sequence: the life of a server as `atacama_server::server` lays it out, on threads.
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
use atacama_core::policy::ConnectionPermit;
use atacama_core::smtp::{Reply, reply};
use atacama_server::server::{self, AfterSignal, ServerState};
use atacama_server::systemd;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::connection;
use crate::stream::{Stream, TICK};

/// What every connection shares.
pub struct Shared {
    /// What both runtimes share: store, limits, certificate, gate, throttle.
    pub state: ServerState,
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
    /// binds every listener (or takes those systemd passed); nothing is accepted yet.
    pub fn bind(config: &Config) -> Result<Server, Box<dyn std::error::Error>> {
        // Signals first: a SIGTERM that arrives once the ports answer must stop us cleanly.
        let signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        let state = ServerState::open(config)?;
        let listeners = server::bind(config)?
            .into_iter()
            .map(|bound| (bound.socket, bound.implicit_tls))
            .collect();
        let shared = Shared {
            state,
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
        let mut listening = Vec::new();
        for (listener, implicit_tls) in listeners {
            let address = listener.local_addr()?;
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("accept {address}"))
                .spawn(move || accept_loop(&shared, &listener, implicit_tls))?;
            listening.push((address, implicit_tls));
        }
        server::ready(&listening);
        if let Some(interval) = systemd::watchdog_interval() {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("watchdog".into())
                .spawn(move || watchdog(&shared, interval))?;
        }
        // A store that failed for good ends the wait as a stop signal would.
        let handle = signals.handle();
        shared.state.when_store_fails(move || handle.close());
        wait_for_stop(&mut signals, &shared.state);
        shared.stopping.store(true, Ordering::Release);
        // Each accept thread sees the flag once its accept returns; it then drops the
        // listener, so new connections are refused.
        for &(address, _) in &listening {
            wake(address);
        }
        let state = &shared.state;
        drain(state, state.grace_deadline(Instant::now()));
        if state.abort_open() > 0 {
            // Connection threads see this within a tick, log their end, and let go.
            shared.aborting.store(true, Ordering::Release);
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
fn watchdog(shared: &Shared, interval: Duration) {
    let mut next = Instant::now();
    while !shared.is_stopping() && !shared.state.store_failed() {
        if Instant::now() >= next {
            systemd::watchdog();
            next = Instant::now() + interval;
        }
        // A stop is seen within a tick, so that this thread lets go of the state in time.
        thread::sleep(TICK.min(interval));
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
    loop {
        let accepted = listener.accept();
        if shared.is_stopping() {
            return;
        }
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                logging::accept_failed(&error);
                thread::sleep(server::ACCEPT_BACKOFF);
                continue;
            }
        };
        // Without it a TLS 1.3 ticket write and the next reply meet the client's delayed
        // ACK: a 40 ms stall per connection.
        if let Err(error) = tcp.set_nodelay(true) {
            logging::nodelay_failed(peer, &error);
        }
        match shared.state.admit(peer) {
            Ok(permit) => start(shared, tcp, peer, implicit_tls, permit),
            Err(reply) => refuse(shared, tcp, peer, reply, implicit_tls),
        }
    }
}

/// Starts the connection's thread; if the system will not give one, the client is told
/// `421` like a connection over the cap.
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
        logging::no_thread_for(peer, &error);
        if let Ok(tcp) = spare {
            let reply = reply::too_many_connections(&shared.state.limits.hostname);
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
        let mut stream = Stream::new(tcp, shared.state.limits.refusal_write_timeout);
        let _ = stream.write_all(&bytes);
        let _ = stream.tcp().shutdown(Shutdown::Write);
        return;
    }
    // On 465 the reply can only go inside TLS: handshake in a thread, a bounded number at once.
    let Some(slot) = shared.state.refusals.try_enter() else {
        logging::refused_without_reply(peer, &"too many refusals in flight");
        return;
    };
    let timeout = shared.state.refusal_tls_timeout();
    let shared = Arc::clone(shared);
    let started = thread::Builder::new().name("refuse".into()).spawn(move || {
        let _slot = slot;
        let mut stream = Stream::new(tcp, timeout);
        let config = shared.state.tls.current();
        if stream.upgrade(config, timeout, &shared.aborting).is_ok()
            && stream.write_all(&bytes).is_ok()
        {
            stream.close(Duration::ZERO);
        }
    });
    if let Err(error) = started {
        logging::refused_without_reply(peer, &error);
    }
}
