//! The per-connection HTTP/1.1 state machine.
//!
//! Input methods record what happened (`receive`, `handle_timeout`, `peer_closed`,
//! `shutdown`, and the application's `respond`); the work happens in
//! [`HttpConn::poll_event`], one request at a time: the next head is parsed only once the
//! previous request is answered, so pipelined requests are answered strictly in order
//! (RFC 9112 §9.3.2) and at most one request is ever with the application.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use super::config::HttpConfig;
use super::date::{imf_fixdate, unix_seconds};
use super::head::{self, Decision, HeadError, Method, Request, Version};
use super::response::{Persistence, Response, Status, frame, none_match};

/// Output queued beyond this many bytes makes `poll_event` hand it out before parsing on,
/// so a flood of pipelined `405`s cannot grow the output without bound.
const OUTPUT_HIGH_WATER: usize = 16 * 1024;

/// What the connection asks its runtime to do. Act on events in the order they come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpEvent {
    /// Write these bytes before acting on any later event.
    Transmit(Vec<u8>),
    /// Serve this GET or HEAD, then [`HttpConn::respond`].
    Request(Request),
    /// Flush what was written and close; nothing follows. Close gracefully (shut the write
    /// side, then read and discard for a moment) so that a client still sending does not
    /// get a reset that destroys the response.
    Close,
}

/// [`HttpConn::respond`] without a request to answer: a runtime bug (log it, close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotPending;

/// Why the connection closed, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its side.
    PeerClosed,
    /// The client asked for it (`Connection: close`, or HTTP/1.0 without keep-alive).
    ClientAsked,
    /// Idle between requests past the idle timeout (or, before the first request, past
    /// the first head's deadline): closed without a response.
    Idle,
    /// A head (or a skipped body) did not arrive in time: `408`.
    Timeout,
    /// The request was refused in a way that ends the connection (`400`, `414`, `431`,
    /// `505`, a `405` with a body too large to skip).
    Refused(HeadError),
    /// The server is stopping.
    Shutdown,
    /// Over capacity: `503` and close ([`HttpConn::over_capacity`]).
    OverCapacity,
}

/// Responses sent so far, by status class (for `atacama_http_requests_total`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub success: u64,
    pub redirection: u64,
    pub client_error: u64,
    pub server_error: u64,
}

/// One HTTP/1.1 connection, from accept to close. See the module docs for the call order.
#[derive(Debug)]
pub struct HttpConn {
    config: HttpConfig,
    /// Bytes received and not yet consumed; never more than `config.max_head`.
    input: Vec<u8>,
    /// Whether `input` may decide now (it gained a line end, passed `max_target`, filled
    /// up, the stream ended or a deadline passed): heads are parsed only then, so a head
    /// trickled byte by byte costs one parse per line, not one per byte. The price: a line
    /// that goes bad before its end is refused at its end (or at the deadline, if it never
    /// ends), not at the bad byte; the decision is the same (`head::decide` is monotone).
    parse_due: bool,
    events: VecDeque<HttpEvent>,
    phase: Phase,
    deadline: Deadline,
    /// The wall clock at `anchor`: `Date` is derived from it and the monotonic `now`.
    anchor: Instant,
    anchor_secs: u64,
    /// The last `Date` formatted, and its second.
    date: (u64, String),
    now: Instant,
    timed_out: bool,
    peer_closed: bool,
    shutting_down: bool,
    statuses: StatusCounts,
    close_reason: Option<CloseReason>,
}

#[derive(Debug)]
enum Phase {
    /// Reading a head; between requests when `input` is empty.
    Head,
    /// A request is with the application; nothing more is parsed until `respond`.
    Outstanding(Outstanding),
    /// Skipping this many more bytes of a refused request's body, then reading heads.
    Skipping(u64),
    Closed,
}

/// What the response to the outstanding request depends on.
#[derive(Debug)]
struct Outstanding {
    head: bool,
    keep_alive: bool,
    version: Version,
    if_none_match: Option<String>,
}

/// When the client's silence ends the connection, and what it was waiting for.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    kind: Waiting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// The first request, since the accept.
    FirstHead,
    /// The next request, since the last response.
    Idle,
    /// The rest of a head (and a skipped body), since its first byte.
    Head,
}

