//! Reverse- and forward-paths (RFC 5321 §4.1.2, with RFC 6531 UTF-8 extensions).
//!
//! Source routes (`<@a,@b:user@c>`) are accepted and dropped (RFC 5321 §4.1.1.3). Lengths
//! are checked against §4.5.3.1: local part 64, domain 255, path 256 octets.

use std::fmt;

const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 255;
const MAX_PATH: usize = 256;

/// A `local@domain` mailbox. The local part is kept as sent (a quoted one keeps its quotes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub local: String,
    pub domain: String,
}

impl Mailbox {
    /// Whether any part needs SMTPUTF8 (RFC 6531).
    pub fn is_utf8(&self) -> bool {
        !self.local.is_ascii() || !self.domain.is_ascii()
    }

    /// The local part without quoting: `"a b"` → `a b`.
    pub fn unquoted_local(&self) -> String {
        match self
            .local
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
        {
            Some(inner) => {
                let mut out = String::with_capacity(inner.len());
                let mut escaped = false;
                for c in inner.chars() {
                    if escaped || c != '\\' {
                        out.push(c);
                        escaped = false;
                    } else {
                        escaped = true;
                    }
                }
                out
            }
            None => self.local.clone(),
        }
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// The argument of `MAIL FROM:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`: the null sender.
    Null,
    Mailbox(Mailbox),
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// The argument of `RCPT TO:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain (RFC 5321 §4.1.1.3).
    Postmaster,
    Mailbox(Mailbox),
}

impl ForwardPath {
    /// Whether the path needs SMTPUTF8.
    pub fn is_utf8(&self) -> bool {
        match self {
            ForwardPath::Postmaster => false,
            ForwardPath::Mailbox(m) => m.is_utf8(),
        }
    }
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("<Postmaster>"),
            ForwardPath::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// Why a path did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressError {
    Syntax,
    TooLong,
}

/// Splits `<path> rest` into the text inside the brackets and the rest after them.
fn split_path(input: &str) -> Result<(&str, &str), AddressError> {
    let inner = input.strip_prefix('<').ok_or(AddressError::Syntax)?;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '>' if !in_quotes => {
                let rest = &inner[i + 1..];
                if !rest.is_empty() && !rest.starts_with(' ') {
                    return Err(AddressError::Syntax);
                }
                return Ok((&inner[..i], rest.trim_start_matches(' ')));
            }
            _ => {}
        }
    }
    Err(AddressError::Syntax)
}

/// Parses the start of a `MAIL FROM:` argument; returns the path and the parameter text.
pub fn parse_reverse_path(input: &str) -> Result<(ReversePath, &str), AddressError> {
    let (inner, rest) = split_path(input)?;
    if inner.is_empty() {
        return Ok((ReversePath::Null, rest));
    }
    Ok((ReversePath::Mailbox(parse_mailbox_path(inner)?), rest))
}

/// Parses the start of a `RCPT TO:` argument; returns the path and the parameter text.
pub fn parse_forward_path(input: &str) -> Result<(ForwardPath, &str), AddressError> {
    let (inner, rest) = split_path(input)?;
    if inner.eq_ignore_ascii_case("postmaster") {
        return Ok((ForwardPath::Postmaster, rest));
    }
    Ok((ForwardPath::Mailbox(parse_mailbox_path(inner)?), rest))
}

/// `[A-d-l ":"] Mailbox`, with the source route dropped.
fn parse_mailbox_path(inner: &str) -> Result<Mailbox, AddressError> {
    if inner.len() + 2 > MAX_PATH {
        return Err(AddressError::TooLong);
    }
    let mailbox = match inner.strip_prefix('@') {
        Some(_) => {
            let (route, mailbox) = inner.split_once(':').ok_or(AddressError::Syntax)?;
            for hop in route.split(',') {
                let domain = hop.strip_prefix('@').ok_or(AddressError::Syntax)?;
                if !is_domain(domain) {
                    return Err(AddressError::Syntax);
                }
            }
            mailbox
        }
        None => inner,
    };
    parse_mailbox(mailbox)
}

/// `Local-part "@" ( Domain / address-literal )`.
pub fn parse_mailbox(input: &str) -> Result<Mailbox, AddressError> {
    let at = local_part_end(input).ok_or(AddressError::Syntax)?;
    let local = &input[..at];
    let domain = input[at..].strip_prefix('@').ok_or(AddressError::Syntax)?;
    if local.len() > MAX_LOCAL || domain.len() > MAX_DOMAIN {
        return Err(AddressError::TooLong);
    }
    if !(is_domain(domain) || is_address_literal(domain)) {
        return Err(AddressError::Syntax);
    }
    Ok(Mailbox {
        local: local.to_string(),
        domain: domain.to_string(),
    })
}

