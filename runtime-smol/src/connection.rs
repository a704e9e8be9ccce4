//! One client connection as a task: moves bytes for a core `Connection` and carries out what
//! its session asks. No protocol decision is taken here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use atacama_core::connection::{Connection, Wait, Wake};
use atacama_core::logging::CloseOutcome;
use atacama_core::smtp::{
    AuthOutcome, AuthRequest, Channel, Delivery, DeliveryError, Event, MessageId, TlsInfo,
};
use atacama_server::server::{Admission, Deadlines, Submitted};
use smol::Timer;
use smol::future::FutureExt as _;
use smol::net::TcpStream;

use crate::server::Shared;
use crate::stream::{Stream, StreamError};

/// Serves one connection the gate admitted, or refused, to its end and logs it; what it
/// holds (its place in the gate) is let go of then.
pub async fn serve(shared: Arc<Shared>, tcp: TcpStream, admission: Admission) {
    let (peer, implicit_tls) = (admission.peer(), admission.implicit_tls);
    let deadlines = admission.deadlines;
    let (accepted, held) = admission.accept(|| tcp.local_addr().ok(), Instant::now());
    let mut io = Io {
        shared: Arc::clone(&shared),
        stream: Stream::Plain(tcp),
        peer,
        deadlines,
    };
    let channel = if implicit_tls {
        let aborted = async { Err(aborted(&shared).await) };
        match io.upgrade().or(aborted).await {
            Ok(info) => Channel::Implicit(info),
            Err(outcome) => return accepted.close(outcome, Instant::now()),
        }
    } else {
        Channel::Plain
    };
    let mut conn = accepted.start(shared.state.session.clone(), channel, Instant::now());
    // Past the grace period the connection's work is dropped wherever it waits.
    let outcome = io.run(&mut conn).or(aborted(&shared)).await;
    conn.close(outcome, Instant::now());
    drop(held);
}

/// Returns once the shutdown grace period is over.
pub(crate) async fn aborted(shared: &Shared) -> CloseOutcome {
    // The channel is never sent on: closing it is the broadcast.
    let _ = shared.abort.recv().await;
    CloseOutcome::Aborted
}

/// The socket side of a connection, and what it needs from the server.
pub(crate) struct Io {
    pub(crate) shared: Arc<Shared>,
    pub(crate) stream: Stream,
    pub(crate) peer: SocketAddr,
    pub(crate) deadlines: Deadlines,
}

impl Io {
    async fn run(&mut self, conn: &mut Connection) -> CloseOutcome {
        let write_timeout = self.deadlines.write;
        loop {
            while let Some(event) = conn.poll_event() {
                if let Err(outcome) = self.act(conn, event).await {
                    return outcome;
                }
            }
            // Replies sit in the TLS buffer until flushed: all of them go before we wait.
            if let Err(error) = self.stream.flush(write_timeout).await {
                return outcome_of(error);
            }
            let wait = match conn.wait() {
                Ok(wait) => wait,
                Err(outcome) => return outcome,
            };
            let wake = self.wait(wait).await;
            if let Err(outcome) = conn.woke(Instant::now(), wake) {
                return outcome;
            }
        }
    }

