//! Test support for [`HttpConn`]: a harness on a virtual clock, a scripted application,
//! and the invariants every event must pass, shared by the conversation tests, the property
//! tests and the fuzz target.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::invariants::Violation;
use crate::http::{EntityTag, HttpConfig, HttpConn, HttpEvent, Method, Request, Response, Status};

/// The wall clock of every harness connection: 2024-03-05 09:00:02 UTC.
pub const WALL: Duration = Duration::from_secs(1_709_629_202);
/// The `Date` of a response sent at [`WALL`].
pub const WALL_DATE: &str = "Tue, 05 Mar 2024 09:00:02 GMT";
/// The bearer token the scripted application accepts for paths under `/private`.
pub const GOOD_TOKEN: &str = "Bearer good-token";

/// A response as the client parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedResponse {
    pub status: u16,
    /// Names as sent, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ParsedResponse {
    /// The value of header `name` (any case), if sent once; panics if sent twice.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = values.next().map(|(_, v)| v.as_str());
        assert!(values.next().is_none(), "{name} sent twice");
        first
    }

    /// The body as UTF-8.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("<not UTF-8>")
    }
}

/// Parses one response as [`HttpConn`] frames it (the whole of one `Transmit`), checking
/// what every response must carry: `Date`, `X-Content-Type-Options`, `Referrer-Policy`,
/// `Content-Length` (matching the body, or with no body after a HEAD) except on `304`
/// (which has no body), the CSP on HTML, `Allow` on `405`.
pub fn parse_response(bytes: &[u8]) -> Result<ParsedResponse, Violation> {
    let fail = |what: &str| Violation(format!("{what}: {:?}", String::from_utf8_lossy(bytes)));
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut fields);
    let len = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return Err(fail("not one complete response head")),
    };
    if parsed.version != Some(1) {
        return Err(fail("not HTTP/1.1"));
    }
    let response = ParsedResponse {
        status: parsed.code.unwrap_or(0),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value).into_owned();
                (h.name.to_string(), value)
            })
            .collect(),
        body: bytes.get(len..).unwrap_or_default().to_vec(),
    };
    let has = |name: &str| {
        response
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    };
    let value = |name: &str| {
        response
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    for name in ["Date", "X-Content-Type-Options", "Referrer-Policy"] {
        if has(name) != 1 {
            return Err(fail(&format!("{name} not sent exactly once")));
        }
    }
    if value("X-Content-Type-Options") != Some("nosniff")
        || value("Referrer-Policy") != Some("no-referrer")
    {
        return Err(fail("wrong safety headers"));
    }
    if response.status == 304 {
        if has("Content-Length") != 0 || !response.body.is_empty() {
            return Err(fail("304 with a length or a body"));
        }
    } else {
        let length: Option<usize> = value("Content-Length").and_then(|v| v.parse().ok());
        let Some(length) = length.filter(|_| has("Content-Length") == 1) else {
            return Err(fail("no single valid Content-Length"));
        };
        if response.body.len() != length && !response.body.is_empty() {
            return Err(fail("body length differs from Content-Length"));
        }
    }
    if value("Content-Type").is_some_and(|t| t.starts_with("text/html"))
        && value("Content-Security-Policy") != Some(crate::http::HTML_CSP)
    {
        return Err(fail("HTML without the CSP"));
    }
    if response.status == 405 && value("Allow") != Some("GET, HEAD") {
        return Err(fail("405 without Allow: GET, HEAD"));
    }
    Ok(response)
}

/// What the scripted application answers, the same every time:
/// - `/missing…`: `404`, JSON;
/// - `/private…` without [`GOOD_TOKEN`]: `401` with `WWW-Authenticate: Bearer`;
/// - `Accept` starting with `text/html`: an HTML page naming the path's length, with an
///   ETag `h-LEN` and `Vary: Accept`;
/// - anything else: `{"len":LEN}` with an ETag `j-LEN` and `Vary: Accept`.
pub fn scripted_response(request: &Request) -> Response {
    let len = request.path.len();
    if request.path.starts_with("/missing") {
        return Response::new(
            Status::NOT_FOUND,
            "application/json",
            r#"{"error":"not_found","message":"No such message"}"#,
        );
    }
    if request.path.starts_with("/private") && request.authorization.as_deref() != Some(GOOD_TOKEN)
    {
        return Response::new(Status::UNAUTHORIZED, "application/json", "{}")
            .with_header("WWW-Authenticate", "Bearer");
    }
    let html = request
        .accept
        .as_deref()
        .is_some_and(|accept| accept.starts_with("text/html"));
    let (response, tag) = if html {
        let page = format!("<!doctype html><title>t</title><p>{len}</p>");
        (Response::html(Status::OK, page), format!("h-{len}"))
    } else {
        let json = format!("{{\"len\":{len}}}");
        (
            Response::new(Status::OK, "application/json", json),
            format!("j-{len}"),
        )
    };
    match EntityTag::new(tag) {
        Some(etag) => response.with_etag(etag).vary_accept(),
        None => response.vary_accept(),
    }
}

