//! The web side's connections, the same in both runtimes: the cap on them, the bookkeeping
//! of one connection's loop (which input a wake-up becomes, the read buffer, the status
//! counts `/metrics` reports, the log lines), and the one call that answers a request. The
//! protocol is [`atacama_core::http::HttpConn`]'s; the pages are [`crate::web`]'s. The
//! runtime keeps the socket, the waits, and runs [`ServerState::serve_http`] (a store read
//! and a render, tens of µs) where a short block is allowed: atacama-mail inline on the web
//! side's own executor, never on the SMTP one.
//!
//! Web connections have their own cap, `http.max_connections`, apart from the SMTP gate. One
//! over it is still served by the same loop: its only events are `503` with `Retry-After`
//! and the close, written where the accept loop runs.
//!
//! ```text
//! let mut web = state.admit_http(peer, local, now, wall);       // `http connection open`
//! let outcome = loop {
//!     while let Some(event) = web.poll_event() {
//!         Transmit(bytes) => write them,
//!         Request(request) => web.respond(now, state.serve_http(&request))?,  // reads
//!         Close => { shut the write side, drain for deadlines.linger; break web.close_outcome() }
//!     }
//!     let wait = web.wait()?;          // ONE of: read into wait.buf, wait.deadline, the stop
//!     web.woke(now, wake)?;            // (if wait.shutdown; idle ones may be cut short), abort
//! };
//! web.close(outcome, now);                                      // `http connection close`
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use atacama_core::config::Config;
use atacama_core::connection::{Wait, Wake};
use atacama_core::http::{
    EntityTag, HttpConfig, HttpConn, HttpEvent, Request, Response, Status, StatusCounts,
};
use atacama_core::logging::{self, CloseOutcome, HttpSummary};
use atacama_core::policy::Slot;

use super::{Deadlines, ServerState};
use crate::service::Services;
use crate::web::{WebRequest, WebResponse};

/// What a `503` over `http.max_connections` asks the client to wait before trying again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// How long a `503` over the cap waits for the client's close: the accept loop serves it, so
/// briefly; long enough for the request the client already sent to be read, so that our
/// close does not become a reset that destroys the `503` on its way.
pub const OVER_CAPACITY_LINGER: Duration = Duration::from_millis(100);

/// Each read's buffer: most request heads fit, and the connection never takes more than
/// `max_head` (16 KiB) at once anyway.
const READ_CHUNK: usize = 4096;

/// The settings of every web connection under `config`.
pub fn config(config: &Config) -> HttpConfig {
    HttpConfig {
        idle_timeout: Duration::from_secs(config.http.idle_timeout_secs),
        ..HttpConfig::default()
    }
}

/// One web connection, from accept to close: drive it with the loop in the module docs.
#[derive(Debug)]
#[must_use = "a web connection must end in `close`"]
pub struct WebConnection {
    conn: HttpConn,
    peer: SocketAddr,
    started: Instant,
    /// Where reads go; empty for a `503` over the cap, which reads nothing.
    buf: Vec<u8>,
    /// The client closed its side; nothing more will be read.
    eof: bool,
    /// `HttpConn::shutdown` was called; the stop needs no more watching.
    shutdown_seen: bool,
    /// Responses sent so far, all counted in the live counters.
    counted: StatusCounts,
    services: Arc<Services>,
    /// Its place under `http.max_connections`; `None` for a `503` over it.
    slot: Option<Slot>,
    /// The deadlines of its IO.
    pub deadlines: Deadlines,
    /// Served where the accept loop runs, not on a thread or task of its own: a `503` over
    /// the cap, which a fresh socket's send buffer takes at once.
    pub inline: bool,
}

