//! The `session` target: a runtime whose every move comes from the fuzz input.
//!
//! An input is [`Limits::SIZE`] bytes of limits, then steps, each an op byte and its operands
//! (see [`Step`]). Any byte string is a valid input: an unknown op byte stands for a known one,
//! and a length past the end takes what is left. [`Script`] writes inputs for seeds and
//! regression tests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

use crate::sasl::Password;
use crate::smtp::{
    AuthOutcome, AuthRequest, BareNewline, Channel, ConnInfo, DeliveryError, Event, MailVerdict,
    MessageId, NotPending, Session, SessionConfig,
};
use crate::testing::{Checker, Violation, tls_info};

/// The limits a session input starts with, one byte each, kept small so that a short input
/// can reach every one of them.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Limits {
    /// Port 465 (TLS from the first byte) rather than 587.
    pub implicit_tls: bool,
    /// `require_tls`.
    pub require_tls: bool,
    /// `bare_newline = normalize` rather than `reject`.
    pub normalize_bare_newlines: bool,
    /// `sender_must_match_user`.
    pub sender_must_match_user: bool,
    /// `input_buffer`, in bytes.
    pub input_buffer: u8,
    /// `max_command_line`, in bytes, minus 5. Below 5 bytes no command fits, and the
    /// session could not see `AUTH ` (whose lines have their own limit) before the limit.
    pub max_command_line: u8,
    /// `max_auth_line`, in bytes.
    pub max_auth_line: u8,
    /// `max_message_size`, in units of 16 bytes.
    pub message_size_16: u8,
    /// `max_header_size`, in units of 8 bytes.
    pub header_size_8: u8,
    /// `max_recipients`, modulo 8.
    pub max_recipients: u8,
    /// `max_received_headers`, modulo 8.
    pub max_received_headers: u8,
    /// `max_auth_failures`, modulo 8.
    pub max_auth_failures: u8,
    /// `max_bad_commands`, modulo 16.
    pub max_bad_commands: u8,
    /// `command_timeout` in seconds, minus one.
    pub command_timeout: u8,
    /// `data_timeout` in seconds, minus one.
    pub data_timeout: u8,
    /// `max_messages_per_session`, modulo 4.
    pub max_messages: u8,
}

impl Limits {
    /// Bytes of input the limits take (one per field; `bool` is the low bit of its byte).
    pub const SIZE: usize = 16;

    /// Limits for seeds: everything a real conversation needs fits, and little more.
    pub fn roomy(implicit_tls: bool) -> Limits {
        Limits {
            implicit_tls,
            require_tls: true,
            normalize_bare_newlines: false,
            sender_must_match_user: true,
            input_buffer: 255,
            max_command_line: 123,
            max_auth_line: 255,
            message_size_16: 255,
            header_size_8: 255,
            max_recipients: 5,
            max_received_headers: 3,
            max_auth_failures: 3,
            max_bad_commands: 10,
            command_timeout: 59,
            data_timeout: 119,
            max_messages: 3,
        }
    }

    /// The session settings these limits stand for.
    pub fn config(&self) -> SessionConfig {
        SessionConfig {
            hostname: "mx.test".into(),
            max_message_size: usize::from(self.message_size_16) * 16,
            max_recipients: usize::from(self.max_recipients % 8),
            max_command_line: usize::from(self.max_command_line) + 5,
            max_auth_line: usize::from(self.max_auth_line),
            command_timeout: Duration::from_secs(u64::from(self.command_timeout) + 1),
            data_timeout: Duration::from_secs(u64::from(self.data_timeout) + 1),
            bare_newline: if self.normalize_bare_newlines {
                BareNewline::Normalize
            } else {
                BareNewline::Reject
            },
            require_tls: self.require_tls,
            max_auth_failures: u32::from(self.max_auth_failures % 8),
            sender_must_match_user: self.sender_must_match_user,
            max_bad_commands: u32::from(self.max_bad_commands % 16),
            input_buffer: usize::from(self.input_buffer),
            max_header_size: usize::from(self.header_size_8) * 8,
            max_received_headers: usize::from(self.max_received_headers % 8),
            max_messages_per_session: u32::from(self.max_messages % 4),
            // Preauth and DATA-rate limits at their defaults: a `W` step reaches them.
            ..SessionConfig::default()
        }
    }

