//! ESMTP parameters of `MAIL FROM:` (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8).

use std::fmt;

/// The `BODY=` parameter (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    SevenBit,
    EightBitMime,
}

/// The parameters we implement on `MAIL FROM:`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailParams {
    /// The size the client announced (RFC 1870).
    pub size: Option<u64>,
    pub body: Option<Body>,
    /// The client asked for SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
}

/// Why a parameter list was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamError {
    /// A parameter we implement, with a bad or repeated value: `501 5.5.4`.
    Bad(&'static str),
    /// A parameter we do not implement: `555 5.5.4`.
    Unrecognized,
}

impl MailParams {
    /// Parses `KEY[=VALUE]` words separated by spaces; keywords are case-insensitive.
    pub fn parse(text: &str) -> Result<MailParams, ParamError> {
        let mut params = MailParams::default();
        for word in text.split(' ').filter(|w| !w.is_empty()) {
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (word, None),
            };
            if key.eq_ignore_ascii_case("SIZE") {
                let size = value.and_then(parse_size).ok_or(ParamError::Bad("SIZE"))?;
                if params.size.replace(size).is_some() {
                    return Err(ParamError::Bad("SIZE"));
                }
            } else if key.eq_ignore_ascii_case("BODY") {
                let body = match value {
                    Some(v) if v.eq_ignore_ascii_case("7BIT") => Body::SevenBit,
                    Some(v) if v.eq_ignore_ascii_case("8BITMIME") => Body::EightBitMime,
                    _ => return Err(ParamError::Bad("BODY")),
                };
                if params.body.replace(body).is_some() {
                    return Err(ParamError::Bad("BODY"));
                }
            } else if key.eq_ignore_ascii_case("SMTPUTF8") {
                if value.is_some() || params.smtputf8 {
                    return Err(ParamError::Bad("SMTPUTF8"));
                }
                params.smtputf8 = true;
            } else {
                return Err(ParamError::Unrecognized);
            }
        }
        Ok(params)
    }
}

/// RFC 1870: `size-value ::= 1*20DIGIT`.
fn parse_size(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

impl fmt::Display for MailParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(size) = self.size {
            write!(f, " SIZE={size}")?;
        }
        match self.body {
            Some(Body::SevenBit) => f.write_str(" BODY=7BIT")?,
            Some(Body::EightBitMime) => f.write_str(" BODY=8BITMIME")?,
            None => {}
        }
        if self.smtputf8 {
            f.write_str(" SMTPUTF8")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let full = MailParams {
            size: Some(10),
            body: Some(Body::EightBitMime),
            smtputf8: true,
        };
        let cases: &[(&str, Result<MailParams, ParamError>)] = &[
            ("", Ok(MailParams::default())),
            ("SIZE=10 body=8bitmime SMTPUTF8", Ok(full)),
            ("SIZE=10  BODY=8BITMIME smtputf8", Ok(full)),
            (
                "BODY=7BIT",
                Ok(MailParams {
                    body: Some(Body::SevenBit),
                    ..Default::default()
                }),
            ),
            ("SIZE=abc", Err(ParamError::Bad("SIZE"))),
            ("SIZE=-1", Err(ParamError::Bad("SIZE"))),
            ("SIZE=", Err(ParamError::Bad("SIZE"))),
            ("SIZE", Err(ParamError::Bad("SIZE"))),
            ("SIZE=99999999999999999999", Err(ParamError::Bad("SIZE"))),
            ("SIZE=999999999999999999999", Err(ParamError::Bad("SIZE"))),
            ("SIZE=1 SIZE=1", Err(ParamError::Bad("SIZE"))),
            ("BODY=9BIT", Err(ParamError::Bad("BODY"))),
            ("SMTPUTF8=yes", Err(ParamError::Bad("SMTPUTF8"))),
            ("RET=FULL", Err(ParamError::Unrecognized)),
            ("FOO=bar", Err(ParamError::Unrecognized)),
        ];
        for (input, expected) in cases {
            assert_eq!(&MailParams::parse(input), expected, "{input:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        let p = MailParams {
            size: Some(42),
            body: Some(Body::SevenBit),
            smtputf8: true,
        };
        assert_eq!(MailParams::parse(p.to_string().trim()), Ok(p));
    }
}
