//! The per-connection SMTP state machine.
//!
//! Input methods record what happened (`receive`, `handle_timeout`, `peer_closed`,
//! `shutdown`, and the completions `tls_established`, `auth_result`, `delivery_result`);
//! the work happens in [`Session::poll_event`], one command at a time, so that replies come
//! out strictly in command order (RFC 2920) and nothing is processed while a request is
//! pending.

mod auth;
mod envelope;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::command::{Command, CommandError, Verb};
use super::config::SessionConfig;
use super::dot::DataReader;
use super::framing::{Frame, InputBuffer};
use super::reply::{self, Reply};
pub use super::types::*;
use envelope::Transaction;

/// Output queued beyond this many bytes makes `poll_event` hand it out before reading on,
/// so a flood of pipelined commands cannot grow the output without bound (P3).
const OUTPUT_HIGH_WATER: usize = 16 * 1024;

/// One SMTP connection, from greeting to close. See the module docs for the call order.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    peer: SocketAddr,
    tls: Option<TlsInfo>,
    input: InputBuffer,
    events: VecDeque<Event>,
    phase: Phase,
    helo: Option<String>,
    user: Option<Authenticated>,
    transaction: Option<Transaction>,
    /// The user name of the pending authentication.
    auth_user: Option<String>,
    auth_failures: u32,
    bad_commands: u32,
    /// Messages acknowledged with 250 in this session.
    delivered: u32,
    /// Commands received while no login has succeeded (`preauth_commands`).
    preauth_commands: u32,
    /// When the session started: it must log in by `preauth_timeout` after.
    started: Instant,
    /// A MAIL waiting for its [`Event::CheckMail`] verdict.
    pending_mail: Option<Transaction>,
    now: Instant,
    /// When the client's silence ends the session: the command or DATA inactivity timeout.
    deadline: Instant,
    /// The current DATA's start and size so far, for its minimum rate (R2).
    data_clock: Option<DataClock>,
    shutting_down: bool,
    peer_closed: bool,
    close_reason: Option<CloseReason>,
}

#[derive(Debug)]
enum Phase {
    Command,
    Sasl(auth::SaslStep),
    Data(DataReader),
    Pending(Pending),
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Tls,
    Auth,
    Mail,
    Delivery,
}

/// How much of a message has arrived since `354`, and since when.
#[derive(Debug, Clone, Copy)]
struct DataClock {
    started: Instant,
    bytes: u64,
}

/// Which of a session's deadlines passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    Inactivity,
    Preauth,
    DataRate,
}

/// Proof that AUTH succeeded: only an accepted `auth_result` creates one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authenticated {
    user: String,
}

impl Session {
    /// A new session; its first event is the `220` greeting.
    pub fn new(config: SessionConfig, conn: ConnInfo, now: Instant) -> Session {
        // An AUTH line must always fit, or the session could wait forever for its end.
        let capacity = config
            .input_buffer
            .max(config.max_auth_line)
            .max(config.max_command_line);
        let tls = match conn.channel {
            Channel::Plain => None,
            Channel::Implicit(info) => Some(info),
        };
        let mut session = Session {
            deadline: later(now, config.command_timeout),
            input: InputBuffer::new(capacity),
            peer: conn.peer,
            tls,
            events: VecDeque::new(),
            phase: Phase::Command,
            helo: None,
            user: None,
            transaction: None,
            auth_user: None,
            auth_failures: 0,
            bad_commands: 0,
            delivered: 0,
            preauth_commands: 0,
            started: now,
            pending_mail: None,
            now,
            data_clock: None,
            shutting_down: false,
            peer_closed: false,
            close_reason: None,
            config,
        };
        session.reply(reply::greeting(&session.config.hostname));
        session
    }

    // --- Inputs ---------------------------------------------------------------------------