    /// The channel the session starts on.
    pub fn channel(&self) -> Channel {
        if self.implicit_tls {
            Channel::Implicit(tls_info())
        } else {
            Channel::Plain
        }
    }

    /// The bytes that decode to these limits.
    pub fn encode(&self) -> [u8; Limits::SIZE] {
        [
            u8::from(self.implicit_tls),
            u8::from(self.require_tls),
            u8::from(self.normalize_bare_newlines),
            u8::from(self.sender_must_match_user),
            self.input_buffer,
            self.max_command_line,
            self.max_auth_line,
            self.message_size_16,
            self.header_size_8,
            self.max_recipients,
            self.max_received_headers,
            self.max_auth_failures,
            self.max_bad_commands,
            self.command_timeout,
            self.data_timeout,
            self.max_messages,
        ]
    }
}

/// One thing that happens to a session. Encoded as an op byte (in brackets) and operands;
/// a byte string operand is a length byte and that many bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<'a> {
    /// (`C`) The client sends bytes; the runtime reads them `read_capacity` at a time.
    Send(&'a [u8]),
    /// (`R`) The client sends bytes and a careless runtime passes everything it has to one
    /// `receive`, whatever the capacity: the session must drop the excess.
    ReceiveRaw(&'a [u8]),
    /// (`T`) The TLS handshake completes.
    TlsEstablished,
    /// (`A` accepted, `F` rejected, `U` temporary failure) The verifier answers.
    Auth(AuthOutcome),
    /// (`D` stored, `d` failed) The store answers.
    Delivery(bool),
    /// (`W`, seconds) The clock moves on and the runtime calls `handle_timeout`.
    Wait(u8),
    /// (`X`) The clock moves to `poll_timeout` (or 1 s on) and the runtime calls
    /// `handle_timeout`.
    WaitForDeadline,
    /// (`E`) The client closes its side; the runtime sees EOF once it has read the rest.
    PeerClose,
    /// (`S`) The server starts shutting down.
    Shutdown,
    /// (`M` accepted, `m` login revoked, `N` no space, `u` unavailable) The verdict every
    /// later MAIL check gets, at once (until the next such step; accepted before any).
    MailVerdict(MailVerdict),
}

/// The op bytes; any other byte `b` stands for `OPS[b % OPS.len()]`.
const OPS: &[u8; 16] = b"CRTAFUDdWXESMmNu";

impl<'a> Arbitrary<'a> for Step<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let byte = u8::arbitrary(u)?;
        let op = if OPS.contains(&byte) {
            byte
        } else {
            OPS.get(usize::from(byte) % OPS.len())
                .copied()
                .unwrap_or(b'C')
        };
        let mut operand = || -> arbitrary::Result<&'a [u8]> {
            let len = usize::from(u8::arbitrary(u)?).min(u.len());
            u.bytes(len)
        };
        Ok(match op {
            b'C' => Step::Send(operand()?),
            b'R' => Step::ReceiveRaw(operand()?),
            b'T' => Step::TlsEstablished,
            b'A' => Step::Auth(AuthOutcome::Accepted),
            b'F' => Step::Auth(AuthOutcome::Rejected),
            b'U' => Step::Auth(AuthOutcome::TemporaryFailure),
            b'D' => Step::Delivery(true),
            b'd' => Step::Delivery(false),
            b'W' => Step::Wait(u8::arbitrary(u)?),
            b'X' => Step::WaitForDeadline,
            b'E' => Step::PeerClose,
            b'M' => Step::MailVerdict(MailVerdict::Accepted),
            b'm' => Step::MailVerdict(MailVerdict::LoginRevoked),
            b'N' => Step::MailVerdict(MailVerdict::InsufficientStorage),
            b'u' => Step::MailVerdict(MailVerdict::Unavailable),
            _ => Step::Shutdown,
        })
    }
}

/// Writes a session input step by step.
#[derive(Debug, Clone)]
pub struct Script {
    bytes: Vec<u8>,
}

impl Script {
    /// An input starting with `limits`.
    pub fn new(limits: &Limits) -> Script {
        Script {
            bytes: limits.encode().to_vec(),
        }
    }