impl ServerState {
    /// A new web connection from `peer`: under `http.max_connections`, counted open and
    /// logged `http connection open` (at the address `local` gives); over it, logged
    /// `http connection refused` and served only `503` with `Retry-After` and the close.
    /// `wall` is the wall clock at `now` (the `Date` of its responses).
    pub fn admit_http(
        &self,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        now: Instant,
        wall: SystemTime,
    ) -> WebConnection {
        let limits = &self.limits;
        let (conn, buf, slot, deadlines, inline) = match self.http_slots.try_enter() {
            Some(slot) => {
                if let Some(local) = local {
                    logging::http_connection_opened(peer, local);
                }
                self.services.counters().http_connection_opened();
                let deadlines = Deadlines {
                    write: limits.write_timeout,
                    handshake: limits.tls_handshake_timeout,
                    linger: limits.close_linger,
                };
                let conn = HttpConn::new(self.http, now, wall);
                (conn, vec![0; READ_CHUNK], Some(slot), deadlines, false)
            }
            None => {
                logging::http_connection_refused(peer);
                let deadlines = Deadlines {
                    write: limits.refusal_write_timeout,
                    handshake: limits.tls_handshake_timeout,
                    linger: OVER_CAPACITY_LINGER,
                };
                let conn = HttpConn::over_capacity(now, wall, RETRY_AFTER);
                (conn, Vec::new(), None, deadlines, true)
            }
        };
        WebConnection {
            conn,
            peer,
            started: now,
            buf,
            eof: false,
            shutdown_seen: false,
            counted: StatusCounts::default(),
            services: Arc::clone(&self.services),
            slot,
            deadlines,
            inline,
        }
    }

    /// When a request that arrived at `now` may be answered: `None` for at once; while mail
    /// arrives, its turn at `priority::WEB_RATE_WHILE_MAIL` ([`crate::priority::MailPressure`]).
    /// The runtime waits until then before [`ServerState::serve_http`], without holding a
    /// thread the mail side needs.
    pub fn web_turn(&self, now: Instant) -> Option<Instant> {
        self.services.mail_pressure().web_turn(now)
    }

    /// The response to one GET or HEAD the connection parsed: [`ServerState::respond`],
    /// framed for [`WebConnection::respond`]. Blocks on store reads (never on a commit):
    /// microseconds on a warm page cache, less than a hop to a blocking pool and back, so an
    /// async runtime runs it inline, on an executor that carries no SMTP connection.
    pub fn serve_http(&self, request: &Request) -> Response {
        let web = WebRequest {
            path: &request.path,
            accept: request.accept.as_deref().map(str::as_bytes),
            authorization: request.authorization.as_deref().map(str::as_bytes),
        };
        self.respond(&web).into_http()
    }
}

impl WebResponse {
    /// The response the HTTP layer frames: the page's status, type, body, ETag, `Vary:
    /// Accept` and CSP, and [`WebResponse::headers`].
    pub fn into_http(self) -> Response {
        let headers = self.headers();
        let page = self.page;
        let status = Status::new(page.status).unwrap_or(Status::INTERNAL_SERVER_ERROR);
        let mut response = Response::new(status, page.content_type, page.body);
        // The page quotes its tag; the framing layer adds the quotes itself.
        response.etag = page
            .etag
            .as_deref()
            .and_then(|tag| EntityTag::new(tag.trim_matches('"')));
        response.vary_accept = page.vary_accept;
        response.html = page.html;
        for &(name, value) in headers {
            response.headers.push((name, value.to_string()));
        }
        response
    }
}

impl WebConnection {
    /// The client.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The next thing to do; act on each in order, and drain this before waiting. Each
    /// response written is counted for `/metrics` here, the connection's own refusals and
    /// `304`s included.
    pub fn poll_event(&mut self) -> Option<HttpEvent> {
        let event = self.conn.poll_event();
        self.count_sent();
        event
    }

    /// Answers the request of the last [`HttpEvent::Request`]; `Err` (a runtime bug: no
    /// request was outstanding) ends the connection.
    pub fn respond(&mut self, now: Instant, response: Response) -> Result<(), CloseOutcome> {
        self.conn.respond(now, response).map_err(|_| {
            logging::runtime_bug(&"a web response without a request");
            CloseOutcome::IoError("runtime bug: a response without a request".into())
        })
    }

