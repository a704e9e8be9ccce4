//! The bookkeeping of one connection's loop, the same in both runtimes: which session input
//! a wake-up becomes, when the loop ends and with which outcome, what completions count,
//! and the `connection open` / `connection close` log lines. The runtime keeps the socket,
//! the waits, and the work behind each event.
//!
//! ```text
//! let accepted = Accepted::new(peer, local, now);                  // `connection open`
//! // implicit TLS: handshake first; if it fails, accepted.close(TlsFailed(..), now)
//! let mut conn = accepted.start(config, channel, now);
//! let outcome = loop {
//!     while let Some(event) = conn.poll_event() { act; completions go to conn }
//!     let wait = match conn.wait() { Ok(wait) => wait, Err(outcome) => break outcome };
//!     // ONE of: a read of at most wait.capacity bytes, wait.deadline, the stop (wait.shutdown)
//!     conn.received(now, bytes) | conn.read_failed(now, &error)?
//!         | conn.handle_timeout(now) | conn.shutdown(now)
//! };
//! conn.close(outcome, now);                                        // `connection close`
//! ```

use std::net::SocketAddr;
use std::time::Instant;

use crate::logging::{self, CloseOutcome, ConnectionSummary};
use crate::smtp::{
    AuthOutcome, Channel, ConnInfo, DeliveryError, Event, MessageId, NotPending, Session,
    SessionConfig, TlsInfo,
};

/// A connection the gate admitted, before its session starts (on 465: before the
/// handshake).
#[derive(Debug)]
#[must_use = "a connection must end in `close` or `start`"]
pub struct Accepted {
    peer: SocketAddr,
    started: Instant,
}

/// A connection with its session: drive it with the loop in the module docs.
#[derive(Debug)]
#[must_use = "a connection must end in `close`"]
pub struct Connection {
    peer: SocketAddr,
    started: Instant,
    session: Session,
    /// The client closed its side; nothing more will be read.
    eof: bool,
    /// `Session::shutdown` was called; the stop needs no more watching.
    shutdown_seen: bool,
    /// Messages acknowledged with `250`.
    messages: u32,
}

/// What a runtime waits for next: ONE of these, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// A read of at most this many bytes; 0 means do not read at all now.
    pub capacity: usize,
    /// When to call [`Connection::handle_timeout`]; `None`: no deadline.
    pub deadline: Option<Instant>,
    /// Whether the server stopping should wake the connection (then [`Connection::shutdown`]).
    pub shutdown: bool,
}

impl Accepted {
    /// Logs `connection open` (when the local address is known) and starts the clock.
    pub fn new(peer: SocketAddr, local: Option<SocketAddr>, now: Instant) -> Accepted {
        if let Some(local) = local {
            logging::connection_opened(peer, local);
        }
        Accepted { peer, started: now }
    }

    /// Starts the session on `channel`; its greeting is the first event.
    pub fn start(self, config: SessionConfig, channel: Channel, now: Instant) -> Connection {
        let info = ConnInfo {
            peer: self.peer,
            channel,
        };
        Connection {
            peer: self.peer,
            started: self.started,
            session: Session::new(config, info, now),
            eof: false,
            shutdown_seen: false,
            messages: 0,
        }
    }

    /// Ends a connection that never got a session (the handshake on 465 failed) and logs it.
    pub fn close(self, outcome: CloseOutcome, now: Instant) {
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
        self.session.poll_event()
    }

    /// What to wait for next, or how the connection ended: once the client has closed its
    /// side and the session has answered what it had, there is nothing left to wait for.
    pub fn wait(&self) -> Result<Wait, CloseOutcome> {
        if self.eof {
            return Err(CloseOutcome::PeerClosed);
        }
        Ok(Wait {
            capacity: self.session.read_capacity(),
            deadline: self.session.poll_timeout(),
            shutdown: !self.shutdown_seen,
        })
    }

    /// A read returned `bytes`; an empty read is the client's FIN.
    pub fn received(&mut self, now: Instant, bytes: &[u8]) {
        if bytes.is_empty() {
            self.eof = true;
            self.session.peer_closed(now);
        } else {
            self.session.receive(now, bytes);
        }
    }