    /// Adds a step; long byte strings become several steps of at most 255 bytes.
    pub fn step(mut self, step: Step<'_>) -> Script {
        let (op, operand): (u8, &[u8]) = match step {
            Step::Send(bytes) => (b'C', bytes),
            Step::ReceiveRaw(bytes) => (b'R', bytes),
            Step::TlsEstablished => (b'T', &[]),
            Step::Auth(AuthOutcome::Accepted) => (b'A', &[]),
            Step::Auth(AuthOutcome::Rejected) => (b'F', &[]),
            Step::Auth(AuthOutcome::TemporaryFailure) => (b'U', &[]),
            Step::Delivery(true) => (b'D', &[]),
            Step::Delivery(false) => (b'd', &[]),
            Step::Wait(secs) => {
                self.bytes.extend_from_slice(&[b'W', secs]);
                return self;
            }
            Step::WaitForDeadline => (b'X', &[]),
            Step::PeerClose => (b'E', &[]),
            Step::Shutdown => (b'S', &[]),
            Step::MailVerdict(MailVerdict::Accepted) => (b'M', &[]),
            Step::MailVerdict(MailVerdict::LoginRevoked) => (b'm', &[]),
            Step::MailVerdict(MailVerdict::InsufficientStorage) => (b'N', &[]),
            Step::MailVerdict(MailVerdict::Unavailable) => (b'u', &[]),
        };
        if op != b'C' && op != b'R' {
            self.bytes.push(op);
            return self;
        }
        // An empty send is still a step (a zero-length read); longer ones are split.
        let mut chunks = operand.chunks(255).peekable();
        if chunks.peek().is_none() {
            self.bytes.extend_from_slice(&[op, 0]);
        }
        for chunk in chunks {
            self.bytes.push(op);
            self.bytes.push(chunk.len() as u8); // Invariant: chunks(255).
            self.bytes.extend_from_slice(chunk);
        }
        self
    }

    /// The client sends `bytes`.
    pub fn send(self, bytes: impl AsRef<[u8]>) -> Script {
        self.step(Step::Send(bytes.as_ref()))
    }

    /// The encoded input.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Runs one session input, checking the invariants after every event and every step.
///
/// Then, unless the session started TLS (whose discarding of pipelined plaintext depends on
/// how the bytes arrived, by design), runs it again with every run of consecutive sends
/// merged into one: the session must do exactly the same.
pub fn run(data: &[u8]) -> Result<(), Violation> {
    let mut u = Unstructured::new(data);
    // Invariant: integers and bools decode from short input too (zero-padded), so neither
    // of these fails; stopping at an error would only shorten the run.
    let Ok(limits) = Limits::arbitrary(&mut u) else {
        return Ok(());
    };
    let mut steps = Vec::new();
    while !u.is_empty() {
        let Ok(step) = Step::arbitrary(&mut u) else {
            break;
        };
        steps.push(step);
    }
    let split = execute(&limits, &steps)?;
    if split.started_tls {
        return Ok(());
    }
    let sends = merge_sends(&steps);
    let mut sends_iter = sends.iter();
    let mut merged = Vec::new();
    let mut after_send = false;
    for step in &steps {
        match step {
            Step::Send(_) if after_send => {}
            Step::Send(_) => merged.extend(sends_iter.next().map(|b| Step::Send(b))),
            other => merged.push(other.clone()),
        }
        after_send = matches!(step, Step::Send(_));
    }
    if merged.len() == steps.len() {
        return Ok(()); // nothing to merge
    }
    let whole = execute(&limits, &merged)?;
    if whole.events != split.events {
        return Err(Violation(format!(
            "the session depends on how its input is split:\n{split}\nbut merged:\n{whole}"
        )));
    }
    Ok(())
}

/// The bytes of each run of consecutive [`Step::Send`]s.
fn merge_sends(steps: &[Step<'_>]) -> Vec<Vec<u8>> {
    let mut merged: Vec<Vec<u8>> = Vec::new();
    let mut after_send = false;
    for step in steps {
        if let Step::Send(bytes) = step {
            match merged.last_mut() {
                Some(last) if after_send => last.extend_from_slice(bytes),
                _ => merged.push(bytes.to_vec()),
            }
        }
        after_send = matches!(step, Step::Send(_));
    }
    merged
}

/// Runs the steps on a fresh session and returns what it did.
fn execute(limits: &Limits, steps: &[Step<'_>]) -> Result<Transcript, Violation> {
    let mut runtime = Runtime::new(limits);
    runtime.pump()?;
    for step in steps {
        runtime.step(step.clone())?;
    }
    runtime.finish()
}

/// What a session did: its events, adjacent `Transmit`s merged so chunking cannot show.
#[derive(Debug, Default)]
struct Transcript {
    events: Vec<Event>,
    started_tls: bool,
}

impl std::fmt::Display for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for event in &self.events {
            match event {
                Event::Transmit(bytes) => write!(f, "{}", String::from_utf8_lossy(bytes))?,
                other => writeln!(f, "{other:?}")?,
            }
        }
        Ok(())
    }
}

impl Transcript {
    fn record(&mut self, event: &Event) {
        self.started_tls |= *event == Event::StartTls;
        if let (Some(Event::Transmit(last)), Event::Transmit(bytes)) =
            (self.events.last_mut(), event)
        {
            last.extend_from_slice(bytes);
            return;
        }
        self.events.push(copy(event));
    }
}

/// A copy of `event` for the transcript: an `AuthRequest` cannot be cloned (its password is
/// held once), so the copy is built field by field.
fn copy(event: &Event) -> Event {
    match event {
        Event::Transmit(bytes) => Event::Transmit(bytes.clone()),
        Event::StartTls => Event::StartTls,
        Event::Authenticate(request) => Event::Authenticate(AuthRequest {
            mechanism: request.mechanism,
            username: request.username.clone(),
            password: Password::from(request.password.expose()),
        }),
        Event::CheckMail(check) => Event::CheckMail(check.clone()),
        Event::Deliver(delivery) => Event::Deliver(delivery.clone()),
        Event::Close => Event::Close,
    }
}

/// The request the session is waiting on, as the runtime saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Tls,
    Auth,
    Delivery,
}

