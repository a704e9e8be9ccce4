//! Users and read tokens in PostgreSQL, checked, hashed and verified by the functions the
//! redb store uses (`crate::users`, `crate::tokens`). Lists are in byte order of the name
//! (`COLLATE "C"`), as redb keeps them. A name no table can hold (one with a NUL, which only
//! an unchecked caller passes) is simply not there.

use std::time::SystemTime;

use super::{PgStore, bigint, unsigned};
use crate::tokens::{could_be_token, matches_any, new_token, validate_token_name};
use crate::trace::unix_seconds;
use crate::users::{hash_password, validate_user_name, verify_known};
use crate::{StoreError, Token, User};

/// Adds an active user; [`StoreError::UserExists`] if the name is taken.
pub(super) fn add(
    store: &PgStore,
    name: &str,
    password: &str,
    now: SystemTime,
) -> Result<(), StoreError> {
    validate_user_name(name)?;
    // Before taking a connection: bcrypt is slow.
    let hash = hash_password(password, store.bcrypt_cost)?;
    let now = bigint(unix_seconds(now), "time")?;
    let added = store.with_client(|client| {
        Ok(client.execute(
            "INSERT INTO users (name, hash, active, created, updated)
             VALUES ($1, $2, true, to_timestamp($3::bigint), to_timestamp($3::bigint))
             ON CONFLICT (name) DO NOTHING",
            &[&name, &hash, &now],
        )?)
    })?;
    if added == 0 {
        return Err(StoreError::UserExists(name.to_string()));
    }
    Ok(())
}

/// Replaces a user's password.
pub(super) fn set_password(
    store: &PgStore,
    name: &str,
    password: &str,
    now: SystemTime,
) -> Result<(), StoreError> {
    let hash = hash_password(password, store.bcrypt_cost)?;
    update(
        store,
        name,
        "UPDATE users SET hash = $2, updated = to_timestamp($3::bigint) WHERE name = $1",
        &hash,
        now,
    )
}

/// Lets a user log in again, or stops them.
pub(super) fn set_active(
    store: &PgStore,
    name: &str,
    active: bool,
    now: SystemTime,
) -> Result<(), StoreError> {
    update(
        store,
        name,
        "UPDATE users SET active = $2, updated = to_timestamp($3::bigint) WHERE name = $1",
        &active,
        now,
    )
}

/// Removes a user; their messages stay.
pub(super) fn delete(store: &PgStore, name: &str) -> Result<(), StoreError> {
    if !delete_named(store, "DELETE FROM users WHERE name = $1", name)? {
        return Err(StoreError::NoSuchUser(name.to_string()));
    }
    Ok(())
}

/// Runs `delete` (`… WHERE name = $1`); whether a row was there. A name no table can hold
/// (with a NUL) is not there.
fn delete_named(store: &PgStore, delete: &str, name: &str) -> Result<bool, StoreError> {
    if name.contains('\0') {
        return Ok(false);
    }
    let deleted = store.with_client(|client| Ok(client.execute(delete, &[&name])?))?;
    Ok(deleted > 0)
}

/// Every user by name, or only `name`.
pub(super) fn list(store: &PgStore, name: Option<&str>) -> Result<Vec<User>, StoreError> {
    if name.is_some_and(|name| name.contains('\0')) {
        return Ok(Vec::new());
    }
    // Prepared once per connection: MAIL checks its login with it, every message.
    let rows = store.with_conn(|conn| {
        let statement = conn.prepared(
            "SELECT name, active, extract(epoch FROM created)::bigint,
                    extract(epoch FROM updated)::bigint
             FROM users WHERE $1::text IS NULL OR name = $1 ORDER BY name COLLATE \"C\"",
        )?;
        Ok(conn.client.query(&statement, &[&name])?)
    })?;
    rows.iter()
        .map(|row| {
            Ok(User {
                name: row.try_get(0)?,
                active: row.try_get(1)?,
                created: unsigned(row.try_get(2)?, "users.created")?,
                updated: unsigned(row.try_get(3)?, "users.updated")?,
            })
        })
        .collect()
}

/// Whether `password` is the active user `name`'s: as long for an unknown or disabled user.
pub(super) fn verify(store: &PgStore, name: &str, password: &str) -> Result<bool, StoreError> {
    let known: Option<(String, bool)> = if name.contains('\0') {
        None
    } else {
        store.with_client(|client| {
            let row =
                client.query_opt("SELECT hash, active FROM users WHERE name = $1", &[&name])?;
            row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .transpose()
        })?
    };
    // The connection is back in the pool: bcrypt takes a while.
    let known = known
        .as_ref()
        .map(|(hash, active)| (hash.as_str(), *active));
    Ok(verify_known(known, &store.dummy_hash, password))
}

/// Makes a token named `name` and returns it; only its hash is stored.
pub(super) fn add_token(
    store: &PgStore,
    name: &str,
    now: SystemTime,
) -> Result<String, StoreError> {
    validate_token_name(name)?;
    let (token, sha256) = new_token()?;
    let now = bigint(unix_seconds(now), "time")?;
    let added = store.with_client(|client| {
        Ok(client.execute(
            "INSERT INTO tokens (name, sha256, created) VALUES ($1, $2, to_timestamp($3::bigint))
             ON CONFLICT (name) DO NOTHING",
            &[&name, &sha256, &now],
        )?)
    })?;
    if added == 0 {
        return Err(StoreError::TokenExists(name.to_string()));
    }
    Ok(token)
}

/// The tokens, by name.
pub(super) fn tokens(store: &PgStore) -> Result<Vec<Token>, StoreError> {
    Ok(super::export::tokens(store)?
        .into_iter()
        .map(|token| Token {
            name: token.name,
            created: token.record.created,
        })
        .collect())
}

/// Removes a token.
pub(super) fn revoke_token(store: &PgStore, name: &str) -> Result<(), StoreError> {
    if !delete_named(store, "DELETE FROM tokens WHERE name = $1", name)? {
        return Err(StoreError::NoSuchToken(name.to_string()));
    }
    Ok(())
}

/// Whether `token` was added and not revoked: compared with every stored hash, as redb does.
pub(super) fn token_valid(store: &PgStore, token: &str) -> Result<bool, StoreError> {
    if !could_be_token(token) {
        return Ok(false);
    }
    let hashes = store.with_client(|client| {
        client
            .query("SELECT sha256 FROM tokens", &[])?
            .iter()
            .map(|row| Ok(row.try_get(0)?))
            .collect::<Result<Vec<String>, StoreError>>()
    })?;
    Ok(matches_any(token, &hashes))
}

/// Runs `sql` (`$1` the name, `$2` `value`, `$3` `now`) on user `name`, who must exist.
fn update(
    store: &PgStore,
    name: &str,
    sql: &str,
    value: &(dyn postgres::types::ToSql + Sync),
    now: SystemTime,
) -> Result<(), StoreError> {
    let now = bigint(unix_seconds(now), "time")?;
    let updated = if name.contains('\0') {
        0
    } else {
        store.with_client(|client| Ok(client.execute(sql, &[&name, value, &now])?))?
    };
    if updated == 0 {
        return Err(StoreError::NoSuchUser(name.to_string()));
    }
    Ok(())
}
