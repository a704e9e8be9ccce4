//! The whole wire vocabulary: one constructor per reply the server sends.
//!
//! Only [`Reply::write_to`] frames lines (`250-` / `250 `, CR LF). Text that came from the
//! client goes through [`sanitize`] before it reaches a reply.

use std::fmt;

/// A three-digit SMTP reply code (RFC 5321 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Code(pub u16);

impl Code {
    pub const HELP: Code = Code(214);
    pub const READY: Code = Code(220);
    pub const CLOSING: Code = Code(221);
    pub const AUTH_OK: Code = Code(235);
    pub const OK: Code = Code(250);
    pub const CANNOT_VRFY: Code = Code(252);
    pub const AUTH_CONTINUE: Code = Code(334);
    pub const START_DATA: Code = Code(354);
    pub const UNAVAILABLE: Code = Code(421);
    pub const LOCAL_ERROR: Code = Code(451);
    pub const INSUFFICIENT_STORAGE: Code = Code(452);
    pub const TEMP_AUTH_FAILURE: Code = Code(454);
    pub const UNRECOGNIZED: Code = Code(500);
    pub const SYNTAX: Code = Code(501);
    pub const BAD_SEQUENCE: Code = Code(503);
    pub const NOT_IMPLEMENTED_PARAM: Code = Code(504);
    pub const AUTH_REQUIRED: Code = Code(530);
    pub const AUTH_INVALID: Code = Code(535);
    pub const ENCRYPTION_REQUIRED: Code = Code(538);
    pub const REJECTED: Code = Code(550);
    pub const EXCEEDED_STORAGE: Code = Code(552);
    pub const MAILBOX_NAME: Code = Code(553);
    pub const TRANSACTION_FAILED: Code = Code(554);
    pub const PARAM_UNRECOGNIZED: Code = Code(555);

    /// Whether the client should treat this as a failure (4xx or 5xx).
    pub fn is_error(self) -> bool {
        self.0 >= 400
    }
}

/// An enhanced status code (RFC 3463), e.g. `5.7.8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u8, pub u16, pub u16);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One SMTP reply: a code, an optional enhanced status, and one or more lines of text.
///
/// Built only by the constructors of this module, so every reply the server can send is
/// listed here; read it with [`Reply::code`] and [`Reply::lines`], send it with
/// [`Reply::write_to`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: Code,
    status: Option<Status>,
    /// Never empty: every constructor gives at least one line.
    lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    fn new(code: Code, status: Status, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: Some(status),
            lines: vec![text.into()],
        }
    }

    /// A one-line reply without an enhanced status (greeting, 334 challenges).
    fn bare(code: Code, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: None,
            lines: vec![text.into()],
        }
    }

    /// The three-digit code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The enhanced status code, if the reply carries one.
    pub fn status(&self) -> Option<Status> {
        self.status
    }

    /// The lines of text, without the code and the enhanced status.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Appends the framed reply to `out`: `CODE-text` for every line but the last, which is
    /// `CODE text`; each line ends in CR LF. The enhanced status prefixes every line.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let _ = match self.status {
                Some(status) if !line.is_empty() => {
                    write_line(out, format_args!("{}{sep}{status} {line}", self.code.0))
                }
                Some(status) => write_line(out, format_args!("{}{sep}{status}", self.code.0)),
                None => write_line(out, format_args!("{}{sep}{line}", self.code.0)),
            };
        }
        if self.lines.is_empty() {
            let _ = write_line(out, format_args!("{} ", self.code.0));
        }
    }

    /// The framed reply as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }

    /// Whether the session must close after sending this reply.
    pub fn closes(&self) -> bool {
        self.code == Code::UNAVAILABLE || self.code == Code::CLOSING
    }
}

