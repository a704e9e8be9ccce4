//! Listeners, the accept loops, signals and the shutdown sequence: the life of a server as
//! `atacama_server::server` lays it out, on a smol executor.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_signal::{Signal, Signals};
use atacama_core::config::Config;
use atacama_core::logging;
use atacama_server::server::{self, AfterSignal, ServerState};
use atacama_server::{priority, systemd};
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt as _;
use smol::net::{TcpListener, TcpStream};
use smol::stream::StreamExt as _;
use smol::{Executor, Timer};

use crate::{connection, web};

/// What every connection shares.
pub struct Shared {
    /// What both runtimes share: store, limits, certificate, gate, throttle.
    pub state: ServerState,
    /// Closed (never sent on) when the server stops: idle sessions answer `421 4.3.0`.
    pub stop: Receiver<()>,
    /// Closed (never sent on) when the grace period is over: every connection ends.
    pub abort: Receiver<()>,
}

/// A bound server, ready to run.
pub struct Server {
    shared: Arc<Shared>,
    stop: Sender<()>,
    abort: Sender<()>,
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
        let signals = Signals::new([Signal::Term, Signal::Int, Signal::Hup])?;
        let state = ServerState::open(config)?;
        let bound = server::bind(config)?;
        let mut listeners = Vec::new();
        for bound in bound.mail {
            listeners.push((TcpListener::try_from(bound.socket)?, bound.implicit_tls));
        }
        let mut web_listeners = Vec::new();
        for socket in bound.web {
            web_listeners.push(TcpListener::try_from(socket)?);
        }
        let (stop, stopped) = smol::channel::bounded(1);
        let (abort, aborted) = smol::channel::bounded(1);
        let shared = Shared {
            state,
            stop: stopped,
            abort: aborted,
        };
        Ok(Server {
            shared: Arc::new(shared),
            stop,
            abort,
            signals,
            listeners,
            web_listeners,
        })
    }

    /// Serves until SIGTERM or SIGINT, then shuts down: stop accepting, `421 4.3.0` to idle
    /// sessions, up to `shutdown_grace` for transactions in progress, close the store.
    pub fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let threads = executor_threads(cores);
        let executor = Arc::new(Executor::new());
        // The web side's own (see `web_threads`): SMTP keeps its thread under a web load.
        let web_executor = Arc::new(Executor::new());
        let (done, finished) = smol::channel::bounded::<()>(1);
        // Closed however the main future ends, even by a panic: the worker threads must
        // stop, or the scope below would wait for them forever.
        let done = CloseOnDrop(done);
        let Server {
            shared,
            stop,
            abort,
            mut signals,
            listeners,
            web_listeners,
        } = self;
        let mut listening = Vec::new();
        for (listener, implicit_tls) in &listeners {
            listening.push((listener.local_addr()?, *implicit_tls));
        }
        let mut web_listening = Vec::new();
        for listener in &web_listeners {
            web_listening.push(listener.local_addr()?);
        }
        // Returning early (a web thread that could not start) drops `done`, which lets the
        // threads started so far end, so that the scope does not wait for them forever.
        let started = std::thread::scope(|scope| -> std::io::Result<()> {
            for _ in 1..threads {
                let executor = Arc::clone(&executor);
                let finished = finished.clone();
                scope.spawn(move || smol::block_on(executor.run(finished.recv())));
            }
            if !web_listeners.is_empty() {
                for _ in 0..web_threads(cores) {
                    let executor = Arc::clone(&web_executor);
                    let finished = finished.clone();
                    // Named, like std's "http" threads: `top -H` tells web from mail.
                    let started = std::thread::Builder::new().name("web".into()).spawn_scoped(
                        scope,
                        move || {
                            priority::lower_thread_priority(priority::WEB_NICE);
                            smol::block_on(executor.run(finished.recv()))
                        },
                    );
                    started?;
                }
            }
            let main = async {
                let mut accepting = Vec::new();
                for (listener, implicit_tls) in listeners {
                    let task = accept_loop(
                        Arc::clone(&executor),
                        Arc::clone(&shared),
                        listener,
                        implicit_tls,
                    );
                    accepting.push(executor.spawn(task));
                }
                for listener in web_listeners {
                    let task =
                        web_accept_loop(Arc::clone(&web_executor), Arc::clone(&shared), listener);
                    accepting.push(web_executor.spawn(task));
                }
                server::ready(&listening, &web_listening);
                if let Some(interval) = systemd::watchdog_interval() {
                    // Pinged from the executor: a stuck executor stops the pings, and so
                    // does a store that failed for good.
                    let shared = Arc::clone(&shared);
                    accepting.push(executor.spawn(async move {
                        while !shared.state.store_failed() {
                            systemd::watchdog();
                            Timer::after(interval).await;
                        }
                    }));
                }
                // A store that failed for good ends the wait as a stop signal would.
                let (store_failed, failure) = smol::channel::bounded::<()>(1);
                shared.state.when_store_fails(move || {
                    store_failed.close();
                });
                wait_for_stop(&mut signals, &shared.state)
                    .or(async {
                        let _ = failure.recv().await;
                    })
                    .await;
                // Cancelling the accept tasks drops the listeners: new connections are refused.
                // (Under socket activation systemd keeps its copy and queues them instead.)
                // Awaited, not just dropped: a dropped task leaves its future for the executor
                // to drop when next it runs, and each accept loop holds the executor, so the
                // executor and the shared state would keep each other alive past the end.
                for task in accepting {
                    task.cancel().await;
                }
                stop.close();
                let state = &shared.state;
                drain(state, state.grace_deadline(Instant::now())).await;
                if state.abort_open() > 0 {
                    abort.close();
                    drain(state, Instant::now() + server::STORE_CLOSE_WAIT).await;
                }
            };
            smol::block_on(executor.run(main));
            drop(done);
            Ok(())
        });
        // Connection tasks still alive hold the shared state: drop them, then the store.
        drop(executor);
        drop(web_executor);
        let failed = shared.state.run_error();
        server::close(shared, |shared| shared.state);
        started?;
        failed.map_or(Ok(()), |error| Err(error.into()))
    }
}

