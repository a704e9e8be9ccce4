//! The bookkeeping of one connection's loop, the same in both runtimes: which session input
//! a wake-up becomes, when the loop ends and with which outcome, the read buffer, and the
//! `connection open` / `connection close` log lines. The runtime keeps the socket, the
//! waits, and the work behind each event; like the session it drives, this reads no clock
//! and no socket (`now` and the bytes read are arguments).
//!
//! A connection the gate refused goes through the same loop: its only events are the
//! gate's `421` and the close (after the handshake, on the implicit-TLS port), and it logs
//! nothing more than the gate's `connection refused`.
//!
//! ```text
//! let accepted = Accepted::new(peer, local, now);                  // `connection open`
//! //          or Accepted::refused(peer, reply, now);              // over a cap
//! // implicit TLS: handshake first; if it fails, accepted.close(TlsFailed(..), now)
//! let mut conn = accepted.start(config, channel, now);
//! let outcome = loop {
//!     while let Some(event) = conn.poll_event() { act; completions go to conn }
//!     let wait = match conn.wait() { Ok(wait) => wait, Err(outcome) => break outcome };
//!     // ONE of: a read into wait.buf, wait.deadline, the stop (if wait.shutdown), the abort
//!     let wake: Wake = …;
//!     if let Err(outcome) = conn.woke(now, wake) { break outcome }
//! };
//! conn.close(outcome, now);                                        // `connection close`
//! ```

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use crate::logging::{self, CloseOutcome, ConnectionSummary};
use crate::smtp::{
    AuthOutcome, Channel, ConnInfo, DeliveryError, Event, MailVerdict, MessageId, NotPending,
    Reply, Session, SessionConfig, TlsInfo,
};

/// The read buffer of a new connection: commands are short, and idle connections are many.
pub const FIRST_READ_CHUNK: usize = 1024;
/// What the read buffer grows to once a read fills it: the client is sending a message.
pub const READ_CHUNK: usize = 16 * 1024;

/// A connection the gate admitted (or refused), before its session starts (on 465: before
/// the handshake).
#[derive(Debug)]
#[must_use = "a connection must end in `close` or `start`"]
pub struct Accepted {
    peer: SocketAddr,
    started: Instant,
    /// The gate's reply, for a connection over a cap: all it will be told.
    refusal: Option<Reply>,
}

/// A connection with its session (or its refusal): drive it with the loop in the module docs.
#[derive(Debug)]
#[must_use = "a connection must end in `close`"]
pub struct Connection {
    peer: SocketAddr,
    started: Instant,
    driver: Driver,
    /// The client closed its side; nothing more will be read.
    eof: bool,
    /// `Session::shutdown` was called; the stop needs no more watching.
    shutdown_seen: bool,
    /// Where reads go; grows from [`FIRST_READ_CHUNK`] to [`READ_CHUNK`] on a full read.
    buf: Vec<u8>,
}

/// What produces a connection's events.
#[derive(Debug)]
enum Driver {
    /// Boxed: a refusal, the other kind, is a few bytes.
    Session(Box<Session>),
    /// Over a cap: the gate's reply, then the close.
    Refusal(Refusal),
}

/// The events of a refused connection: the reply, then the close, then nothing.
#[derive(Debug)]
struct Refusal {
    reply: Option<Reply>,
    closed: bool,
}

/// What a runtime waits for next: ONE of these, whichever comes first.
#[derive(Debug, PartialEq, Eq)]
pub struct Wait<'a> {
    /// Read at most this many bytes, into here; empty means do not read at all now.
    pub buf: &'a mut [u8],
    /// When the deadline passes ([`Wake::Deadline`]); `None`: no deadline.
    pub deadline: Option<Instant>,
    /// Whether the server stopping should wake the connection ([`Wake::Shutdown`]).
    pub shutdown: bool,
    /// No mail transaction is in progress: the stop would end the session at once. Only
    /// then may a runtime end the wait's read to tell it of the stop (runtime-std shuts the
    /// socket's read side); a transaction's reads must go on until its end.
    pub idle: bool,
}

