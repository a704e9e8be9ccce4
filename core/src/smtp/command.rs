//! The command grammar (RFC 5321 §4.1.1, RFC 3207, RFC 4954): one line in, one [`Command`]
//! or one [`CommandError`] out. Each error knows its reply.

use std::fmt;

use super::address::{self, AddressError, ForwardPath, ReversePath};
use super::params::{MailParams, ParamError};
use super::reply::{self, Reply};

/// The verb of a command line, known even when its arguments are bad, so that the
/// STARTTLS gate can judge a command before its syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    Auth,
    /// HTTP verbs and `Label:` lines: somebody is not speaking SMTP (Postfix
    /// `smtpd_forbidden_commands`).
    Forbidden,
    Unknown,
}

impl Verb {
    fn of(word: &str) -> Verb {
        const VERBS: &[(&str, Verb)] = &[
            ("EHLO", Verb::Ehlo),
            ("HELO", Verb::Helo),
            ("MAIL", Verb::Mail),
            ("RCPT", Verb::Rcpt),
            ("DATA", Verb::Data),
            ("RSET", Verb::Rset),
            ("NOOP", Verb::Noop),
            ("QUIT", Verb::Quit),
            ("VRFY", Verb::Vrfy),
            ("EXPN", Verb::Expn),
            ("HELP", Verb::Help),
            ("STARTTLS", Verb::StartTls),
            ("AUTH", Verb::Auth),
            ("GET", Verb::Forbidden),
            ("POST", Verb::Forbidden),
            ("HEAD", Verb::Forbidden),
            ("PUT", Verb::Forbidden),
            ("CONNECT", Verb::Forbidden),
            ("OPTIONS", Verb::Forbidden),
        ];
        if word.len() > 1 && word.ends_with(':') {
            return Verb::Forbidden;
        }
        VERBS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(word))
            .map_or(Verb::Unknown, |&(_, verb)| verb)
    }
}

/// A SASL mechanism named in `AUTH`, matched case-insensitively (RFC 4954 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    /// The name as advertised.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail {
        from: ReversePath,
        params: MailParams,
    },
    Rcpt {
        to: ForwardPath,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    /// `initial` is the initial response as sent (base64, or `=` for empty).
    Auth {
        mechanism: Mechanism,
        initial: Option<String>,
    },
}

/// A command line that did not parse; [`CommandError::reply`] is what we answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub verb: Verb,
    pub kind: CommandErrorKind,
}

/// What was wrong with a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandErrorKind {
    /// A verb we do not know: `500 5.5.2`.
    Unrecognized,
    /// Control characters (NUL, bare CR, …) in the line: `500 5.5.2`.
    ControlCharacters,
    /// Not valid UTF-8: `501 5.5.2`.
    InvalidUtf8,
    /// Wrong arguments for a known verb: `501 5.5.4` with its usage.
    Syntax(&'static str),
    /// An EHLO/HELO name that may not reach a header: `501 5.5.2`.
    BadHelo,
    BadSender,
    BadRecipient,
    Param(ParamError),
    /// `AUTH` with a mechanism we do not offer: `504 5.5.4`.
    UnknownMechanism,
}

impl CommandError {
    fn new(verb: Verb, kind: CommandErrorKind) -> CommandError {
        CommandError { verb, kind }
    }

    /// The reply for this error.
    pub fn reply(&self) -> Reply {
        match self.kind {
            CommandErrorKind::Unrecognized | CommandErrorKind::ControlCharacters => {
                reply::unrecognized()
            }
            CommandErrorKind::InvalidUtf8 => reply::not_utf8(),
            CommandErrorKind::Syntax(usage) => reply::syntax(usage),
            CommandErrorKind::BadHelo => reply::bad_helo(),
            CommandErrorKind::BadSender => reply::bad_sender_syntax(),
            CommandErrorKind::BadRecipient => reply::bad_recipient_syntax(),
            CommandErrorKind::Param(ParamError::Bad(what)) => reply::bad_param(what),
            CommandErrorKind::Param(ParamError::Unrecognized) => reply::param_unrecognized(),
            CommandErrorKind::UnknownMechanism => reply::auth_mechanism_unknown(),
        }
    }
}