    /// A read failed. A TLS connection that ends without close_notify is still the
    /// client's close (many clients hang up that way, and SMTP needs no truncation
    /// protection: nothing counts before its CR LF or its CR LF . CR LF); any other error
    /// ends the connection.
    pub fn read_failed(
        &mut self,
        now: Instant,
        error: &std::io::Error,
    ) -> Result<(), CloseOutcome> {
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            self.received(now, &[]);
            Ok(())
        } else {
            Err(CloseOutcome::IoError(error.to_string()))
        }
    }

    /// The wait's deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
    }

    /// The server is stopping: idle sessions answer `421 4.3.0`, transactions go on.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutdown_seen = true;
        self.session.shutdown(now);
    }

    /// The handshake asked for by [`Event::StartTls`] succeeded.
    pub fn tls_established(&mut self, now: Instant, info: TlsInfo) -> Result<(), CloseOutcome> {
        self.session.tls_established(now, info).map_err(runtime_bug)
    }

    /// The verdict on [`Event::Authenticate`].
    pub fn auth_result(&mut self, now: Instant, outcome: AuthOutcome) -> Result<(), CloseOutcome> {
        self.session.auth_result(now, outcome).map_err(runtime_bug)
    }

    /// The outcome of [`Event::Deliver`]; a stored message counts for the close line.
    pub fn delivery_result(
        &mut self,
        now: Instant,
        result: Result<MessageId, DeliveryError>,
    ) -> Result<(), CloseOutcome> {
        let stored = result.is_ok();
        self.session
            .delivery_result(now, result)
            .map_err(runtime_bug)?;
        if stored {
            self.messages += 1;
        }
        Ok(())
    }

    /// How the connection ended when the session asked to close ([`Event::Close`]).
    pub fn close_outcome(&self) -> CloseOutcome {
        if self.eof {
            CloseOutcome::PeerClosed
        } else {
            CloseOutcome::Closed
        }
    }

    /// The session, e.g. for its user or TLS parameters.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Logs `connection close` with what the session learnt.
    pub fn close(self, outcome: CloseOutcome, now: Instant) {
        let summary = ConnectionSummary {
            tls: self.session.tls().cloned(),
            user: self.session.user().map(str::to_string),
            messages: self.messages,
            duration: now.saturating_duration_since(self.started),
            outcome,
        };
        logging::connection_closed(self.peer, &summary);
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
    use std::time::Duration;

    fn connection(now: Instant) -> Connection {
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let config = SessionConfig {
            hostname: "mx.test".into(),
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
                Event::StartTls | Event::Authenticate(_) | Event::Deliver(_) => {}
            }
        }
        (String::from_utf8_lossy(&out).into_owned(), closed)
    }

    #[test]
    fn an_empty_read_is_the_fin_and_ends_the_wait_as_peer_closed() {
        let now = Instant::now();
        let mut conn = connection(now);
        drain(&mut conn);
        let wait = conn.wait().unwrap();
        assert!(wait.capacity > 0);
        assert_eq!(
            wait.deadline,
            Some(now + SessionConfig::default().command_timeout)
        );
        assert!(wait.shutdown);
        conn.received(now, b"NOOP\r\n");
        conn.received(now, b"");
        let (out, closed) = drain(&mut conn);
        assert_eq!(
            out, "250 2.0.0 Ok\r\n",
            "what was sent before the FIN is answered"
        );
        assert!(closed);
        assert_eq!(conn.close_outcome(), CloseOutcome::PeerClosed);
        assert_eq!(conn.wait(), Err(CloseOutcome::PeerClosed));
        conn.close(CloseOutcome::PeerClosed, now);
    }

    #[test]
    fn a_tls_hang_up_without_close_notify_is_the_clients_close() {
        let now = Instant::now();
        let mut conn = connection(now);
        drain(&mut conn);
        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no close_notify");
        assert_eq!(conn.read_failed(now, &eof), Ok(()));
        let (_, closed) = drain(&mut conn);
        assert!(closed);
        assert_eq!(conn.close_outcome(), CloseOutcome::PeerClosed);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(
            conn.read_failed(now, &reset),
            Err(CloseOutcome::IoError(_))
        ));
        conn.close(CloseOutcome::PeerClosed, now);
    }

    #[test]
    fn shutdown_is_watched_once_and_closes_an_idle_session_with_421() {
        let now = Instant::now();
        let mut conn = connection(now);
        drain(&mut conn);
        conn.shutdown(now);
        assert!(!conn.wait().unwrap().shutdown);
        let (out, closed) = drain(&mut conn);
        assert!(out.starts_with("421 4.3.0"), "{out}");
        assert!(closed);
        assert_eq!(conn.close_outcome(), CloseOutcome::Closed);
        conn.close(CloseOutcome::Closed, now);
    }

    #[test]
    fn the_deadline_times_out_the_session() {
        let now = Instant::now();
        let mut conn = connection(now);
        drain(&mut conn);
        let deadline = conn.wait().unwrap().deadline.unwrap();
        conn.handle_timeout(deadline + Duration::from_millis(1));
        let (out, closed) = drain(&mut conn);
        assert!(out.starts_with("421 4.4.2"), "{out}");
        assert!(closed);
    }

    #[test]
    fn stored_messages_count_for_the_close_line() {
        let now = Instant::now();
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let channel = Channel::Implicit(crate::testing::tls_info());
        let mut conn =
            Accepted::new(peer, None, now).start(crate::testing::test_config(), channel, now);
        conn.received(now, b"EHLO c.test\r\nAUTH PLAIN AGFsaWNlAHMzY3JldA==\r\n");
        drain(&mut conn);
        conn.auth_result(now, AuthOutcome::Accepted).unwrap();
        for (attempt, result) in [Ok(MessageId(7)), Err(DeliveryError("disk".into()))]
            .into_iter()
            .enumerate()
        {
            conn.received(
                now,
                b"MAIL FROM:<alice@mx.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n",
            );
            conn.received(now, b"Subject: hi\r\n\r\nbody\r\n.\r\n");
            drain(&mut conn);
            conn.delivery_result(now, result).unwrap();
            assert_eq!(conn.messages, 1, "after attempt {attempt}");
        }
        assert_eq!(conn.session().user(), Some("alice"));
        conn.close(CloseOutcome::Closed, now);
    }

    #[test]
    fn a_completion_nobody_asked_for_is_a_runtime_bug_outcome() {
        let now = Instant::now();
        let mut conn = connection(now);
        drain(&mut conn);
        let outcome = conn.auth_result(now, AuthOutcome::Accepted).unwrap_err();
        assert!(matches!(outcome, CloseOutcome::IoError(why) if why.starts_with("internal")));
        assert!(conn.delivery_result(now, Ok(MessageId(1))).is_err());
        assert_eq!(conn.messages, 0, "a refused completion counts nothing");
        conn.close(CloseOutcome::Closed, now);
    }
}
