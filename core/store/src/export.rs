//! The redb store's side of a copy (`crate::copy`): everything read out as stored, in id
//! order and bounded batches, and written in under the same ids.
//!
//! Values of older schemas go out in today's shape: a schema-1 message (a JSON record with
//! text and HTML, its bytes in [`RAW`]) is packed, its bytes as the data after an empty
//! header, so that its raw bytes stay what they were; a message stored before channels gets
//! the file's legacy channel in its envelope.

use std::ops::Bound;

use atacama_core::smtp::MessageId;
use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use super::copy::{ExportedMessage, ExportedToken, ExportedUser};
use super::messages::{Tables, write_prepared};
use super::packed::{BodyWriter, FORMAT_PACKED, Packed, PackedBody};
use super::recovery::Asker;
use super::schema::{
    BODY, MESSAGES, MessageRecord, RAW, TOKENS, USERS, decode, encode, named_records,
};
use super::{Store, StoreError};

impl Store {
    /// Every user as stored, by name.
    pub fn export_users(&self) -> Result<Vec<ExportedUser>, StoreError> {
        self.with_recovered_db(|db| {
            let users = named_records(&db.begin_read()?, USERS, "user")?;
            Ok(users
                .into_iter()
                .map(|(name, record)| ExportedUser { name, record })
                .collect())
        })
    }

    /// Every token as stored, by name.
    pub fn export_tokens(&self) -> Result<Vec<ExportedToken>, StoreError> {
        self.with_recovered_db(|db| {
            let tokens = named_records(&db.begin_read()?, TOKENS, "token")?;
            Ok(tokens
                .into_iter()
                .map(|(name, record)| ExportedToken { name, record })
                .collect())
        })
    }

    /// The messages after `after`, in id order, as stored, until they hold `max_bytes`; one
    /// larger message comes alone. Empty once there are no more.
    pub fn export_messages(
        &self,
        after: Option<MessageId>,
        max_bytes: usize,
    ) -> Result<Vec<ExportedMessage>, StoreError> {
        let start = after.map_or(Bound::Unbounded, |id| Bound::Excluded(id.0));
        self.with_recovered_db(|db| {
            let tx = db.begin_read()?;
            let table = tx.open_table(MESSAGES)?;
            let mut batch = Vec::new();
            let mut bytes = 0usize;
            for entry in table.range::<u64>((start, Bound::Unbounded))? {
                let (key, value) = entry?;
                let message = exported(&tx, key.value(), value.value(), &self.legacy_channel)?;
                let len = message.stored_len();
                if !batch.is_empty() && bytes.saturating_add(len) > max_bytes {
                    break; // read again as the next batch's first
                }
                bytes = bytes.saturating_add(len);
                batch.push(message);
                if bytes >= max_bytes {
                    break;
                }
            }
            Ok(batch)
        })
    }

    /// Adds users and tokens as they were stored elsewhere, in one durable commit; refuses a
    /// name that is taken ([`StoreError::UserExists`], [`StoreError::TokenExists`]).
    pub fn import_accounts(
        &self,
        users: &[ExportedUser],
        tokens: &[ExportedToken],
    ) -> Result<(), StoreError> {
        self.with_recovered_db(|db| {
            let tx = db.begin_write()?;
            {
                let mut table = tx.open_table(USERS)?;
                for user in users {
                    if table.get(user.name.as_str())?.is_some() {
                        return Err(StoreError::UserExists(user.name.clone()));
                    }
                    table.insert(user.name.as_str(), encode(&user.record)?.as_slice())?;
                }
                let mut table = tx.open_table(TOKENS)?;
                for token in tokens {
                    if table.get(token.name.as_str())?.is_some() {
                        return Err(StoreError::TokenExists(token.name.clone()));
                    }
                    table.insert(token.name.as_str(), encode(&token.record)?.as_slice())?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Stores messages under their own ids, in one durable commit, indexed as deliveries are;
    /// refuses an id that is taken. Later deliveries get ids above the largest.
    pub fn import_messages(&self, batch: Vec<ExportedMessage>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut delivering = self.delivering();
        if self.is_broken() {
            self.recover_locked(&mut delivering, std::time::Instant::now(), Asker::Operation)?;
        }
        self.with_db(|db| {
            // Durable, as a write transaction is by default: no journal record for it.
            let tx = db.begin_write()?;
            {
                let mut tables = Tables::open(&tx, &self.legacy_channel)?;
                for message in batch {
                    let (id, parent, prepared) = message.into_prepared()?;
                    if tables.holds(id)? {
                        return Err(StoreError::Database(format!(
                            "message {id} is stored already"
                        )));
                    }
                    write_prepared(&mut tables, id, prepared, parent, false)?;
                }
            }
            tx.commit()?;
            delivering.restart();
            Ok(())
        })
    }
}

/// Message `id`, whose value is `value`, as it goes out.
fn exported(
    tx: &ReadTransaction,
    id: u64,
    value: &[u8],
    legacy: &str,
) -> Result<ExportedMessage, StoreError> {
    if value.first() != Some(&FORMAT_PACKED) {
        return exported_schema_1(tx, id, value, legacy);
    }
    let packed = Packed::parse(value)?;
    let mut envelope = packed.envelope.to_vec();
    let mut record: MessageRecord = decode(&envelope, "message")?;
    if record.channel.is_none() {
        record.channel = Some(legacy.to_string());
        envelope = encode(&record)?;
    }
    let header = String::from_utf8(packed.header.to_vec())
        .map_err(|_| StoreError::Corrupt(format!("message {id}: header is not UTF-8")))?;
    let mut rows = Vec::new();
    if packed.in_rows() {
        let table = tx.open_table(BODY)?;
        for entry in table.range((id, 0)..=(id, u32::MAX))? {
            rows.push(entry?.1.value().to_vec());
        }
    }
    Ok(ExportedMessage {
        id,
        envelope,
        header,
        body: PackedBody::from_stored(packed.body().to_vec(), rows),
    })
}

/// A schema-1 message, packed: its stored bytes (our header among them) as the data.
fn exported_schema_1(
    tx: &ReadTransaction,
    id: u64,
    value: &[u8],
    legacy: &str,
) -> Result<ExportedMessage, StoreError> {
    let mut record: MessageRecord = decode(value, "message")?;
    let raw = tx
        .open_table(RAW)?
        .get(id)?
        .ok_or(StoreError::NoSuchMessage(id))?
        .value()
        .to_vec();
    let mut body = BodyWriter::new();
    body.data(raw);
    body.html_end(std::mem::take(&mut record.html));
    body.text(std::mem::take(&mut record.text));
    record.channel.get_or_insert_with(|| legacy.to_string());
    Ok(ExportedMessage {
        id,
        envelope: encode(&record)?,
        header: String::new(),
        body: body.finish()?,
    })
}
