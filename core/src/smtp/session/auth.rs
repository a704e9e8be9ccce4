//! AUTH PLAIN and LOGIN (RFC 4954, RFC 4616, draft-murchison-sasl-login).
//!
//! Credentials are decoded here; only well-formed ones become an [`Event::Authenticate`].
//! Every AUTH ends in exactly one final reply (A16), and a PLAIN authorization identity other
//! than the user is refused (A9).

use super::{Authenticated, CloseReason, Event, Pending, Phase, Session, later};
use crate::sasl::{self, Credentials, Password, SaslError};
use crate::smtp::command::Mechanism;
use crate::smtp::framing::Frame;
use crate::smtp::reply;
use crate::smtp::{AuthOutcome, AuthRequest};
use zeroize::Zeroizing;

/// Which client response a `334` is waiting for.
#[derive(Debug)]
pub(super) enum SaslStep {
    PlainResponse,
    LoginUsername,
    LoginPassword { username: String },
}

impl Session {
    pub(super) fn on_auth(&mut self, mechanism: Mechanism, initial: Option<String>) {
        if self.helo.is_none() {
            return self.bad_command(reply::need_ehlo());
        }
        if self.user.is_some() {
            return self.bad_command(reply::already_authenticated());
        }
        if self.transaction.is_some() {
            return self.bad_command(reply::auth_in_transaction());
        }
        match (mechanism, initial) {
            (Mechanism::Plain, None) => {
                self.reply(reply::auth_challenge(""));
                self.phase = Phase::Sasl(SaslStep::PlainResponse);
            }
            (Mechanism::Login, None) => {
                self.reply(reply::auth_challenge(sasl::LOGIN_USERNAME_PROMPT));
                self.phase = Phase::Sasl(SaslStep::LoginUsername);
            }
            (_, Some(response)) => {
                let step = match mechanism {
                    Mechanism::Plain => SaslStep::PlainResponse,
                    Mechanism::Login => SaslStep::LoginUsername,
                };
                self.on_sasl_response(step, &response);
            }
        }
    }

    /// Reads one SASL continuation line (up to `max_auth_line`, A11).
    pub(super) fn step_sasl(&mut self) -> bool {
        match self.input.next_line(self.config.max_auth_line) {
            Frame::Incomplete => false,
            Frame::TooLong => {
                self.phase = Phase::Command;
                self.bad_command(reply::auth_line_too_long());
                true
            }
            Frame::Line(range) => {
                let line = self.input.bytes().get(range.clone()).unwrap_or_default();
                let line = String::from_utf8_lossy(line).into_owned();
                self.input.consume_line(&range);
                self.deadline = later(self.now, self.config.command_timeout);
                let step = std::mem::replace(&mut self.phase, Phase::Command);
                if let Phase::Sasl(step) = step {
                    self.on_sasl_response(step, &line);
                }
                true
            }
        }
    }

    fn on_sasl_response(&mut self, step: SaslStep, response: &str) {
        self.phase = Phase::Command;
        // Zeroed when dropped: it may hold a password.
        let decoded = match sasl::decode_response(response) {
            Ok(decoded) => Zeroizing::new(decoded),
            Err(error) => return self.on_sasl_error(error),
        };
        match step {
            SaslStep::PlainResponse => match sasl::decode_plain(&decoded) {
                Ok(credentials) => self.request_auth(Mechanism::Plain, credentials),
                Err(error) => self.on_sasl_error(error),
            },
            SaslStep::LoginUsername => match sasl::decode_login_field(&decoded) {
                Ok(username) => {
                    self.reply(reply::auth_challenge(sasl::LOGIN_PASSWORD_PROMPT));
                    self.phase = Phase::Sasl(SaslStep::LoginPassword { username });
                }
                Err(error) => self.on_sasl_error(error),
            },
            SaslStep::LoginPassword { username } => match sasl::decode_login_field(&decoded) {
                Ok(password) => {
                    let password = Password::new(password);
                    self.request_auth(Mechanism::Login, Credentials { username, password });
                }
                Err(error) => self.on_sasl_error(error),
            },
        }
    }

    fn on_sasl_error(&mut self, error: SaslError) {
        match error {
            SaslError::Cancelled => self.reply(reply::auth_cancelled()),
            SaslError::Base64 => self.reply(reply::bad_base64()),
            SaslError::Malformed => self.reply(reply::bad_sasl_message()),
            SaslError::Invalid => self.on_auth_failure(),
        }
    }

    fn request_auth(&mut self, mechanism: Mechanism, credentials: Credentials) {
        self.auth_user = Some(credentials.username.clone());
        let request = AuthRequest {
            mechanism,
            username: credentials.username,
            password: credentials.password,
        };
        self.request(Pending::Auth, Event::Authenticate(request));
    }

    pub(super) fn on_auth_outcome(&mut self, username: String, outcome: AuthOutcome) {
        match outcome {
            AuthOutcome::Accepted => {
                self.user = Some(Authenticated { user: username });
                self.reply(reply::auth_succeeded());
            }
            AuthOutcome::Rejected => self.on_auth_failure(),
            AuthOutcome::TemporaryFailure => self.reply(reply::auth_temporary_failure()),
        }
    }

    /// `535 5.7.8`, or `421 4.7.0` and close once the failures reach the limit (A13).
    fn on_auth_failure(&mut self) {
        self.auth_failures += 1;
        if self.auth_failures >= self.config.max_auth_failures {
            self.reply(reply::too_many_auth_failures(&self.config.hostname));
            self.close(CloseReason::TooManyAuthFailures);
        } else {
            self.reply(reply::auth_failed());
        }
    }
}