/// What a connection did, for comparing runs: requests, closes, and the bytes sent
/// (adjacent `Transmit`s merged, so that chunking cannot show). `Date` values read
/// `(masked)`: a head is parsed at a line end, so a line gone bad before its end is refused
/// at its end, or at the deadline if it never ends, and the `Date` shows when that was;
/// the events are the same.
pub type HttpRecording = Vec<HttpEvent>;

/// Replaces the value of the `Date` header in one response with `(masked)`.
fn mask_date(response: &[u8]) -> Vec<u8> {
    let Some(at) = memchr::memmem::find(response, b"\r\nDate: ") else {
        return response.to_vec();
    };
    let value = at + b"\r\nDate: ".len();
    let rest = response.get(value..).unwrap_or_default();
    let end = memchr::memmem::find(rest, b"\r\n").map_or(response.len(), |n| value + n);
    let mut masked = response.get(..value).unwrap_or_default().to_vec();
    masked.extend_from_slice(b"(masked)");
    masked.extend_from_slice(response.get(end..).unwrap_or_default());
    masked
}

/// How a scripted client's stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The client closes its side.
    PeerClose,
    /// The client goes silent: time runs to each deadline.
    Silence,
    /// The server stops, then time runs to each deadline.
    Shutdown,
}

/// Feeds `chunks` to a connection under `config` (each respecting `read_capacity`), the
/// scripted application answering every request at once, then the client closes; returns
/// what the connection did, after checking every event.
pub fn run_http_chunks<'a>(
    config: HttpConfig,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<HttpRecording, Violation> {
    run_http(config, chunks, StreamEnd::PeerClose)
}

/// [`run_http_chunks`] with the stream ending as `end` says; the connection must close.
pub fn run_http<'a>(
    config: HttpConfig,
    chunks: impl IntoIterator<Item = &'a [u8]>,
    end: StreamEnd,
) -> Result<HttpRecording, Violation> {
    let mut h = HttpHarness::new(config);
    h.auto_respond = true;
    for mut chunk in chunks {
        h.pump()?;
        while !chunk.is_empty() {
            let n = chunk.len().min(h.conn.read_capacity());
            if n == 0 {
                break;
            }
            let (now, later) = chunk.split_at_checked(n).unwrap_or((chunk, &[]));
            h.conn.receive(h.now, now);
            chunk = later;
            h.pump()?;
        }
    }
    match end {
        StreamEnd::PeerClose => h.conn.peer_closed(h.now),
        StreamEnd::Silence => {}
        StreamEnd::Shutdown => h.conn.shutdown(h.now),
    }
    h.pump()?;
    // Each deadline either closes or, at most, gives way to one more (a head that was
    // complete in time, then the idle wait after its response).
    for _ in 0..4 {
        let Some(at) = h.conn.poll_timeout() else {
            break;
        };
        h.now = h.now.max(at);
        h.conn.handle_timeout(h.now);
        h.pump()?;
    }
    if !h.checker.closed {
        return Err(Violation(format!("no Close after {end:?}")));
    }
    Ok(h.recording)
}

/// Watches the events of one connection.
#[derive(Debug, Default)]
struct HttpChecker {
    outstanding: Option<Method>,
    closed: bool,
}

impl HttpChecker {
    fn on_event(&mut self, event: &HttpEvent, conn: &HttpConn) -> Result<(), Violation> {
        if self.closed {
            return Err(Violation(format!("event after Close: {event:?}")));
        }
        if conn.buffered() > conn.config().max_head {
            return Err(Violation(format!(
                "buffered {} > max_head",
                conn.buffered()
            )));
        }
        match event {
            HttpEvent::Transmit(bytes) => {
                if self.outstanding.is_some() {
                    return Err(Violation(
                        "a response overtook the outstanding request".into(),
                    ));
                }
                parse_response(bytes)?;
            }
            HttpEvent::Request(request) => {
                if self.outstanding.is_some() {
                    return Err(Violation("two requests outstanding".into()));
                }
                if !request.path.starts_with('/') {
                    return Err(Violation(format!("path {:?}", request.path)));
                }
                self.outstanding = Some(request.method);
            }
            HttpEvent::Close => {
                if self.outstanding.is_some() {
                    return Err(Violation("closed with a request outstanding".into()));
                }
                if conn.poll_timeout().is_some() || conn.read_capacity() != 0 {
                    return Err(Violation("closed, yet waits for input".into()));
                }
                self.closed = true;
            }
        }
        Ok(())
    }
}