/// What ended a runtime's wait; [`Connection::woke`] turns it into session input.
#[derive(Debug)]
pub enum Wake {
    /// A read into [`Wait::buf`] ended: `Ok(0)` is the client's FIN, `Ok(n)` the first `n`
    /// bytes of the buffer.
    Read(io::Result<usize>),
    /// [`Wait::deadline`] passed.
    Deadline,
    /// The server is stopping (watched only while [`Wait::shutdown`] says so).
    Shutdown,
    /// The shutdown grace period is over: the connection ends now.
    Abort,
}

impl Accepted {
    /// Logs `connection open` (when the local address is known) and starts the clock.
    pub fn new(peer: SocketAddr, local: Option<SocketAddr>, now: Instant) -> Accepted {
        if let Some(local) = local {
            logging::connection_opened(peer, local);
        }
        Accepted {
            peer,
            started: now,
            refusal: None,
        }
    }

    /// A connection the gate refused with `reply` (and logged as `connection refused`): its
    /// only events will be that reply and the close, and it logs nothing more.
    pub fn refused(peer: SocketAddr, reply: Reply, now: Instant) -> Accepted {
        Accepted {
            peer,
            started: now,
            refusal: Some(reply),
        }
    }

    /// Whether this is a refusal ([`Accepted::refused`]).
    pub fn is_refusal(&self) -> bool {
        self.refusal.is_some()
    }

    /// Starts the session on `channel`; its greeting is the first event. A refusal starts
    /// no session (`config` goes unused): its reply is the first event, the close the next.
    pub fn start(self, config: SessionConfig, channel: Channel, now: Instant) -> Connection {
        let (driver, buf) = match self.refusal {
            Some(reply) => {
                let refusal = Refusal {
                    reply: Some(reply),
                    closed: false,
                };
                // Nothing is read from a refused connection.
                (Driver::Refusal(refusal), Vec::new())
            }
            None => {
                let info = ConnInfo {
                    peer: self.peer,
                    channel,
                };
                let session = Box::new(Session::new(config, info, now));
                (Driver::Session(session), vec![0; FIRST_READ_CHUNK])
            }
        };
        Connection {
            peer: self.peer,
            started: self.started,
            driver,
            eof: false,
            shutdown_seen: false,
            buf,
        }
    }

    /// Ends a connection that never got a session (the handshake on 465 failed, or the
    /// server stopped first) and logs it; a refusal's end is not logged.
    pub fn close(self, outcome: CloseOutcome, now: Instant) {
        if self.refusal.is_some() {
            return;
        }
        let summary = ConnectionSummary {
            tls: None,
            user: None,
            messages: 0,
            duration: now.saturating_duration_since(self.started),
            outcome,
        };
        logging::connection_closed(self.peer, &summary);
    }
}

impl Connection {
    /// The next event of the session; act on each in order, and drain this before waiting.
    pub fn poll_event(&mut self) -> Option<Event> {
        match &mut self.driver {
            Driver::Session(session) => session.poll_event(),
            Driver::Refusal(refusal) => refusal.poll_event(),
        }
    }