impl HttpConn {
    /// A connection accepted at `now`, when the wall clock read `wall` (the `Date` of every
    /// response is `wall` plus the monotonic time since; over a connection's life the two
    /// clocks do not drift apart by more than a `Date` can show).
    pub fn new(config: HttpConfig, now: Instant, wall: SystemTime) -> HttpConn {
        let anchor_secs = unix_seconds(wall);
        HttpConn {
            input: Vec::new(),
            parse_due: false,
            events: VecDeque::new(),
            phase: Phase::Head,
            deadline: Deadline {
                at: later(now, config.first_head_timeout),
                kind: Waiting::FirstHead,
            },
            anchor: now,
            anchor_secs,
            date: (anchor_secs, imf_fixdate(anchor_secs)),
            now,
            timed_out: false,
            peer_closed: false,
            shutting_down: false,
            statuses: StatusCounts::default(),
            close_reason: None,
            config,
        }
    }

    /// A connection over `max_connections`: its only events are `503` with
    /// `Retry-After: retry_after` (whole seconds) and the close; it reads nothing.
    pub fn over_capacity(now: Instant, wall: SystemTime, retry_after: Duration) -> HttpConn {
        let mut conn = HttpConn::new(HttpConfig::default(), now, wall);
        let response = Response::json_error(
            Status::SERVICE_UNAVAILABLE,
            "unavailable",
            "Too many connections, retry later",
        )
        .with_header("Retry-After", retry_after.as_secs().to_string());
        conn.transmit(&response, Persistence::Close, false);
        conn.close(CloseReason::OverCapacity);
        conn
    }

    // --- Inputs ---------------------------------------------------------------------------

    /// Buffers bytes read from the client: at most [`HttpConn::read_capacity`] of them (a
    /// runtime that passes more loses the excess).
    pub fn receive(&mut self, now: Instant, bytes: &[u8]) {
        self.now = now;
        if matches!(self.phase, Phase::Closed) || bytes.is_empty() {
            return;
        }
        let bytes = bytes.get(..self.read_capacity()).unwrap_or(bytes);
        if matches!(self.phase, Phase::Head) && self.deadline.kind != Waiting::Head {
            // A head starts: it has `head_timeout` from its first byte (and the first one
            // still no more than `first_head_timeout` from the accept).
            let at = later(now, self.config.head_timeout);
            self.deadline = Deadline {
                at: match self.deadline.kind {
                    Waiting::FirstHead => at.min(self.deadline.at),
                    _ => at,
                },
                kind: Waiting::Head,
            };
        }
        let before = self.input.len();
        self.input.extend_from_slice(bytes);
        let len = self.input.len();
        // A line end may complete a head; a buffer past `max_target` may hold a target too
        // long to wait for (414 before its end); a full one must decide.
        let max_target = self.config.max_target;
        if memchr::memchr(b'\n', bytes).is_some()
            || (before <= max_target && len > max_target)
            || len >= self.config.max_head
        {
            self.parse_due = true;
        }
    }

