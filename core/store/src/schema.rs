//! The tables, the stored record layout, and the schema version that guards them.
//!
//! Users are JSON records; a message is one value: a JSON envelope, our `Received:` header and
//! the compressed data, text and HTML ([`super::packed`]). A field added with
//! `#[serde(default)]` needs no migration. A change that old code could misread bumps
//! [`SCHEMA_VERSION`].
//!
//! Schema 1 (JSON message records with text and HTML inline, the bytes in [`RAW`]) is still
//! read: opening such a file stamps it 3, after which a schema-1 build refuses it rather than
//! misread the new values; its old messages stay where they are, told apart by their first
//! byte.
//!
//! Schema 3 is schema 2 with the delivery journal beside the file (`super::journal`): a
//! schema-2 build, which knows no journal, would open the database at its last checkpoint and
//! give the journaled messages' ids to new ones, so it must refuse the file. Schema-2 files are
//! stamped 3 when opened.
//!
//! Schema 4 is schema 3 with a third codec for message bodies past about 1 MiB: the body in
//! rows of just under 1 MiB in [`BODY`], compressed one by one (`super::packed`). A schema-3
//! build would report such messages as corrupt, so it must refuse the file. Older files are
//! stamped 4 when opened, and get the table; their values stay as written.
//!
//! Schema 5 gives every message a channel (issue 26): the envelope's `channel`, and two
//! indexes, [`BY_CHANNEL`] (the pages of one channel, newest first) and [`CHILDREN`] (a
//! message's direct replies), kept by every insert and every journal replay; and read tokens
//! in [`TOKENS`]. Opening an older file migrates it in one write transaction: every message
//! gets its index entries, under the channel the opener names as its default (the server's and
//! the command line's `channels.default`), which is recorded as the file's legacy channel in
//! [`META_TEXT`]. Old values are not rewritten: a message whose envelope names no channel
//! belongs to the legacy channel, read from the file, so that a later change of
//! `channels.default` moves no old message. A schema-4 build would store messages without
//! index entries, invisible to the pages, so it must refuse the file.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::StoreError;
use atacama_core::message::{Attachment, Headers};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u64 = 5;
/// The oldest schema this build reads (and upgrades in place by stamping it).
const OLDEST_READABLE: u64 = 1;

/// `"schema_version"` → [`SCHEMA_VERSION`] of the file.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// User name → JSON [`UserRecord`].
pub(super) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// Message id → the packed message ([`super::packed`]), or in schema 1 a JSON [`MessageRecord`].
pub(super) const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
/// (message id, row number) → a row of a body too large for its message value
/// ([`super::packed`], codec 2).
pub(super) const BODY: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("body");
/// Schema 1 only, read but no longer written: message id → our `Received:` header, then the
/// data as received.
pub(super) const RAW: TableDefinition<u64, &[u8]> = TableDefinition::new("raw");
/// Message-ID (without `<>`) → the id of the first stored message that carried it.
pub(super) const BY_MESSAGE_ID: TableDefinition<&str, u64> = TableDefinition::new("by_message_id");
/// (user, message id) → (): a user's messages in id order.
pub(super) const BY_USER: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_user");
/// (channel, message id) → (): a channel's messages in id order (schema 5).
pub(super) const BY_CHANNEL: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_channel");
/// (parent id, message id) → (): a message's direct replies in id order (schema 5).
pub(super) const CHILDREN: TableDefinition<(u64, u64), ()> = TableDefinition::new("children");
/// Token name → JSON [`TokenRecord`] (schema 5).
pub(super) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
/// `"legacy_channel"` → the channel of messages stored without one (schema 5).
pub(super) const META_TEXT: TableDefinition<&str, &str> = TableDefinition::new("meta_text");

/// The key of the legacy channel in [`META_TEXT`].
const LEGACY_CHANNEL_KEY: &str = "legacy_channel";

const VERSION_KEY: &str = "schema_version";
/// `"journal_seq"` → the sequence number of the last journaled batch this state holds: a
/// reopened store replays the journal's later records (`super::journal`).
pub(super) const JOURNAL_SEQ_KEY: &str = "journal_seq";
/// `"journal_key"` → the random number every journal record must carry (`super::journal`).
const JOURNAL_KEY_KEY: &str = "journal_key";

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct UserRecord {
    pub hash: String,
    pub active: bool,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub updated: u64,
}

/// A read token as stored: never the token, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct TokenRecord {
    /// SHA-256 of the token, in lower-case hex.
    pub sha256: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

