//! One client connection: drives a core `Session`, moving bytes and carrying out what it
//! asks. No protocol decision is taken here.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use atacama_core::logging::{self, CloseOutcome, ConnectionSummary};
use atacama_core::policy::ConnectionPermit;
use atacama_core::smtp::{
    AuthOutcome, AuthRequest, Channel, ConnInfo, Delivery, DeliveryError, Event, MessageId, Session,
};
use smol::Timer;
use smol::future::FutureExt as _;
use smol::net::TcpStream;

use crate::server::Shared;
use crate::stream::{Stream, StreamError, timeout};

/// Bytes read at most per read once a client sends in bulk; the session may ask for fewer.
const READ_CHUNK: usize = 16 * 1024;
/// The read buffer of a new connection: commands are short, and idle connections are many.
const FIRST_READ_CHUNK: usize = 1024;

/// Serves one accepted connection to its end and logs it; `permit` holds its place in the
/// connection gate until then.
pub async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    permit: ConnectionPermit,
) {
    let started = Instant::now();
    if let Ok(local) = tcp.local_addr() {
        logging::connection_opened(peer, local);
    }
    let mut connection = Connection {
        shared,
        stream: Stream::Plain(tcp),
        peer,
        messages: 0,
        user: None,
        tls: None,
    };
    let outcome = connection.run(implicit_tls).await;
    logging::connection_closed(
        peer,
        &ConnectionSummary {
            tls: connection.tls,
            user: connection.user,
            messages: connection.messages,
            duration: started.elapsed(),
            outcome,
        },
    );
    drop(permit);
}

struct Connection {
    shared: Arc<Shared>,
    stream: Stream,
    peer: SocketAddr,
    messages: u32,
    user: Option<String>,
    tls: Option<atacama_core::smtp::TlsInfo>,
}

/// What ended a wait.
enum Wake {
    Read(std::io::Result<usize>),
    Deadline,
    Shutdown,
}

impl Connection {
    async fn run(&mut self, implicit_tls: bool) -> CloseOutcome {
        let channel = if implicit_tls {
            match self.upgrade().await {
                Ok(info) => Channel::Implicit(info),
                Err(outcome) => return outcome,
            }
        } else {
            Channel::Plain
        };
        let info = ConnInfo {
            peer: self.peer,
            channel,
        };
        let mut session = Session::new(self.shared.session.clone(), info, Instant::now());
        let mut buf = vec![0u8; FIRST_READ_CHUNK];
        let mut eof = false;
        let mut shutdown_seen = false;
        loop {
            while let Some(event) = session.poll_event() {
                if let Err(outcome) = self.act(&mut session, event, eof).await {
                    return outcome;
                }
            }
            if let Err(error) = self.stream.flush(self.shared.limits.write_timeout).await {
                return outcome_of(error);
            }
            if eof {
                // The session had its chance to answer what was buffered and did not close.
                return CloseOutcome::PeerClosed;
            }
            let capacity = session.read_capacity().min(buf.len());
            let wake = self
                .wait(
                    buf.get_mut(..capacity).unwrap_or_default(),
                    session.poll_timeout(),
                    !shutdown_seen,
                )
                .await;
            let now = Instant::now();
            match wake {
                Wake::Read(Ok(0)) => {
                    eof = true;
                    session.peer_closed(now);
                }
                // Invariant: read returns at most the slice length, which is <= buf.len().
                Wake::Read(Ok(n)) => {
                    session.receive(now, buf.get(..n).unwrap_or_default());
                    if n == buf.len() && buf.len() < READ_CHUNK {
                        // A full read: the client is sending a message, not a command.
                        buf.resize(READ_CHUNK, 0);
                    }
                }
                Wake::Read(Err(error)) => return CloseOutcome::IoError(error.to_string()),
                Wake::Deadline => session.handle_timeout(now),
                Wake::Shutdown => {
                    shutdown_seen = true;
                    session.shutdown(now);
                }
            }
        }
    }

