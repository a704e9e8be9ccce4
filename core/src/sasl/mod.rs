//! SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) decoding for SMTP AUTH
//! (RFC 4954).
//!
//! Pure functions: they decode what the client sent and say whether it is well formed.
//! Whether the credentials are right is the verifier's business, never ours.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroize;

/// Longest user name or password we pass on, in octets (RFC 4616 §2 allows 255).
pub const MAX_FIELD: usize = 255;

/// `334` prompt of LOGIN for the user name (`Username:`).
pub const LOGIN_USERNAME_PROMPT: &str = "VXNlcm5hbWU6";
/// `334` prompt of LOGIN for the password (`Password:`).
pub const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

/// What a client response decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslError {
    /// `*`: the client gave up (RFC 4954 §4): `501 5.7.0`.
    Cancelled,
    /// Not base64: `501 5.5.2`.
    Base64,
    /// A PLAIN message without exactly two NULs: `501 5.5.2`.
    Malformed,
    /// Well formed, but can never be right (empty, too long, not UTF-8, or an authorization
    /// identity other than the user): `535 5.7.8`, without asking the verifier.
    Invalid,
}

/// A user name and password, decoded and checked for shape.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Password,
}

/// A password as the client sent it. It shows nowhere (`Debug` prints `<redacted>`, and there
/// is no `Display`), cannot be cloned, so one AUTH holds its bytes once, and is zeroed when
/// dropped.
#[derive(PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Takes ownership of `password`: no copy is made.
    pub fn new(password: String) -> Password {
        Password(password)
    }

    /// The password, for the check and the throttle's fingerprint only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Password {
    fn from(password: &str) -> Password {
        Password(password.to_owned())
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Decodes one client response: `*` cancels, `=` is the empty response (RFC 4954 §4).
pub fn decode_response(line: &str) -> Result<Vec<u8>, SaslError> {
    match line {
        "*" => Err(SaslError::Cancelled),
        "=" => Ok(Vec::new()),
        _ => STANDARD.decode(line).map_err(|_| SaslError::Base64),
    }
}

/// Decodes a PLAIN message `[authzid] NUL authcid NUL passwd` (RFC 4616 §2).
///
/// An authorization identity is accepted only when it equals the authentication identity:
/// we never let one user act as another.
pub fn decode_plain(message: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if !authzid.is_empty() && authzid != authcid {
        return Err(SaslError::Invalid);
    }
    Ok(Credentials {
        username: field(authcid)?,
        password: Password::new(field(password)?),
    })
}

/// Checks one LOGIN field (user name or password).
pub fn decode_login_field(decoded: &[u8]) -> Result<String, SaslError> {
    field(decoded)
}

fn field(bytes: &[u8]) -> Result<String, SaslError> {
    if bytes.is_empty() || bytes.len() > MAX_FIELD {
        return Err(SaslError::Invalid);
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| SaslError::Invalid)
}

/// Encodes bytes as base64, for clients and tests.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn plain_variants() {
        let long = vec![b'a'; 256];
        let mut too_long = b"\0".to_vec();
        too_long.extend_from_slice(&long);
        too_long.extend_from_slice(b"\0p");
        let cases: &[(&[u8], Result<Credentials, SaslError>)] = &[
            (b"\0u\0p", Ok(creds("u", "p"))),
            (b"u\0u\0p", Ok(creds("u", "p"))),
            (b"x\0u\0p", Err(SaslError::Invalid)),
            (b"u\0p", Err(SaslError::Malformed)),
            (b"\0\0\0", Err(SaslError::Malformed)),
            (b"\0u\0p\0x", Err(SaslError::Malformed)),
            (b"", Err(SaslError::Malformed)),
            (b"\0\0p", Err(SaslError::Invalid)),
            (b"\0u\0", Err(SaslError::Invalid)),
            (b"\0u\0\xff", Err(SaslError::Invalid)),
            (&too_long, Err(SaslError::Invalid)),
        ];
        for (input, expected) in cases {
            assert_eq!(&decode_plain(input), expected, "{input:?}");
        }
    }

    #[test]
    fn responses() {
        assert_eq!(decode_response("*"), Err(SaslError::Cancelled));
        assert_eq!(decode_response("="), Ok(vec![]));
        assert_eq!(decode_response("YQ=="), Ok(b"a".to_vec()));
        for bad in ["!!!", "YQ", "Y Q==", "YQ==="] {
            assert_eq!(decode_response(bad), Err(SaslError::Base64), "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", creds("u", "secret"));
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert_eq!(format!("{:?}", Password::from("secret")), "<redacted>");
    }
}
