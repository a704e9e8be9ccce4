//! The limits and policy one session runs under.

use std::time::Duration;

/// What to do with a message whose content holds a bare LF or a bare CR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BareNewline {
    /// Read to the real end of data, then refuse the whole message with `550 5.5.2`.
    #[default]
    Reject,
    /// Store it with every bare LF and bare CR turned into CR LF.
    Normalize,
}

/// Settings of one SMTP session. Every buffer the session keeps is bounded by one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our name in the greeting, EHLO reply and `Received:` header.
    pub hostname: String,
    /// Largest message accepted, in octets (advertised as `SIZE`).
    pub max_message_size: usize,
    /// Recipients accepted per transaction (RFC 5321 §4.5.3.1.8: at least 100).
    pub max_recipients: usize,
    /// Longest command line, CR LF included (RFC 5321 §4.5.3.1.4: 512).
    pub max_command_line: usize,
    /// Longest AUTH line or SASL continuation, CR LF included (RFC 4954 §4: 12 288).
    pub max_auth_line: usize,
    /// How long the client may take to send the next command.
    pub command_timeout: Duration,
    /// How long the client may stay silent inside a message after `354` (RFC 5321
    /// §4.5.3.2.5: 3 minutes per data block).
    pub data_timeout: Duration,
    /// The slowest average rate a message may arrive at, in bytes per second, once
    /// `data_rate_grace` has passed after `354`; 0 turns it off (R2, Postfix
    /// `smtpd_min_data_rate`).
    pub min_data_rate: u64,
    /// How long after `354` the minimum rate starts to apply.
    pub data_rate_grace: Duration,
    /// Commands a session may send before AUTH succeeds; the next gets `421 4.7.0`.
    pub preauth_commands: u32,
    /// How long a session may last without AUTH succeeding, then `421 4.7.0`.
    pub preauth_timeout: Duration,
    /// Bare LF / bare CR policy inside message content.
    pub bare_newline: BareNewline,
    /// AUTH, MAIL, RCPT and DATA only on a TLS channel.
    pub require_tls: bool,
    /// Failed AUTH attempts before `421 4.7.0` and close.
    pub max_auth_failures: u32,
    /// MAIL FROM must be the authenticated user's address.
    pub sender_must_match_user: bool,
    /// Bad commands (unknown, bad syntax, out of sequence) before `421` and close.
    pub max_bad_commands: u32,
    /// Bytes of input buffered at most while the session cannot process them.
    pub input_buffer: usize,
    /// Largest header section of a message (SECURITY-CASES L4).
    pub max_header_size: usize,
    /// More `Received:` headers than this is a mail loop (RFC 5321 §6.3, L5).
    pub max_received_headers: usize,
    /// Messages accepted in one session before MAIL gets `452 4.4.5` (E12).
    pub max_messages_per_session: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".to_string(),
            max_message_size: 26_214_400,
            max_recipients: 100,
            max_command_line: 512,
            max_auth_line: 12_288,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            min_data_rate: 1024,
            data_rate_grace: Duration::from_secs(30),
            preauth_commands: 20,
            preauth_timeout: Duration::from_secs(60),
            bare_newline: BareNewline::Reject,
            require_tls: true,
            max_auth_failures: 3,
            sender_must_match_user: true,
            max_bad_commands: 10,
            input_buffer: 64 * 1024,
            max_header_size: 1024 * 1024,
            max_received_headers: 50,
            max_messages_per_session: 1000,
        }
    }
}
