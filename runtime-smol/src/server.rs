//! Listeners, the accept loops, signals and the shutdown sequence.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_signal::{Signal, Signals};
use atacama_core::config::Config;
use atacama_core::logging;
use atacama_core::policy::{AuthGate, Gate, ServerLimits, Slots};
use atacama_core::service::Services;
use atacama_core::smtp::{Reply, SessionConfig};
use atacama_core::tls::{ReloadableTls, TlsSource};
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt as _;
use smol::io::AsyncWriteExt as _;
use smol::lock::Semaphore;
use smol::net::{TcpListener, TcpStream};
use smol::stream::StreamExt as _;
use smol::{Executor, Timer};

use crate::connection;
use crate::stream::{handshake, timeout};

/// What every connection shares.
pub struct Shared {
    /// The store and the work behind the session's requests.
    pub services: Arc<Services>,
    /// The settings of every session.
    pub session: SessionConfig,
    /// Limits around sessions.
    pub limits: ServerLimits,
    /// The certificate in use, swapped on SIGHUP.
    pub tls: Arc<ReloadableTls>,
    /// Connection counts.
    pub gate: Gate,
    /// Login throttle and verifier queue.
    pub auth: AuthGate,
    /// Password checks running at once.
    pub verifiers: Arc<Semaphore>,
    /// Refusals on the implicit-TLS port handshaking at once.
    pub refusals: Slots,
    /// Closed (never sent on) when the server stops.
    pub stop: Receiver<()>,
}

/// A bound server, ready to run.
pub struct Server {
    shared: Arc<Shared>,
    stop: Sender<()>,
    signals: Signals,
    listeners: Vec<(TcpListener, bool)>,
}

impl Server {
    /// Takes over the signals, opens the store, loads (or generates) the certificate and
    /// binds every listener; nothing is accepted yet.
    pub fn bind(config: &Config) -> Result<Server, Box<dyn std::error::Error>> {
        // Signals first: a SIGTERM that arrives once the ports answer must stop us cleanly.
        let signals = Signals::new([Signal::Term, Signal::Int, Signal::Hup])?;
        let tls = ReloadableTls::new(TlsSource::from_config(config))?;
        let services = Services::open(config)?;
        let limits = ServerLimits::from_config(config);
        let mut listeners = Vec::new();
        for (addresses, implicit) in [
            (&config.listen.submission, false),
            (&config.listen.submissions, true),
        ] {
            for address in addresses {
                let listener = smol::block_on(TcpListener::bind(*address))
                    .map_err(|e| format!("cannot listen on {address}: {e}"))?;
                listeners.push((listener, implicit));
            }
        }
        let (stop, stopped) = smol::channel::bounded(1);
        let shared = Shared {
            services: Arc::new(services),
            session: config.session_config(),
            gate: Gate::new(
                limits.hostname.clone(),
                limits.max_connections,
                limits.max_connections_per_ip,
            ),
            auth: AuthGate::new(&limits),
            verifiers: Arc::new(Semaphore::new(limits.verifier_running.max(1))),
            refusals: Slots::new(limits.max_refusals_in_flight),
            limits,
            tls: Arc::new(tls),
            stop: stopped,
        };
        Ok(Server {
            shared: Arc::new(shared),
            stop,
            signals,
            listeners,
        })
    }

    /// Serves until SIGTERM or SIGINT, then shuts down: stop accepting, `421 4.3.0` to idle
    /// sessions, up to `shutdown_grace` for transactions in progress, close the store.
    pub fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(4);
        let executor = Arc::new(Executor::new());
        let (done, finished) = smol::channel::bounded::<()>(1);
        // Closed however the main future ends, even by a panic: the worker threads must
        // stop, or the scope below would wait for them forever.
        let done = CloseOnDrop(done);
        let Server {
            shared,
            stop,
            mut signals,
            listeners,
        } = self;
        std::thread::scope(|scope| {
            for _ in 1..threads {
                let executor = Arc::clone(&executor);
                let finished = finished.clone();
                scope.spawn(move || smol::block_on(executor.run(finished.recv())));
            }
            let main = async {
                let mut accepting = Vec::new();
                for (listener, implicit) in listeners {
                    if let Ok(address) = listener.local_addr() {
                        let kind = if implicit {
                            "submissions (implicit TLS)"
                        } else {
                            "submission (STARTTLS)"
                        };
                        log::info!("listening on {address} for {kind}");
                    }
                    let task = accept_loop(
                        Arc::clone(&executor),
                        Arc::clone(&shared),
                        listener,
                        implicit,
                    );
                    accepting.push(executor.spawn(task));
                }
                wait_for_stop(&mut signals, &shared).await;
                // Dropping the accept tasks drops the listeners: new connections are refused.
                drop(accepting);
                stop.close();
                shut_down(&shared).await;
            };
            smol::block_on(executor.run(main));
            drop(done);
        });
        let open = shared.gate.total();
        if open > 0 {
            log::warn!("{open} connections still open after the grace period are aborted");
        }
        // Connection tasks still alive hold the shared state: drop them, then the store.
        drop(executor);
        close_store(shared);
        log::info!("stopped");
        Ok(())
    }
}

