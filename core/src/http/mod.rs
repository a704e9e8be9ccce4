//! The read side's HTTP/1.1 (RFC 9110, RFC 9112), as a sans-IO state machine: the runtime
//! feeds bytes and time into an [`HttpConn`] and carries out its [`HttpEvent`]s; requests
//! the application serves come out as [`Request`]s and go back in as [`Response`]s.
//!
//! ```text
//! let mut conn = HttpConn::new(config, now, SystemTime::now());   // or HttpConn::over_capacity
//! loop {
//!     while let Some(event) = conn.poll_event() {        // drain fully, act in order
//!         match event {
//!             HttpEvent::Transmit(bytes) => write them,
//!             HttpEvent::Request(request) => conn.respond(now, serve(&request))?,
//!             HttpEvent::Close => flush, close gracefully, stop,
//!         }
//!     }
//!     // wait for ONE thing: a read of at most conn.read_capacity() bytes, or
//!     // conn.poll_timeout(), or the stop (conn.shutdown(now); is_idle() says whether that
//!     // may interrupt the read)
//!     conn.receive(now, &buf[..n]);   // or conn.handle_timeout(now) / conn.peer_closed(now)
//! }
//! ```
//!
//! What the connection decides itself, so the application never sees it:
//! - Persistence (RFC 9112 §9.3): HTTP/1.1 keeps the connection unless `Connection: close`;
//!   HTTP/1.0 closes unless `Connection: keep-alive`. Pipelined requests are answered in
//!   order: the next head is parsed only after the previous response.
//! - Limits: head ≤ `max_head` (16 KiB) and ≤ `max_headers` (64) fields, else `431`;
//!   target ≤ `max_target` (8 KiB), else `414`; see [`head`] for every refusal and the order
//!   of the checks. Every refusal but `405` closes the connection.
//! - Methods: only GET and HEAD reach the application. Any other method, on any path, is
//!   answered `405` with `Allow: GET, HEAD`; a body it announces with Content-Length is
//!   read and skipped when it is at most `max_skipped_body` (64 KiB), so the connection
//!   stays, and a larger one closes it after the `405`.
//! - Slowloris: the first head must arrive within `first_head_timeout` of the accept, any
//!   head within `head_timeout` of its first byte; an idle keep-alive connection closes
//!   after `idle_timeout`. A head cut short by its deadline gets `408` and a close; an idle
//!   connection closes without a word (RFC 9112 §9.5).
//! - Conditional requests (RFC 9110 §13.1.2): a `200` whose strong ETag matches
//!   `If-None-Match` (weak comparison, lists and `*`) is sent as `304` without a body.
//! - Framing and the headers on every response: [`response`].
//!
//! The connection's own refusals carry a small JSON body, `{"error":"bad_request",
//! "message":"…"}`, in the shape of the application's JSON errors; the HTML error pages are
//! the application's.
//!
//! Memory is bounded: the input buffer holds at most `max_head` bytes, and while a request
//! is with the application, reading stops once pipelined bytes fill it.

mod config;
mod conn;
mod date;
pub mod head;
pub mod response;

pub use config::HttpConfig;
pub use conn::{CloseReason, HttpConn, HttpEvent, NotPending, StatusCounts};
pub use date::{imf_fixdate, unix_seconds};
pub use head::{HeadError, Method, Request, Version};
pub use response::{EntityTag, HTML_CSP, Response, Status};
