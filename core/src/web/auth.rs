//! Who reads: the `Authorization` header as the read side takes it.

/// What a request's `Authorization` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No header: the public channels only.
    Anonymous,
    /// `Bearer TOKEN`: to be checked against the stored tokens; a valid one also sees the
    /// private channels, any other is refused (`401`).
    Bearer(&'a str),
    /// Any other value (a malformed Bearer value, another scheme such as `Basic`, an empty
    /// header): refused (`401` with `WWW-Authenticate: Bearer`), so that a client whose
    /// credentials failed learns it instead of silently seeing the public view.
    Refused,
}

impl<'a> Credentials<'a> {
    /// Reads the header's value, if there is one. A Bearer value is RFC 6750 §2.1's: the
    /// scheme in any case, one or more spaces, a `b64token` (letters, digits, `-._~+/`, then
    /// `=` padding only); whitespace around the whole value is ignored.
    pub fn from_authorization(value: Option<&'a [u8]>) -> Credentials<'a> {
        match value {
            None => Credentials::Anonymous,
            Some(value) => bearer_token(value).map_or(Credentials::Refused, Credentials::Bearer),
        }
    }
}

fn bearer_token(value: &[u8]) -> Option<&str> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(b"Bearer".len())?;
    if !scheme.eq_ignore_ascii_case(b"Bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii_start();
    let body_end = token.iter().position(|&b| b == b'=').unwrap_or(token.len());
    let (body, padding) = token.split_at_checked(body_end)?;
    let b64token = !body.is_empty()
        && body
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        && padding.iter().all(|&b| b == b'=');
    if !b64token {
        return None;
    }
    std::str::from_utf8(token).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_by_rfc_6750() {
        use Credentials::{Anonymous, Bearer, Refused};
        let table: &[(Option<&[u8]>, Credentials<'_>)] = &[
            (None, Anonymous),
            (Some(b"Bearer abc"), Bearer("abc")),
            (Some(b"bearer abc"), Bearer("abc")),
            (Some(b"Bearer  a-b_c.d~e+f/g=="), Bearer("a-b_c.d~e+f/g==")),
            (Some(b" BEARER abc \t"), Bearer("abc")),
            (Some(b"Bearer"), Refused),
            (Some(b"Bearer "), Refused),
            (Some(b"Bearer =="), Refused),
            (Some(b"Bearer a=b"), Refused),
            (Some(b"Bearer a b"), Refused),
            (Some(b"Bearer\tabc"), Refused),
            (Some(b"Bearer a\xffb"), Refused),
            (Some(b"Bearerabc"), Refused),
            (Some(b"Basic YWxpY2U6cHc="), Refused),
            (Some(b""), Refused),
        ];
        for (value, expected) in table {
            assert_eq!(
                Credentials::from_authorization(*value),
                *expected,
                "{:?}",
                value.map(String::from_utf8_lossy)
            );
        }
    }
}