    /// Carries out one event. `Err` ends the connection with that outcome.
    async fn act(&mut self, conn: &mut Connection, event: Event) -> Result<(), CloseOutcome> {
        let write_timeout = self.deadlines.write;
        match event {
            Event::Transmit(bytes) => self
                .stream
                .write_all(&bytes, write_timeout)
                .await
                .map_err(outcome_of),
            Event::StartTls => {
                self.stream.flush(write_timeout).await.map_err(outcome_of)?;
                let info = self.upgrade().await?;
                conn.tls_established(Instant::now(), info)
            }
            Event::Authenticate(request) => {
                // Earlier replies go out before the (possibly long) check.
                self.stream.flush(write_timeout).await.map_err(outcome_of)?;
                let outcome = self.authenticate(request).await;
                conn.auth_result(Instant::now(), outcome)
            }
            Event::CheckMail(check) => {
                // A read and a statvfs: short enough to run where the session runs, unless
                // the read is a round trip to a database server.
                let services = &self.shared.state.services;
                let verdict = match services.check_mail_now(&check) {
                    Some(verdict) => verdict,
                    None => {
                        let (asking, waiting) = (Arc::clone(services), Arc::clone(services));
                        let asked = check.clone();
                        let timeout = services.store_timeout();
                        smol::future::or(
                            smol::unblock(move || asking.check_mail(&asked)),
                            async move {
                                Timer::after(timeout).await;
                                waiting.mail_check_timed_out(&check)
                            },
                        )
                        .await
                    }
                };
                conn.mail_checked(Instant::now(), verdict)
            }
            Event::Deliver(delivery) => {
                self.stream.flush(write_timeout).await.map_err(outcome_of)?;
                let result = self.deliver(delivery).await;
                conn.delivery_result(Instant::now(), result)
            }
            Event::Close => {
                self.stream.flush(write_timeout).await.map_err(outcome_of)?;
                self.stream.close(self.deadlines.linger).await;
                Err(conn.close_outcome())
            }
        }
    }

    /// Waits for ONE thing: bytes from the client, the session's deadline, or shutdown.
    pub(crate) async fn wait(&mut self, wait: Wait<'_>) -> Wake {
        let stop = self.shared.stop.clone();
        let read = async {
            if wait.buf.is_empty() {
                // The session takes no input now; only its deadline or shutdown can help.
                std::future::pending::<()>().await;
            }
            Wake::Read(self.stream.read(wait.buf).await)
        };
        let timer = async {
            match wait.deadline {
                Some(at) => {
                    Timer::at(at).await;
                }
                None => std::future::pending::<()>().await,
            }
            Wake::Deadline
        };
        let shutdown = async {
            if wait.shutdown {
                // The channel is never sent on: closing it is the broadcast.
                let _ = stop.recv().await;
                Wake::Shutdown
            } else {
                std::future::pending().await
            }
        };
        read.or(timer).or(shutdown).await
    }

    async fn upgrade(&mut self) -> Result<TlsInfo, CloseOutcome> {
        let config = self.shared.state.tls.current();
        self.stream
            .upgrade(config, self.deadlines.handshake)
            .await
            .map_err(outcome_of)
    }

    /// Throttle, then bcrypt on the verifier threads (which give up on a job queued too long,
    /// or at abort); always exactly one outcome.
    async fn authenticate(&self, request: AuthRequest) -> AuthOutcome {
        let state = &self.shared.state;
        let ticket = match state.auth.admit(self.peer.ip(), &request, Instant::now()) {
            Ok(ticket) => ticket,
            Err(outcome) => return outcome,
        };
        Timer::after(ticket.delay()).await;
        // Shared with the verifier, not copied: the password is held once.
        let request = Arc::new(request);
        let verdict = state.verifier.verify(Arc::clone(&request)).await;
        ticket.finish(&request, verdict, Instant::now())
    }

    /// Process and commit durably: batched by the committer, or on the blocking pool.
    async fn deliver(&self, delivery: Delivery) -> Result<MessageId, DeliveryError> {
        match self
            .shared
            .state
            .deliveries
            .submit(delivery, SystemTime::now())
        {
            Submitted::Queued(pending) => {
                let deadline = pending.deadline();
                let timed_out = pending.timed_out_later();
                smol::future::or(pending, async move {
                    Timer::at(deadline).await;
                    timed_out()
                })
                .await
            }
            Submitted::Direct(job) => smol::unblock(move || job.run()).await,
        }
    }
}

pub(crate) fn outcome_of(error: StreamError) -> CloseOutcome {
    match error {
        StreamError::Tls(why) => CloseOutcome::TlsFailed(why),
        StreamError::Io(why) => CloseOutcome::IoError(why),
    }
}
