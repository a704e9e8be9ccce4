//! What a session asks of its runtime, and what the runtime reports back.

use std::net::SocketAddr;

use crate::sasl::Password;
use crate::smtp::Mechanism;

/// The TLS parameters of an established channel, for logs and the `Received:` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// e.g. `TLSv1.3`.
    pub version: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// The channel a session starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// Plaintext with STARTTLS offered (port 587).
    Plain,
    /// TLS from the first byte (port 465, RFC 8314); the handshake is already done.
    Implicit(TlsInfo),
}

/// Facts about the connection known when it is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub channel: Channel,
}

/// The id under which a delivered message was stored.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct MessageId(pub u64);

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Credentials to check. The password never appears in `Debug` output, and the request
/// cannot be cloned: hand it on, or share it behind an `Arc`.
#[derive(Debug, PartialEq, Eq)]
pub struct AuthRequest {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: Password,
}

/// The verdict on an [`AuthRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// `235 2.7.0`.
    Accepted,
    /// Wrong name or password, or a disabled user: `535 5.7.8`, counted as a failure.
    Rejected,
    /// Throttled or the verifier is overloaded: `454 4.7.0`, not counted as a failure.
    TemporaryFailure,
}

/// What MAIL asks before a transaction starts: whether `user` may still send, and whether
/// there is room to store a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailCheck {
    /// The authenticated user, whose login may have been disabled or deleted since AUTH.
    pub user: String,
}

/// The verdict on a [`MailCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailVerdict {
    /// `250`: the transaction starts.
    Accepted,
    /// The login was disabled or deleted: `421 4.7.0` and close.
    LoginRevoked,
    /// The store is below its free-space floor: `452 4.3.1`, the session goes on.
    InsufficientStorage,
    /// The check itself failed (the store could not be read): `451 4.3.0`, the session goes on.
    Unavailable,
}

/// A message to store: the envelope and the data as received, dot-unstuffed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The authenticated user.
    pub user: String,
    /// The EHLO/HELO name, already checked to be safe for a `Received:` header.
    pub helo: String,
    pub peer: SocketAddr,
    pub tls: Option<TlsInfo>,
    /// The reverse-path without angle brackets; empty for the null sender `<>`.
    pub mail_from: String,
    /// The forward-paths without angle brackets.
    pub rcpt_to: Vec<String>,
    /// The message content after `354`, dot-unstuffed, without the final `.` line.
    pub data: Vec<u8>,
}

/// Why a delivery failed: its kind picks the reply, its detail is for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    /// What kind of failure: the session answers by it.
    pub kind: DeliveryFailure,
    /// What went wrong, for the log; never sent to the client.
    pub detail: String,
}

/// The kinds of failed delivery a client is told apart (RFC 3463 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryFailure {
    /// The file system is full or a quota is reached: `452 4.3.1`.
    NoSpace,
    /// Anything else (an I/O error, a panic, the store closing): `451 4.3.0`.
    Other,
}

impl DeliveryError {
    /// A failure of kind [`DeliveryFailure::Other`].
    pub fn other(detail: impl Into<String>) -> DeliveryError {
        DeliveryError {
            kind: DeliveryFailure::Other,
            detail: detail.into(),
        }
    }

    /// A failure of kind [`DeliveryFailure::NoSpace`].
    pub fn no_space(detail: impl Into<String>) -> DeliveryError {
        DeliveryError {
            kind: DeliveryFailure::NoSpace,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// What the session asks its runtime to do. Act on events in the order they come.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Write these bytes before acting on any later event.
    Transmit(Vec<u8>),
    /// Flush, run the TLS handshake on the same socket, then call `tls_established`.
    StartTls,
    /// Throttle, verify off the executor, then call `auth_result`.
    Authenticate(AuthRequest),
    /// Check that the login is still active and that there is room to store, then call
    /// `mail_checked`.
    CheckMail(MailCheck),
    /// Process and commit durably, then call `delivery_result`.
    Deliver(Delivery),
    /// Flush and close the connection; nothing follows.
    Close,
}

/// A completion arrived for a request the session had not made: a runtime bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotPending;

impl std::fmt::Display for NotPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no such request is pending")
    }
}

impl std::error::Error for NotPending {}

/// Why a session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent QUIT.
    Quit,
    /// The client closed its side.
    PeerClosed,
    /// A command, DATA or TLS handshake deadline passed.
    Timeout,
    /// The server is shutting down.
    Shutdown,
    /// Too many bad commands (L8).
    TooManyErrors,
    /// Too many failed logins (A13).
    TooManyAuthFailures,
    /// An HTTP request or a header line instead of a command (L9).
    ForbiddenCommand,
    /// A TLS ClientHello on the plaintext port (T6).
    TlsOnPlaintext,
    /// Too many commands, or too long, before AUTH succeeded.
    PreauthLimit,
    /// The login was disabled or deleted during the session.
    LoginRevoked,
    /// DATA arrived below the minimum rate (R2).
    DataTooSlow,
}

impl CloseReason {
    /// A short name for log lines: `quit`, `timeout`, …
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Quit => "quit",
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::Timeout => "timeout",
            CloseReason::Shutdown => "shutdown",
            CloseReason::TooManyErrors => "too_many_errors",
            CloseReason::TooManyAuthFailures => "too_many_auth_failures",
            CloseReason::ForbiddenCommand => "forbidden_command",
            CloseReason::TlsOnPlaintext => "tls_on_plaintext",
            CloseReason::PreauthLimit => "preauth_limit",
            CloseReason::LoginRevoked => "login_revoked",
            CloseReason::DataTooSlow => "data_too_slow",
        }
    }
}