/// Drives one connection like a runtime would, on a virtual clock, checking the invariants
/// after every event. Responses are read back with [`HttpHarness::expect_response`].
pub struct HttpHarness {
    pub conn: HttpConn,
    pub now: Instant,
    /// Answer every request at once with [`scripted_response`].
    pub auto_respond: bool,
    checker: HttpChecker,
    events: VecDeque<HttpEvent>,
    recording: HttpRecording,
}

impl HttpHarness {
    /// A connection accepted just now, under `config`.
    pub fn new(config: HttpConfig) -> HttpHarness {
        let now = Instant::now();
        HttpHarness::from_conn(HttpConn::new(config, now, UNIX_EPOCH + WALL), now)
    }

    /// A harness around a connection made at `now`.
    pub fn from_conn(conn: HttpConn, now: Instant) -> HttpHarness {
        HttpHarness {
            conn,
            now,
            auto_respond: false,
            checker: HttpChecker::default(),
            events: VecDeque::new(),
            recording: Vec::new(),
        }
    }

    /// The wall clock the harness connections were given.
    pub fn wall() -> SystemTime {
        UNIX_EPOCH + WALL
    }

    /// The client sends `bytes`; returns how many the connection took (its read capacity).
    pub fn client(&mut self, bytes: impl AsRef<[u8]>) -> usize {
        let bytes = bytes.as_ref();
        let n = bytes.len().min(self.conn.read_capacity());
        self.conn.receive(self.now, bytes.get(..n).unwrap_or(bytes));
        self.pump().unwrap_or_else(|v| panic!("{v}"));
        n
    }

    /// Time passes; the deadline is handled if it passed.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.conn.poll_timeout().is_some_and(|at| at <= self.now) {
            self.conn.handle_timeout(self.now);
        }
        self.pump().unwrap_or_else(|v| panic!("{v}"));
    }

    /// The client closes its side.
    pub fn client_closes(&mut self) {
        self.conn.peer_closed(self.now);
        self.pump().unwrap_or_else(|v| panic!("{v}"));
    }

    /// The server stops.
    pub fn shutdown(&mut self) {
        self.conn.shutdown(self.now);
        self.pump().unwrap_or_else(|v| panic!("{v}"));
    }

    /// The next event must be a request; returns it.
    pub fn expect_request(&mut self) -> Request {
        match self.events.pop_front() {
            Some(HttpEvent::Request(request)) => request,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// Answers the outstanding request.
    pub fn respond(&mut self, response: Response) {
        self.checker.outstanding = None;
        self.conn
            .respond(self.now, response)
            .unwrap_or_else(|e| panic!("respond: {e:?}"));
        self.pump().unwrap_or_else(|v| panic!("{v}"));
    }

    /// The next event must be one response; returns it parsed (and checked).
    pub fn expect_response(&mut self) -> ParsedResponse {
        match self.events.pop_front() {
            Some(HttpEvent::Transmit(bytes)) => {
                parse_response(&bytes).unwrap_or_else(|v| panic!("{v}"))
            }
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// The next event must be one response with `status`; returns it.
    pub fn expect_status(&mut self, status: u16) -> ParsedResponse {
        let response = self.expect_response();
        assert_eq!(response.status, status, "{response:?}");
        response
    }

    /// The next event must be the close.
    pub fn expect_close(&mut self) {
        match self.events.pop_front() {
            Some(HttpEvent::Close) => {}
            other => panic!("expected Close, got {other:?}"),
        }
    }

    /// No event is left to read.
    pub fn expect_nothing(&mut self) {
        assert_eq!(self.events.pop_front(), None);
    }

    /// Drains the connection's events into the harness, checking each.
    fn pump(&mut self) -> Result<(), Violation> {
        while let Some(event) = self.conn.poll_event() {
            self.checker.on_event(&event, &self.conn)?;
            match (&event, self.recording.last_mut()) {
                (HttpEvent::Transmit(more), Some(HttpEvent::Transmit(bytes))) => {
                    bytes.extend_from_slice(&mask_date(more))
                }
                (HttpEvent::Transmit(bytes), _) => {
                    self.recording.push(HttpEvent::Transmit(mask_date(bytes)))
                }
                _ => self.recording.push(event.clone()),
            }
            let request = match &event {
                HttpEvent::Request(request) if self.auto_respond => Some(request.clone()),
                _ => None,
            };
            if let Some(request) = request {
                self.checker.outstanding = None;
                let response = scripted_response(&request);
                if self.conn.respond(self.now, response).is_err() {
                    return Err(Violation("a request, then NotPending".into()));
                }
            } else {
                self.events.push_back(event);
            }
        }
        Ok(())
    }
}
