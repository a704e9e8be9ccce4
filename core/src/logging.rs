//! The log lines both runtimes write, worded in one place so that operators and fail2ban see
//! the same thing whichever binary runs.
//!
//! Every line is `event key=value …`. Values that came from the client (the user name) are
//! escaped by [`field`]: no space, `=`, quote or control character survives, so a user name
//! like `x ip=10.0.0.1` cannot forge a field and make fail2ban ban someone else. Passwords
//! never reach this module.
//!
//! fail2ban filter for the auth failures:
//! `failregex = auth failure user=\S* ip=<HOST> reason=`

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::smtp::{CloseReason, Mechanism, Reply, TlsInfo};

mod repeats;
pub use repeats::{Held, REPEAT_WINDOW, Repeats};

/// Why an AUTH did not succeed, as written in the `reason=` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Wrong name or password, or a disabled user (`535`).
    BadCredentials,
    /// Too many recent failures from the address (`454`, not checked).
    Throttled,
    /// The verifier queue was full or the wait too long (`454`).
    Busy,
    /// The verifier failed, e.g. the store could not be read (`454`).
    Unavailable,
}

impl AuthFailure {
    /// The `reason=` value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::BadCredentials => "bad_credentials",
            AuthFailure::Throttled => "throttled",
            AuthFailure::Busy => "busy",
            AuthFailure::Unavailable => "unavailable",
        }
    }
}

/// How a connection ended, as written in the `outcome=` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The session closed it, for this reason (`quit`, `timeout`, `shutdown`, …).
    Closed(CloseReason),
    /// The client closed its side, and the session had nothing left to say.
    PeerClosed,
    /// The TLS handshake failed or timed out.
    TlsFailed(String),
    /// A read or write failed or timed out.
    IoError(String),
    /// The server stopped before the session ended on its own.
    Aborted,
    /// The gate refused it: it was told `421` and closed (not logged as a close).
    Refused,
    /// A web connection closed itself, for this reason.
    Http(crate::http::CloseReason),
}

/// What is known about a connection when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSummary {
    /// The TLS parameters, if TLS was established.
    pub tls: Option<TlsInfo>,
    /// The user who logged in, if any.
    pub user: Option<String>,
    /// Messages accepted on this connection.
    pub messages: u32,
    /// How long the connection was open.
    pub duration: Duration,
    /// How it ended.
    pub outcome: CloseOutcome,
}

/// A log record as journald reads it from a service's stderr (sd-daemon(3)): every line of
/// `message` starts with the record's `<N>` syslog priority ([`syslog_priority`]), then the
/// target in brackets; no timestamp. Ends with a newline.
pub fn format_journald(level: log::Level, target: &str, message: &str) -> String {
    let priority = syslog_priority(level);
    let mut text = String::with_capacity(message.len() + target.len() + 8);
    for line in message.lines() {
        let _ = writeln!(text, "<{priority}>[{target}] {line}");
    }
    if text.is_empty() {
        let _ = writeln!(text, "<{priority}>[{target}] ");
    }
    text
}

/// The syslog priority of a log level: error 3, warning 4, info 6, debug and trace 7.
pub fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// `connection open peer=… local=…`, at info level.
pub fn connection_opened(peer: SocketAddr, local: SocketAddr) {
    log::info!("{}", format_opened(peer, local));
}

/// `connection refused peer=… reply="…"`, at warn level: the gate turned it away.
pub fn connection_refused(peer: SocketAddr, reply: &Reply) {
    log::warn!("{}", format_refused(peer, reply));
}

/// `connection close peer=… tls=… user=… messages=… duration_ms=… outcome=…`, at info level.
pub fn connection_closed(peer: SocketAddr, summary: &ConnectionSummary) {
    log::info!("{}", format_closed(peer, summary));
}

/// `auth success user=… ip=… mechanism=…`, at info level.
pub fn auth_success(user: &str, ip: IpAddr, mechanism: Mechanism) {
    log::info!("{}", format_auth_success(user, ip, mechanism));
}

/// `auth failure user=… ip=… reason=…`, at warn level: the line fail2ban matches.
pub fn auth_failure(user: &str, ip: IpAddr, reason: AuthFailure) {
    log::warn!("{}", format_auth_failure(user, ip, reason));
}