/// A runtime driven by the fuzz input, keeping its own account of what the session may do
/// (login, TLS, pending request) to check the session against.
struct Runtime {
    session: Session,
    checker: Checker,
    config: SessionConfig,
    /// What the session can buffer at most: the largest of its three input limits.
    capacity: usize,
    now: Instant,
    /// Bytes the client sent that the runtime has not read yet.
    socket: Vec<u8>,
    client_closed: bool,
    eof_seen: bool,
    pending: Option<Request>,
    /// The user name of the pending `Authenticate`.
    auth_user: Option<String>,
    /// Who the verifier accepted, since the last TLS handshake.
    user: Option<String>,
    tls: bool,
    closed: bool,
    /// The code of the last reply line sent.
    last_code: Option<Vec<u8>>,
    /// What the next MAIL check is answered.
    mail_verdict: MailVerdict,
    next_id: u64,
    /// Refused completions left to compare the whole session state for.
    full_snapshots: u32,
    /// Reply lines sent before the client sent a byte, the clock passed a deadline or the
    /// server shut down: only the greeting may be among them.
    unasked_lines: Option<usize>,
    transcript: Transcript,
}

fn violation<T>(text: impl Into<String>) -> Result<T, Violation> {
    Err(Violation(text.into()))
}

impl Runtime {
    fn new(limits: &Limits) -> Runtime {
        let config = limits.config();
        let peer: SocketAddr = ([192, 0, 2, 25], 52525).into();
        let now = Instant::now();
        let conn = ConnInfo {
            peer,
            channel: limits.channel(),
        };
        Runtime {
            session: Session::new(config.clone(), conn, now),
            checker: Checker::new(),
            capacity: config
                .input_buffer
                .max(config.max_auth_line)
                .max(config.max_command_line),
            config,
            now,
            socket: Vec::new(),
            client_closed: false,
            eof_seen: false,
            pending: None,
            auth_user: None,
            user: None,
            tls: limits.implicit_tls,
            closed: false,
            last_code: None,
            mail_verdict: MailVerdict::Accepted,
            next_id: 1,
            full_snapshots: 2,
            unasked_lines: Some(0),
            transcript: Transcript::default(),
        }
    }