impl Command {
    /// Parses one command line, without its line ending.
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        let text = match std::str::from_utf8(line) {
            Ok(text) => text,
            Err(_) => {
                let verb = line.split(|&b| b == b' ').next().unwrap_or_default();
                let verb = std::str::from_utf8(verb).map_or(Verb::Unknown, Verb::of);
                return Err(CommandError::new(verb, CommandErrorKind::InvalidUtf8));
            }
        };
        let (word, args) = match text.split_once(' ') {
            Some((word, args)) => (word, args),
            None => (text, ""),
        };
        let verb = Verb::of(word);
        if text.chars().any(char::is_control) {
            return Err(CommandError::new(verb, CommandErrorKind::ControlCharacters));
        }
        let err = |kind| Err(CommandError::new(verb, kind));
        let no_args = |command: Command, usage| {
            if args.trim_matches(' ').is_empty() {
                Ok(command)
            } else {
                err(CommandErrorKind::Syntax(usage))
            }
        };
        match verb {
            Verb::Ehlo | Verb::Helo => {
                let name = args.trim_matches(' ');
                if name.is_empty() {
                    return err(CommandErrorKind::Syntax(if verb == Verb::Ehlo {
                        "EHLO hostname"
                    } else {
                        "HELO hostname"
                    }));
                }
                if !is_safe_helo(name) {
                    return err(CommandErrorKind::BadHelo);
                }
                Ok(if verb == Verb::Ehlo {
                    Command::Ehlo(name.into())
                } else {
                    Command::Helo(name.into())
                })
            }
            Verb::Mail => {
                let Some(path) = strip_prefix_ci(args, "FROM:") else {
                    return err(CommandErrorKind::Syntax("MAIL FROM:<address>"));
                };
                let (from, rest) = address::parse_reverse_path(path.trim_start_matches(' '))
                    .map_err(|_: AddressError| {
                        CommandError::new(verb, CommandErrorKind::BadSender)
                    })?;
                let params = MailParams::parse(rest)
                    .map_err(|e| CommandError::new(verb, CommandErrorKind::Param(e)))?;
                Ok(Command::Mail { from, params })
            }
            Verb::Rcpt => {
                let Some(path) = strip_prefix_ci(args, "TO:") else {
                    return err(CommandErrorKind::Syntax("RCPT TO:<address>"));
                };
                let (to, rest) = address::parse_forward_path(path.trim_start_matches(' '))
                    .map_err(|_| CommandError::new(verb, CommandErrorKind::BadRecipient))?;
                if !rest.trim_matches(' ').is_empty() {
                    // We implement no RCPT parameters (no DSN).
                    return err(CommandErrorKind::Param(ParamError::Unrecognized));
                }
                Ok(Command::Rcpt { to })
            }
            Verb::Data => no_args(Command::Data, "DATA"),
            Verb::Rset => no_args(Command::Rset, "RSET"),
            Verb::Quit => no_args(Command::Quit, "QUIT"),
            Verb::StartTls => no_args(Command::StartTls, "STARTTLS"),
            // RFC 5321 §4.1.1.9: NOOP may carry a string, which is ignored; so may HELP.
            Verb::Noop => Ok(Command::Noop),
            Verb::Help => Ok(Command::Help),
            Verb::Vrfy | Verb::Expn => {
                if args.trim_matches(' ').is_empty() {
                    return err(CommandErrorKind::Syntax(if verb == Verb::Vrfy {
                        "VRFY address"
                    } else {
                        "EXPN list"
                    }));
                }
                Ok(if verb == Verb::Vrfy {
                    Command::Vrfy
                } else {
                    Command::Expn
                })
            }
            Verb::Auth => {
                let mut words = args.split(' ').filter(|w| !w.is_empty());
                let (Some(name), initial, None) = (words.next(), words.next(), words.next()) else {
                    return err(CommandErrorKind::Syntax(
                        "AUTH mechanism [initial-response]",
                    ));
                };
                let mechanism = if name.eq_ignore_ascii_case("PLAIN") {
                    Mechanism::Plain
                } else if name.eq_ignore_ascii_case("LOGIN") {
                    Mechanism::Login
                } else {
                    return err(CommandErrorKind::UnknownMechanism);
                };
                Ok(Command::Auth {
                    mechanism,
                    initial: initial.map(str::to_string),
                })
            }
            Verb::Forbidden | Verb::Unknown => err(CommandErrorKind::Unrecognized),
        }
    }
}

