//! The PostgreSQL store's side of a copy (`crate::copy`): everything read out as stored, in
//! id order and bounded batches, and written in under the same ids, with the sequence moved
//! past them so that later deliveries do not collide.

use atacama_core::smtp::MessageId;

use super::messages::{Columns, INSERT};
use super::{PgStore, bigint, unsigned};
use crate::StoreError;
use crate::copy::{ExportedMessage, ExportedToken, ExportedUser};
use crate::packed::{Packed, PackedBody};
use crate::schema::{TokenRecord, UserRecord};

/// The most messages one batch's sizes are read for.
const SIZES_AT_ONCE: i64 = 1000;

/// Every user as stored, by name.
pub(super) fn users(store: &PgStore) -> Result<Vec<ExportedUser>, StoreError> {
    let rows = store.with_client(|client| {
        Ok(client.query(
            "SELECT name, hash, active, extract(epoch FROM created)::bigint,
                    extract(epoch FROM updated)::bigint
             FROM users ORDER BY name COLLATE \"C\"",
            &[],
        )?)
    })?;
    rows.iter()
        .map(|row| {
            Ok(ExportedUser {
                name: row.try_get(0)?,
                record: UserRecord {
                    hash: row.try_get(1)?,
                    active: row.try_get(2)?,
                    created: unsigned(row.try_get(3)?, "users.created")?,
                    updated: unsigned(row.try_get(4)?, "users.updated")?,
                },
            })
        })
        .collect()
}

/// Every token as stored, by name.
pub(super) fn tokens(store: &PgStore) -> Result<Vec<ExportedToken>, StoreError> {
    let rows = store.with_client(|client| {
        Ok(client.query(
            "SELECT name, sha256, extract(epoch FROM created)::bigint FROM tokens
             ORDER BY name COLLATE \"C\"",
            &[],
        )?)
    })?;
    rows.iter()
        .map(|row| {
            Ok(ExportedToken {
                name: row.try_get(0)?,
                record: TokenRecord {
                    sha256: row.try_get(1)?,
                    created: unsigned(row.try_get(2)?, "tokens.created")?,
                },
            })
        })
        .collect()
}

/// The messages after `after` in id order until they hold `max_bytes` (one larger comes
/// alone): their sizes first, so that no more is fetched than goes into the batch.
pub(super) fn messages(
    store: &PgStore,
    after: Option<MessageId>,
    max_bytes: usize,
) -> Result<Vec<ExportedMessage>, StoreError> {
    let after = bigint(after.map_or(0, |id| id.0), "message id")?;
    store.with_client(|client| {
        let sizes = client.query(
            "SELECT id, octet_length(envelope::text) + octet_length(header)
                        + octet_length(body)
                        + coalesce((SELECT sum(octet_length(bytes)) FROM message_rows
                                    WHERE message = messages.id), 0)
             FROM messages WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after, &SIZES_AT_ONCE],
        )?;
        let mut last = None;
        let mut bytes = 0u64;
        for row in &sizes {
            let size: i64 = row.try_get(1)?;
            let size = unsigned(size, "message size")?;
            if last.is_some() && bytes.saturating_add(size) > max_bytes as u64 {
                break;
            }
            last = Some(row.try_get::<_, i64>(0)?);
            bytes = bytes.saturating_add(size);
            if bytes >= max_bytes as u64 {
                break;
            }
        }
        let Some(last) = last else {
            return Ok(Vec::new());
        };
        let rows = client.query(
            "SELECT id, envelope::text, header, body FROM messages
             WHERE id > $1 AND id <= $2 ORDER BY id",
            &[&after, &last],
        )?;
        let mut batch = Vec::with_capacity(rows.len());
        for row in rows {
            let id = unsigned(row.try_get(0)?, "messages.id")?;
            let envelope: String = row.try_get(1)?;
            let header: Vec<u8> = row.try_get(2)?;
            let body: Vec<u8> = row.try_get(3)?;
            let mut body_rows = Vec::new();
            if Packed::from_parts(b"", b"", &body).in_rows() {
                let stored = client.query(
                    "SELECT bytes FROM message_rows WHERE message = $1 ORDER BY n",
                    &[&bigint(id, "message id")?],
                )?;
                for row in stored {
                    body_rows.push(row.try_get(0)?);
                }
            }
            let header = String::from_utf8(header)
                .map_err(|_| StoreError::Corrupt(format!("message {id}: header is not UTF-8")))?;
            batch.push(ExportedMessage {
                id,
                envelope: envelope.into_bytes(),
                header,
                body: PackedBody::from_stored(body, body_rows),
            });
        }
        Ok(batch)
    })
}

/// Adds users and tokens as stored elsewhere, in one transaction; refuses a taken name.
pub(super) fn import_accounts(
    store: &PgStore,
    users: &[ExportedUser],
    tokens: &[ExportedToken],
) -> Result<(), StoreError> {
    store.with_client(|client| {
        let mut tx = client.transaction()?;
        for user in users {
            let record = &user.record;
            let added = tx.execute(
                "INSERT INTO users (name, hash, active, created, updated)
                 VALUES ($1, $2, $3, to_timestamp($4::bigint), to_timestamp($5::bigint))
                 ON CONFLICT (name) DO NOTHING",
                &[
                    &user.name,
                    &record.hash,
                    &record.active,
                    &bigint(record.created, "users.created")?,
                    &bigint(record.updated, "users.updated")?,
                ],
            )?;
            if added == 0 {
                return Err(StoreError::UserExists(user.name.clone()));
            }
        }
        for token in tokens {
            let added = tx.execute(
                "INSERT INTO tokens (name, sha256, created)
                 VALUES ($1, $2, to_timestamp($3::bigint)) ON CONFLICT (name) DO NOTHING",
                &[
                    &token.name,
                    &token.record.sha256,
                    &bigint(token.record.created, "tokens.created")?,
                ],
            )?;
            if added == 0 {
                return Err(StoreError::TokenExists(token.name.clone()));
            }
        }
        tx.commit()?;
        Ok(())
    })
}

/// Stores messages under their own ids in one transaction, and moves the id sequence past
/// the largest; refuses a taken id (the primary key does).
pub(super) fn import_messages(
    store: &PgStore,
    batch: Vec<ExportedMessage>,
) -> Result<(), StoreError> {
    let Some(largest) = batch.iter().map(|m| m.id().0).max() else {
        return Ok(());
    };
    let largest = bigint(largest, "message id")?;
    store.with_conn(|conn| {
        let insert = conn.prepared(INSERT)?;
        let mut columns = Columns::with_capacity(batch.len());
        for message in batch {
            let (id, parent, prepared) = message.into_prepared()?;
            columns.push(bigint(id, "message id")?, parent, prepared)?;
        }
        let mut tx = conn.client.transaction()?;
        columns.insert(&mut tx, &insert)?;
        // Never backwards: a sequence that is past it already stays.
        tx.execute(
            "SELECT setval('message_ids', greatest($1, (SELECT last_value FROM message_ids)))",
            &[&largest],
        )?;
        tx.commit()?;
        Ok(())
    })
}