    fn step(&mut self, step: Step<'_>) -> Result<(), Violation> {
        match step {
            Step::Send(bytes) => {
                // After its FIN the client can send nothing more.
                if !self.client_closed {
                    self.socket.extend_from_slice(bytes);
                }
            }
            Step::ReceiveRaw(bytes) => {
                if !self.client_closed {
                    self.socket.extend_from_slice(bytes);
                }
                self.session.receive(self.now, &self.socket);
                self.socket.clear();
                self.unasked_lines = None;
                self.check_buffer()?;
            }
            Step::TlsEstablished => {
                if self.complete(Request::Tls, |s, now| s.tls_established(now, tls_info()))? {
                    // RFC 3207 §4.2: the login does not survive the handshake.
                    self.tls = true;
                    self.user = None;
                    self.checker.tls_completed();
                }
            }
            Step::Auth(outcome) => {
                if self.complete(Request::Auth, |s, now| s.auth_result(now, outcome))? {
                    let user = self.auth_user.take();
                    if outcome == AuthOutcome::Accepted {
                        self.user = user;
                    }
                    self.checker.completed(self.session.user().is_some());
                }
            }
            Step::Delivery(ok) => {
                let result = if ok {
                    Ok(MessageId(self.next_id))
                } else {
                    Err(DeliveryError::other("fuzzed failure"))
                };
                if self.complete(Request::Delivery, |s, now| s.delivery_result(now, result))? {
                    self.next_id += u64::from(ok);
                    self.checker.completed(self.session.user().is_some());
                }
            }
            Step::Wait(secs) => {
                self.unasked_lines = None;
                self.now += Duration::from_secs(u64::from(secs));
                return self.timeout();
            }
            Step::WaitForDeadline => {
                self.unasked_lines = None;
                let deadline = self.session.poll_timeout();
                self.now = deadline
                    .unwrap_or(self.now + Duration::from_secs(1))
                    .max(self.now);
                return self.timeout();
            }
            Step::PeerClose => self.client_closed = true,
            Step::MailVerdict(verdict) => self.mail_verdict = verdict,
            Step::Shutdown => {
                self.unasked_lines = None;
                self.session.shutdown(self.now);
            }
        }
        self.pump().map(drop)
    }

    /// Feeds a completion. When `expected` is pending it must be taken (returns true);
    /// otherwise it must be refused with `NotPending` and change nothing.
    fn complete(
        &mut self,
        expected: Request,
        call: impl FnOnce(&mut Session, Instant) -> Result<(), NotPending>,
    ) -> Result<bool, Violation> {
        if self.pending == Some(expected) {
            if call(&mut self.session, self.now).is_err() {
                return Err(Violation(format!("{expected:?} completion refused")));
            }
            self.pending = None;
            return Ok(true);
        }
        // The whole state (its Debug form) for the first refusals of a run; formatting it
        // each time would halve the fuzzer's speed, so the rest compare what is observable.
        let full = self.full_snapshots > 0;
        self.full_snapshots = self.full_snapshots.saturating_sub(1);
        let snapshot = |s: &Session| {
            let whole = full.then(|| format!("{s:?}"));
            let observable = (
                s.buffered(),
                s.read_capacity(),
                s.poll_timeout(),
                s.is_closed(),
                s.user().map(str::to_string),
                s.tls().cloned(),
            );
            (whole, observable)
        };
        let before = snapshot(&self.session);
        if call(&mut self.session, self.now).is_ok() {
            return Err(Violation(format!(
                "{expected:?} completion taken with {:?} pending",
                self.pending
            )));
        }
        if snapshot(&self.session) != before {
            return Err(Violation(format!(
                "a refused {expected:?} completion changed the session"
            )));
        }
        Ok(false)
    }

    /// The clock moved: a passed deadline must close the session, an early call must do
    /// nothing.
    fn timeout(&mut self) -> Result<(), Violation> {
        let deadline = self.session.poll_timeout();
        self.session.handle_timeout(self.now);
        let events = self.pump()?;
        match deadline {
            Some(deadline) if self.now >= deadline => {
                if self.session.is_closed() {
                    Ok(())
                } else {
                    violation("deadline passed, session still open")
                }
            }
            _ if events > 0 => violation("handle_timeout before the deadline acted"),
            _ => Ok(()),
        }
    }

    /// Acts on every event, reading from the socket while the session has room, until the
    /// session waits; returns how many events it handled.
    fn pump(&mut self) -> Result<usize, Violation> {
        let mut events = 0;
        loop {
            while let Some(event) = self.session.poll_event() {
                events += 1;
                self.on_event(event)?;
            }
            let n = self.socket.len().min(self.session.read_capacity());
            if n > 0 {
                self.session
                    .receive(self.now, self.socket.get(..n).unwrap_or_default());
                self.unasked_lines = None;
                self.socket.drain(..n);
                self.check_buffer()?;
                continue;
            }
            // A read returns EOF only once everything before it was read.
            if self.client_closed
                && !self.eof_seen
                && self.socket.is_empty()
                && self.session.read_capacity() > 0
            {
                self.eof_seen = true;
                self.session.peer_closed(self.now);
                continue;
            }
            break;
        }
        // Nothing happened since poll_event said None, so it must say None again.
        if let Some(event) = self.session.poll_event() {
            return Err(Violation(format!(
                "poll_event gave {event:?} after None, with no new input"
            )));
        }
        self.check_waiting()?;
        Ok(events)
    }

