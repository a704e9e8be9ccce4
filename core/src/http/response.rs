//! Responses: what the application fills in, and the one place that frames them.
//!
//! [`frame`] writes every response the connection sends, the application's and its own, so
//! the headers every response must carry cannot be forgotten: `Date`, `Content-Length`
//! (except on `304`, RFC 9110 §8.6), `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer`, and on HTML the `Content-Security-Policy`. `304` follows
//! RFC 9110 §15.4.5 (no body, no Content-Length, no Content-Type; ETag and Vary kept); a
//! response to HEAD has the headers of the GET, its Content-Length included, and no body
//! (§9.3.2).

use std::borrow::Cow;

/// The policy of every HTML page: nothing inline, styles and images from the site only, no
/// framing.
pub const HTML_CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'";

/// The headers [`frame`] writes itself; the application's extra headers of these names are
/// dropped, so it cannot contradict the framing.
const FRAMING_HEADERS: [&str; 10] = [
    "content-length",
    "content-type",
    "date",
    "connection",
    "transfer-encoding",
    "etag",
    "vary",
    "x-content-type-options",
    "referrer-policy",
    "content-security-policy",
];

/// A response status code (three digits, 100–599).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Status(u16);

impl Status {
    pub const OK: Status = Status(200);
    pub const NOT_MODIFIED: Status = Status(304);
    pub const BAD_REQUEST: Status = Status(400);
    pub const UNAUTHORIZED: Status = Status(401);
    pub const NOT_FOUND: Status = Status(404);
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    pub const INTERNAL_SERVER_ERROR: Status = Status(500);
    pub const SERVICE_UNAVAILABLE: Status = Status(503);

    /// The status `code`, if it is one (100–599).
    pub fn new(code: u16) -> Option<Status> {
        (100..=599).contains(&code).then_some(Status(code))
    }

    /// The numeric code.
    pub fn code(self) -> u16 {
        self.0
    }

    /// The reason phrase of the status line (RFC 9110 §15).
    pub fn reason(self) -> &'static str {
        match self.0 {
            200 => "OK",
            201 => "Created",
            204 => "No Content",
            301 => "Moved Permanently",
            302 => "Found",
            304 => "Not Modified",
            308 => "Permanent Redirect",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            408 => "Request Timeout",
            414 => "URI Too Long",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "",
        }
    }
}

/// A strong entity tag (RFC 9110 §8.8.3): the characters between the quotes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityTag(String);

impl EntityTag {
    /// `opaque` as a tag, if it is 1–128 visible ASCII characters other than `"` (what
    /// `etagc` allows, without obs-text).
    pub fn new(opaque: impl Into<String>) -> Option<EntityTag> {
        let opaque = opaque.into();
        let valid = !opaque.is_empty()
            && opaque.len() <= 128
            && opaque.bytes().all(|b| b.is_ascii_graphic() && b != b'"');
        valid.then_some(EntityTag(opaque))
    }

    /// The characters between the quotes.
    pub fn opaque(&self) -> &str {
        &self.0
    }
}

/// A response the application hands to [`HttpConn::respond`](super::HttpConn::respond).
///
/// Answer HEAD exactly as GET, body included: the connection sends the headers (the GET's
/// Content-Length among them) and drops the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    /// `Content-Type`, e.g. `application/json` or `text/html; charset=utf-8`.
    pub content_type: Cow<'static, str>,
    pub body: Vec<u8>,
    /// The representation's strong ETag; with it, a matching `If-None-Match` turns a `200`
    /// into a `304`.
    pub etag: Option<EntityTag>,
    /// The body was chosen by `Accept` (`Vary: Accept`).
    pub vary_accept: bool,
    /// The body is an HTML page: it gets the [`HTML_CSP`].
    pub html: bool,
    /// More headers (`WWW-Authenticate`, `Retry-After`, `Allow`, `Cache-Control`…). Names
    /// of headers the framing writes itself are dropped; control characters in values
    /// become spaces.
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// A response without ETag, Vary, CSP or extra headers.
    pub fn new(
        status: Status,
        content_type: impl Into<Cow<'static, str>>,
        body: impl Into<Vec<u8>>,
    ) -> Response {
        Response {
            status,
            content_type: content_type.into(),
            body: body.into(),
            etag: None,
            vary_accept: false,
            html: false,
            headers: Vec::new(),
        }
    }

    /// An HTML page (`text/html; charset=utf-8`, with the CSP).
    pub fn html(status: Status, body: impl Into<Vec<u8>>) -> Response {
        Response {
            html: true,
            ..Response::new(status, "text/html; charset=utf-8", body)
        }
    }

    /// With this ETag.
    pub fn with_etag(mut self, etag: EntityTag) -> Response {
        self.etag = Some(etag);
        self
    }

    /// With `Vary: Accept`.
    pub fn vary_accept(mut self) -> Response {
        self.vary_accept = true;
        self
    }

    /// With one more header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The JSON error body the connection's own refusals carry:
    /// `{"error":CODE,"message":MESSAGE}`; `code` and `message` must need no escaping.
    pub(super) fn json_error(status: Status, code: &str, message: &str) -> Response {
        let body = format!("{{\"error\":\"{code}\",\"message\":\"{message}\"}}");
        Response::new(status, "application/json", body)
    }
}

/// What the `Connection` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Persistence {
    /// The connection closes after this response.
    Close,
    /// It stays open, and the client spoke HTTP/1.0, which closes unless told.
    KeepAlive10,
    /// It stays open (HTTP/1.1's default: no header).
    KeepAlive,
}