/// `listening on ADDRESS for submission (STARTTLS)` (or `submissions (implicit TLS)`).
pub fn listening(address: SocketAddr, implicit_tls: bool) {
    let kind = if implicit_tls {
        "submissions (implicit TLS)"
    } else {
        "submission (STARTTLS)"
    };
    log::info!("listening on {address} for {kind}");
}

/// `listening on ADDRESS for http`: plaintext, a reverse proxy in front terminates TLS.
pub fn listening_http(address: SocketAddr) {
    log::info!("listening on {address} for http");
}

/// `http connection open peer=… local=…`, at debug level: a browser opens several for one
/// page, and a feed reader one every few minutes, so the web's connections would drown the
/// mail's lines at info.
pub fn http_connection_opened(peer: SocketAddr, local: SocketAddr) {
    log::debug!("{}", format_http_opened(peer, local));
}

/// `http connection refused peer=… status=503`, at warn level: over `http.max_connections`.
pub fn http_connection_refused(peer: SocketAddr) {
    log::warn!("http connection refused peer={peer} status=503");
}

/// `http connection close peer=… requests=… duration_ms=… outcome=…`, at debug level (as
/// [`http_connection_opened`]).
pub fn http_connection_closed(peer: SocketAddr, summary: &HttpSummary) {
    log::debug!("{}", format_http_closed(peer, summary));
}

/// What is known about a web connection when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSummary {
    /// Responses sent (the connection's own refusals included).
    pub responses: u64,
    /// How long the connection was open.
    pub duration: Duration,
    /// How it ended.
    pub outcome: CloseOutcome,
}

/// The text of [`http_connection_opened`].
pub fn format_http_opened(peer: SocketAddr, local: SocketAddr) -> String {
    format!("http connection open peer={peer} local={local}")
}

/// The text of [`http_connection_closed`].
pub fn format_http_closed(peer: SocketAddr, summary: &HttpSummary) -> String {
    let mut line = format!(
        "http connection close peer={peer} responses={} duration_ms={} outcome=",
        summary.responses,
        summary.duration.as_millis()
    );
    match &summary.outcome {
        CloseOutcome::Http(reason) => push_http_reason(&mut line, *reason),
        CloseOutcome::PeerClosed => line.push_str("peer_closed"),
        CloseOutcome::Aborted => line.push_str("aborted"),
        CloseOutcome::Refused => line.push_str("refused"),
        CloseOutcome::Closed(reason) => line.push_str(reason.as_str()),
        CloseOutcome::TlsFailed(why) => {
            let _ = write!(line, "tls_failed error={}", field(why));
        }
        CloseOutcome::IoError(why) => {
            let _ = write!(line, "io_error error={}", field(why));
        }
    }
    line
}

/// The `outcome=` of a web connection that closed itself.
fn push_http_reason(line: &mut String, reason: crate::http::CloseReason) {
    use crate::http::CloseReason as Why;
    match reason {
        Why::PeerClosed => line.push_str("peer_closed"),
        Why::ClientAsked => line.push_str("client_close"),
        Why::Idle => line.push_str("idle"),
        Why::Timeout => line.push_str("timeout"),
        Why::Refused(error) => {
            let _ = write!(
                line,
                "refused status={} error={}",
                error.status(),
                error.code()
            );
        }
        Why::Shutdown => line.push_str("shutdown"),
        Why::OverCapacity => line.push_str("over_capacity"),
    }
}

/// `accept failed: …`, at warn level (out of file descriptors, usually).
pub fn accept_failed(error: &std::io::Error) {
    log::warn!("accept failed: {error}");
}

/// At debug level: TCP_NODELAY could not be set (the connection goes on, slower).
pub fn nodelay_failed(peer: SocketAddr, error: &std::io::Error) {
    log::debug!("TCP_NODELAY failed for {peer}: {error}");
}

/// At debug level: a connection over a cap closed without its `421` (on 465, where the
/// reply needs a handshake, when too many refusals are in flight).
pub fn refused_without_reply(peer: SocketAddr, why: &dyn std::fmt::Display) {
    log::debug!("closing {peer} without a reply: {why}");
}

/// After SIGHUP: `reloaded the certificate from PATH`.
pub fn certificate_reloaded(cert: &std::path::Path) {
    log::info!("reloaded the certificate from {}", cert.display());
}

/// After SIGHUP, at error level: the new pair is bad and the old one stays in use.
pub fn certificate_reload_failed(error: &dyn std::fmt::Display) {
    log::error!("certificate reload failed, keeping the old one: {error}");
}