    /// What to wait for next, or how the connection ended: once the client has closed its
    /// side and the connection has answered what it had, there is nothing left to wait for.
    pub fn wait(&mut self) -> Result<Wait<'_>, CloseOutcome> {
        if self.eof || self.buf.is_empty() {
            return Err(self.close_outcome());
        }
        let capacity = self.conn.read_capacity().min(self.buf.len());
        Ok(Wait {
            // Invariant: capacity <= buf.len().
            buf: self.buf.get_mut(..capacity).unwrap_or_default(),
            deadline: self.conn.poll_timeout(),
            shutdown: !self.shutdown_seen,
            idle: self.conn.is_idle(),
        })
    }

    /// Feeds what ended the wait to the connection. `Err` ends it with that outcome: a read
    /// error, or the abort.
    pub fn woke(&mut self, now: Instant, wake: Wake) -> Result<(), CloseOutcome> {
        match wake {
            Wake::Read(Ok(0)) => {
                self.eof = true;
                self.conn.peer_closed(now);
            }
            Wake::Read(Ok(n)) => {
                // Invariant: the read went into `wait().buf`, so n <= buf.len().
                let bytes = self.buf.get(..n).unwrap_or_default();
                self.conn.receive(now, bytes);
            }
            Wake::Read(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
            Wake::Read(Err(error)) => return Err(CloseOutcome::IoError(error.to_string())),
            Wake::Deadline => self.conn.handle_timeout(now),
            Wake::Shutdown => {
                self.shutdown_seen = true;
                self.conn.shutdown(now);
            }
            Wake::Abort => return Err(CloseOutcome::Aborted),
        }
        Ok(())
    }

    /// How the connection ended when it asked to close ([`HttpEvent::Close`]).
    pub fn close_outcome(&self) -> CloseOutcome {
        match self.conn.close_reason() {
            Some(reason) => CloseOutcome::Http(reason),
            None => CloseOutcome::PeerClosed,
        }
    }

    /// Logs `http connection close` (not for a `503` over the cap: `http connection
    /// refused` said it); dropping it then gives back its place under the cap.
    pub fn close(mut self, outcome: CloseOutcome, now: Instant) {
        self.count_sent();
        if self.slot.is_some() {
            let c = self.counted;
            let summary = HttpSummary {
                responses: c.success + c.redirection + c.client_error + c.server_error,
                duration: now.saturating_duration_since(self.started),
                outcome,
            };
            logging::http_connection_closed(self.peer, &summary);
        }
    }

    /// Counts the responses written since the last call, by class: usually one, but a
    /// pipelined run of `405`s may queue several between two polls.
    fn count_sent(&mut self) {
        let statuses = self.conn.statuses();
        if statuses == self.counted {
            return;
        }
        let counters = self.services.counters();
        let before = self.counted;
        for (now, then, status) in [
            (statuses.success, before.success, 200),
            (statuses.redirection, before.redirection, 304),
            (statuses.client_error, before.client_error, 400),
            (statuses.server_error, before.server_error, 500),
        ] {
            for _ in then..now {
                counters.record(status);
            }
        }
        self.counted = statuses;
    }
}

