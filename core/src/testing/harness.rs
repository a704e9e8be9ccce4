//! A real [`Session`] on a virtual clock, with assertions on what it sends.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::invariants::Checker;
use crate::sasl;
use crate::smtp::{
    AuthOutcome, AuthRequest, Channel, ConnInfo, Delivery, DeliveryError, Event, MailCheck,
    MailVerdict, MessageId, Session, SessionConfig, TlsInfo,
};

/// Drives one session like a runtime would, checking the invariants after every event.
pub struct Harness {
    pub session: Session,
    pub now: Instant,
    checker: Checker,
    /// Bytes the server sent that no `expect_*` has read yet.
    output: VecDeque<u8>,
    /// Requests and closes the server issued, in order.
    requests: VecDeque<Event>,
    /// The verdict every MAIL check gets at once; `None`: the check waits in the requests
    /// for [`Harness::expect_mail_check`] and [`Harness::complete_mail_check`].
    pub mail_verdict: Option<MailVerdict>,
}

/// The TLS parameters the harness reports for a handshake.
pub fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
    }
}

/// The settings of the harness sessions: defaults with a fixed host name.
pub fn test_config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.test".into(),
        ..SessionConfig::default()
    }
}

impl Harness {
    /// A session on `channel` with `config`; the greeting is left to be read.
    pub fn new(config: SessionConfig, channel: Channel) -> Harness {
        let now = Instant::now();
        let peer: SocketAddr = ([192, 0, 2, 7], 40000).into();
        let session = Session::new(config, ConnInfo { peer, channel }, now);
        let mut h = Harness {
            session,
            now,
            checker: Checker::new(),
            output: VecDeque::new(),
            requests: VecDeque::new(),
            mail_verdict: Some(MailVerdict::Accepted),
        };
        h.drain();
        h
    }

    /// Port 587: plaintext with STARTTLS, greeting already read.
    pub fn submission() -> Harness {
        Harness::submission_with(test_config())
    }

    /// Port 587 with `config`, greeting already read.
    pub fn submission_with(config: SessionConfig) -> Harness {
        let mut h = Harness::new(config, Channel::Plain);
        h.expect_line("220 mx.test ESMTP");
        h
    }

    /// Port 465: implicit TLS, greeting already read.
    pub fn implicit() -> Harness {
        Harness::implicit_with(test_config())
    }

    /// Port 465 with `config`, greeting already read.
    pub fn implicit_with(config: SessionConfig) -> Harness {
        let mut h = Harness::new(config, Channel::Implicit(tls_info()));
        h.expect_line("220 mx.test ESMTP");
        h
    }

    /// Implicit TLS, EHLO done and logged in as `alice`.
    pub fn authenticated() -> Harness {
        Harness::authenticated_with(test_config())
    }

    /// Like [`Harness::authenticated`] with `config`.
    pub fn authenticated_with(config: SessionConfig) -> Harness {
        let mut h = Harness::implicit_with(config);
        h.ehlo();
        h.login("alice", "s3cret");
        h
    }

    /// Sends `EHLO client.test` and reads the multi-line reply.
    pub fn ehlo(&mut self) -> Vec<String> {
        self.client("EHLO client.test\r\n");
        self.expect_reply(250)
    }

    /// AUTH PLAIN with an initial response, accepted by the verifier.
    pub fn login(&mut self, user: &str, password: &str) {
        self.client(format!("AUTH PLAIN {}\r\n", plain(user, password)));
        let request = self.expect_auth();
        assert_eq!(request.username, user);
        self.complete_auth(AuthOutcome::Accepted);
        self.expect_line("235 2.7.0 Authentication successful");
    }

    /// The client sends `bytes`; the session processes what it can.
    pub fn client(&mut self, bytes: impl AsRef<[u8]>) {
        let mut bytes = bytes.as_ref();
        // Like a runtime: never pass more than the session can take.
        loop {
            let n = bytes.len().min(self.session.read_capacity());
            let (now, later) = bytes.split_at_checked(n).unwrap_or((bytes, &[]));
            self.session.receive(self.now, now);
            bytes = later;
            self.drain();
            if bytes.is_empty() || n == 0 {
                break;
            }
        }
    }

