//! One client connection on its own thread: moves bytes for a core `Connection` and carries
//! out what its session asks. No protocol decision is taken here.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Instant, SystemTime};

use atacama_core::connection::{Connection, Wait, Wake};
use atacama_core::logging::CloseOutcome;
use atacama_core::smtp::{AuthOutcome, AuthRequest, Channel, Event, TlsInfo};
use atacama_server::server::{Admission, Deadlines, Submitted};

use crate::server::Shared;
use crate::sockets::Registration;
use crate::stream::{Stream, StreamError, timed_out};

/// Serves one connection the gate admitted, or refused, to its end and logs it; what it
/// holds (its place in the gate) is let go of then.
pub fn serve(shared: &Shared, tcp: TcpStream, admission: Admission) {
    let (peer, implicit_tls) = (admission.peer(), admission.implicit_tls);
    let deadlines = admission.deadlines;
    let (accepted, held) = admission.accept(|| tcp.local_addr().ok(), Instant::now());
    let tcp = Arc::new(tcp);
    let mut io = Io {
        shared,
        registration: shared.sockets.register(&tcp),
        stream: Stream::new(tcp, deadlines.write),
        peer,
        deadlines,
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
    drop(held);
}

/// The socket side of a connection, and what it needs from the server.
pub(crate) struct Io<'a> {
    pub(crate) shared: &'a Shared,
    /// How the stop and the abort wake this thread.
    pub(crate) registration: Registration<'a>,
    pub(crate) stream: Stream,
    pub(crate) peer: SocketAddr,
    pub(crate) deadlines: Deadlines,
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
            let stop_unseen = wait.shutdown;
            let wake = self.wait(wait);
            let stopped = !matches!(wake, Wake::Shutdown | Wake::Abort)
                && stop_unseen
                && self.shared.is_stopping();
            if stopped {
                // The stop came during the wait: the session learns of it before of what
                // ended the wait (an idle one closes, and ignores a command read meanwhile).
                if let Err(outcome) = conn.woke(Instant::now(), Wake::Shutdown) {
                    return outcome;
                }
            }
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
                // A read and a statvfs where the session runs, but a database server's
                // read waits at most limits.store_timeout_secs.
                let verdict = self.shared.state.services.check_mail_within_timeout(&check);
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
                self.stream.close(self.deadlines.linger);
                Err(conn.close_outcome())
            }
        }
    }

    /// Waits for ONE thing: bytes from the client, the session's deadline, the stop or the
    /// abort. The thread blocks until one of them comes; the stop and the abort wake it
    /// through its registration (see `crate::sockets`), the stop only when it waits idle.
    pub(crate) fn wait(&mut self, wait: Wait<'_>) -> Wake {
        // Marked before the flags are read, cleared before the caller reads them again.
        self.registration.set_idle(wait.shutdown && wait.idle);
        let wake = self.block(wait);
        self.registration.set_idle(false);
        wake
    }

    fn block(&mut self, wait: Wait<'_>) -> Wake {
        loop {
            if self.shared.is_aborting() {
                return Wake::Abort;
            }
            if wait.shutdown && self.shared.is_stopping() {
                return Wake::Shutdown;
            }
            let left = match wait.deadline {
                Some(at) => match at.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Wake::Deadline,
                },
                None => None,
            };
            if wait.buf.is_empty() || self.registration.woken() {
                // Nothing can be read now: only the deadline, or the stop or the abort
                // (which unpark the thread), can help. A spurious wake-up only loops.
                match left {
                    Some(left) => thread::park_timeout(left),
                    None => thread::park(),
                }
                continue;
            }
            match self.stream.read(wait.buf, left) {
                Err(error) if timed_out(&error) => {}
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(n) if n > 0 => return Wake::Read(Ok(n)),
                // Our own shutdown of the socket ends the read as the client's close would;
                // the flags, at the top of the loop, say which it was.
                _ if self.registration.woken() => {}
                result => return Wake::Read(result),
            }
        }
    }

    fn upgrade(&mut self) -> Result<TlsInfo, CloseOutcome> {
        let shared = self.shared;
        self.stream
            .upgrade(
                shared.state.tls.current(),
                self.deadlines.handshake,
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

pub(crate) fn outcome_of(error: StreamError) -> CloseOutcome {
    match error {
        StreamError::Tls(why) => CloseOutcome::TlsFailed(why),
        StreamError::Io(why) => CloseOutcome::IoError(why),
        StreamError::Aborted => CloseOutcome::Aborted,
    }
}