    /// What to wait for next, or how the connection ended: once the client has closed its
    /// side and the session has answered what it had, there is nothing left to wait for;
    /// a refusal has nothing to wait for at all.
    pub fn wait(&mut self) -> Result<Wait<'_>, CloseOutcome> {
        if self.eof {
            return Err(CloseOutcome::PeerClosed);
        }
        let Driver::Session(session) = &self.driver else {
            return Err(CloseOutcome::Refused);
        };
        let capacity = session.read_capacity().min(self.buf.len());
        Ok(Wait {
            // Invariant: capacity <= buf.len().
            buf: self.buf.get_mut(..capacity).unwrap_or_default(),
            deadline: session.poll_timeout(),
            shutdown: !self.shutdown_seen,
            idle: session.is_idle(),
        })
    }

    /// Feeds what ended the wait to the session. `Err` ends the connection with that
    /// outcome: a read error, or the abort.
    ///
    /// A TLS connection that ends without close_notify (a read's `UnexpectedEof`) is still
    /// the client's close: many clients hang up that way, and SMTP needs no truncation
    /// protection, as nothing counts before its CR LF or its CR LF . CR LF.
    pub fn woke(&mut self, now: Instant, wake: Wake) -> Result<(), CloseOutcome> {
        let Driver::Session(session) = &mut self.driver else {
            // A refusal never waits (its `wait` ends the loop): nothing can wake it.
            return Err(match wake {
                Wake::Abort => CloseOutcome::Aborted,
                Wake::Read(_) | Wake::Deadline | Wake::Shutdown => CloseOutcome::Refused,
            });
        };
        match wake {
            Wake::Read(result) => return self.read_finished(now, result),
            Wake::Deadline => session.handle_timeout(now),
            Wake::Shutdown => {
                self.shutdown_seen = true;
                session.shutdown(now);
            }
            Wake::Abort => return Err(CloseOutcome::Aborted),
        }
        Ok(())
    }

    /// The handshake asked for by [`Event::StartTls`] succeeded.
    pub fn tls_established(&mut self, now: Instant, info: TlsInfo) -> Result<(), CloseOutcome> {
        self.session_mut()?
            .tls_established(now, info)
            .map_err(runtime_bug)
    }

    /// The verdict on [`Event::Authenticate`].
    pub fn auth_result(&mut self, now: Instant, outcome: AuthOutcome) -> Result<(), CloseOutcome> {
        self.session_mut()?
            .auth_result(now, outcome)
            .map_err(runtime_bug)
    }

    /// The verdict on [`Event::CheckMail`].
    pub fn mail_checked(&mut self, now: Instant, verdict: MailVerdict) -> Result<(), CloseOutcome> {
        self.session_mut()?
            .mail_checked(now, verdict)
            .map_err(runtime_bug)
    }

    /// The outcome of [`Event::Deliver`].
    pub fn delivery_result(
        &mut self,
        now: Instant,
        result: Result<MessageId, DeliveryError>,
    ) -> Result<(), CloseOutcome> {
        self.session_mut()?
            .delivery_result(now, result)
            .map_err(runtime_bug)
    }

    /// How the connection ended when the session asked to close ([`Event::Close`]).
    pub fn close_outcome(&self) -> CloseOutcome {
        let Driver::Session(session) = &self.driver else {
            return CloseOutcome::Refused;
        };
        match session.close_reason() {
            Some(reason) => CloseOutcome::Closed(reason),
            // Not reached: the session names its reason with every `Event::Close`.
            None => CloseOutcome::PeerClosed,
        }
    }

    /// The session, e.g. for its user or TLS parameters; `None` for a refusal.
    pub fn session(&self) -> Option<&Session> {
        match &self.driver {
            Driver::Session(session) => Some(session),
            Driver::Refusal(_) => None,
        }
    }

    /// Logs `connection close` with what the session learnt; a refusal logs nothing (the
    /// gate logged `connection refused`).
    pub fn close(self, outcome: CloseOutcome, now: Instant) {
        let Driver::Session(session) = &self.driver else {
            return;
        };
        let summary = ConnectionSummary {
            tls: session.tls().cloned(),
            user: session.user().map(str::to_string),
            messages: session.delivered(),
            duration: now.saturating_duration_since(self.started),
            outcome,
        };
        logging::connection_closed(self.peer, &summary);
    }

    /// The session, for a completion: a refusal asks for none, so one arriving is a bug.
    fn session_mut(&mut self) -> Result<&mut Session, CloseOutcome> {
        match &mut self.driver {
            Driver::Session(session) => Ok(session),
            Driver::Refusal(_) => Err(runtime_bug(NotPending)),
        }
    }

    fn read_finished(
        &mut self,
        now: Instant,
        result: io::Result<usize>,
    ) -> Result<(), CloseOutcome> {
        match result {
            Ok(0) => self.peer_closed(now)?,
            Ok(n) => {
                // Invariant: the read went into `wait().buf`, so n <= buf.len().
                let Driver::Session(session) = &mut self.driver else {
                    return Err(runtime_bug(NotPending));
                };
                session.receive(now, self.buf.get(..n).unwrap_or_default());
                if n == self.buf.len() && n < READ_CHUNK {
                    // A full read: the client is sending a message, not a command.
                    self.buf.resize(READ_CHUNK, 0);
                }
            }
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => self.peer_closed(now)?,
            Err(error) => return Err(CloseOutcome::IoError(error.to_string())),
        }
        Ok(())
    }

    fn peer_closed(&mut self, now: Instant) -> Result<(), CloseOutcome> {
        self.session_mut()?.peer_closed(now);
        self.eof = true;
        Ok(())
    }
}