    /// Moves the virtual clock on and lets the session see the time.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.session.handle_timeout(self.now);
        self.drain();
    }

    /// Tells the session that the server is shutting down.
    pub fn shutdown(&mut self) {
        self.session.shutdown(self.now);
        self.drain();
    }

    /// Tells the session that the client closed the connection.
    pub fn peer_closed(&mut self) {
        self.session.peer_closed(self.now);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(event) = self.session.poll_event() {
            if let Err(violation) = self.checker.on_event(&event, &self.session) {
                panic!("invariant violated: {violation}");
            }
            match event {
                Event::Transmit(bytes) => {
                    assert!(
                        self.requests.iter().all(|e| matches!(e, Event::Close))
                            || self.requests.is_empty(),
                        "reply queued behind an unanswered request"
                    );
                    self.output.extend(bytes);
                }
                Event::CheckMail(_) if self.mail_verdict.is_some() => {
                    let verdict = self.mail_verdict.unwrap_or(MailVerdict::Accepted);
                    if let Err(e) = self.session.mail_checked(self.now, verdict) {
                        panic!("mail_checked refused: {e}");
                    }
                    self.checker.completed(self.session.user().is_some());
                }
                other => self.requests.push_back(other),
            }
        }
    }

    /// Reads one line of output (without CR LF) and checks it.
    pub fn expect_line(&mut self, expected: &str) {
        assert_eq!(
            self.read_line().as_deref(),
            Some(expected),
            "unexpected reply line"
        );
    }

    fn read_line(&mut self) -> Option<String> {
        let bytes: Vec<u8> = self.output.iter().copied().collect();
        let end = memchr::memmem::find(&bytes, b"\r\n")?;
        self.output.drain(..end + 2);
        Some(String::from_utf8_lossy(bytes.get(..end)?).into_owned())
    }

    /// Reads one whole reply, checks its code, and returns its lines' text.
    pub fn expect_reply(&mut self, code: u16) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let Some(line) = self.read_line() else {
                panic!("expected a {code} reply, got nothing more (lines so far {lines:?})");
            };
            assert_eq!(
                line.get(..3),
                Some(code.to_string().as_str()),
                "unexpected reply {line:?}"
            );
            lines.push(line.get(4..).unwrap_or_default().to_string());
            if line.as_bytes().get(3) == Some(&b' ') {
                return lines;
            }
        }
    }

    /// All output not read yet, as text.
    pub fn take_output(&mut self) -> String {
        let bytes: Vec<u8> = self.output.drain(..).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn expect_request(&mut self) -> Event {
        assert!(
            self.output.is_empty(),
            "unread output before the request: {:?}",
            self.take_output()
        );
        match self.requests.pop_front() {
            Some(event) => event,
            None => panic!("expected a request, the session issued none"),
        }
    }

    /// Expects `StartTls` and completes the handshake.
    pub fn expect_start_tls_then_establish(&mut self) {
        match self.expect_request() {
            Event::StartTls => {}
            other => panic!("expected StartTls, got {other:?}"),
        }
        if let Err(e) = self.session.tls_established(self.now, tls_info()) {
            panic!("tls_established refused: {e}");
        }
        self.checker.tls_completed();
        self.drain();
    }

    /// Expects an `Authenticate` request.
    pub fn expect_auth(&mut self) -> AuthRequest {
        match self.expect_request() {
            Event::Authenticate(request) => request,
            other => panic!("expected Authenticate, got {other:?}"),
        }
    }

    /// Reports the verdict on the pending authentication.
    pub fn complete_auth(&mut self, outcome: AuthOutcome) {
        if let Err(e) = self.session.auth_result(self.now, outcome) {
            panic!("auth_result refused: {e}");
        }
        self.checker.completed(self.session.user().is_some());
        self.drain();
    }

    /// Expects a `CheckMail` request (only when `mail_verdict` is `None`).
    pub fn expect_mail_check(&mut self) -> MailCheck {
        match self.expect_request() {
            Event::CheckMail(check) => check,
            other => panic!("expected CheckMail, got {other:?}"),
        }
    }

    /// Reports the verdict on the pending MAIL check.
    pub fn complete_mail_check(&mut self, verdict: MailVerdict) {
        if let Err(e) = self.session.mail_checked(self.now, verdict) {
            panic!("mail_checked refused: {e}");
        }
        self.checker.completed(self.session.user().is_some());
        self.drain();
    }

    /// Expects a `Deliver` request.
    pub fn expect_delivery(&mut self) -> Delivery {
        match self.expect_request() {
            Event::Deliver(delivery) => delivery,
            other => panic!("expected Deliver, got {other:?}"),
        }
    }

    /// Reports the outcome of the pending delivery.
    pub fn complete_delivery(&mut self, result: Result<u64, &str>) {
        let result = result.map(MessageId).map_err(DeliveryError::other);
        if let Err(e) = self.session.delivery_result(self.now, result) {
            panic!("delivery_result refused: {e}");
        }
        self.checker.completed(self.session.user().is_some());
        self.drain();
    }

    /// Reports that the pending delivery failed with `error` (of a kind of its own).
    pub fn fail_delivery(&mut self, error: DeliveryError) {
        if let Err(e) = self.session.delivery_result(self.now, Err(error)) {
            panic!("delivery_result refused: {e}");
        }
        self.checker.completed(self.session.user().is_some());
        self.drain();
    }

    /// Expects the session to have closed, with all output read.
    pub fn expect_close(&mut self) {
        assert!(
            self.output.is_empty(),
            "unread output: {:?}",
            self.take_output()
        );
        assert_eq!(self.requests.pop_front(), Some(Event::Close));
        assert!(self.session.is_closed());
        assert_eq!(self.session.poll_event(), None);
    }

    /// Expects nothing new: no output, no request, still open.
    pub fn expect_idle(&mut self) {
        assert!(
            self.output.is_empty(),
            "unexpected output: {:?}",
            self.take_output()
        );
        assert!(
            self.requests.is_empty(),
            "unexpected request: {:?}",
            self.requests
        );
        assert!(!self.session.is_closed());
    }
}

/// The base64 PLAIN initial response for `user` and `password`.
pub fn plain(user: &str, password: &str) -> String {
    sasl::encode(format!("\0{user}\0{password}").as_bytes())
}