/// A message's envelope and processed fields as stored (the bytes live in [`RAW`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MessageRecord {
    /// Seconds since the Unix epoch.
    pub received_at: u64,
    pub user: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// Under the field names records always had (`subject`, `from`, …).
    #[serde(flatten)]
    pub headers: Headers,
    /// Schema 1 only: schema 2 keeps text and HTML compressed beside this record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub html: String,
    pub attachments: Vec<Attachment>,
    /// What could not be read, one sentence each ([`atacama_core::message::ParsedMessage::problems`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Written before `problems` existed: at most one problem, the sentences joined by `; `.
    /// Read, never written; [`MessageRecord::all_problems`] merges the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Length of the stored bytes.
    pub size: u64,
    pub parent_id: Option<u64>,
    /// Schema 5: the channel it was routed to; absent in older records, which belong to the
    /// file's legacy channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

impl MessageRecord {
    /// The problems, from whichever field the record was written with.
    pub fn all_problems(&mut self) -> Vec<String> {
        let mut problems = std::mem::take(&mut self.problems);
        problems.extend(self.problem.take());
        problems
    }
}

/// Serialises a record; cannot fail for these plain structs, but says so if it does.
pub(super) fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(format!("encoding: {e}")))
}

/// Deserialises a record, naming what it was on failure.
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Every record of a table keyed by name ([`USERS`], [`TOKENS`]), in name order, decoded.
pub(super) fn named_records<T: DeserializeOwned>(
    tx: &redb::ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
    what: &str,
) -> Result<Vec<(String, T)>, StoreError> {
    let mut records = Vec::new();
    for entry in tx.open_table(table)?.iter()? {
        let (name, value) = entry?;
        records.push((name.value().to_string(), decode(value.value(), what)?));
    }
    Ok(records)
}

/// Checks the file's schema version; writes it and creates the tables in a new file, or
/// migrates an older one (whose messages without a channel get `default_channel`). Returns
/// the version the file had: 0 for a new one.
pub(super) fn check_or_initialise(db: &Database, default_channel: &str) -> Result<u64, StoreError> {
    match stored_version(db)? {
        Some(SCHEMA_VERSION) => return Ok(SCHEMA_VERSION),
        Some(found) => check(found)?,
        None => {}
    }
    let tx = db.begin_write()?;
    let found = {
        let mut meta = tx.open_table(META)?;
        // Another process may have initialised the file since our read: check again, under
        // the writer lock.
        let found = meta.get(VERSION_KEY)?.map(|v| v.value());
        if let Some(found) = found {
            check(found)?;
        }
        tx.open_table(USERS)?;
        tx.open_table(MESSAGES)?;
        tx.open_table(RAW)?;
        tx.open_table(BY_MESSAGE_ID)?;
        tx.open_table(BY_USER)?;
        tx.open_table(BODY)?;
        tx.open_table(TOKENS)?;
        // New, or an older schema being upgraded.
        if found != Some(SCHEMA_VERSION) {
            let mut meta_text = tx.open_table(META_TEXT)?;
            if meta_text.get(LEGACY_CHANNEL_KEY)?.is_none() {
                meta_text.insert(LEGACY_CHANNEL_KEY, default_channel)?;
            }
            let legacy = meta_text
                .get(LEGACY_CHANNEL_KEY)?
                .map_or_else(|| default_channel.to_string(), |v| v.value().to_string());
            index_channels_and_replies(&tx, &legacy)?;
            meta.insert(VERSION_KEY, SCHEMA_VERSION)?;
        }
        found
    };
    tx.commit()?;
    Ok(found.unwrap_or(0))
}

/// Schema 5's migration: the [`BY_CHANNEL`] and [`CHILDREN`] entries of every stored
/// message, read from its envelope, one at a time. A message whose envelope cannot be read is
/// indexed under the legacy channel, without a parent, rather than make the file unopenable.
fn index_channels_and_replies(tx: &WriteTransaction, legacy: &str) -> Result<(), StoreError> {
    let messages = tx.open_table(MESSAGES)?;
    let mut by_channel = tx.open_table(BY_CHANNEL)?;
    let mut children = tx.open_table(CHILDREN)?;
    let mut count = 0u64;
    for entry in messages.iter()? {
        let (key, value) = entry?;
        let id = key.value();
        let (channel, parent) = match super::messages::envelope(value.value()) {
            Ok(record) => (record.channel, record.parent_id),
            Err(error) => {
                log::warn!("schema 5 migration: message {id}: {error}; indexed under {legacy}");
                (None, None)
            }
        };
        by_channel.insert((channel.as_deref().unwrap_or(legacy), id), ())?;
        if let Some(parent) = parent {
            children.insert((parent, id), ())?;
        }
        count += 1;
    }
    if count > 0 {
        log::info!(
            "schema 5 migration: {count} messages indexed by channel (stored ones in {legacy})"
        );
    }
    Ok(())
}

