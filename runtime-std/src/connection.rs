//! One client connection on its own thread: drives a core `Session`, moving bytes and
//! carrying out what it asks. No protocol decision is taken here.

use std::net::{SocketAddr, TcpStream};
use std::time::{Instant, SystemTime};

use atacama_core::logging::{self, CloseOutcome, ConnectionSummary};
use atacama_core::policy::ConnectionPermit;
use atacama_core::smtp::{
    AuthOutcome, AuthRequest, Channel, ConnInfo, Event, NotPending, Session, TlsInfo,
};

use crate::server::Shared;
use crate::stream::{Stream, StreamError, TICK, timed_out};

/// Bytes read at most per read; the session may ask for fewer.
const READ_CHUNK: usize = 16 * 1024;

/// Serves one accepted connection to its end and logs it; `permit` holds its place in the
/// connection gate until then.
pub fn serve(
    shared: &Shared,
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
        stream: Stream::new(tcp, shared.limits.write_timeout),
        peer,
        messages: 0,
        user: None,
        tls: None,
    };
    let outcome = connection.run(implicit_tls);
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

struct Connection<'a> {
    shared: &'a Shared,
    stream: Stream,
    peer: SocketAddr,
    messages: u32,
    user: Option<String>,
    tls: Option<TlsInfo>,
}

/// What ended a wait.
enum Wake {
    Read(std::io::Result<usize>),
    Deadline,
    Shutdown,
    /// The shutdown grace period is over.
    Abort,
}

impl Connection<'_> {
    fn run(&mut self, implicit_tls: bool) -> CloseOutcome {
        let channel = if implicit_tls {
            match self.upgrade() {
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
        let mut buf = vec![0u8; READ_CHUNK];
        let mut eof = false;
        let mut shutdown_seen = false;
        loop {
            while let Some(event) = session.poll_event() {
                if let Err(outcome) = self.act(&mut session, event, eof) {
                    self.user = session.user().map(str::to_string);
                    return outcome;
                }
            }
            self.user = session.user().map(str::to_string);
            if eof {
                // The session had its chance to answer what was buffered and did not close.
                return CloseOutcome::PeerClosed;
            }
            let capacity = session.read_capacity().min(buf.len());
            let wake = self.wait(
                buf.get_mut(..capacity).unwrap_or_default(),
                session.poll_timeout(),
                !shutdown_seen,
            );
            let now = Instant::now();
            match wake {
                Wake::Read(Ok(0)) => {
                    eof = true;
                    session.peer_closed(now);
                }
                // Invariant: read returns at most the slice length, which is <= buf.len().
                Wake::Read(Ok(n)) => session.receive(now, buf.get(..n).unwrap_or_default()),
                Wake::Read(Err(error)) => return CloseOutcome::IoError(error.to_string()),
                Wake::Deadline => session.handle_timeout(now),
                Wake::Shutdown => {
                    shutdown_seen = true;
                    session.shutdown(now);
                }
                Wake::Abort => return CloseOutcome::Aborted,
            }
        }
    }

    /// Carries out one event. `Err` ends the connection with that outcome.
    fn act(&mut self, session: &mut Session, event: Event, eof: bool) -> Result<(), CloseOutcome> {
        match event {
            // Written through at once: nothing is held back for a later flush.
            Event::Transmit(bytes) => self.stream.write_all(&bytes).map_err(outcome_of),
            Event::StartTls => {
                let info = self.upgrade()?;
                session
                    .tls_established(Instant::now(), info)
                    .map_err(runtime_bug)
            }
            Event::Authenticate(request) => {
                let outcome = self.authenticate(&request);
                session
                    .auth_result(Instant::now(), outcome)
                    .map_err(runtime_bug)
            }
            Event::Deliver(delivery) => {
                let result = self.shared.services.deliver(&delivery, SystemTime::now());
                if result.is_ok() {
                    self.messages += 1;
                }
                session
                    .delivery_result(Instant::now(), result)
                    .map_err(runtime_bug)
            }
            Event::Close => {
                self.stream.close(self.shared.limits.close_linger);
                Err(if eof {
                    CloseOutcome::PeerClosed
                } else {
                    CloseOutcome::Closed
                })
            }
        }
    }

    /// Waits for ONE thing: bytes from the client, the session's deadline, or shutdown.
    /// Each blocking read lasts at most a [`TICK`], so that a stop is seen soon.
    fn wait(&mut self, buf: &mut [u8], deadline: Option<Instant>, watch_shutdown: bool) -> Wake {
        loop {
            if self.shared.is_aborting() {
                return Wake::Abort;
            }
            if watch_shutdown && self.shared.is_stopping() {
                return Wake::Shutdown;
            }
            let now = Instant::now();
            let left = match deadline {
                Some(at) if at <= now => return Wake::Deadline,
                Some(at) => (at - now).min(TICK),
                None => TICK,
            };
            if buf.is_empty() {
                // The session takes no input now; only its deadline or shutdown can help.
                std::thread::sleep(left);
                continue;
            }
            match self.stream.read(buf, left) {
                Err(error) if timed_out(&error) => {}
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                result => return Wake::Read(result),
            }
        }
    }

    fn upgrade(&mut self) -> Result<TlsInfo, CloseOutcome> {
        let shared = self.shared;
        let info = self
            .stream
            .upgrade(
                shared.tls.current(),
                shared.limits.tls_handshake_timeout,
                &shared.aborting,
            )
            .map_err(outcome_of)?;
        self.tls = Some(info.clone());
        Ok(info)
    }

    /// Throttle, queue, then bcrypt on this thread; always exactly one outcome.
    fn authenticate(&self, request: &AuthRequest) -> AuthOutcome {
        let shared = self.shared;
        let ticket = match shared.auth.admit(self.peer.ip(), request, Instant::now()) {
            Ok(ticket) => ticket,
            Err(outcome) => return outcome,
        };
        std::thread::sleep(ticket.delay());
        let wait = shared.limits.verifier_wait_timeout;
        let Some(_running) = shared.verifiers.acquire(wait) else {
            return ticket.busy(request);
        };
        let verdict = shared.services.authenticate(request);
        ticket.finish(request, verdict, Instant::now())
    }
}

fn outcome_of(error: StreamError) -> CloseOutcome {
    match error {
        StreamError::Tls(why) => CloseOutcome::TlsFailed(why),
        StreamError::Io(why) => CloseOutcome::IoError(why),
        StreamError::Aborted => CloseOutcome::Aborted,
    }
}

/// The session refused a completion: a bug in this runtime, never the client's doing.
fn runtime_bug(error: NotPending) -> CloseOutcome {
    log::error!("runtime bug: {error}");
    CloseOutcome::IoError(format!("internal error: {error}"))
}