/// `SIGNAL received: shutting down`; `signal` is its name, e.g. `SIGTERM`.
pub fn shutting_down(signal: &str) {
    log::info!("{signal} received: shutting down");
}

/// At warn level: the signal handler failed to deliver a signal (the server goes on).
pub fn signals_failed(error: &dyn std::fmt::Display) {
    log::warn!("reading signals failed: {error}");
}

/// At info level: systemd passed the listening sockets (socket activation).
pub fn using_activated_sockets() {
    log::info!("using the sockets passed by systemd; [listen] is ignored");
}

/// At error level: the system would not start a thread for a connection.
pub fn no_thread_for(peer: SocketAddr, error: &dyn std::fmt::Display) {
    log::error!("cannot start a thread for {peer}: {error}");
}

/// At warn level: connections the grace period did not see end are cut.
pub fn aborting(open: usize) {
    log::warn!("{open} connections still open after the grace period are aborted");
}

/// At warn level: something still held the store when the process had to exit.
pub fn store_still_in_use() {
    log::warn!("store still in use at exit");
}

/// `control: WHAT: ok` (or the error) after a command-line request on the control socket.
pub fn control_request(what: &str, error: Option<&dyn std::fmt::Display>) {
    match error {
        None => log::info!("control: {what}: ok"),
        Some(error) => log::info!("control: {what}: {error}"),
    }
}

/// At warn level: a control-socket peer that is neither the daemon's user nor root.
pub fn control_refused(who: &dyn std::fmt::Display) {
    log::warn!("control: refused a connection from {who}");
}

/// At warn level: a control-socket connection failed (the daemon goes on).
pub fn control_failed(error: &dyn std::fmt::Display) {
    log::warn!("control: {error}");
}

/// At error level: a delivery failed, and its client was told `451` or `452`. Repeats are
/// held back by the caller's [`Repeats`]; `held` says how many.
pub fn delivery_failed(user: &str, error: &dyn std::fmt::Display, held: Held) {
    log::error!("delivery for user={user:?} failed: {error}{held}");
}

/// At error level: the store could not say whether a MAIL's login is still active (`451`).
pub fn mail_check_failed(user: &str, error: &dyn std::fmt::Display, held: Held) {
    log::error!("the login of user={user:?} could not be checked at MAIL: {error}{held}");
}

/// At error level: a batch of deliveries failed together (group commit).
pub fn batch_failed(messages: usize, error: &dyn std::fmt::Display, held: Held) {
    log::error!("delivery of a batch of {messages} failed: {error}{held}");
}

/// At error level: the web side could not read the store, and answered `503`.
pub fn web_read_failed(error: &dyn std::fmt::Display, held: Held) {
    log::error!("a web read failed: {error}{held}");
}

/// At error level: an I/O error left the database unusable; deliveries are refused (`452`
/// for a full disk) until it is reopened.
pub fn store_unusable(error: &dyn std::fmt::Display, held: Held) {
    log::error!(
        "store: the database is unusable after an I/O error, refusing deliveries until it is \
         reopened: {error}{held}"
    );
}

/// At warn level: the database was reopened after an I/O error, and the journal replayed.
pub fn store_reopened(lasted: Duration, refused: u64, replayed: usize, held: Held) {
    log::warn!(
        "store: database reopened after {:.1} s unusable ({refused} operations refused \
         meanwhile, {replayed} messages replayed from the journal){held}",
        lasted.as_secs_f64()
    );
}

/// At error level: reopening the database failed; it is tried again every `every`.
pub fn store_reopen_failed(error: &dyn std::fmt::Display, every: Duration, held: Held) {
    log::error!(
        "store: reopening the database failed, trying again every {} s: {error}{held}",
        every.as_secs()
    );
}

/// At error level: the database could not be reopened for `after`; the server exits
/// non-zero so that its service manager restarts it.
pub fn store_failed_for_good(after: Duration) {
    log::error!(
        "store: the database could not be reopened for {} s: exiting so that the service \
         manager restarts the server",
        after.as_secs()
    );
}

/// At warn level: writing zeros ahead of a file's writes failed (a full disk, usually); tried
/// again after `retry`.
pub fn zero_ahead_failed(error: &dyn std::fmt::Display, retry: Duration, held: Held) {
    log::warn!(
        "zero-ahead: writing zeros failed, trying again in {} s: {error}{held}",
        retry.as_secs()
    );
}