fn write_line(out: &mut Vec<u8>, args: fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write;
    out.write_fmt(args)?;
    out.extend_from_slice(b"\r\n");
    Ok(())
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// Makes client-supplied text safe to echo in a reply or a header: printable ASCII only,
/// at most 64 characters, anything else becomes `?`.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

// --- Connection ---------------------------------------------------------------------------

pub fn greeting(host: &str) -> Reply {
    Reply::bare(Code::READY, format!("{host} ESMTP"))
}

pub fn closing(host: &str) -> Reply {
    Reply::new(Code::CLOSING, Status(2, 0, 0), format!("{host} Bye"))
}

pub fn timeout(host: &str) -> Reply {
    Reply::new(
        Code::UNAVAILABLE,
        Status(4, 4, 2),
        format!("{host} Error: timeout exceeded"),
    )
}

pub fn shutting_down(host: &str) -> Reply {
    Reply::new(
        Code::UNAVAILABLE,
        Status(4, 3, 0),
        format!("{host} Service shutting down"),
    )
}

pub fn too_many_errors(host: &str) -> Reply {
    Reply::new(
        Code::UNAVAILABLE,
        Status(4, 7, 0),
        format!("{host} Error: too many errors"),
    )
}

pub fn forbidden_command(host: &str) -> Reply {
    Reply::new(
        Code::UNAVAILABLE,
        Status(4, 7, 0),
        format!("{host} Error: this is an SMTP server, not a web or header stream"),
    )
}

/// Before AUTH a session gets a bounded number of commands (`limits.preauth_commands`).
pub fn too_many_preauth_commands(host: &str) -> Reply {
    Reply::new(
        Code::UNAVAILABLE,
        Status(4, 7, 0),
        format!("{host} Error: too many commands before authentication"),
    )
}

/// Before AUTH a session gets a bounded time (`limits.preauth_timeout_secs`).
pub fn preauth_timeout(host: &str) -> Reply {
    Reply::new(
        Code::UNAVAILABLE,
        Status(4, 7, 0),
        format!("{host} Error: too long without authentication"),
    )
}

/// The login was disabled or deleted while the session was open.
pub fn login_revoked(host: &str) -> Reply {
    Reply::new(
        Code::UNAVAILABLE,
        Status(4, 7, 0),
        format!("{host} Error: the login is no longer valid"),
    )
}

/// DATA arrived slower than `limits.min_data_rate` once its grace period was over (R2).
pub fn data_too_slow(host: &str) -> Reply {
    Reply::new(
        Code::UNAVAILABLE,
        Status(4, 4, 2),
        format!("{host} Error: message data arrived too slowly"),
    )
}

pub fn too_many_connections(host: &str) -> Reply {
    Reply::new(
        Code::UNAVAILABLE,
        Status(4, 7, 0),
        format!("{host} Error: too many connections"),
    )
}

pub fn too_many_connections_from(host: &str, ip: std::net::IpAddr) -> Reply {
    Reply::new(
        Code::UNAVAILABLE,
        Status(4, 7, 0),
        format!("{host} Error: too many connections from {ip}"),
    )
}

// --- Simple commands ----------------------------------------------------------------------

pub fn ok() -> Reply {
    Reply::new(Code::OK, Status(2, 0, 0), "Ok")
}

pub fn sender_ok() -> Reply {
    Reply::new(Code::OK, Status(2, 1, 0), "Ok")
}

pub fn recipient_ok() -> Reply {
    Reply::new(Code::OK, Status(2, 1, 5), "Ok")
}

pub fn helo(host: &str) -> Reply {
    Reply::bare(Code::OK, host.to_string())
}

pub fn ehlo(host: &str, keywords: Vec<String>) -> Reply {
    let mut lines = vec![host.to_string()];
    lines.extend(keywords);
    Reply {
        code: Code::OK,
        status: None,
        lines,
    }
}

pub fn vrfy() -> Reply {
    Reply::new(
        Code::CANNOT_VRFY,
        Status(2, 5, 0),
        "Cannot VRFY user, but will accept message and attempt delivery",
    )
}

pub fn help() -> Reply {
    Reply::new(Code::HELP, Status(2, 0, 0), "See RFC 5321 and RFC 6409")
}

// --- Errors in commands -------------------------------------------------------------------

pub fn unrecognized() -> Reply {
    Reply::new(
        Code::UNRECOGNIZED,
        Status(5, 5, 2),
        "Error: command not recognized",
    )
}

pub fn line_too_long() -> Reply {
    Reply::new(Code::UNRECOGNIZED, Status(5, 5, 6), "Error: line too long")
}

pub fn auth_line_too_long() -> Reply {
    Reply::new(
        Code::UNRECOGNIZED,
        Status(5, 5, 6),
        "Authentication Exchange line is too long",
    )
}

pub fn syntax(usage: &str) -> Reply {
    Reply::new(Code::SYNTAX, Status(5, 5, 4), format!("Syntax: {usage}"))
}

pub fn bad_helo() -> Reply {
    Reply::new(
        Code::SYNTAX,
        Status(5, 5, 2),
        "Error: invalid HELO/EHLO name",
    )
}

pub fn not_utf8() -> Reply {
    Reply::new(
        Code::SYNTAX,
        Status(5, 5, 2),
        "Error: command is not valid UTF-8",
    )
}

pub fn bad_sender_syntax() -> Reply {
    Reply::new(
        Code::SYNTAX,
        Status(5, 1, 7),
        "Error: bad sender address syntax",
    )
}

pub fn bad_recipient_syntax() -> Reply {
    Reply::new(
        Code::SYNTAX,
        Status(5, 1, 3),
        "Error: bad recipient address syntax",
    )
}

pub fn bad_param(what: &str) -> Reply {
    Reply::new(
        Code::SYNTAX,
        Status(5, 5, 4),
        format!("Error: bad {what} parameter"),
    )
}

pub fn param_unrecognized() -> Reply {
    Reply::new(
        Code::PARAM_UNRECOGNIZED,
        Status(5, 5, 4),
        "MAIL FROM/RCPT TO parameters not recognized or not implemented",
    )
}

pub fn utf8_needs_smtputf8() -> Reply {
    Reply::new(
        Code::MAILBOX_NAME,
        Status(5, 6, 7),
        "Non-ASCII addresses require SMTPUTF8",
    )
}

// --- Sequence -----------------------------------------------------------------------------

pub fn need_ehlo() -> Reply {
    Reply::new(
        Code::BAD_SEQUENCE,
        Status(5, 5, 1),
        "Error: send HELO/EHLO first",
    )
}

pub fn nested_mail() -> Reply {
    Reply::new(
        Code::BAD_SEQUENCE,
        Status(5, 5, 1),
        "Error: nested MAIL command",
    )
}

pub fn need_mail() -> Reply {
    Reply::new(
        Code::BAD_SEQUENCE,
        Status(5, 5, 1),
        "Error: need MAIL command",
    )
}

pub fn need_rcpt() -> Reply {
    Reply::new(
        Code::BAD_SEQUENCE,
        Status(5, 5, 1),
        "Error: need RCPT command",
    )
}

pub fn no_valid_recipients() -> Reply {
    Reply::new(
        Code::TRANSACTION_FAILED,
        Status(5, 5, 1),
        "Error: no valid recipients",
    )
}

pub fn tls_already_active() -> Reply {
    Reply::new(
        Code::BAD_SEQUENCE,
        Status(5, 5, 1),
        "Error: TLS already active",
    )
}

pub fn already_authenticated() -> Reply {
    Reply::new(
        Code::BAD_SEQUENCE,
        Status(5, 5, 1),
        "Error: already authenticated",
    )
}

pub fn auth_in_transaction() -> Reply {
    Reply::new(
        Code::BAD_SEQUENCE,
        Status(5, 5, 1),
        "Error: MAIL transaction in progress",
    )
}

// --- TLS ----------------------------------------------------------------------------------

pub fn ready_to_start_tls() -> Reply {
    Reply::new(Code::READY, Status(2, 0, 0), "Ready to start TLS")
}

pub fn starttls_first() -> Reply {
    Reply::new(
        Code::AUTH_REQUIRED,
        Status(5, 7, 0),
        "Must issue a STARTTLS command first",
    )
}

// --- AUTH ---------------------------------------------------------------------------------

pub fn auth_required() -> Reply {
    Reply::new(
        Code::AUTH_REQUIRED,
        Status(5, 7, 0),
        "Authentication required",
    )
}

pub fn encryption_required() -> Reply {
    Reply::new(
        Code::ENCRYPTION_REQUIRED,
        Status(5, 7, 11),
        "Encryption required for requested authentication mechanism",
    )
}

pub fn auth_mechanism_unknown() -> Reply {
    Reply::new(
        Code::NOT_IMPLEMENTED_PARAM,
        Status(5, 5, 4),
        "Unrecognized authentication type",
    )
}

/// A 334 challenge; `challenge` is already base64.
pub fn auth_challenge(challenge: &str) -> Reply {
    Reply::bare(Code::AUTH_CONTINUE, challenge.to_string())
}

pub fn auth_cancelled() -> Reply {
    Reply::new(Code::SYNTAX, Status(5, 7, 0), "Authentication aborted")
}

pub fn bad_base64() -> Reply {
    Reply::new(Code::SYNTAX, Status(5, 5, 2), "Cannot decode base64")
}

pub fn bad_sasl_message() -> Reply {
    Reply::new(
        Code::SYNTAX,
        Status(5, 5, 2),
        "Cannot parse authentication message",
    )
}

pub fn auth_succeeded() -> Reply {
    Reply::new(Code::AUTH_OK, Status(2, 7, 0), "Authentication successful")
}

pub fn auth_failed() -> Reply {
    Reply::new(
        Code::AUTH_INVALID,
        Status(5, 7, 8),
        "Authentication credentials invalid",
    )
}

pub fn auth_temporary_failure() -> Reply {
    Reply::new(
        Code::TEMP_AUTH_FAILURE,
        Status(4, 7, 0),
        "Temporary authentication failure",
    )
}

pub fn too_many_auth_failures(host: &str) -> Reply {
    Reply::new(
        Code::UNAVAILABLE,
        Status(4, 7, 0),
        format!("{host} Error: too many authentication failures"),
    )
}

// --- Envelope -----------------------------------------------------------------------------

pub fn sender_not_owned(sender: &str, user: &str) -> Reply {
    Reply::new(
        Code::MAILBOX_NAME,
        Status(5, 7, 1),
        format!(
            "<{}>: Sender address rejected: not owned by user {}",
            sanitize(sender),
            sanitize(user)
        ),
    )
}

pub fn message_too_big() -> Reply {
    Reply::new(
        Code::EXCEEDED_STORAGE,
        Status(5, 3, 4),
        "Message size exceeds fixed maximum message size",
    )
}

pub fn too_many_messages() -> Reply {
    Reply::new(
        Code::INSUFFICIENT_STORAGE,
        Status(4, 4, 5),
        "Error: too many messages in this session, reconnect",
    )
}

pub fn too_many_recipients() -> Reply {
    Reply::new(
        Code::INSUFFICIENT_STORAGE,
        Status(4, 5, 3),
        "Error: too many recipients",
    )
}

// --- DATA ---------------------------------------------------------------------------------

pub fn start_data() -> Reply {
    Reply::bare(Code::START_DATA, "End data with <CR><LF>.<CR><LF>")
}

pub fn header_too_large() -> Reply {
    Reply::new(
        Code::EXCEEDED_STORAGE,
        Status(5, 3, 4),
        "Message header too large",
    )
}

pub fn too_many_hops() -> Reply {
    Reply::new(
        Code::TRANSACTION_FAILED,
        Status(5, 4, 6),
        "Too many hops: possible mail loop",
    )
}

pub fn bare_newline() -> Reply {
    Reply::new(
        Code::REJECTED,
        Status(5, 5, 2),
        "Error: bare <CR> or <LF> received",
    )
}

pub fn queued(id: crate::smtp::MessageId) -> Reply {
    Reply::new(Code::OK, Status(2, 0, 0), format!("Ok: queued as {id}"))
}

pub fn store_failed() -> Reply {
    Reply::new(
        Code::LOCAL_ERROR,
        Status(4, 3, 0),
        "Error: local error in processing, try again later",
    )
}

/// RFC 3463 §3.4 X.3.1 "Mail system full": the disk (or a quota) is full, or below the
/// free-space floor; a later try may do.
pub fn insufficient_storage() -> Reply {
    Reply::new(
        Code::INSUFFICIENT_STORAGE,
        Status(4, 3, 1),
        "Error: insufficient system storage, try again later",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_with_status() {
        assert_eq!(
            auth_failed().to_bytes(),
            b"535 5.7.8 Authentication credentials invalid\r\n"
        );
    }

    #[test]
    fn multi_line_frames_hyphens_then_space() {
        let r = ehlo("mx.test", vec!["PIPELINING".into(), "8BITMIME".into()]);
        assert_eq!(
            r.to_bytes(),
            b"250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        );
    }

    #[test]
    fn bare_reply_has_no_status() {
        assert_eq!(greeting("h").to_bytes(), b"220 h ESMTP\r\n");
        assert_eq!(auth_challenge("").to_bytes(), b"334 \r\n");
    }

    #[test]
    fn sanitize_replaces_controls_and_truncates() {
        assert_eq!(sanitize("a\r\nb\u{e9}"), "a??b?");
        assert_eq!(sanitize(&"x".repeat(100)).len(), 64);
    }
}
