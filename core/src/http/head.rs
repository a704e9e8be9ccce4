//! Request heads: from the bytes buffered so far to a [`Request`], a refusal, or "need more".
//!
//! [`decide`] is a function of the buffered bytes alone, and monotone: once a prefix of the
//! stream decides, every longer prefix decides the same way. That is what makes the
//! connection give the same events however the stream is split (the chunking invariance),
//! and it fixes the order of the checks:
//! 1. the target's length (`414`), scanned before httparse sees the line, over exactly the
//!    bytes httparse accepts in a target, so an over-long target is refused whether or not
//!    its end has arrived;
//! 2. httparse (RFC 9112 §2–5): a version other than HTTP/1.0 or 1.1 (the HTTP/2 preface
//!    `PRI * HTTP/2.0` included) is `505`, more than `max_headers` fields `431`, any other
//!    syntax error `400`; a head still incomplete at `max_head` bytes is `431`;
//! 3. on a complete head, in this order: `Transfer-Encoding` (`400`: we read no chunked
//!    bodies, and a TE beside a Content-Length is the request-smuggling shape, RFC 9112
//!    §6.1), an invalid or conflicting `Content-Length` (`400`, §6.3), a method other than
//!    GET or HEAD (`405`, whatever it carries), no `Host` on HTTP/1.1 or more than one
//!    (`400`, §3.2), more than one `Authorization` (`400`), a body on GET or HEAD (`400`),
//!    a target that is not a path (`400`).

use super::config::HttpConfig;

/// A method the application serves. Every other method is answered `405` by the
/// connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    /// Answered like GET, without the body (RFC 9110 §9.3.2).
    Head,
}

/// The request's protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A GET or HEAD request, as the application sees it. There is never a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The request target as sent (query string included), as UTF-8.
    pub target: String,
    /// The target's path: an absolute-form target (`http://host/p`) reduced to its path,
    /// and the query string cut off (the read side ignores it). Not percent-decoded.
    pub path: String,
    pub version: Version,
    /// `Accept`, several fields joined with `, `.
    pub accept: Option<String>,
    /// `Authorization` (at most one field).
    pub authorization: Option<String>,
    /// `If-None-Match`, several fields joined with `, `; the connection evaluates it
    /// against the response's ETag, the application need not.
    pub if_none_match: Option<String>,
    /// Whether the connection stays open after the response (RFC 9112 §9.3).
    pub keep_alive: bool,
}

/// Why a request is refused by the connection itself. Each has one status and one body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP/1.x syntax.
    Malformed,
    /// The head is larger than `max_head`.
    HeadTooLarge,
    /// More than `max_headers` header fields.
    TooManyHeaders,
    /// The target is longer than `max_target`.
    TargetTooLong,
    /// The version is not HTTP/1.0 or 1.1 (e.g. the HTTP/2 preface).
    VersionNotSupported,
    /// An HTTP/1.1 request without `Host`, or with more than one.
    BadHost,
    /// More than one `Authorization` field.
    DuplicateAuthorization,
    /// Any `Transfer-Encoding`.
    TransferEncoding,
    /// A `Content-Length` that is not one decimal number.
    BadContentLength,
    /// A GET or HEAD with a body.
    BodyNotAllowed,
    /// A GET or HEAD whose target is not a path (`*`, an authority).
    BadTarget,
    /// A method other than GET and HEAD.
    MethodNotAllowed,
    /// The head did not arrive in time.
    Timeout,
}

impl HeadError {
    /// The response's status code.
    pub fn status(self) -> u16 {
        match self {
            HeadError::Malformed
            | HeadError::BadHost
            | HeadError::DuplicateAuthorization
            | HeadError::TransferEncoding
            | HeadError::BadContentLength
            | HeadError::BodyNotAllowed
            | HeadError::BadTarget => 400,
            HeadError::MethodNotAllowed => 405,
            HeadError::Timeout => 408,
            HeadError::TargetTooLong => 414,
            HeadError::HeadTooLarge | HeadError::TooManyHeaders => 431,
            HeadError::VersionNotSupported => 505,
        }
    }