    fn on_event(&mut self, event: Event) -> Result<(), Violation> {
        self.checker.on_event(&event, &self.session)?;
        self.transcript.record(&event);
        self.check_buffer()?;
        match event {
            Event::Transmit(bytes) => {
                // Invariant: the checker passed it, so it ends in a complete line.
                let last = bytes
                    .strip_suffix(b"\r\n")
                    .and_then(|b| b.rsplit(|&c| c == b'\n').next())
                    .unwrap_or_default();
                self.last_code = last.get(..3).map(<[u8]>::to_vec);
                if let Some(lines) = &mut self.unasked_lines {
                    *lines += memchr::memmem::find_iter(&bytes, b"\r\n").count();
                    if *lines > 1 || !bytes.starts_with(b"220 ") {
                        return violation("a reply nobody asked for after the greeting");
                    }
                }
            }
            Event::StartTls => {
                if self.tls {
                    return violation("StartTls on a TLS channel");
                }
                if self.last_code.as_deref() != Some(b"220") {
                    return violation("StartTls without 220 just before it");
                }
                self.pending = Some(Request::Tls);
            }
            Event::Authenticate(request) => {
                for field in [request.username.as_str(), request.password.expose()] {
                    if field.is_empty() || field.len() > crate::sasl::MAX_FIELD {
                        return violation("Authenticate with an empty or overlong field");
                    }
                }
                if self.config.require_tls && !self.tls {
                    return violation("Authenticate on a plaintext channel");
                }
                if self.user.is_some() {
                    return violation("Authenticate while logged in");
                }
                self.auth_user = Some(request.username);
                self.pending = Some(Request::Auth);
            }
            Event::CheckMail(check) => {
                if self.user.as_deref() != Some(check.user.as_str()) {
                    return violation(format!(
                        "MAIL check for {:?}, but the verifier accepted {:?}",
                        check.user, self.user
                    ));
                }
                if self.config.require_tls && !self.tls {
                    return violation("MAIL check on a plaintext channel");
                }
                // Answered at once: the verdict is the input's, the timing is not explored.
                if self
                    .session
                    .mail_checked(self.now, self.mail_verdict)
                    .is_err()
                {
                    return violation("MAIL check completion refused");
                }
                self.checker.completed(self.session.user().is_some());
                if self.mail_verdict == MailVerdict::LoginRevoked && !self.session.is_closed() {
                    return violation("a revoked login did not close the session");
                }
            }
            Event::Deliver(delivery) => {
                if self.user.as_deref() != Some(delivery.user.as_str()) {
                    return violation(format!(
                        "delivery for {:?}, but the verifier accepted {:?}",
                        delivery.user, self.user
                    ));
                }
                if self.config.require_tls && !self.tls {
                    return violation("delivery on a plaintext channel");
                }
                if delivery.tls.is_some() != self.tls {
                    return violation("delivery with the wrong TLS state");
                }
                if delivery.rcpt_to.is_empty()
                    || delivery.rcpt_to.len() > self.config.max_recipients
                {
                    return violation("delivery with no or too many recipients");
                }
                if self.session.delivered() >= self.config.max_messages_per_session {
                    return violation("delivery past max_messages_per_session");
                }
                self.pending = Some(Request::Delivery);
            }
            Event::Close => {
                self.closed = true;
                // A request cut short by the close is never completed.
                self.pending = None;
            }
        }
        Ok(())
    }

    fn check_buffer(&self) -> Result<(), Violation> {
        let buffered = self.session.buffered();
        if buffered + self.session.read_capacity() > self.capacity {
            return Err(Violation(format!(
                "buffered {buffered} + read capacity {} > limit {}",
                self.session.read_capacity(),
                self.capacity
            )));
        }
        Ok(())
    }