    /// The clock passed [`HttpConn::poll_timeout`]: a connection idle between requests
    /// closes without a word (RFC 9112 §9.5: a client may be sending a request just then,
    /// and would take a `408` for its answer); one in the middle of a head gets `408` and
    /// closes. Harmless if early or repeated.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if matches!(self.phase, Phase::Head | Phase::Skipping(_)) && now >= self.deadline.at {
            self.timed_out = true;
            // Whatever arrived in time is decided first: a complete head is still served.
            self.parse_due = true;
        }
    }

    /// The client closed its side. Requests already received are still answered.
    pub fn peer_closed(&mut self, now: Instant) {
        self.now = now;
        self.peer_closed = true;
        self.parse_due = true;
    }

    /// The server is stopping: an idle connection closes at once; one with a request
    /// under way answers it with `Connection: close`, then closes.
    pub fn shutdown(&mut self, now: Instant) {
        self.now = now;
        self.shutting_down = true;
    }

    /// Answers the outstanding request (the last [`HttpEvent::Request`]); without one,
    /// `Err(NotPending)` and nothing changes. A `200`
    /// with an ETag that the request's `If-None-Match` matches becomes a `304`; a HEAD gets
    /// the headers without the body.
    pub fn respond(&mut self, now: Instant, response: Response) -> Result<(), NotPending> {
        if !matches!(self.phase, Phase::Outstanding(_)) {
            return Err(NotPending); // and nothing changed
        }
        self.now = now;
        let Phase::Outstanding(request) = std::mem::replace(&mut self.phase, Phase::Head) else {
            return Err(NotPending);
        };
        let not_modified = response.status == Status::OK
            && request
                .if_none_match
                .as_deref()
                .is_some_and(|field| none_match(field, response.etag.as_ref()));
        let response = if not_modified {
            Response {
                status: Status::NOT_MODIFIED,
                body: Vec::new(),
                ..response
            }
        } else {
            response
        };
        let close = !request.keep_alive || self.shutting_down;
        let persistence = match (close, request.version) {
            (true, _) => Persistence::Close,
            (false, Version::Http10) => Persistence::KeepAlive10,
            (false, Version::Http11) => Persistence::KeepAlive,
        };
        self.transmit(&response, persistence, request.head);
        if close {
            let reason = if request.keep_alive {
                CloseReason::Shutdown
            } else {
                CloseReason::ClientAsked
            };
            self.close(reason);
        } else {
            self.between_requests();
        }
        Ok(())
    }

    // --- Outputs --------------------------------------------------------------------------

    /// The next thing to do. Parses buffered input until a request or a close is queued or
    /// the input runs out; act on events in order, and drain this fully before waiting.
    pub fn poll_event(&mut self) -> Option<HttpEvent> {
        let mut stalled = false;
        while self.queued_output() < OUTPUT_HIGH_WATER {
            if !self.step() {
                stalled = true;
                break;
            }
        }
        if stalled {
            self.end_if_due();
        }
        self.events.pop_front()
    }

    /// When to call [`HttpConn::handle_timeout`]; `None` while a request is with the
    /// application, or after close.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Head | Phase::Skipping(_) => Some(self.deadline.at),
            Phase::Outstanding(_) | Phase::Closed => None,
        }
    }

    /// How many bytes the next read may pass to [`HttpConn::receive`]: what is left of the
    /// input buffer (`max_head`). Zero after close, and while a request is with the
    /// application and pipelined bytes have filled the buffer.
    pub fn read_capacity(&self) -> usize {
        match self.phase {
            Phase::Closed => 0,
            _ => self.config.max_head.saturating_sub(self.input.len()),
        }
    }

    /// Between requests: nothing buffered, nothing with the application. A stop may close
    /// such a connection at once.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head) && self.input.is_empty()
    }

    /// Whether [`HttpEvent::Close`] has been queued.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Why the connection closed, once [`HttpEvent::Close`] has been queued.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// Responses sent so far, by class.
    pub fn statuses(&self) -> StatusCounts {
        self.statuses
    }

    /// The settings this connection runs under.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    // --- The work -------------------------------------------------------------------------

    /// Does one piece of work on the buffered input; false when there is none to do.
    fn step(&mut self) -> bool {
        match self.phase {
            Phase::Closed | Phase::Outstanding(_) => false,
            Phase::Skipping(remaining) => {
                let skip = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(self.input.len());
                if skip == 0 && remaining > 0 {
                    return false;
                }
                self.input.drain(..skip);
                let remaining = remaining.saturating_sub(skip as u64);
                if remaining == 0 {
                    self.phase = Phase::Head;
                    self.between_requests();
                } else {
                    self.phase = Phase::Skipping(remaining);
                }
                true
            }
            Phase::Head => self.read_head(),
        }
    }

    /// Decides the buffered head, if it is due.
    fn read_head(&mut self) -> bool {
        let empty_lines = head::leading_empty_lines(&self.input);
        if empty_lines > 0 {
            self.input.drain(..empty_lines);
        }
        if !self.parse_due || self.input.is_empty() {
            return false;
        }
        match head::decide(&self.input, &self.config) {
            Decision::Incomplete => {
                self.parse_due = false;
                false
            }
            Decision::Request { request, len } => {
                self.input.drain(..len.min(self.input.len()));
                self.phase = Phase::Outstanding(Outstanding {
                    head: request.method == Method::Head,
                    keep_alive: request.keep_alive,
                    version: request.version,
                    if_none_match: request.if_none_match.clone(),
                });
                self.events.push_back(HttpEvent::Request(request));
                true
            }
            Decision::Refuse(refusal) => {
                let skip = refusal.body > 0;
                let close = if refusal.error.closes()
                    || (skip && refusal.expects_continue)
                    || refusal.body > self.config.max_skipped_body
                {
                    Some(CloseReason::Refused(refusal.error))
                } else if self.shutting_down {
                    Some(CloseReason::Shutdown)
                } else if !refusal.keep_alive {
                    Some(CloseReason::ClientAsked)
                } else {
                    None
                };
                self.refuse(refusal.error, refusal.head, refusal.version, close);
                if close.is_none() {
                    self.input.drain(..refusal.len.min(self.input.len()));
                    if skip {
                        // The body belongs to this request: it keeps the head's deadline.
                        self.phase = Phase::Skipping(refusal.body);
                    } else {
                        self.between_requests();
                    }
                }
                true
            }
        }
    }

    /// Sends the connection's own answer to a request it refuses (its body only if the
    /// request was not a HEAD); closes if `close` says why.
    fn refuse(
        &mut self,
        error: HeadError,
        head: bool,
        version: Version,
        close: Option<CloseReason>,
    ) {
        let status = Status::new(error.status()).unwrap_or(Status::BAD_REQUEST);
        let mut response = Response::json_error(status, error.code(), error.message());
        if error == HeadError::MethodNotAllowed {
            response.headers.push(("Allow", "GET, HEAD".to_string()));
        }
        let persistence = match (close, version) {
            (Some(_), _) => Persistence::Close,
            (None, Version::Http10) => Persistence::KeepAlive10,
            (None, Version::Http11) => Persistence::KeepAlive,
        };
        self.transmit(&response, persistence, head);
        if let Some(reason) = close {
            self.close(reason);
        }
    }

    /// Once no more input can be decided: a timeout, the client's close or the stop end
    /// the connection.
    fn end_if_due(&mut self) {
        if !matches!(self.phase, Phase::Head | Phase::Skipping(_)) {
            self.timed_out = false;
            return;
        }
        if std::mem::take(&mut self.timed_out) && self.now >= self.deadline.at {
            match self.phase {
                Phase::Head if self.input.is_empty() => self.close(CloseReason::Idle),
                Phase::Head => self.refuse(
                    HeadError::Timeout,
                    false,
                    Version::Http11,
                    Some(CloseReason::Timeout),
                ),
                // The request whose body this is was answered already.
                _ => self.close(CloseReason::Timeout),
            }
        } else if self.peer_closed {
            // A partial head can never complete: nothing to answer.
            self.close(CloseReason::PeerClosed);
        } else if self.shutting_down && self.is_idle() {
            self.close(CloseReason::Shutdown);
        }
    }

    /// A response was sent and the connection stays: wait for the next head.
    fn between_requests(&mut self) {
        self.parse_due = true;
        self.deadline = if self.input.is_empty() {
            Deadline {
                at: later(self.now, self.config.idle_timeout),
                kind: Waiting::Idle,
            }
        } else {
            // Pipelined bytes are already here: the next head has started.
            Deadline {
                at: later(self.now, self.config.head_timeout),
                kind: Waiting::Head,
            }
        };
    }

    fn transmit(&mut self, response: &Response, persistence: Persistence, head: bool) {
        let mut out = Vec::new();
        let date = self.date();
        frame(&mut out, response, &date, persistence, head);
        let counts = &mut self.statuses;
        match response.status.code() {
            200..=299 => counts.success += 1,
            300..=399 => counts.redirection += 1,
            400..=499 => counts.client_error += 1,
            500..=599 => counts.server_error += 1,
            _ => {}
        }
        self.events.push_back(HttpEvent::Transmit(out));
    }

    /// Today's `Date`, formatted once a second at most.
    fn date(&mut self) -> String {
        let elapsed = self.now.saturating_duration_since(self.anchor).as_secs();
        let secs = self.anchor_secs.saturating_add(elapsed);
        if self.date.0 != secs {
            self.date = (secs, imf_fixdate(secs));
        }
        self.date.1.clone()
    }

    fn close(&mut self, reason: CloseReason) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        self.phase = Phase::Closed;
        self.close_reason = Some(reason);
        self.input = Vec::new();
        self.events.push_back(HttpEvent::Close);
    }

    fn queued_output(&self) -> usize {
        self.events
            .iter()
            .map(|event| match event {
                HttpEvent::Transmit(bytes) => bytes.len(),
                HttpEvent::Request(_) | HttpEvent::Close => 0,
            })
            .sum()
    }
}

/// `at + by`, or far in the future if that overflows.
fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .or_else(|| at.checked_add(FAR_FUTURE))
        .unwrap_or(at)
}

/// Far enough to be never, near enough for any clock to add.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
