//! Read tokens: a holder sees the private channels. Only a token's SHA-256 is stored; the
//! token itself is shown once, by [`Store::add_token`].
//!
//! A token is [`TOKEN_BYTES`] from the system's random source, in URL-safe base64 without
//! padding (43 characters), so it goes into an `Authorization: Bearer` header as it is. A hash
//! without a salt is enough: the token is 256 random bits, not a password to guess.

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redb::{ReadableDatabase, ReadableTable};

use super::schema::{TOKENS, TokenRecord, encode, named_records};
use super::trace::unix_seconds;
use super::{Store, StoreError};

/// Random bytes in a token: 256 bits.
pub const TOKEN_BYTES: usize = 32;

/// Longest token name.
pub const MAX_TOKEN_NAME_BYTES: usize = 64;

/// The longest string [`Store::token_valid`] hashes: a token is 43 characters.
const MAX_TOKEN_CHARS: usize = 256;

/// A token as listed (never the token, nor its hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Token {
    /// The name it was added under.
    pub name: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

/// Checks a token name: 1 to [`MAX_TOKEN_NAME_BYTES`] ASCII letters, digits, `-`, `_`, `.`
/// (it is printed by `token list` and typed back to `token revoke`).
pub fn validate_token_name(name: &str) -> Result<(), StoreError> {
    let problem = if name.is_empty() {
        "is empty"
    } else if name.len() > MAX_TOKEN_NAME_BYTES {
        "is longer than 64 bytes"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        "may hold only ASCII letters, digits, '-', '_' and '.'"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidTokenName(format!("{name:?} {problem}")))
}

impl Store {
    /// Makes a token named `name` and returns it: the only time it is seen, for only its hash
    /// is stored. Refuses a taken name with [`StoreError::TokenExists`].
    pub fn add_token(&self, name: &str, now: SystemTime) -> Result<String, StoreError> {
        validate_token_name(name)?;
        let (token, sha256) = new_token()?;
        let record = TokenRecord {
            sha256,
            created: unix_seconds(now),
        };
        self.with_recovered_db(|db| {
            let tx = db.begin_write()?;
            {
                let mut tokens = tx.open_table(TOKENS)?;
                if tokens.get(name)?.is_some() {
                    return Err(StoreError::TokenExists(name.to_string()));
                }
                tokens.insert(name, encode(&record)?.as_slice())?;
            }
            tx.commit()?;
            Ok(())
        })?;
        Ok(token)
    }

    /// The tokens, by name.
    pub fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        self.with_recovered_db(|db| {
            let tokens = named_records::<TokenRecord>(&db.begin_read()?, TOKENS, "token")?;
            Ok(tokens
                .into_iter()
                .map(|(name, record)| Token {
                    name,
                    created: record.created,
                })
                .collect())
        })
    }

    /// Revokes (deletes) a token: requests bearing it are refused from now on.
    pub fn revoke_token(&self, name: &str) -> Result<(), StoreError> {
        self.with_recovered_db(|db| {
            let tx = db.begin_write()?;
            let removed = tx.open_table(TOKENS)?.remove(name)?.is_some();
            if !removed {
                return Err(StoreError::NoSuchToken(name.to_string()));
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Whether `token` is one that was added and not revoked ([`matches_any`]). A read
    /// transaction: never waits on a commit.
    pub fn token_valid(&self, token: &str) -> Result<bool, StoreError> {
        if !could_be_token(token) {
            return Ok(false);
        }
        self.with_recovered_db(|db| {
            let tokens = named_records::<TokenRecord>(&db.begin_read()?, TOKENS, "token")?;
            let hashes: Vec<String> = tokens.into_iter().map(|(_, r)| r.sha256).collect();
            Ok(matches_any(token, &hashes))
        })
    }
}

/// A new token from the system's random source, and the SHA-256 (hex) that is stored of it.
pub(super) fn new_token() -> Result<(String, String), StoreError> {
    let mut secret = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut secret)
        .map_err(|e| StoreError::Database(format!("the system's random source: {e}")))?;
    let token = URL_SAFE_NO_PAD.encode(secret);
    let sha256 = sha256_hex(&token);
    Ok((token, sha256))
}

/// Whether `token` is worth hashing: not empty, not past [`MAX_TOKEN_CHARS`].
pub(super) fn could_be_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_TOKEN_CHARS
}

/// Whether `token`'s hash is one of `hashes`: compared with every one, each comparison in
/// constant time and none cut short, so the time taken says nothing about how close a guess
/// came.
pub(super) fn matches_any(token: &str, hashes: &[String]) -> bool {
    let wanted = sha256_hex(token);
    hashes.iter().fold(false, |found, hash| {
        found | equal_in_constant_time(hash.as_bytes(), wanted.as_bytes())
    })
}

/// SHA-256 of the token, lower-case hex.
fn sha256_hex(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

/// Bytes in lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `a == b`, looking at every byte whatever the first difference.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        // Hex digests are all 64 bytes: only a damaged record differs in length.
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_sha256() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_equality() {
        assert!(equal_in_constant_time(b"abcd", b"abcd"));
        assert!(!equal_in_constant_time(b"abcd", b"abce"));
        assert!(!equal_in_constant_time(b"abcd", b"abc"));
    }

    #[test]
    fn token_names() {
        for good in ["feed-reader", "a", "Phone_2.old", &"x".repeat(64)] {
            validate_token_name(good).unwrap();
        }
        for bad in ["", "a b", "ümlaut", "a/b", &"x".repeat(65)] {
            assert!(matches!(
                validate_token_name(bad),
                Err(StoreError::InvalidTokenName(_))
            ));
        }
    }
}