    /// What must hold whenever the session waits for the runtime.
    fn check_waiting(&self) -> Result<(), Violation> {
        let s = &self.session;
        self.check_buffer()?;
        if s.is_closed() != self.closed || s.close_reason().is_some() != self.closed {
            return violation("is_closed or close_reason disagrees with the Close event");
        }
        // Invariant: ids count up from 1, one per stored delivery.
        if u64::from(s.delivered()) != self.next_id - 1 {
            return violation("delivered() is not the number of stored deliveries");
        }
        if s.user() != self.user.as_deref() {
            return Err(Violation(format!(
                "session says user {:?}, the verifier accepted {:?}",
                s.user(),
                self.user
            )));
        }
        if self.closed {
            if s.read_capacity() != 0 || s.poll_timeout().is_some() {
                return violation("closed session still reads or waits");
            }
            return Ok(());
        }
        match self.pending {
            Some(Request::Auth | Request::Delivery) if s.poll_timeout().is_some() => {
                violation("deadline while the runtime works on a request")
            }
            Some(Request::Tls) if s.read_capacity() != 0 => {
                violation("reads plaintext during the TLS handshake")
            }
            Some(_) => Ok(()),
            None if s.poll_timeout().is_none() => violation("idle session without a deadline"),
            None if self.eof_seen => violation("idle session after EOF"),
            // Three bytes always fit past an undecided DATA tail (`.` CR); below that a
            // session is configured to be unable to read.
            None if self.capacity >= 3 && s.read_capacity() == 0 => {
                violation("idle session that cannot read")
            }
            None => Ok(()),
        }
    }

    /// Ends the input like a patient runtime: completes what is pending, sends EOF, waits
    /// for deadlines. Every session must close within a few rounds.
    fn finish(mut self) -> Result<Transcript, Violation> {
        for _ in 0..8 {
            if self.closed {
                return Ok(self.transcript);
            }
            let step = match self.pending {
                Some(Request::Tls) => Step::TlsEstablished,
                Some(Request::Auth) => Step::Auth(AuthOutcome::Rejected),
                Some(Request::Delivery) => Step::Delivery(false),
                None if !self.client_closed => Step::PeerClose,
                None => Step::WaitForDeadline,
            };
            self.step(step)?;
        }
        violation("session never closes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_encode_decodes_back() {
        for limits in [Limits::roomy(true), Limits::roomy(false)] {
            let bytes = limits.encode();
            let mut u = Unstructured::new(&bytes);
            assert_eq!(Limits::arbitrary(&mut u).ok(), Some(limits));
            assert!(u.is_empty());
        }
    }

    #[test]
    fn script_decodes_step_by_step() {
        let long = vec![b'x'; 300];
        let steps = [
            Step::Send(b"EHLO a\r\n"),
            Step::Send(b""),
            Step::ReceiveRaw(b"NOOP\r\n"),
            Step::TlsEstablished,
            Step::Auth(AuthOutcome::Accepted),
            Step::Auth(AuthOutcome::Rejected),
            Step::Auth(AuthOutcome::TemporaryFailure),
            Step::Delivery(true),
            Step::Delivery(false),
            Step::Wait(7),
            Step::WaitForDeadline,
            Step::PeerClose,
            Step::Shutdown,
            Step::Send(&long),
        ];
        let script = steps
            .iter()
            .fold(Script::new(&Limits::roomy(false)), |s, step| {
                s.step(step.clone())
            });
        let bytes = script.into_bytes();
        let mut u = Unstructured::new(bytes.get(Limits::SIZE..).unwrap_or_default());
        let mut decoded = Vec::new();
        while !u.is_empty() {
            decoded.push(Step::arbitrary(&mut u).unwrap());
        }
        let mut expected = steps[..13].to_vec();
        expected.extend([Step::Send(&long[..255]), Step::Send(&long[255..])]);
        assert_eq!(decoded, expected);
    }

    #[test]
    fn unknown_op_bytes_stand_for_known_ones() {
        let mut u = Unstructured::new(&[0u8, 2, b'h', b'i', 17]);
        // 0 % 16 = 0 is `C`; 17 % 16 = 1 is `R` with no bytes left.
        assert_eq!(Step::arbitrary(&mut u).ok(), Some(Step::Send(b"hi")));
        assert_eq!(Step::arbitrary(&mut u).ok(), Some(Step::ReceiveRaw(b"")));
    }
}