/// At warn level: a journal record could not be written; the batch commits durably in the
/// database instead.
pub fn journal_append_failed(error: &dyn std::fmt::Display, held: Held) {
    log::warn!("journal append failed, committing durably instead: {error}{held}");
}

/// At warn level: a checkpoint failed; the journal keeps the messages, a later one tries again.
pub fn checkpoint_failed(error: &dyn std::fmt::Display, held: Held) {
    log::warn!("checkpoint failed (the journal keeps the messages): {error}{held}");
}

/// At warn level: the free space of the data directory could not be measured; the floor
/// (`limits.min_free_space_mb`) is not applied meanwhile.
pub fn free_space_unknown(dir: &std::path::Path, error: &dyn std::fmt::Display, held: Held) {
    log::warn!(
        "cannot measure the free space of {}: {error}{held}",
        dir.display()
    );
}

/// `stopped`: the last line of a clean shutdown.
pub fn stopped() {
    log::info!("stopped");
}

/// At error level: the session refused a completion, a bug in the runtime.
pub fn runtime_bug(error: &dyn std::fmt::Display) {
    log::error!("runtime bug: {error}");
}

/// The text of [`connection_opened`].
pub fn format_opened(peer: SocketAddr, local: SocketAddr) -> String {
    format!("connection open peer={peer} local={local}")
}

/// The text of [`connection_refused`].
pub fn format_refused(peer: SocketAddr, reply: &Reply) -> String {
    let text = reply.to_string();
    format!(
        "connection refused peer={peer} reply={}",
        field(text.trim_end())
    )
}

/// The text of [`connection_closed`].
pub fn format_closed(peer: SocketAddr, summary: &ConnectionSummary) -> String {
    let tls = summary.tls.as_ref().map_or("none", |t| t.version.as_str());
    let mut line = format!("connection close peer={peer} tls={tls}");
    if let Some(tls) = &summary.tls {
        let _ = write!(line, " cipher={}", field(&tls.cipher));
    }
    let user = summary
        .user
        .as_deref()
        .map_or_else(|| "-".to_string(), field);
    let _ = write!(
        line,
        " user={user} messages={} duration_ms={} outcome=",
        summary.messages,
        summary.duration.as_millis()
    );
    match &summary.outcome {
        CloseOutcome::Closed(reason) => line.push_str(reason.as_str()),
        CloseOutcome::PeerClosed => line.push_str("peer_closed"),
        CloseOutcome::Aborted => line.push_str("aborted"),
        CloseOutcome::Refused => line.push_str("refused"),
        CloseOutcome::Http(reason) => push_http_reason(&mut line, *reason),
        CloseOutcome::TlsFailed(why) => {
            let _ = write!(line, "tls_failed error={}", field(why));
        }
        CloseOutcome::IoError(why) => {
            let _ = write!(line, "io_error error={}", field(why));
        }
    }
    line
}

/// The text of [`auth_success`].
pub fn format_auth_success(user: &str, ip: IpAddr, mechanism: Mechanism) -> String {
    format!(
        "auth success user={} ip={ip} mechanism={}",
        field(user),
        mechanism.name()
    )
}

/// The text of [`auth_failure`].
pub fn format_auth_failure(user: &str, ip: IpAddr, reason: AuthFailure) -> String {
    format!(
        "auth failure user={} ip={ip} reason={}",
        field(user),
        reason.as_str()
    )
}

