//! One client connection on its own thread: moves bytes for a core `Connection` and carries
//! out what its session asks. No protocol decision is taken here.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use atacama_core::connection::{Accepted, Connection, Wait, Wake};
use atacama_core::logging::CloseOutcome;
use atacama_core::policy::ConnectionPermit;
use atacama_core::smtp::{AuthOutcome, AuthRequest, Channel, Event, TlsInfo};
use atacama_server::server::Submitted;

use crate::server::Shared;
use crate::stream::{Stream, StreamError, TICK, timed_out};

/// Serves one accepted connection to its end and logs it; `permit` holds its place in the
/// connection gate until then.
pub fn serve(
    shared: &Shared,
    tcp: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    permit: ConnectionPermit,
) {
    let accepted = Accepted::new(peer, tcp.local_addr().ok(), Instant::now());
    let mut io = Io {
        shared,
        stream: Stream::new(tcp, shared.state.limits.write_timeout),
        peer,
    };
    let channel = if implicit_tls {
        match io.upgrade() {
            Ok(info) => Channel::Implicit(info),
            Err(outcome) => return accepted.close(outcome, Instant::now()),
        }
    } else {
        Channel::Plain
    };
    let mut conn = accepted.start(shared.state.session.clone(), channel, Instant::now());
    let outcome = io.run(&mut conn);
    conn.close(outcome, Instant::now());
    drop(permit);
}

/// The socket side of a connection, and what it needs from the server.
struct Io<'a> {
    shared: &'a Shared,
    stream: Stream,
    peer: SocketAddr,
}

impl Io<'_> {
    fn run(&mut self, conn: &mut Connection) -> CloseOutcome {
        loop {
            while let Some(event) = conn.poll_event() {
                if let Err(outcome) = self.act(conn, event) {
                    return outcome;
                }
            }
            let wait = match conn.wait() {
                Ok(wait) => wait,
                Err(outcome) => return outcome,
            };
            let wake = self.wait(wait);
            if let Err(outcome) = conn.woke(Instant::now(), wake) {
                return outcome;
            }
        }
    }

    /// Carries out one event. `Err` ends the connection with that outcome.
    fn act(&mut self, conn: &mut Connection, event: Event) -> Result<(), CloseOutcome> {
        match event {
            // Written through at once: nothing is held back for a later flush.
            Event::Transmit(bytes) => self.stream.write_all(&bytes).map_err(outcome_of),
            Event::StartTls => {
                let info = self.upgrade()?;
                conn.tls_established(Instant::now(), info)
            }
            Event::Authenticate(request) => {
                let outcome = self.authenticate(request);
                conn.auth_result(Instant::now(), outcome)
            }
            Event::CheckMail(check) => {
                // A read and a statvfs: short enough to run where the session runs.
                let verdict = self.shared.state.services.check_mail(&check);
                conn.mail_checked(Instant::now(), verdict)
            }
            Event::Deliver(delivery) => {
                let deliveries = &self.shared.state.deliveries;
                let result = match deliveries.submit(delivery, SystemTime::now()) {
                    Submitted::Queued(pending) => pending.wait(),
                    Submitted::Direct(job) => job.run(),
                };
                conn.delivery_result(Instant::now(), result)
            }
            Event::Close => {
                self.stream.close(self.shared.state.limits.close_linger);
                Err(conn.close_outcome())
            }
        }
    }

    /// Waits for ONE thing: bytes from the client, the session's deadline, or shutdown.
    /// Each blocking read lasts at most a [`TICK`], so that a stop is seen soon.
    fn wait(&mut self, wait: Wait<'_>) -> Wake {
        loop {
            if self.shared.is_aborting() {
                return Wake::Abort;
            }
            if wait.shutdown && self.shared.is_stopping() {
                return Wake::Shutdown;
            }
            let left = match wait.deadline {
                Some(at) => match at.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(TICK),
                    _ => return Wake::Deadline,
                },
                None => TICK,
            };
            if wait.buf.is_empty() {
                // The session takes no input now; only its deadline or shutdown can help.
                std::thread::sleep(left);
                continue;
            }
            match self.stream.read(wait.buf, left) {
                Err(error) if timed_out(&error) => {}
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                result => return Wake::Read(result),
            }
        }
    }

    fn upgrade(&mut self) -> Result<TlsInfo, CloseOutcome> {
        let shared = self.shared;
        self.stream
            .upgrade(
                shared.state.tls.current(),
                shared.state.limits.tls_handshake_timeout,
                &shared.aborting,
            )
            .map_err(outcome_of)
    }

    /// Throttle, then bcrypt on the verifier threads (which give up on a job queued too long,
    /// or at abort); always exactly one outcome.
    fn authenticate(&self, request: AuthRequest) -> AuthOutcome {
        let state = &self.shared.state;
        let ticket = match state.auth.admit(self.peer.ip(), &request, Instant::now()) {
            Ok(ticket) => ticket,
            Err(outcome) => return outcome,
        };
        std::thread::sleep(ticket.delay());
        // Shared with the verifier, not copied: the password is held once.
        let request = Arc::new(request);
        let verdict = state.verifier.verify(Arc::clone(&request)).wait();
        ticket.finish(&request, verdict, Instant::now())
    }
}

fn outcome_of(error: StreamError) -> CloseOutcome {
    match error {
        StreamError::Tls(why) => CloseOutcome::TlsFailed(why),
        StreamError::Io(why) => CloseOutcome::IoError(why),
        StreamError::Aborted => CloseOutcome::Aborted,
    }
}