    /// Buffers bytes read from the client: at most [`Session::read_capacity`] of them (a
    /// runtime that passes more loses the excess). Bytes that arrive while a TLS handshake
    /// is pending are plaintext injected past STARTTLS and are discarded.
    pub fn receive(&mut self, now: Instant, bytes: &[u8]) {
        self.now = now;
        if matches!(self.phase, Phase::Closed | Phase::Pending(Pending::Tls)) || bytes.is_empty() {
            return;
        }
        let mut bytes = bytes.get(..self.input.space()).unwrap_or(bytes);
        if let Some(clock) = &mut self.data_clock {
            // In DATA every read is progress: the inactivity timeout starts again, and the
            // bytes count towards the minimum rate.
            clock.bytes = clock.bytes.saturating_add(bytes.len() as u64);
            self.deadline = later(now, self.config.data_timeout);
        }
        if let Phase::Data(reader) = &mut self.phase
            && self.input.len() == 0
        {
            // The hot path: message bytes go straight to the reader, not through the
            // buffer; only an undecided tail (or what follows the end) is buffered.
            let (used, _) = reader.feed(bytes);
            // Invariant: `feed` consumes at most what it was given.
            bytes = bytes.get(used..).unwrap_or_default();
        }
        self.input.push(bytes);
    }