/// The byte offset where a valid local part ends (at the `@`), if the input starts with one.
fn local_part_end(input: &str) -> Option<usize> {
    if let Some(quoted) = input.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            if escaped {
                // quoted-pairSMTP = "\" %d32-126
                if !(' '..='~').contains(&c) {
                    return None;
                }
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                return Some(i + 2);
            } else if c.is_control() {
                // qtextSMTP is %d32-126 (widened to UTF-8 by RFC 6531), never a control.
                return None;
            }
        }
        return None;
    }
    let end = input.find('@')?;
    let local = &input[..end];
    if local.is_empty()
        || local
            .split('.')
            .any(|atom| atom.is_empty() || !atom.chars().all(is_atext))
    {
        return None;
    }
    Some(end)
}

/// RFC 5322 atext, widened to UTF-8 by RFC 6531.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && !c.is_control())
}

/// `sub-domain *("." sub-domain)` where a sub-domain is letters, digits and inner hyphens.
fn is_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.split('.').all(|label| {
            let ok_char = |c: char| c.is_ascii_alphanumeric() || (!c.is_ascii() && !c.is_control());
            !label.is_empty()
                && label.chars().all(|c| ok_char(c) || c == '-')
                && label.chars().next().is_some_and(ok_char)
                && label.chars().last().is_some_and(ok_char)
        })
}

/// `"[" ( IPv4 / "IPv6:" IPv6 / General ) "]"`.
fn is_address_literal(domain: &str) -> bool {
    let Some(inner) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) else {
        return false;
    };
    if let Some(v6) = inner.strip_prefix("IPv6:") {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    inner.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(local: &str, domain: &str) -> Mailbox {
        Mailbox {
            local: local.into(),
            domain: domain.into(),
        }
    }

    type Parsed<'a> = Result<(ReversePath, &'a str), AddressError>;

    #[test]
    fn reverse_paths() {
        let cases: &[(&str, Parsed)] = &[
            ("<>", Ok((ReversePath::Null, ""))),
            (
                "<a@b.test>",
                Ok((ReversePath::Mailbox(mb("a", "b.test")), "")),
            ),
            (
                "<a@b.test> SIZE=10",
                Ok((ReversePath::Mailbox(mb("a", "b.test")), "SIZE=10")),
            ),
            (
                "<@x.test,@y.test:a@b.test>",
                Ok((ReversePath::Mailbox(mb("a", "b.test")), "")),
            ),
            (
                "<\"a b\"@b.test>",
                Ok((ReversePath::Mailbox(mb("\"a b\"", "b.test")), "")),
            ),
            (
                "<\"a>b\"@b.test>",
                Ok((ReversePath::Mailbox(mb("\"a>b\"", "b.test")), "")),
            ),
            (
                "<a@[127.0.0.1]>",
                Ok((ReversePath::Mailbox(mb("a", "[127.0.0.1]")), "")),
            ),
            (
                "<a@[IPv6:::1]>",
                Ok((ReversePath::Mailbox(mb("a", "[IPv6:::1]")), "")),
            ),
            (
                "<ü@b.test>",
                Ok((ReversePath::Mailbox(mb("ü", "b.test")), "")),
            ),
            ("a@b.test", Err(AddressError::Syntax)),
            ("<a@b.test", Err(AddressError::Syntax)),
            ("<a b@b.test>", Err(AddressError::Syntax)),
            ("<a@b.test>x", Err(AddressError::Syntax)),
            ("<a..b@b.test>", Err(AddressError::Syntax)),
            ("<a@-b.test>", Err(AddressError::Syntax)),
            ("<a@b..test>", Err(AddressError::Syntax)),
            ("<a\0@b.test>", Err(AddressError::Syntax)),
            ("<a@[1.2.3]>", Err(AddressError::Syntax)),
            ("<@b.test>", Err(AddressError::Syntax)),
            ("<a@>", Err(AddressError::Syntax)),
        ];
        for (input, expected) in cases {
            assert_eq!(&parse_reverse_path(input), expected, "{input:?}");
        }
    }

    #[test]
    fn lengths() {
        let local = "a".repeat(65);
        assert_eq!(
            parse_reverse_path(&format!("<{local}@b.test>")),
            Err(AddressError::TooLong)
        );
        let domain = format!("{}.test", "d".repeat(60)).repeat(5);
        assert_eq!(
            parse_reverse_path(&format!("<a@{domain}>")),
            Err(AddressError::TooLong)
        );
        let ok = format!("<{}@b.test>", "a".repeat(64));
        assert!(parse_reverse_path(&ok).is_ok());
    }

    #[test]
    fn postmaster_without_domain() {
        assert_eq!(
            parse_forward_path("<Postmaster>"),
            Ok((ForwardPath::Postmaster, ""))
        );
        assert_eq!(
            parse_forward_path("<postmaster>"),
            Ok((ForwardPath::Postmaster, ""))
        );
        assert!(parse_forward_path("<bob>").is_err());
    }

    #[test]
    fn unquoting() {
        assert_eq!(mb("\"a\\\"b c\"", "x").unquoted_local(), "a\"b c");
        assert_eq!(mb("plain", "x").unquoted_local(), "plain");
    }
}
