//! Users: bcrypt hashes, the active flag, and verification that does not reveal who exists.

use std::time::SystemTime;

use redb::{ReadableDatabase, ReadableTable};

use super::schema::{USERS, UserRecord, decode, encode, named_records};
use super::trace::unix_seconds;
use super::{Store, StoreError};

/// Longest password accepted; longer ones are refused, never truncated.
///
/// bcrypt keys on 72 bytes *including* a terminating NUL: a 72-byte password loses its NUL and
/// hashes like every longer password that starts with it, so bcrypt's `non_truncating_*`
/// functions refuse it too. 71 bytes is the longest password bcrypt reads in full.
pub const MAX_PASSWORD_BYTES: usize = 71;

/// Longest user name: a user name is usually an address, and RFC 5321 §4.5.3.1.3 caps a path
/// at 256 octets including the angle brackets.
pub const MAX_USER_NAME_BYTES: usize = 254;

/// A user as listed (never the hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    /// The login name.
    pub name: String,
    /// Disabled users cannot log in.
    pub active: bool,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// Seconds since the Unix epoch of the last password or status change.
    pub updated: u64,
}

impl Store {
    /// Adds an active user. Refuses an existing name with [`StoreError::UserExists`].
    pub fn add_user(&self, name: &str, password: &str, now: SystemTime) -> Result<(), StoreError> {
        validate_user_name(name)?;
        // Hash before the write transaction: bcrypt is slow and the writer lock is shared with
        // the daemon.
        let hash = self.hash(password)?;
        let now = unix_seconds(now);
        let record = UserRecord {
            hash,
            active: true,
            created: now,
            updated: now,
        };
        self.with_recovered_db(|db| {
            let tx = db.begin_write()?;
            {
                let mut users = tx.open_table(USERS)?;
                if users.get(name)?.is_some() {
                    return Err(StoreError::UserExists(name.to_string()));
                }
                users.insert(name, encode(&record)?.as_slice())?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Replaces a user's password.
    pub fn set_password(
        &self,
        name: &str,
        password: &str,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let hash = self.hash(password)?;
        self.update_user(name, |record| {
            record.hash = hash;
            record.updated = unix_seconds(now);
        })
    }

    /// Lets a disabled user log in again.
    pub fn enable_user(&self, name: &str, now: SystemTime) -> Result<(), StoreError> {
        self.update_user(name, |record| {
            record.active = true;
            record.updated = unix_seconds(now);
        })
    }

    /// Stops a user from logging in, keeping the user and their messages.
    pub fn disable_user(&self, name: &str, now: SystemTime) -> Result<(), StoreError> {
        self.update_user(name, |record| {
            record.active = false;
            record.updated = unix_seconds(now);
        })
    }

    /// Deletes a user. Their messages stay.
    pub fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.with_recovered_db(|db| {
            let tx = db.begin_write()?;
            let removed = tx.open_table(USERS)?.remove(name)?.is_some();
            if !removed {
                return Err(StoreError::NoSuchUser(name.to_string()));
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        self.with_recovered_db(|db| {
            let users = named_records::<UserRecord>(&db.begin_read()?, USERS, "user")?;
            Ok(users
                .into_iter()
                .map(|(name, record)| User {
                    name,
                    active: record.active,
                    created: record.created,
                    updated: record.updated,
                })
                .collect())
        })
    }

    /// One user.
    pub fn user(&self, name: &str) -> Result<User, StoreError> {
        let record = self
            .user_record(name)?
            .ok_or_else(|| StoreError::NoSuchUser(name.to_string()))?;
        Ok(User {
            name: name.to_string(),
            active: record.active,
            created: record.created,
            updated: record.updated,
        })
    }

    /// Whether `password` is the password of the active user `name`.
    ///
    /// Unknown and disabled users are checked against a dummy hash of the configured cost, so
    /// the time taken does not tell an attacker which names exist. Passwords over 72 bytes never
    /// match (bcrypt would compare only their first 72 bytes).
    pub fn verify_user(&self, name: &str, password: &str) -> Result<bool, StoreError> {
        let record = self.user_record(name)?;
        let known = record.as_ref().map(|r| (r.hash.as_str(), r.active));
        Ok(verify_known(known, &self.dummy_hash, password))
    }

    fn user_record(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.with_recovered_db(|db| {
            let tx = db.begin_read()?;
            let table = tx.open_table(USERS)?;
            let value = table.get(name)?;
            value.map(|v| decode(v.value(), "user")).transpose()
        })
    }

    fn update_user(
        &self,
        name: &str,
        change: impl FnOnce(&mut UserRecord),
    ) -> Result<(), StoreError> {
        self.with_recovered_db(|db| {
            let tx = db.begin_write()?;
            {
                let mut users = tx.open_table(USERS)?;
                let mut record: UserRecord = match users.get(name)? {
                    Some(value) => decode(value.value(), "user")?,
                    None => return Err(StoreError::NoSuchUser(name.to_string())),
                };
                change(&mut record);
                users.insert(name, encode(&record)?.as_slice())?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn hash(&self, password: &str) -> Result<String, StoreError> {
        hash_password(password, self.bcrypt_cost)
    }
}

/// A bcrypt hash of `password` at `cost`; refuses an empty password or one bcrypt would cut.
pub(super) fn hash_password(password: &str, cost: u32) -> Result<String, StoreError> {
    check_password(password)?;
    bcrypt::non_truncating_hash(password, cost).map_err(|e| StoreError::Hash(e.to_string()))
}

/// Whether `password` matches a user `known` as (hash, active): unknown and disabled users
/// are verified against `dummy` (same cost, same work), so the time taken does not tell which
/// names exist.
pub(super) fn verify_known(known: Option<(&str, bool)>, dummy: &str, password: &str) -> bool {
    let (hash, active) = match known {
        Some((hash, true)) => (hash, true),
        _ => (dummy, false),
    };
    let matched = verify(password, hash);
    active && matched
}

/// Refuses user names that are empty, over 254 bytes, or hold whitespace or control
/// characters: they would be ambiguous in a log line, a table, or a SASL exchange.
pub fn validate_user_name(name: &str) -> Result<(), StoreError> {
    let problem = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_USER_NAME_BYTES {
        "it is longer than 254 bytes"
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "it contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidUserName(format!("{name:?}: {problem}")))
}

fn check_password(password: &str) -> Result<(), StoreError> {
    if password.is_empty() {
        Err(StoreError::PasswordEmpty)
    } else if password.len() > MAX_PASSWORD_BYTES {
        Err(StoreError::PasswordTooLong)
    } else {
        Ok(())
    }
}

/// A well-formed bcrypt hash of the given cost that no password is known to match.
///
/// Built from a fixed salt and digest rather than hashed at open, so opening the store for a
/// one-line CLI command does not pay a cost-12 hash. Verifying against it does the full work.
pub(super) fn dummy_hash(cost: u32) -> String {
    format!("$2b${cost:02}$6hH0Vv8C6c0qPHGXy5Hj4eE1rJm2B5sPz0v9i3Lk2Qf7wR8tYy1aK")
}

/// bcrypt verify without truncation; a malformed stored hash or a too-long password fails.
fn verify(password: &str, hash: &str) -> bool {
    #[cfg(test)]
    tests::record_verify(hash);
    bcrypt::non_truncating_verify(password, hash).unwrap_or(false)
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::RefCell;

    thread_local! {
        /// The cost field of every hash `verify` was called with on this thread.
        static VERIFIED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn record_verify(hash: &str) {
        let cost = hash.get(4..6).unwrap_or("??").to_string();
        VERIFIED.with(|v| v.borrow_mut().push(cost));
    }

    /// Drains the costs of the hashes verified on this thread so far.
    pub(crate) fn take_verified() -> Vec<String> {
        VERIFIED.with(|v| std::mem::take(&mut *v.borrow_mut()))
    }
}