    /// The clock passed [`Session::poll_timeout`]: `421` and close (`4.4.2` for silence or
    /// a message too slow, `4.7.0` for a session that did not log in in time). Harmless if
    /// early.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        let Some(expired) = self.expired(now) else {
            return;
        };
        match self.phase {
            Phase::Closed | Phase::Pending(Pending::Auth | Pending::Mail | Pending::Delivery) => {}
            // Never answer in plaintext after `220 Ready to start TLS` (T5, T11).
            Phase::Pending(Pending::Tls) => self.close(CloseReason::Timeout),
            Phase::Command | Phase::Sasl(_) | Phase::Data(_) => {
                let host = &self.config.hostname;
                let (reply, reason) = match expired {
                    Expired::Inactivity => (reply::timeout(host), CloseReason::Timeout),
                    Expired::Preauth => (reply::preauth_timeout(host), CloseReason::PreauthLimit),
                    Expired::DataRate => (reply::data_too_slow(host), CloseReason::DataTooSlow),
                };
                self.reply(reply);
                self.close(reason);
            }
        }
    }

    /// The client closed its side. Commands already received are still answered.
    pub fn peer_closed(&mut self, now: Instant) {
        self.now = now;
        self.peer_closed = true;
    }

    /// The server is stopping: an idle session answers `421 4.3.0` and closes; one inside
    /// a mail transaction does so once the transaction is over.
    pub fn shutdown(&mut self, now: Instant) {
        self.now = now;
        self.shutting_down = true;
    }

    /// The TLS handshake asked for by [`Event::StartTls`] succeeded.
    pub fn tls_established(&mut self, now: Instant, info: TlsInfo) -> Result<(), NotPending> {
        self.complete(now, Pending::Tls)?;
        // RFC 3207 §4.2: forget everything learnt before the handshake.
        self.tls = Some(info);
        self.helo = None;
        self.user = None;
        self.transaction = None;
        self.input.clear();
        Ok(())
    }

    /// The verdict on the [`Event::Authenticate`] request.
    pub fn auth_result(&mut self, now: Instant, outcome: AuthOutcome) -> Result<(), NotPending> {
        self.complete(now, Pending::Auth)?;
        let username = self.auth_user.take().unwrap_or_default();
        self.on_auth_outcome(username, outcome);
        Ok(())
    }

    /// The verdict on the [`Event::CheckMail`] request: `250` and the transaction starts,
    /// `421 4.7.0` and close for a login disabled or deleted since AUTH, `452 4.3.1` when
    /// the store has no room, `451 4.3.0` when it could not tell.
    pub fn mail_checked(&mut self, now: Instant, verdict: MailVerdict) -> Result<(), NotPending> {
        self.complete(now, Pending::Mail)?;
        let transaction = self.pending_mail.take();
        match verdict {
            MailVerdict::Accepted => {
                self.transaction = transaction;
                self.reply(reply::sender_ok());
            }
            MailVerdict::LoginRevoked => {
                self.reply(reply::login_revoked(&self.config.hostname));
                self.close(CloseReason::LoginRevoked);
            }
            MailVerdict::InsufficientStorage => self.reply(reply::insufficient_storage()),
            MailVerdict::Unavailable => self.reply(reply::store_failed()),
        }
        Ok(())
    }

    /// The outcome of the [`Event::Deliver`] request: `250` with the id, `452 4.3.1` when
    /// the disk is full, else `451 4.3.0`.
    pub fn delivery_result(
        &mut self,
        now: Instant,
        result: Result<MessageId, DeliveryError>,
    ) -> Result<(), NotPending> {
        self.complete(now, Pending::Delivery)?;
        let reply = match result {
            Ok(id) => {
                self.delivered += 1;
                reply::queued(id)
            }
            Err(error) => match error.kind {
                DeliveryFailure::NoSpace => reply::insufficient_storage(),
                DeliveryFailure::Other => reply::store_failed(),
            },
        };
        self.reply(reply);
        Ok(())
    }

    // --- Outputs --------------------------------------------------------------------------

    /// The next thing to do. Processes buffered input until a request or a close is queued
    /// or the input runs out; act on events in order, and drain this fully before waiting.
    pub fn poll_event(&mut self) -> Option<Event> {
        while self.events.iter().all(|e| matches!(e, Event::Transmit(_)))
            && self.queued_output() < OUTPUT_HIGH_WATER
        {
            if !self.step() {
                break;
            }
        }
        if self.peer_closed
            && self.events.is_empty()
            && matches!(self.phase, Phase::Command | Phase::Sasl(_) | Phase::Data(_))
        {
            self.close(CloseReason::PeerClosed);
        }
        self.events.pop_front()
    }

    /// When to call [`Session::handle_timeout`]; `None` while the runtime is working on
    /// an authentication, a MAIL check or a delivery, or after close.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closed | Phase::Pending(Pending::Auth | Pending::Mail | Pending::Delivery) => {
                None
            }
            _ => Some(
                self.deadlines()
                    .map(|(at, _)| at)
                    .min()
                    .unwrap_or(self.deadline),
            ),
        }
    }

    /// How many bytes the next read may pass to [`Session::receive`].
    pub fn read_capacity(&self) -> usize {
        match self.phase {
            Phase::Closed | Phase::Pending(Pending::Tls) => 0,
            _ => self.input.space(),
        }
    }

    /// Bytes received and not yet processed.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Why the session closed, once [`Event::Close`] has been issued (for the log line).
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// Messages acknowledged with `250` in this session.
    pub fn delivered(&self) -> u32 {
        self.delivered
    }

    /// Whether the session waits for a command outside a mail transaction, where a stop
    /// ([`Session::shutdown`]) closes it at once rather than after the transaction.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Command | Phase::Sasl(_)) && self.transaction.is_none()
    }

    /// Whether [`Event::Close`] has been issued.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// The authenticated user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_ref().map(|a| a.user.as_str())
    }

    /// The TLS parameters, once TLS is up.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The settings this session runs under.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    // --- Processing -----------------------------------------------------------------------

    /// Processes one unit of input; false when nothing more can be done now.
    fn step(&mut self) -> bool {
        match self.phase {
            Phase::Closed | Phase::Pending(_) => false,
            Phase::Data(_) => self.step_data(),
            Phase::Sasl(_) | Phase::Command if self.shutting_down && self.transaction.is_none() => {
                self.reply(reply::shutting_down(&self.config.hostname));
                self.close(CloseReason::Shutdown);
                true
            }
            Phase::Sasl(_) => self.step_sasl(),
            Phase::Command => self.step_command(),
        }
    }

    fn step_command(&mut self) -> bool {
        // The checks below read how the line starts, so the rest of a long line must go
        // first: otherwise its tail would pick the limit of the next line.
        if !self.input.skip_long_line() {
            return false;
        }
        let bytes = self.input.bytes();
        if self.tls.is_none() && bytes.starts_with(&[0x16, 0x03]) {
            // A TLS ClientHello on the plaintext port (T6): no SMTP reply can help.
            self.close(CloseReason::TlsOnPlaintext);
            return true;
        }
        let is_auth = bytes
            .get(..5)
            .is_some_and(|head| head.eq_ignore_ascii_case(b"AUTH "));
        let limit = if is_auth {
            self.config.max_auth_line
        } else {
            self.config.max_command_line
        };
        let frame = self.input.next_line(limit);
        if !matches!(frame, Frame::Incomplete) && self.over_preauth_budget() {
            return true;
        }
        match frame {
            Frame::Incomplete => false,
            Frame::TooLong => {
                self.bad_command(if is_auth {
                    reply::auth_line_too_long()
                } else {
                    reply::line_too_long()
                });
                true
            }
            Frame::Line(range) => {
                let parsed =
                    Command::parse(self.input.bytes().get(range.clone()).unwrap_or_default());
                self.input.consume_line(&range);
                self.deadline = later(self.now, self.config.command_timeout);
                self.on_command(parsed);
                true
            }
        }
    }

    fn on_command(&mut self, parsed: Result<Command, CommandError>) {
        let verb = match &parsed {
            Ok(command) => command.verb(),
            Err(error) => error.verb,
        };
        if verb == Verb::Forbidden {
            self.reply(reply::forbidden_command(&self.config.hostname));
            self.close(CloseReason::ForbiddenCommand);
            return;
        }
        if self.config.require_tls && self.tls.is_none() {
            // RFC 3207 §4, RFC 8314 §3: before STARTTLS only the commands that lead to it.
            if verb == Verb::Auth {
                return self.reply(reply::encryption_required());
            }
            if matches!(
                verb,
                Verb::Mail | Verb::Rcpt | Verb::Data | Verb::Vrfy | Verb::Expn | Verb::Help
            ) {
                return self.reply(reply::starttls_first());
            }
        }
        let command = match parsed {
            Ok(command) => command,
            Err(error) => return self.bad_command(error.reply()),
        };
        match command {
            Command::Ehlo(name) => self.on_hello(name, true),
            Command::Helo(name) => self.on_hello(name, false),
            Command::Mail { from, params } => self.on_mail(from, params),
            Command::Rcpt { to } => self.on_rcpt(to),
            Command::Data => self.on_data(),
            Command::Rset => {
                self.transaction = None;
                self.reply(reply::ok());
            }
            Command::Noop => self.reply(reply::ok()),
            Command::Quit => {
                self.reply(reply::closing(&self.config.hostname));
                self.close(CloseReason::Quit);
            }
            Command::Vrfy | Command::Expn => self.reply(reply::vrfy()),
            Command::Help => self.reply(reply::help()),
            Command::StartTls => self.on_starttls(),
            Command::Auth { mechanism, initial } => self.on_auth(mechanism, initial),
        }
    }

    fn on_hello(&mut self, name: String, extended: bool) {
        self.transaction = None;
        self.helo = Some(name);
        let host = &self.config.hostname;
        if !extended {
            return self.reply(reply::helo(host));
        }
        let mut keywords = vec![
            "PIPELINING".to_string(),
            format!("SIZE {}", self.config.max_message_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "SMTPUTF8".to_string(),
        ];
        if self.tls.is_none() {
            keywords.push("STARTTLS".to_string());
        }
        // RFC 8314 §3, T9: never offer AUTH where it would be refused.
        if self.tls.is_some() || !self.config.require_tls {
            keywords.push("AUTH PLAIN LOGIN".to_string());
        }
        self.reply(reply::ehlo(host, keywords));
    }

    fn on_starttls(&mut self) {
        if self.tls.is_some() {
            return self.bad_command(reply::tls_already_active());
        }
        self.reply(reply::ready_to_start_tls());
        // CVE-2011-0411: nothing pipelined after STARTTLS may be read as a command.
        self.input.clear();
        self.request(Pending::Tls, Event::StartTls);
    }

    // --- Helpers --------------------------------------------------------------------------

    /// Appends a reply to the output, merged with a `Transmit` already queued at the end.
    fn reply(&mut self, reply: Reply) {
        if let Some(Event::Transmit(out)) = self.events.back_mut() {
            reply.write_to(out);
        } else {
            self.events.push_back(Event::Transmit(reply.to_bytes()));
        }
    }

    /// Counts a command received before any login succeeded; past `preauth_commands` the
    /// session answers `421 4.7.0` instead and closes (true).
    fn over_preauth_budget(&mut self) -> bool {
        if self.user.is_some() {
            return false;
        }
        self.preauth_commands = self.preauth_commands.saturating_add(1);
        if self.preauth_commands <= self.config.preauth_commands {
            return false;
        }
        self.reply(reply::too_many_preauth_commands(&self.config.hostname));
        self.close(CloseReason::PreauthLimit);
        true
    }

    /// Every deadline that applies now, with what its passing means.
    fn deadlines(&self) -> impl Iterator<Item = (Instant, Expired)> {
        let inactivity = Some((self.deadline, Expired::Inactivity));
        let preauth = self.user.is_none().then(|| {
            (
                later(self.started, self.config.preauth_timeout),
                Expired::Preauth,
            )
        });
        let rate = self
            .data_clock
            .filter(|_| self.config.min_data_rate > 0)
            .map(|clock| {
                // The moment the bytes so far fall below the rate, never inside the grace.
                let nanos =
                    u128::from(clock.bytes) * 1_000_000_000 / u128::from(self.config.min_data_rate);
                let earned = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                let at = later(clock.started, earned.max(self.config.data_rate_grace));
                (at, Expired::DataRate)
            });
        [inactivity, preauth, rate].into_iter().flatten()
    }

    /// The deadline that has passed at `now`, if any (the earliest, if several have).
    fn expired(&self, now: Instant) -> Option<Expired> {
        self.deadlines()
            .filter(|(at, _)| *at <= now)
            .min_by_key(|(at, _)| *at)
            .map(|(_, expired)| expired)
    }

    /// Answers a bad command; too many of them end the session (L8).
    fn bad_command(&mut self, reply: Reply) {
        self.bad_commands += 1;
        if self.bad_commands >= self.config.max_bad_commands {
            self.reply(reply::too_many_errors(&self.config.hostname));
            self.close(CloseReason::TooManyErrors);
        } else {
            self.reply(reply);
        }
    }

    fn request(&mut self, pending: Pending, event: Event) {
        self.phase = Phase::Pending(pending);
        self.events.push_back(event);
    }

    fn complete(&mut self, now: Instant, expected: Pending) -> Result<(), NotPending> {
        match self.phase {
            Phase::Pending(pending) if pending == expected => {
                self.now = now;
                self.phase = Phase::Command;
                self.deadline = later(now, self.config.command_timeout);
                self.data_clock = None;
                Ok(())
            }
            _ => Err(NotPending),
        }
    }

    fn close(&mut self, reason: CloseReason) {
        self.phase = Phase::Closed;
        self.close_reason = Some(reason);
        self.events.push_back(Event::Close);
    }

    fn queued_output(&self) -> usize {
        self.events
            .iter()
            .map(|e| {
                if let Event::Transmit(b) = e {
                    b.len()
                } else {
                    0
                }
            })
            .sum()
    }
}

/// `at + by`, or the furthest instant the clock can hold: a configured timeout of any size
/// must not overflow the clock (a panic in every connection).
fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .or_else(|| at.checked_add(FAR_FUTURE))
        .unwrap_or(at)
}

/// Far enough to be never, near enough for any clock to add.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Command {
    /// The verb of a parsed command.
    pub fn verb(&self) -> Verb {
        match self {
            Command::Ehlo(_) => Verb::Ehlo,
            Command::Helo(_) => Verb::Helo,
            Command::Mail { .. } => Verb::Mail,
            Command::Rcpt { .. } => Verb::Rcpt,
            Command::Data => Verb::Data,
            Command::Rset => Verb::Rset,
            Command::Noop => Verb::Noop,
            Command::Quit => Verb::Quit,
            Command::Vrfy => Verb::Vrfy,
            Command::Expn => Verb::Expn,
            Command::Help => Verb::Help,
            Command::StartTls => Verb::StartTls,
            Command::Auth { .. } => Verb::Auth,
        }
    }
}