    /// The `error` field of the JSON body.
    pub fn code(self) -> &'static str {
        match self {
            HeadError::MethodNotAllowed => "method_not_allowed",
            HeadError::Timeout => "request_timeout",
            HeadError::TargetTooLong => "uri_too_long",
            HeadError::HeadTooLarge | HeadError::TooManyHeaders => {
                "request_header_fields_too_large"
            }
            HeadError::VersionNotSupported => "http_version_not_supported",
            _ => "bad_request",
        }
    }

    /// The `message` field of the JSON body: plain ASCII, no quotes to escape.
    pub fn message(self) -> &'static str {
        match self {
            HeadError::Malformed => "The request is not valid HTTP/1.1",
            HeadError::HeadTooLarge => "The request head is too large",
            HeadError::TooManyHeaders => "The request has too many header fields",
            HeadError::TargetTooLong => "The request target is too long",
            HeadError::VersionNotSupported => "Only HTTP/1.0 and HTTP/1.1 are supported",
            HeadError::BadHost => "An HTTP/1.1 request needs exactly one Host field",
            HeadError::DuplicateAuthorization => "More than one Authorization field",
            HeadError::TransferEncoding => "Transfer-Encoding is not supported",
            HeadError::BadContentLength => "The Content-Length is not valid",
            HeadError::BodyNotAllowed => "GET and HEAD requests carry no body",
            HeadError::BadTarget => "The request target must be a path",
            HeadError::MethodNotAllowed => "Only GET and HEAD are allowed",
            HeadError::Timeout => "The request took too long to arrive",
        }
    }

    /// Whether the connection closes after the response: after anything but a `405` the
    /// rest of the stream cannot be trusted to be framed as we would frame it.
    pub fn closes(self) -> bool {
        self != HeadError::MethodNotAllowed
    }
}

/// What the buffered bytes amount to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Not decided yet: more bytes are needed.
    Incomplete,
    /// A GET or HEAD whose head is the first `len` bytes.
    Request { request: Request, len: usize },
    /// Refused: answer, then close or go on.
    Refuse(Refusal),
}

/// A request the connection answers itself. All but `error` and `head` matter only when
/// the error does not close the connection (`405`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refusal {
    pub error: HeadError,
    /// The request was a HEAD: the response has no body.
    pub head: bool,
    /// The head's length.
    pub len: usize,
    pub version: Version,
    /// The client asked to keep the connection.
    pub keep_alive: bool,
    /// The body's length (Content-Length), to skip.
    pub body: u64,
    /// `Expect: 100-continue`: the client waits before sending the body, and will not
    /// send it after a final status (RFC 9110 §10.1.1), so there is nothing to skip.
    pub expects_continue: bool,
}

impl Decision {
    fn closing(error: HeadError) -> Decision {
        Decision::Refuse(Refusal {
            error,
            head: false,
            len: 0,
            version: Version::Http11,
            keep_alive: false,
            body: 0,
            expects_continue: false,
        })
    }
}

/// How many bytes of leading empty lines `input` starts with (RFC 9112 §2.2: a server
/// SHOULD ignore at least one empty line before the request line). A lone CR at the end is
/// undecided and stays.
pub(super) fn leading_empty_lines(input: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match input.get(at..) {
            Some([b'\n', ..]) => at += 1,
            Some([b'\r', b'\n', ..]) => at += 2,
            _ => return at,
        }
    }
}