/// Closes the channel when dropped.
struct CloseOnDrop(Sender<()>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Handles SIGHUP until SIGTERM or SIGINT.
async fn wait_for_stop(signals: &mut Signals, state: &ServerState) {
    while let Some(signal) = signals.next().await {
        let signal = match signal {
            Ok(Signal::Hup) => server::Signal::Hangup,
            Ok(Signal::Term) => server::Signal::Terminate,
            Ok(Signal::Int) => server::Signal::Interrupt,
            // Not registered for any other.
            Ok(_) => continue,
            Err(error) => {
                logging::signals_failed(&error);
                continue;
            }
        };
        if state.on_signal(signal) == AfterSignal::ShutDown {
            return;
        }
    }
}

/// Waits for the open connections to end, until `until` at most.
async fn drain(state: &ServerState, until: Instant) {
    while let Some(pause) = state.next_drain_check(Instant::now(), until) {
        Timer::after(pause).await;
    }
}

async fn accept_loop(
    executor: Arc<Executor<'static>>,
    shared: Arc<Shared>,
    listener: TcpListener,
    implicit_tls: bool,
) {
    loop {
        let (tcp, peer) = next_connection(&listener).await;
        let Some(admission) = shared.state.admit(peer, implicit_tls) else {
            continue;
        };
        // A refusal on the plaintext port is served here: its `421` goes out at once.
        let inline = admission.inline;
        run_or_spawn(
            &executor,
            inline,
            connection::serve(Arc::clone(&shared), tcp, admission),
        )
        .await;
    }
}

async fn web_accept_loop(
    executor: Arc<Executor<'static>>,
    shared: Arc<Shared>,
    listener: TcpListener,
) {
    loop {
        let (tcp, peer) = next_connection(&listener).await;
        let local = tcp.local_addr().ok();
        let conn = shared
            .state
            .admit_http(peer, local, Instant::now(), SystemTime::now());
        // A `503` over the cap is served here: it goes out at once.
        let inline = conn.inline;
        run_or_spawn(
            &executor,
            inline,
            web::serve(Arc::clone(&shared), tcp, conn),
        )
        .await;
    }
}

/// The next connection `listener` accepts, with Nagle off.
async fn next_connection(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                // Without it a TLS 1.3 ticket write and the next reply (or the next web
                // request's response) meet the client's delayed ACK: a 40 ms stall.
                if let Err(error) = tcp.set_nodelay(true) {
                    logging::nodelay_failed(peer, &error);
                }
                return (tcp, peer);
            }
            Err(error) => {
                logging::accept_failed(&error);
                Timer::after(server::ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Runs a connection's task here (`inline`) or on `executor`. A panic (a bug, or a log line
/// to a closed stderr) ends that connection only; unwinding drops what it holds, and the
/// panic hook has already reported it.
async fn run_or_spawn(
    executor: &Executor<'static>,
    inline: bool,
    task: impl Future<Output = ()> + Send + 'static,
) {
    let task = AssertUnwindSafe(task).catch_unwind();
    if inline {
        let _ = task.await;
    } else {
        executor
            .spawn(async move {
                let _ = task.await;
            })
            .detach();
    }
}

/// Executor threads for `cores` CPUs: half of them, 1 to 4. The executor only moves bytes
/// through TLS and runs the sessions; parsing, commits and bcrypt have threads of their own,
/// which want the other half. A wake-up that crosses threads costs more than the little work
/// it hands over: on the 2-core sandbox, with the data dir on tmpfs so that fsync does not
/// hide it, one executor thread instead of two gave 705 → 967 and 612 → 842 msg/s on one
/// lock-step connection, and 3 976 → 4 998 and 3 803 → 4 688 msg/s on 20.
fn executor_threads(cores: usize) -> usize {
    (cores / 2).clamp(1, 4)
}

/// Threads of the web side's executor for `cores` CPUs: four per core, 4 to 16. Its requests
/// read the store and render inline (the hop to the blocking pool and back doubled a
/// request's CPU, 74 → 34 µs), so its threads are the web side's whole share of the CPU, and
/// beside other busy processes the scheduler shares by thread: on the 2-core sandbox beside
/// compilers, 2, 4 and 8 threads served 24 762, 28 038 and 37 229 requests/s of /messages/1 at
/// the same 32 µs of CPU a request (std's thread per connection: 45 220 at 30 µs).
fn web_threads(cores: usize) -> usize {
    cores.saturating_mul(4).clamp(4, 16)
}

#[cfg(test)]
mod tests {
    use super::{executor_threads, web_threads};

    #[test]
    fn the_executor_takes_half_the_cores_and_at_least_one() {
        let threads: Vec<usize> = [1, 2, 3, 4, 8, 16].map(executor_threads).to_vec();
        assert_eq!(threads, [1, 1, 1, 2, 4, 4]);
    }

    #[test]
    fn the_web_executor_takes_four_threads_a_core_from_4_to_16() {
        let threads: Vec<usize> = [1, 2, 3, 4, 8, 16].map(web_threads).to_vec();
        assert_eq!(threads, [4, 8, 12, 16, 16, 16]);
    }
}