/// Makes a value safe for a `key=value` field: at most 128 characters, and every byte that
/// is not printable ASCII, or is a space, `=`, `"`, `%` or `\`, written as `%XX`. An empty
/// value becomes `""`.
pub fn field(value: &str) -> String {
    if value.is_empty() {
        return "\"\"".to_string();
    }
    let mut out = String::with_capacity(value.len());
    for &byte in value.as_bytes().iter().take(128) {
        match byte {
            b'!'..=b'~' if !matches!(byte, b'=' | b'"' | b'%' | b'\\') => {
                out.push(char::from(byte))
            }
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_lines_name_the_peer_responses_and_why_it_closed() {
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:2580".parse().unwrap();
        assert_eq!(
            format_http_opened(peer, local),
            "http connection open peer=192.0.2.7:40000 local=127.0.0.1:2580"
        );
        let cases = [
            (
                CloseOutcome::Http(crate::http::CloseReason::Idle),
                "outcome=idle",
            ),
            (
                CloseOutcome::Http(crate::http::CloseReason::Refused(
                    crate::http::HeadError::HeadTooLarge,
                )),
                "outcome=refused status=431 error=",
            ),
            (CloseOutcome::PeerClosed, "outcome=peer_closed"),
            (
                CloseOutcome::IoError("broken pipe".into()),
                "outcome=io_error error=broken%20pipe",
            ),
        ];
        for (outcome, expected) in cases {
            let line = format_http_closed(
                peer,
                &HttpSummary {
                    responses: 2,
                    duration: Duration::from_millis(15),
                    outcome,
                },
            );
            assert!(
                line.starts_with(
                    "http connection close peer=192.0.2.7:40000 responses=2 duration_ms=15 "
                ),
                "{line}"
            );
            assert!(line.contains(expected), "{line}");
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn auth_failure_line_is_fail2ban_friendly() {
        assert_eq!(
            format_auth_failure("alice@example.org", IP, AuthFailure::BadCredentials),
            "auth failure user=alice@example.org ip=192.0.2.7 reason=bad_credentials"
        );
        assert_eq!(
            format_auth_failure("bob", IP, AuthFailure::Throttled),
            "auth failure user=bob ip=192.0.2.7 reason=throttled"
        );
    }

    #[test]
    fn a_user_name_cannot_forge_the_ip_field() {
        let line = format_auth_failure("x ip=10.0.0.1\nauth", IP, AuthFailure::BadCredentials);
        assert_eq!(
            line,
            "auth failure user=x%20ip%3D10.0.0.1%0Aauth ip=192.0.2.7 reason=bad_credentials"
        );
        assert_eq!(line.matches(" ip=").count(), 1);
    }

    #[test]
    fn field_escapes_and_bounds() {
        assert_eq!(field(""), "\"\"");
        assert_eq!(field("é%\"\\"), "%C3%A9%25%22%5C");
        assert_eq!(field(&"a".repeat(500)).len(), 128);
    }

    #[test]
    fn close_line_names_tls_user_and_outcome() {
        let summary = ConnectionSummary {
            tls: Some(TlsInfo {
                version: "TLSv1.3".into(),
                cipher: "TLS13_AES_256_GCM_SHA384".into(),
            }),
            user: Some("alice".into()),
            messages: 2,
            duration: Duration::from_millis(1234),
            outcome: CloseOutcome::Closed(CloseReason::Quit),
        };
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        assert_eq!(
            format_closed(peer, &summary),
            "connection close peer=192.0.2.7:40000 tls=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384 \
             user=alice messages=2 duration_ms=1234 outcome=quit"
        );
        let failed = ConnectionSummary {
            tls: None,
            user: None,
            messages: 0,
            duration: Duration::ZERO,
            outcome: CloseOutcome::TlsFailed("peer is incompatible".into()),
        };
        assert_eq!(
            format_closed(peer, &failed),
            "connection close peer=192.0.2.7:40000 tls=none user=- messages=0 duration_ms=0 \
             outcome=tls_failed error=peer%20is%20incompatible"
        );
    }

    #[test]
    fn journald_lines_carry_the_syslog_priority_and_no_timestamp() {
        use log::Level;
        let target = "atacama_core::logging";
        assert_eq!(
            format_journald(Level::Info, target, "connection open peer=192.0.2.7:40000"),
            "<6>[atacama_core::logging] connection open peer=192.0.2.7:40000\n"
        );
        for (level, prefix) in [
            (Level::Error, "<3>"),
            (Level::Warn, "<4>"),
            (Level::Info, "<6>"),
            (Level::Debug, "<7>"),
            (Level::Trace, "<7>"),
        ] {
            assert!(
                format_journald(level, "t", "x").starts_with(prefix),
                "{level}"
            );
        }
        // Each line of a long message keeps its priority; none is left for journald to guess.
        assert_eq!(
            format_journald(Level::Error, "t", "panicked\nat main.rs"),
            "<3>[t] panicked\n<3>[t] at main.rs\n"
        );
        assert_eq!(format_journald(Level::Warn, "t", ""), "<4>[t] \n");
    }

    #[test]
    fn refused_line_quotes_the_reply() {
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let reply = crate::smtp::reply::too_many_connections("mx.test");
        assert_eq!(
            format_refused(peer, &reply),
            "connection refused peer=192.0.2.7:40000 \
             reply=421%204.7.0%20mx.test%20Error:%20too%20many%20connections"
        );
    }
}