/// Decides what the buffered bytes (no leading empty line, at most `max_head` of them)
/// are. See the module docs for the order of the checks.
pub(super) fn decide(input: &[u8], config: &HttpConfig) -> Decision {
    if target_run(input) > config.max_target {
        return Decision::closing(HeadError::TargetTooLong);
    }
    let mut fields = vec![httparse::EMPTY_HEADER; config.max_headers];
    let mut parsed = httparse::Request::new(&mut fields);
    let len = match parsed.parse(input) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if input.len() >= config.max_head => {
            return Decision::closing(HeadError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Decision::Incomplete,
        Err(httparse::Error::Version) => {
            return Decision::closing(HeadError::VersionNotSupported);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Decision::closing(HeadError::TooManyHeaders);
        }
        Err(_) => return Decision::closing(HeadError::Malformed),
    };
    match validate(&parsed, config, len) {
        Ok(request) => Decision::Request { request, len },
        Err(refusal) => Decision::Refuse(refusal),
    }
}

/// The length of the request target so far: after a method token and one space, the run of
/// bytes httparse accepts in a target (its `URI_MAP`: `!`..=`~` and 0x80..=0xFF). Zero when
/// the line does not start that way (httparse then refuses it, or will).
fn target_run(input: &[u8]) -> usize {
    let method = input.iter().take_while(|&&b| is_token(b)).count();
    match input.get(method) {
        Some(b' ') if method > 0 => input
            .iter()
            .skip(method + 1)
            .take_while(|&&b| b > b' ' && b != 0x7f)
            .count(),
        _ => 0,
    }
}

/// RFC 9110 §5.6.2 `tchar`, as httparse checks method tokens.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The checks on a complete head of `len` bytes (module docs, step 3).
fn validate(
    parsed: &httparse::Request<'_, '_>,
    config: &HttpConfig,
    len: usize,
) -> Result<Request, Refusal> {
    // Invariant: httparse fills method, path and version in a complete parse.
    let method = parsed.method.unwrap_or_default();
    let target = parsed.path.unwrap_or_default();
    let version = match parsed.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let mut fields = Fields::default();
    for field in parsed.headers.iter() {
        fields.add(field.name, field.value);
    }
    let keep_alive = match version {
        Version::Http11 => !fields.close,
        Version::Http10 => fields.keep_alive && !fields.close,
    };
    let body = fields.content_length.unwrap_or(Some(0));
    let refuse = |error| {
        Err(Refusal {
            error,
            head: method == "HEAD",
            len,
            version,
            keep_alive,
            body: body.unwrap_or(0),
            expects_continue: fields.expects_continue,
        })
    };
    if target.len() > config.max_target {
        return refuse(HeadError::TargetTooLong);
    }
    if fields.transfer_encoding {
        return refuse(HeadError::TransferEncoding);
    }
    let Some(body) = body else {
        return refuse(HeadError::BadContentLength);
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => return refuse(HeadError::MethodNotAllowed),
    };
    if fields.hosts > 1 || (version == Version::Http11 && fields.hosts == 0) {
        return refuse(HeadError::BadHost);
    }
    if fields.authorizations > 1 {
        return refuse(HeadError::DuplicateAuthorization);
    }
    if body > 0 {
        return refuse(HeadError::BodyNotAllowed);
    }
    let Some(path) = path_of(target) else {
        return refuse(HeadError::BadTarget);
    };
    Ok(Request {
        method,
        target: target.to_string(),
        path: path.to_string(),
        version,
        accept: fields.accept,
        authorization: fields.authorization,
        if_none_match: fields.if_none_match,
        keep_alive,
    })
}

/// The path of an origin-form (`/p?q`) or absolute-form (`http://host/p?q`) target, without
/// its query (RFC 9112 §3.2.1–3.2.2); `None` for the other forms.
fn path_of(target: &str) -> Option<&str> {
    if target.starts_with('/') {
        return Some(without_query(target));
    }
    let scheme_end = target.find("://")?;
    let scheme = target.get(..scheme_end)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let rest = target.get(scheme_end + 3..)?;
    let path = match rest.find(['/', '?']) {
        Some(at) => rest.get(at..).unwrap_or("/"),
        None => "/",
    };
    let path = without_query(path);
    Some(if path.is_empty() { "/" } else { path })
}

fn without_query(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

/// The header fields the connection and the application look at.
#[derive(Debug, Default)]
struct Fields {
    hosts: usize,
    authorizations: usize,
    authorization: Option<String>,
    accept: Option<String>,
    if_none_match: Option<String>,
    transfer_encoding: bool,
    /// `None`: none sent; `Some(None)`: invalid, or several that differ.
    content_length: Option<Option<u64>>,
    close: bool,
    keep_alive: bool,
    expects_continue: bool,
}

impl Fields {
    fn add(&mut self, name: &str, value: &[u8]) {
        let value = String::from_utf8_lossy(value);
        let value = value.trim_matches([' ', '\t']);
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        if is("host") {
            self.hosts += 1;
        } else if is("authorization") {
            self.authorizations += 1;
            self.authorization = Some(value.to_string());
        } else if is("accept") {
            join(&mut self.accept, value);
        } else if is("if-none-match") {
            join(&mut self.if_none_match, value);
        } else if is("transfer-encoding") {
            self.transfer_encoding = true;
        } else if is("content-length") {
            let length = parse_length(value);
            self.content_length = Some(match self.content_length {
                None => length,
                Some(earlier) if earlier == length => length,
                Some(_) => None,
            });
        } else if is("expect") {
            self.expects_continue |= value.eq_ignore_ascii_case("100-continue");
        } else if is("connection") {
            for option in value.split(',').map(|o| o.trim_matches([' ', '\t'])) {
                self.close |= option.eq_ignore_ascii_case("close");
                self.keep_alive |= option.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
}

/// Field lines of one name combine as one list (RFC 9110 §5.3).
fn join(list: &mut Option<String>, value: &str) {
    match list {
        Some(list) => {
            list.push_str(", ");
            list.push_str(value);
        }
        None => *list = Some(value.to_string()),
    }
}

/// RFC 9110 §8.6: `1*DIGIT`; we take nothing else (no lists, no sign), and nothing that
/// does not fit in a u64.
fn parse_length(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(input: &str) -> Request {
        match decide(input.as_bytes(), &HttpConfig::default()) {
            Decision::Request { request, .. } => request,
            other => panic!("{input:?}: {other:?}"),
        }
    }

    fn refusal(input: &[u8]) -> HeadError {
        match decide(input, &HttpConfig::default()) {
            Decision::Refuse(refusal) => refusal.error,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn paths_of_targets() {
        for (target, path) in [
            ("/", Some("/")),
            ("/messages/7?x=1", Some("/messages/7")),
            ("/a%20b", Some("/a%20b")),
            ("http://h.test/messages/7?q", Some("/messages/7")),
            ("HTTPS://h.test", Some("/")),
            ("http://h.test?q", Some("/")),
            ("*", None),
            ("h.test:443", None),
            ("ftp://h.test/x", None),
        ] {
            assert_eq!(path_of(target), path, "{target}");
        }
    }

    #[test]
    fn a_get_with_its_fields() {
        let r = request(
            "GET /m/1?x HTTP/1.1\r\nHost: h\r\nAccept: text/html\r\naccept: */*\r\n\
             Authorization: Bearer abc\r\nIf-None-Match: \"a\"\r\nIf-None-Match: W/\"b\"\r\n\r\n",
        );
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/m/1");
        assert_eq!(r.target, "/m/1?x");
        assert_eq!(r.accept.as_deref(), Some("text/html, */*"));
        assert_eq!(r.authorization.as_deref(), Some("Bearer abc"));
        assert_eq!(r.if_none_match.as_deref(), Some("\"a\", W/\"b\""));
        assert!(r.keep_alive);
    }

    #[test]
    fn keep_alive_by_version_and_connection() {
        for (head, keep) in [
            ("GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n",
                false,
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nConnection: x, close\r\n\r\n",
                false,
            ),
            ("GET / HTTP/1.0\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (
                "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
        ] {
            assert_eq!(request(head).keep_alive, keep, "{head:?}");
        }
    }

    #[test]
    fn refusals() {
        let long_target = format!("GET /{} HTTP/1.1\r\n", "a".repeat(8192));
        for (input, error) in [
            (
                &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
                HeadError::VersionNotSupported,
            ),
            (b"GET / HTTP/1.2\r\n", HeadError::VersionNotSupported),
            (b"GET / HTTP/2", HeadError::VersionNotSupported),
            (b"GET /\r\n", HeadError::Malformed),
            (b"G\x01T / HTTP/1.1\r\n", HeadError::Malformed),
            (b"GET / HTTP/1.1\r\n\r\n", HeadError::BadHost),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                HeadError::BadHost,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n",
                HeadError::BodyNotAllowed,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
                HeadError::BadContentLength,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                HeadError::BadContentLength,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::TransferEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::TransferEncoding,
            ),
            (b"POST / HTTP/1.1\r\n\r\n", HeadError::MethodNotAllowed),
            (
                b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
                HeadError::MethodNotAllowed,
            ),
            (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::BadTarget),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
                HeadError::DuplicateAuthorization,
            ),
            (long_target.as_bytes(), HeadError::TargetTooLong),
        ] {
            assert_eq!(
                refusal(input),
                error,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn an_over_long_target_is_refused_before_its_end() {
        let partial = format!("GET /{}", "a".repeat(8192));
        assert_eq!(refusal(partial.as_bytes()), HeadError::TargetTooLong);
        let fits = format!("GET /{}", "a".repeat(8190));
        assert_eq!(
            decide(fits.as_bytes(), &HttpConfig::default()),
            Decision::Incomplete
        );
    }

    #[test]
    fn too_many_or_too_large_headers() {
        let mut many = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        for i in 0..64 {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        assert_eq!(refusal(many.as_bytes()), HeadError::TooManyHeaders);
        let mut large = String::from("GET / HTTP/1.1\r\nX: ");
        large.push_str(&"v".repeat(16 * 1024));
        assert_eq!(
            refusal(&large.as_bytes()[..16 * 1024]),
            HeadError::HeadTooLarge
        );
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        assert_eq!(leading_empty_lines(b"\r\n\n\r\nGET"), 5);
        assert_eq!(leading_empty_lines(b"\r"), 0);
        assert_eq!(leading_empty_lines(b"\rX"), 0);
    }
}
