//! Invariants of a session, checked after every event.

use crate::smtp::{Event, Session};

/// An invariant that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Watches the events of one session and the completions fed to it.
#[derive(Debug, Default)]
pub struct Checker {
    pending: bool,
    closed: bool,
    authenticated: bool,
}

impl Checker {
    /// A checker for a fresh session.
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Checks one event returned by `poll_event`, with the session state after it.
    pub fn on_event(&mut self, event: &Event, session: &Session) -> Result<(), Violation> {
        if self.closed {
            return Err(Violation(format!("event after Close: {event:?}")));
        }
        // The session sizes its buffer so that any line it must read fits (Session::new).
        let config = session.config();
        let limit = config
            .input_buffer
            .max(config.max_auth_line)
            .max(config.max_command_line);
        if session.buffered() > limit {
            return Err(Violation(format!(
                "buffered {} > limit {limit}",
                session.buffered()
            )));
        }
        match event {
            Event::Transmit(bytes) => {
                if self.pending {
                    return Err(Violation("reply while a request is pending".into()));
                }
                check_reply_bytes(bytes)?;
            }
            Event::StartTls | Event::Authenticate(_) => self.request()?,
            Event::CheckMail(check) => {
                self.request()?;
                if !self.authenticated || session.user() != Some(check.user.as_str()) {
                    return Err(Violation("MAIL check without authentication".into()));
                }
            }
            Event::Deliver(delivery) => {
                self.request()?;
                if session.config().require_tls && session.tls().is_none() {
                    return Err(Violation("delivery on a plaintext channel".into()));
                }
                if !self.authenticated || session.user() != Some(delivery.user.as_str()) {
                    return Err(Violation("delivery without authentication".into()));
                }
                if delivery.data.len() > session.config().max_message_size {
                    return Err(Violation("delivery over the size limit".into()));
                }
            }
            Event::Close => self.closed = true,
        }
        Ok(())
    }

    fn request(&mut self) -> Result<(), Violation> {
        if self.pending {
            return Err(Violation("second request while one is pending".into()));
        }
        self.pending = true;
        Ok(())
    }

    /// A completion was fed to the session; `authenticated` is the session's view after it.
    pub fn completed(&mut self, authenticated: bool) {
        self.pending = false;
        self.authenticated = authenticated;
    }

    /// The TLS handshake finished: the session forgets its login (RFC 3207 §4.2).
    pub fn tls_completed(&mut self) {
        self.pending = false;
        self.authenticated = false;
    }

    /// Whether a request is waiting for its completion.
    pub fn is_pending(&self) -> bool {
        self.pending
    }
}

/// Checks that `bytes` is a sequence of complete, well-formed replies: every line is three
/// digits, then `-` or space, then text without CR or LF, then CR LF; the lines of a
/// multi-line reply share one code.
pub fn check_reply_bytes(bytes: &[u8]) -> Result<(), Violation> {
    if bytes.is_empty() {
        return Err(Violation("empty Transmit".into()));
    }
    let mut open_code: Option<&[u8]> = None;
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(end) = memchr::memmem::find(rest, b"\r\n") else {
            return Err(Violation(format!(
                "line without CR LF: {:?}",
                String::from_utf8_lossy(rest)
            )));
        };
        let (line, after) = rest.split_at_checked(end).unwrap_or((rest, &[]));
        rest = after.get(2..).unwrap_or_default(); // past the CR LF
        let bad = || {
            Violation(format!(
                "malformed reply line {:?}",
                String::from_utf8_lossy(line)
            ))
        };
        let Some((code @ [first, ..], &sep)) = line.get(..3).zip(line.get(3)) else {
            return Err(bad());
        };
        if !code.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(first) {
            return Err(bad());
        }
        if line.iter().any(|&b| b == b'\r' || b == b'\n') {
            return Err(bad());
        }
        if open_code.is_some_and(|open| open != code) {
            return Err(Violation("multi-line reply changes its code".into()));
        }
        match sep {
            b'-' => open_code = Some(code),
            b' ' => open_code = None,
            _ => return Err(bad()),
        }
    }
    if open_code.is_some() {
        return Err(Violation("multi-line reply not finished".into()));
    }
    Ok(())
}