/// Closes the channel when dropped.
struct CloseOnDrop(Sender<()>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Handles SIGHUP (reload the certificate) until SIGTERM or SIGINT.
async fn wait_for_stop(signals: &mut Signals, shared: &Shared) {
    while let Some(signal) = signals.next().await {
        match signal {
            Ok(Signal::Hup) => match shared.tls.reload() {
                Ok(()) => log::info!(
                    "reloaded the certificate from {}",
                    shared.tls.source().cert_path().display()
                ),
                Err(error) => {
                    log::error!("certificate reload failed, keeping the old one: {error}")
                }
            },
            Ok(signal) => {
                log::info!("{signal:?} received: shutting down");
                return;
            }
            Err(error) => log::warn!("reading signals failed: {error}"),
        }
    }
}

/// Waits for open connections to end, at most the grace period.
async fn shut_down(shared: &Shared) {
    let deadline = Instant::now() + shared.limits.shutdown_grace;
    while shared.gate.total() > 0 && Instant::now() < deadline {
        Timer::after(Duration::from_millis(20)).await;
    }
}

/// Drops the last handle on the store, waiting briefly for deliveries still on the blocking
/// pool (their commits finish; they were never acknowledged if the connection is gone).
fn close_store(shared: Arc<Shared>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut shared = shared;
    loop {
        match Arc::try_unwrap(shared) {
            Ok(owned) => {
                match Arc::try_unwrap(owned.services) {
                    Ok(services) => drop(services),
                    Err(services) => {
                        log::warn!("store still in use at exit");
                        drop(services);
                    }
                }
                return;
            }
            Err(still_shared) if Instant::now() < deadline => {
                shared = still_shared;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => {
                log::warn!("store still in use at exit");
                return;
            }
        }
    }
}

async fn accept_loop(
    executor: Arc<Executor<'static>>,
    shared: Arc<Shared>,
    listener: TcpListener,
    implicit_tls: bool,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, usually: back off instead of spinning.
                log::warn!("accept failed: {error}");
                Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Without it a TLS 1.3 ticket write and the next reply meet the client's delayed
        // ACK: a 40 ms stall per connection.
        if let Err(error) = tcp.set_nodelay(true) {
            log::debug!("TCP_NODELAY failed for {peer}: {error}");
        }
        match shared.gate.admit(peer.ip()) {
            Ok(permit) => {
                let task = connection::serve(Arc::clone(&shared), tcp, peer, implicit_tls, permit);
                // A panic (a bug, or a log line to a closed stderr) ends this connection
                // only; unwinding drops its permit. The panic hook has already reported it.
                let task = AssertUnwindSafe(task).catch_unwind();
                executor
                    .spawn(async move {
                        let _ = task.await;
                    })
                    .detach();
            }
            Err(reply) => {
                logging::connection_refused(peer, &reply);
                refuse(&executor, &shared, tcp, peer, reply, implicit_tls).await;
            }
        }
    }
}

/// Sends the gate's `421` and closes; never waits on the client for long.
async fn refuse(
    executor: &Executor<'static>,
    shared: &Arc<Shared>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    reply: Reply,
    implicit_tls: bool,
) {
    let bytes = reply.to_bytes();
    if !implicit_tls {
        // A fresh socket's send buffer takes a few bytes at once; the deadline is a backstop.
        let _ = timeout(Duration::from_secs(1), tcp.write_all(&bytes)).await;
        let _ = tcp.shutdown(std::net::Shutdown::Write);
        return;
    }
    // On 465 the reply can only go inside TLS: handshake in a task, a bounded number at once.
    let Some(slot) = shared.refusals.try_enter() else {
        log::debug!("closing {peer} without a reply: too many refusals in flight");
        return;
    };
    let config = shared.tls.current();
    let deadline = shared
        .limits
        .tls_handshake_timeout
        .min(Duration::from_secs(5));
    executor
        .spawn(async move {
            let _slot = slot;
            if let Ok(mut tls) = handshake(config, tcp, deadline).await {
                let _ = timeout(deadline, async {
                    tls.write_all(&bytes).await?;
                    tls.close().await
                })
                .await;
            }
        })
        .detach();
}