/// An EHLO/HELO argument that is safe to write into a `Received:` header: visible ASCII
/// without the characters that would end or nest a header comment (RFC 5321 §4.4; the
/// Stalwart bug of writing HELO names verbatim), at most 255 octets.
fn is_safe_helo(name: &str) -> bool {
    name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>;\\\"".contains(&b))
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Ehlo(name) => write!(f, "EHLO {name}"),
            Command::Helo(name) => write!(f, "HELO {name}"),
            Command::Mail { from, params } => write!(f, "MAIL FROM:{from}{params}"),
            Command::Rcpt { to } => write!(f, "RCPT TO:{to}"),
            Command::Data => f.write_str("DATA"),
            Command::Rset => f.write_str("RSET"),
            Command::Noop => f.write_str("NOOP"),
            Command::Quit => f.write_str("QUIT"),
            Command::Vrfy => f.write_str("VRFY x"),
            Command::Expn => f.write_str("EXPN x"),
            Command::Help => f.write_str("HELP"),
            Command::StartTls => f.write_str("STARTTLS"),
            Command::Auth {
                mechanism,
                initial: Some(ir),
            } => {
                write!(f, "AUTH {} {ir}", mechanism.name())
            }
            Command::Auth {
                mechanism,
                initial: None,
            } => write!(f, "AUTH {}", mechanism.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::address::Mailbox;

    fn kind(line: &str) -> Result<Command, CommandErrorKind> {
        Command::parse(line.as_bytes()).map_err(|e| e.kind)
    }

    #[test]
    fn parses_each_verb() {
        let alice = Mailbox {
            local: "alice".into(),
            domain: "example.org".into(),
        };
        let cases: &[(&str, Result<Command, CommandErrorKind>)] = &[
            ("EHLO client.test", Ok(Command::Ehlo("client.test".into()))),
            ("ehlo [127.0.0.1]", Ok(Command::Ehlo("[127.0.0.1]".into()))),
            ("HELO x", Ok(Command::Helo("x".into()))),
            ("EHLO", Err(CommandErrorKind::Syntax("EHLO hostname"))),
            ("EHLO a(b", Err(CommandErrorKind::BadHelo)),
            ("EHLO a b", Err(CommandErrorKind::BadHelo)),
            (
                "MAIL FROM:<alice@example.org>",
                Ok(Command::Mail {
                    from: ReversePath::Mailbox(alice.clone()),
                    params: MailParams::default(),
                }),
            ),
            (
                "mail from: <alice@example.org> SIZE=5",
                Ok(Command::Mail {
                    from: ReversePath::Mailbox(alice.clone()),
                    params: MailParams {
                        size: Some(5),
                        ..Default::default()
                    },
                }),
            ),
            (
                "MAIL FROM:<>",
                Ok(Command::Mail {
                    from: ReversePath::Null,
                    params: MailParams::default(),
                }),
            ),
            (
                "MAIL TO:<a@b>",
                Err(CommandErrorKind::Syntax("MAIL FROM:<address>")),
            ),
            (
                "MAIL FROM:alice@example.org",
                Err(CommandErrorKind::BadSender),
            ),
            (
                "MAIL FROM:<a@b> FOO=1",
                Err(CommandErrorKind::Param(ParamError::Unrecognized)),
            ),
            (
                "RCPT TO:<alice@example.org>",
                Ok(Command::Rcpt {
                    to: ForwardPath::Mailbox(alice),
                }),
            ),
            ("RCPT TO:<bad>", Err(CommandErrorKind::BadRecipient)),
            (
                "RCPT TO:<a@b> NOTIFY=NEVER",
                Err(CommandErrorKind::Param(ParamError::Unrecognized)),
            ),
            ("DATA", Ok(Command::Data)),
            ("DATA x", Err(CommandErrorKind::Syntax("DATA"))),
            ("STARTTLS", Ok(Command::StartTls)),
            ("STARTTLS now", Err(CommandErrorKind::Syntax("STARTTLS"))),
            ("NOOP anything", Ok(Command::Noop)),
            ("RSET", Ok(Command::Rset)),
            ("QUIT", Ok(Command::Quit)),
            ("VRFY bob", Ok(Command::Vrfy)),
            ("HELP", Ok(Command::Help)),
            (
                "AUTH plain",
                Ok(Command::Auth {
                    mechanism: Mechanism::Plain,
                    initial: None,
                }),
            ),
            (
                "AUTH LOGIN YWxpY2U=",
                Ok(Command::Auth {
                    mechanism: Mechanism::Login,
                    initial: Some("YWxpY2U=".into()),
                }),
            ),
            ("AUTH CRAM-MD5", Err(CommandErrorKind::UnknownMechanism)),
            (
                "AUTH",
                Err(CommandErrorKind::Syntax(
                    "AUTH mechanism [initial-response]",
                )),
            ),
            (
                "AUTH PLAIN a b",
                Err(CommandErrorKind::Syntax(
                    "AUTH mechanism [initial-response]",
                )),
            ),
            ("FOO", Err(CommandErrorKind::Unrecognized)),
            ("", Err(CommandErrorKind::Unrecognized)),
            ("NOOP\0", Err(CommandErrorKind::ControlCharacters)),
            (
                "MAIL FROM:<a\0@b>",
                Err(CommandErrorKind::ControlCharacters),
            ),
            ("GET / HTTP/1.1", Err(CommandErrorKind::Unrecognized)),
        ];
        for (line, expected) in cases {
            assert_eq!(&kind(line), expected, "{line:?}");
        }
    }

    #[test]
    fn forbidden_verbs_are_recognised() {
        for line in [
            "GET / HTTP/1.1",
            "POST /x",
            "CONNECT a:1",
            "Subject: hi",
            "From: a",
        ] {
            assert_eq!(
                Command::parse(line.as_bytes()).map_err(|e| e.verb),
                Err(Verb::Forbidden)
            );
        }
    }

    #[test]
    fn invalid_utf8_keeps_the_verb() {
        let e = Command::parse(b"MAIL FROM:<\xff@x>").unwrap_err();
        assert_eq!(
            (e.verb, e.kind),
            (Verb::Mail, CommandErrorKind::InvalidUtf8)
        );
    }

    #[test]
    fn display_parses_back() {
        for line in [
            "EHLO x.test",
            "MAIL FROM:<a@b.test> SIZE=3 SMTPUTF8",
            "RCPT TO:<Postmaster>",
            "AUTH PLAIN =",
            "AUTH LOGIN",
            "DATA",
            "QUIT",
        ] {
            let c = Command::parse(line.as_bytes()).unwrap();
            assert_eq!(
                Command::parse(c.to_string().as_bytes()).unwrap(),
                c,
                "{line}"
            );
        }
    }
}