    /// Carries out one event. `Err` ends the connection with that outcome.
    async fn act(
        &mut self,
        session: &mut Session,
        event: Event,
        eof: bool,
    ) -> Result<(), CloseOutcome> {
        let write_timeout = self.shared.limits.write_timeout;
        match event {
            Event::Transmit(bytes) => self
                .stream
                .write_all(&bytes, write_timeout)
                .await
                .map_err(outcome_of),
            Event::StartTls => {
                self.stream.flush(write_timeout).await.map_err(outcome_of)?;
                let info = self.upgrade().await?;
                session
                    .tls_established(Instant::now(), info)
                    .map_err(runtime_bug)
            }
            Event::Authenticate(request) => {
                // Earlier replies go out before the (possibly long) check.
                self.stream.flush(write_timeout).await.map_err(outcome_of)?;
                let outcome = self.authenticate(request).await;
                session
                    .auth_result(Instant::now(), outcome)
                    .map_err(runtime_bug)?;
                if let Some(user) = session.user() {
                    self.user = Some(user.to_string());
                }
                Ok(())
            }
            Event::Deliver(delivery) => {
                self.stream.flush(write_timeout).await.map_err(outcome_of)?;
                let result = self.deliver(delivery).await;
                if result.is_ok() {
                    self.messages += 1;
                }
                session
                    .delivery_result(Instant::now(), result)
                    .map_err(runtime_bug)
            }
            Event::Close => {
                self.stream.flush(write_timeout).await.map_err(outcome_of)?;
                self.stream.close(self.shared.limits.close_linger).await;
                Err(if eof {
                    CloseOutcome::PeerClosed
                } else {
                    CloseOutcome::Closed
                })
            }
        }
    }

    /// Waits for ONE thing: bytes from the client, the session's deadline, or shutdown.
    async fn wait(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
        watch_shutdown: bool,
    ) -> Wake {
        let stop = self.shared.stop.clone();
        let read = async {
            if buf.is_empty() {
                // The session takes no input now; only its deadline or shutdown can help.
                std::future::pending::<()>().await;
            }
            Wake::Read(self.stream.read(buf).await)
        };
        let timer = async {
            match deadline {
                Some(at) => {
                    Timer::at(at).await;
                }
                None => std::future::pending::<()>().await,
            }
            Wake::Deadline
        };
        let shutdown = async {
            if watch_shutdown {
                // The channel is never sent on: closing it is the broadcast.
                let _ = stop.recv().await;
                Wake::Shutdown
            } else {
                std::future::pending().await
            }
        };
        read.or(timer).or(shutdown).await
    }

    async fn upgrade(&mut self) -> Result<atacama_core::smtp::TlsInfo, CloseOutcome> {
        let config = self.shared.tls.current();
        let deadline = self.shared.limits.tls_handshake_timeout;
        let info = self
            .stream
            .upgrade(config, deadline)
            .await
            .map_err(outcome_of)?;
        self.tls = Some(info.clone());
        Ok(info)
    }

    /// Throttle, queue, then bcrypt on the blocking pool; always exactly one outcome.
    async fn authenticate(&self, request: AuthRequest) -> AuthOutcome {
        let shared = &self.shared;
        let ticket = match shared.auth.admit(self.peer.ip(), &request, Instant::now()) {
            Ok(ticket) => ticket,
            Err(outcome) => return outcome,
        };
        Timer::after(ticket.delay()).await;
        let wait = shared.limits.verifier_wait_timeout;
        let Some(_running) = timeout(wait, shared.verifiers.acquire_arc()).await else {
            return ticket.busy(&request);
        };
        let services = Arc::clone(&shared.services);
        let (request, verdict) = smol::unblock(move || {
            // A panicking verifier must still end the AUTH with one reply.
            let verdict =
                std::panic::catch_unwind(AssertUnwindSafe(|| services.authenticate(&request)))
                    .unwrap_or(AuthOutcome::TemporaryFailure);
            (request, verdict)
        })
        .await;
        ticket.finish(&request, verdict, Instant::now())
    }

    /// Process and commit durably, batched with other connections' messages.
    async fn deliver(&self, delivery: Delivery) -> Result<MessageId, DeliveryError> {
        self.shared
            .committer
            .deliver(delivery, SystemTime::now())
            .await
    }
}

fn outcome_of(error: StreamError) -> CloseOutcome {
    match error {
        StreamError::Tls(why) => CloseOutcome::TlsFailed(why),
        StreamError::Io(why) => CloseOutcome::IoError(why),
    }
}

/// The session refused a completion: a bug in this runtime, never the client's doing.
fn runtime_bug(error: atacama_core::smtp::NotPending) -> CloseOutcome {
    log::error!("runtime bug: {error}");
    CloseOutcome::IoError(format!("internal error: {error}"))
}