impl Drop for WebConnection {
    /// However the connection ends (its `close`, or its task dropped at the abort), it
    /// leaves the open gauge and its place under the cap.
    fn drop(&mut self) {
        if self.slot.take().is_some() {
            self.services.counters().http_connection_closed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atacama_core::web::Page;

    fn state(max_connections: usize) -> (tempfile::TempDir, ServerState) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.auth.bcrypt_cost = 4;
        config.http.max_connections = max_connections;
        config.http.idle_timeout_secs = 7;
        let state = ServerState::open(&config).unwrap();
        (dir, state)
    }

    fn peer() -> SocketAddr {
        "192.0.2.7:40000".parse().unwrap()
    }

    /// Every event up to the first wait, with the bytes written joined.
    fn drain(web: &mut WebConnection, state: &ServerState) -> (String, bool) {
        let (mut written, mut closed) = (Vec::new(), false);
        while let Some(event) = web.poll_event() {
            match event {
                HttpEvent::Transmit(bytes) => written.extend_from_slice(&bytes),
                HttpEvent::Request(request) => {
                    let response = state.serve_http(&request);
                    web.respond(Instant::now(), response).unwrap();
                }
                HttpEvent::Close => closed = true,
            }
        }
        (String::from_utf8_lossy(&written).into_owned(), closed)
    }

    #[test]
    fn the_config_sets_the_idle_timeout() {
        let (_dir, state) = state(4);
        assert_eq!(state.http.idle_timeout, Duration::from_secs(7));
        assert_eq!(state.http.max_head, HttpConfig::default().max_head);
    }

    #[test]
    fn a_request_is_served_counted_and_the_close_frees_its_place() {
        let (_dir, state) = state(4);
        let now = Instant::now();
        let mut web = state.admit_http(peer(), None, now, SystemTime::now());
        assert!(!web.inline);
        assert_eq!(state.http_slots.occupied(), 1);
        assert_eq!(state.counters().http_connections_open, 1);
        let wait = web.wait().unwrap();
        let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\n\r\n";
        wait.buf[..request.len()].copy_from_slice(request);
        assert!(wait.shutdown && wait.idle && wait.deadline.is_some());
        web.woke(now, Wake::Read(Ok(request.len()))).unwrap();
        let (written, closed) = drain(&mut web, &state);
        assert!(written.starts_with("HTTP/1.1 200 OK\r\n"), "{written}");
        assert!(written.contains("\r\n\r\nokHTTP/1.1 405 "), "{written}");
        assert!(!closed);
        let counted = state.counters().http_requests;
        assert_eq!((counted.class_2xx, counted.class_4xx), (1, 1));
        web.woke(now, Wake::Read(Ok(0))).unwrap();
        let (_, closed) = drain(&mut web, &state);
        assert!(closed);
        assert_eq!(
            web.close_outcome(),
            CloseOutcome::Http(atacama_core::http::CloseReason::PeerClosed)
        );
        web.close(CloseOutcome::PeerClosed, now);
        assert_eq!(state.http_slots.occupied(), 0);
        assert_eq!(state.counters().http_connections_open, 0);
    }

    #[test]
    fn over_the_cap_a_connection_is_told_503_and_is_not_counted_open() {
        let (_dir, state) = state(1);
        let now = Instant::now();
        let held = state.admit_http(peer(), None, now, SystemTime::now());
        let mut refused = state.admit_http(peer(), None, now, SystemTime::now());
        assert!(refused.inline);
        assert_eq!(refused.deadlines.linger, OVER_CAPACITY_LINGER);
        let (written, closed) = drain(&mut refused, &state);
        assert!(
            written.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{written}"
        );
        assert!(written.contains("\r\nRetry-After: 5\r\n"), "{written}");
        assert!(closed);
        assert!(refused.wait().is_err(), "it reads nothing");
        refused.close(
            CloseOutcome::Http(atacama_core::http::CloseReason::OverCapacity),
            now,
        );
        assert_eq!(state.counters().http_connections_open, 1);
        assert_eq!(state.counters().http_requests.class_5xx, 1);
        // The drain waits for web connections too.
        assert_eq!(state.open_connections(), 1);
        drop(held);
        assert_eq!(state.open_connections(), 0);
        assert_eq!(state.counters().http_connections_open, 0);
    }

    #[test]
    fn a_page_becomes_a_response_with_its_tag_unquoted_and_the_challenge() {
        let page = Page {
            status: 401,
            content_type: "application/json",
            body: b"{}".to_vec(),
            etag: Some("\"89abcdef-2\"".into()),
            vary_accept: true,
            html: false,
        };
        let response = WebResponse {
            page,
            www_authenticate: true,
        }
        .into_http();
        assert_eq!(response.status, Status::UNAUTHORIZED);
        assert_eq!(
            response.etag.as_ref().map(EntityTag::opaque),
            Some("89abcdef-2")
        );
        assert!(response.vary_accept && !response.html);
        assert_eq!(
            response.headers,
            [("WWW-Authenticate", "Bearer".to_string())]
        );
    }
}