/// The channel of messages stored before schema 5, as the migration recorded it.
pub(super) fn legacy_channel(db: &Database) -> Result<Option<String>, StoreError> {
    let tx = db.begin_read()?;
    let table = match tx.open_table(META_TEXT) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(table
        .get(LEGACY_CHANNEL_KEY)?
        .map(|v| v.value().to_string()))
}

/// The database's journal key, made (from the system's random source) and committed durably
/// on first use.
pub(super) fn journal_key(db: &Database) -> Result<u64, StoreError> {
    {
        let tx = db.begin_read()?;
        if let Some(key) = tx.open_table(META)?.get(JOURNAL_KEY_KEY)? {
            return Ok(key.value());
        }
    }
    let key = getrandom::u64()
        .map_err(|e| StoreError::Database(format!("the system's random source: {e}")))?;
    let tx = db.begin_write()?;
    tx.open_table(META)?.insert(JOURNAL_KEY_KEY, key)?;
    tx.commit()?;
    Ok(key)
}

pub(super) fn stored_version(db: &Database) -> Result<Option<u64>, StoreError> {
    let tx = db.begin_read()?;
    let meta = match tx.open_table(META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(meta.get(VERSION_KEY)?.map(|v| v.value()))
}

/// Whether this build reads a file of schema `found`.
fn check(found: u64) -> Result<(), StoreError> {
    if (OLDEST_READABLE..=SCHEMA_VERSION).contains(&found) {
        Ok(())
    } else {
        Err(StoreError::SchemaVersion {
            found,
            expected: SCHEMA_VERSION,
        })
    }
}

/// Overwrites the stored schema version (tests of the mismatch path).
#[cfg(test)]
pub(super) fn set_version(db: &Database, version: u64) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    tx.open_table(META)?.insert(VERSION_KEY, version)?;
    tx.commit()?;
    Ok(())
}

/// Writes a message as schema 1 did: the JSON record, the bytes in [`RAW`], both indexes.
#[cfg(test)]
pub(super) fn insert_schema_1_message(
    db: &Database,
    id: u64,
    record: &MessageRecord,
    raw: &[u8],
) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    tx.open_table(MESSAGES)?
        .insert(id, encode(record)?.as_slice())?;
    tx.open_table(RAW)?.insert(id, raw)?;
    tx.open_table(BY_USER)?
        .insert((record.user.as_str(), id), ())?;
    if let Some(message_id) = record.headers.message_id.as_deref() {
        tx.open_table(BY_MESSAGE_ID)?.insert(message_id, id)?;
    }
    tx.commit()?;
    Ok(())
}

/// Turns a file of this schema into what a schema-4 build wrote: envelopes without a channel,
/// no channel or reply index, no tokens, no legacy channel, version 4 (tests of the
/// migration). The values are byte for byte what schema 4 wrote: the channel was the only
/// field added, and an absent one is not written.
#[cfg(test)]
pub(super) fn downgrade_to_schema_4(db: &Database) -> Result<(), StoreError> {
    use super::packed::{FORMAT_PACKED, Packed, value_head};
    let tx = db.begin_write()?;
    {
        let mut messages = tx.open_table(MESSAGES)?;
        let ids: Vec<u64> = messages
            .iter()?
            .map(|entry| entry.map(|(key, _)| key.value()))
            .collect::<Result<_, _>>()?;
        for id in ids {
            let old = messages
                .get(id)?
                .map(|v| v.value().to_vec())
                .ok_or_else(|| StoreError::Corrupt(format!("message {id} vanished")))?;
            let new = if old.first() == Some(&FORMAT_PACKED) {
                let packed = Packed::parse(&old)?;
                let mut record: MessageRecord = decode(packed.envelope, "message")?;
                record.channel = None;
                let rest = 1 + 4 + packed.envelope.len() + 4 + packed.header.len();
                let mut value = value_head(&encode(&record)?, packed.header)?;
                value.extend_from_slice(&old[rest..]);
                value
            } else {
                let mut record: MessageRecord = decode(&old, "message")?;
                record.channel = None;
                encode(&record)?
            };
            messages.insert(id, new.as_slice())?;
        }
    }
    tx.delete_table(BY_CHANNEL)?;
    tx.delete_table(CHILDREN)?;
    tx.delete_table(TOKENS)?;
    tx.delete_table(META_TEXT)?;
    tx.open_table(META)?.insert(VERSION_KEY, 4)?;
    tx.commit()?;
    Ok(())
}