impl Refusal {
    fn poll_event(&mut self) -> Option<Event> {
        if let Some(reply) = self.reply.take() {
            return Some(Event::Transmit(reply.to_bytes()));
        }
        if self.closed {
            return None;
        }
        self.closed = true;
        Some(Event::Close)
    }
}

/// The session refused a completion: a bug in the runtime, never the client's doing.
fn runtime_bug(error: NotPending) -> CloseOutcome {
    logging::runtime_bug(&error);
    CloseOutcome::IoError(format!("internal error: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::CloseReason;
    use std::time::Duration;

    fn connection(now: Instant) -> Connection {
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let config = SessionConfig {
            hostname: "mx.test".into(),
            // These tests are about the command timeout, which must come first.
            preauth_timeout: Duration::from_secs(3600),
            ..SessionConfig::default()
        };
        Accepted::new(peer, None, now).start(config, Channel::Plain, now)
    }

    /// Drains the events, returning the bytes sent and whether the session closed.
    fn drain(conn: &mut Connection) -> (String, bool) {
        let mut out = Vec::new();
        let mut closed = false;
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Transmit(bytes) => out.extend(bytes),
                Event::Close => closed = true,
                Event::StartTls
                | Event::Authenticate(_)
                | Event::CheckMail(_)
                | Event::Deliver(_) => {}
            }
        }
        (String::from_utf8_lossy(&out).into_owned(), closed)
    }

    /// A session on 465 with alice logged in; `greeted` looks at it after the greeting.
    fn logged_in(now: Instant, greeted: impl FnOnce(&mut Connection)) -> Connection {
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let channel = Channel::Implicit(crate::testing::tls_info());
        let mut conn =
            Accepted::new(peer, None, now).start(crate::testing::test_config(), channel, now);
        drain(&mut conn);
        greeted(&mut conn);
        client(
            &mut conn,
            now,
            b"EHLO c.test\r\nAUTH PLAIN AGFsaWNlAHMzY3JldA==\r\n",
        );
        drain(&mut conn);
        conn.auth_result(now, AuthOutcome::Accepted).unwrap();
        drain(&mut conn);
        conn
    }

    /// Feeds `bytes` as the runtime does: copied into the wait's buffer, then reported read.
    fn client(conn: &mut Connection, now: Instant, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let wait = conn.wait().unwrap();
            let n = rest.len().min(wait.buf.len());
            wait.buf[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            conn.woke(now, Wake::Read(Ok(n))).unwrap();
        }
    }

    #[test]
    fn an_empty_read_is_the_fin_and_ends_the_wait_as_peer_closed() {
        let now = Instant::now();
        let mut conn = connection(now);
        drain(&mut conn);
        let wait = conn.wait().unwrap();
        assert_eq!(wait.buf.len(), FIRST_READ_CHUNK);
        assert_eq!(
            wait.deadline,
            Some(now + SessionConfig::default().command_timeout)
        );
        assert!(wait.shutdown);
        client(&mut conn, now, b"NOOP\r\n");
        conn.woke(now, Wake::Read(Ok(0))).unwrap();
        let (out, closed) = drain(&mut conn);
        assert_eq!(
            out, "250 2.0.0 Ok\r\n",
            "what was sent before the FIN is answered"
        );
        assert!(closed);
        assert_eq!(
            conn.close_outcome(),
            CloseOutcome::Closed(CloseReason::PeerClosed)
        );
        assert_eq!(conn.wait(), Err(CloseOutcome::PeerClosed));
        conn.close(CloseOutcome::PeerClosed, now);
    }

    #[test]
    fn a_tls_hang_up_without_close_notify_is_the_clients_close() {
        let now = Instant::now();
        let mut conn = connection(now);
        drain(&mut conn);
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "no close_notify");
        assert!(conn.woke(now, Wake::Read(Err(eof))).is_ok());
        let (_, closed) = drain(&mut conn);
        assert!(closed);
        assert_eq!(
            conn.close_outcome(),
            CloseOutcome::Closed(CloseReason::PeerClosed)
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(matches!(
            conn.woke(now, Wake::Read(Err(reset))),
            Err(CloseOutcome::IoError(_))
        ));
        conn.close(CloseOutcome::PeerClosed, now);
    }

    #[test]
    fn the_read_buffer_grows_only_when_a_read_fills_it() {
        let now = Instant::now();
        let mut conn = connection(now);
        drain(&mut conn);
        client(&mut conn, now, b"NOOP\r\n");
        assert_eq!(conn.wait().unwrap().buf.len(), FIRST_READ_CHUNK);
        // A full buffer of a long line: the client sends in bulk.
        client(&mut conn, now, &[b'x'; FIRST_READ_CHUNK]);
        assert_eq!(conn.wait().unwrap().buf.len(), READ_CHUNK);
        conn.close(CloseOutcome::PeerClosed, now);
    }

    #[test]
    fn shutdown_is_watched_once_and_closes_an_idle_session_with_421() {
        let now = Instant::now();
        let mut conn = connection(now);
        drain(&mut conn);
        conn.woke(now, Wake::Shutdown).unwrap();
        assert!(!conn.wait().unwrap().shutdown);
        let (out, closed) = drain(&mut conn);
        assert!(out.starts_with("421 4.3.0"), "{out}");
        assert!(closed);
        assert_eq!(
            conn.close_outcome(),
            CloseOutcome::Closed(CloseReason::Shutdown)
        );
        conn.close(CloseOutcome::Closed(CloseReason::Shutdown), now);
    }

    #[test]
    fn a_refusal_is_its_reply_then_the_close_and_nothing_more() {
        let now = Instant::now();
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let reply = crate::smtp::reply::too_many_connections("mx.test");
        let accepted = Accepted::refused(peer, reply.clone(), now);
        assert!(accepted.is_refusal());
        let mut conn = accepted.start(SessionConfig::default(), Channel::Plain, now);
        assert_eq!(conn.poll_event(), Some(Event::Transmit(reply.to_bytes())));
        assert_eq!(conn.poll_event(), Some(Event::Close));
        assert_eq!(conn.poll_event(), None);
        assert_eq!(conn.close_outcome(), CloseOutcome::Refused);
        assert_eq!(
            conn.wait(),
            Err(CloseOutcome::Refused),
            "nothing to wait for"
        );
        assert!(conn.session().is_none());
        // It asked for nothing, so any completion is a runtime bug.
        assert!(conn.auth_result(now, AuthOutcome::Accepted).is_err());
        assert!(conn.delivery_result(now, Ok(MessageId(1))).is_err());
        assert_eq!(conn.woke(now, Wake::Abort), Err(CloseOutcome::Aborted));
        conn.close(CloseOutcome::Refused, now);
        let text = String::from_utf8(reply.to_bytes()).unwrap();
        assert!(text.starts_with("421 4.7.0 mx.test"), "{text}");
    }

    #[test]
    fn a_wait_is_idle_only_outside_a_mail_transaction() {
        let now = Instant::now();
        let mut conn = logged_in(now, |conn| {
            assert!(conn.wait().unwrap().idle, "after the greeting");
        });
        assert!(conn.wait().unwrap().idle, "logged in");
        client(&mut conn, now, b"MAIL FROM:<alice@mx.test>\r\n");
        drain(&mut conn);
        conn.mail_checked(now, MailVerdict::Accepted).unwrap();
        drain(&mut conn);
        assert!(!conn.wait().unwrap().idle, "after MAIL");
        client(&mut conn, now, b"RCPT TO:<b@x.test>\r\nDATA\r\n");
        drain(&mut conn);
        assert!(!conn.wait().unwrap().idle, "in DATA");
        // The stop, seen in DATA, waits for the end of the transaction.
        conn.woke(now, Wake::Shutdown).unwrap();
        client(&mut conn, now, b"Subject: hi\r\n\r\nbody\r\n.\r\n");
        drain(&mut conn);
        conn.delivery_result(now, Ok(MessageId(7))).unwrap();
        let (out, closed) = drain(&mut conn);
        assert!(out.starts_with("250 2.0.0"), "{out}");
        assert!(out.contains("\r\n421 4.3.0"), "{out}");
        assert!(closed);
        conn.close(CloseOutcome::Closed(CloseReason::Shutdown), now);
    }

    #[test]
    fn the_abort_ends_the_connection_as_aborted() {
        let now = Instant::now();
        let mut conn = connection(now);
        drain(&mut conn);
        assert_eq!(conn.woke(now, Wake::Abort), Err(CloseOutcome::Aborted));
        conn.close(CloseOutcome::Aborted, now);
    }

    #[test]
    fn the_deadline_times_out_the_session() {
        let now = Instant::now();
        let mut conn = connection(now);
        drain(&mut conn);
        let deadline = conn.wait().unwrap().deadline.unwrap();
        let late = deadline + Duration::from_millis(1);
        conn.woke(late, Wake::Deadline).unwrap();
        let (out, closed) = drain(&mut conn);
        assert!(out.starts_with("421 4.4.2"), "{out}");
        assert!(closed);
        assert_eq!(
            conn.close_outcome(),
            CloseOutcome::Closed(CloseReason::Timeout)
        );
    }

    #[test]
    fn stored_messages_count_for_the_close_line() {
        let now = Instant::now();
        let mut conn = logged_in(now, |_| {});
        for (attempt, result) in [Ok(MessageId(7)), Err(DeliveryError::other("disk"))]
            .into_iter()
            .enumerate()
        {
            client(
                &mut conn,
                now,
                b"MAIL FROM:<alice@mx.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n",
            );
            drain(&mut conn);
            conn.mail_checked(now, MailVerdict::Accepted).unwrap();
            client(&mut conn, now, b"Subject: hi\r\n\r\nbody\r\n.\r\n");
            drain(&mut conn);
            conn.delivery_result(now, result).unwrap();
            assert_eq!(
                conn.session().unwrap().delivered(),
                1,
                "after attempt {attempt}"
            );
        }
        assert_eq!(conn.session().unwrap().user(), Some("alice"));
        conn.close(CloseOutcome::Closed(CloseReason::Quit), now);
    }

    #[test]
    fn a_completion_nobody_asked_for_is_a_runtime_bug_outcome() {
        let now = Instant::now();
        let mut conn = connection(now);
        drain(&mut conn);
        let outcome = conn.auth_result(now, AuthOutcome::Accepted).unwrap_err();
        assert!(matches!(outcome, CloseOutcome::IoError(why) if why.starts_with("internal")));
        assert!(conn.delivery_result(now, Ok(MessageId(1))).is_err());
        assert_eq!(
            conn.session().unwrap().delivered(),
            0,
            "a refused completion counts nothing"
        );
        conn.close(CloseOutcome::Closed(CloseReason::Quit), now);
    }
}