/// Whether `if_none_match` (a field value, lists joined) matches `etag` by the weak
/// comparison (RFC 9110 §13.1.2): `*` matches any current representation, `W/"x"` and
/// `"x"` match `"x"`. A malformed list matches as far as it parsed.
pub(super) fn none_match(if_none_match: &str, etag: Option<&EntityTag>) -> bool {
    let mut rest = if_none_match;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        if rest.starts_with('*') {
            return true;
        }
        let tagged = rest.strip_prefix("W/").unwrap_or(rest);
        let Some(quoted) = tagged.strip_prefix('"') else {
            return false;
        };
        let Some((opaque, after)) = quoted.split_once('"') else {
            return false;
        };
        if etag.is_some_and(|etag| etag.opaque() == opaque) {
            return true;
        }
        rest = after;
    }
}

/// Writes `response` as it goes on the wire: the status line, the headers (module docs),
/// and the body unless `head_only` or the status is `304`.
pub(super) fn frame(
    out: &mut Vec<u8>,
    response: &Response,
    date: &str,
    persistence: Persistence,
    head_only: bool,
) {
    let status = response.status;
    let not_modified = status == Status::NOT_MODIFIED;
    out.reserve(256 + response.body.len());
    let code = status.code().to_string();
    line(out, &["HTTP/1.1 ", &code, " ", status.reason()]);
    header(out, "Date", date);
    if !not_modified {
        header(out, "Content-Type", &response.content_type);
        header(out, "Content-Length", &response.body.len().to_string());
    }
    if let Some(etag) = &response.etag {
        line(out, &["ETag: \"", etag.opaque(), "\""]);
    }
    if response.vary_accept {
        header(out, "Vary", "Accept");
    }
    match persistence {
        Persistence::Close => header(out, "Connection", "close"),
        Persistence::KeepAlive10 => header(out, "Connection", "keep-alive"),
        Persistence::KeepAlive => {}
    }
    header(out, "X-Content-Type-Options", "nosniff");
    header(out, "Referrer-Policy", "no-referrer");
    if response.html {
        header(out, "Content-Security-Policy", HTML_CSP);
    }
    for (name, value) in &response.headers {
        let framed = FRAMING_HEADERS.iter().any(|f| name.eq_ignore_ascii_case(f));
        let valid_name = !name.is_empty() && name.bytes().all(is_token);
        if !framed && valid_name {
            header(out, name, value);
        }
    }
    out.extend_from_slice(b"\r\n");
    if !head_only && !not_modified {
        out.extend_from_slice(&response.body);
    }
}

fn line(out: &mut Vec<u8>, parts: &[&str]) {
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// One header line; control characters in the value (CR, LF, NUL…) become spaces, so a
/// value can never start a header of its own.
fn header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend(value.bytes().map(|b| {
        if b.is_ascii_control() && b != b'\t' {
            b' '
        } else {
            b
        }
    }));
    out.extend_from_slice(b"\r\n");
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(s: &str) -> EntityTag {
        EntityTag::new(s).unwrap()
    }

    #[test]
    fn if_none_match_lists() {
        let etag = tag("v1-abc");
        for (field, matches) in [
            ("\"v1-abc\"", true),
            ("W/\"v1-abc\"", true),
            ("\"x\", \"v1-abc\"", true),
            ("\"x\",W/\"v1-abc\"", true),
            ("*", true),
            ("\"x\"", false),
            ("\"v1-abc", false),
            ("v1-abc", false),
            ("", false),
            ("\"a,b\", \"v1-abc\"", true),
        ] {
            assert_eq!(none_match(field, Some(&etag)), matches, "{field}");
        }
        assert!(none_match("*", None));
        assert!(!none_match("\"x\"", None));
    }

    #[test]
    fn entity_tags_are_checked() {
        assert!(EntityTag::new("abc-1").is_some());
        for bad in ["", "a\"b", "a b", "é", "a\r\nX: y"] {
            assert!(EntityTag::new(bad).is_none(), "{bad:?}");
        }
    }

    fn framed(response: &Response, persistence: Persistence, head_only: bool) -> String {
        let mut out = Vec::new();
        frame(
            &mut out,
            response,
            "Thu, 01 Jan 1970 00:00:00 GMT",
            persistence,
            head_only,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn frames_an_html_page() {
        let response = Response::html(Status::OK, "<p>hi</p>")
            .with_etag(tag("h1"))
            .vary_accept()
            .with_header("Cache-Control", "no-cache");
        assert_eq!(
            framed(&response, Persistence::KeepAlive, false),
            "HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
             Content-Type: text/html; charset=utf-8\r\nContent-Length: 9\r\nETag: \"h1\"\r\n\
             Vary: Accept\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
             Content-Security-Policy: default-src 'none'; style-src 'self'; img-src 'self'; \
             frame-ancestors 'none'\r\nCache-Control: no-cache\r\n\r\n<p>hi</p>"
        );
    }

    #[test]
    fn head_keeps_the_length_and_drops_the_body() {
        let response = Response::new(Status::OK, "application/json", "{}");
        let text = framed(&response, Persistence::Close, true);
        assert!(text.contains("Content-Length: 2\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[test]
    fn extra_headers_cannot_frame_or_inject() {
        let response = Response::new(Status::OK, "text/plain", "x")
            .with_header("Content-Length", "99")
            .with_header("Bad Name", "v")
            .with_header("Retry-After", "5\r\nSet-Cookie: a=b");
        let text = framed(&response, Persistence::KeepAlive10, false);
        assert!(!text.contains("99"), "{text}");
        assert!(!text.contains("Bad Name"), "{text}");
        assert!(
            text.contains("Retry-After: 5  Set-Cookie: a=b\r\n"),
            "{text}"
        );
        assert!(text.contains("Connection: keep-alive\r\n"), "{text}");
    }
}
