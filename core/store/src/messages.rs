//! Messages: durable inserts (one or a batch per transaction), threading, and reads.

use std::ops::Bound;
use std::time::{Instant, SystemTime};

use redb::{
    AccessGuard, Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase,
    ReadableTable, Table, WriteTransaction,
};

use super::journal::{self, Entry, Record};
use super::packed::{BodyWriter, FORMAT_PACKED, Packed, PackedBody, value_head};
use super::recovery::Asker;
use super::schema::{
    BODY, BY_CHANNEL, BY_MESSAGE_ID, BY_USER, CHILDREN, JOURNAL_SEQ_KEY, MESSAGES, META,
    MessageRecord, RAW, decode, encode,
};
use super::trace::{ReceivedTrace, unix_seconds};
use super::{Delivering, Store, StoreError};
use atacama_core::channels::channel_name_problem;
use atacama_core::logging;
use atacama_core::message::{Attachment, Headers, ParsedMessage};
use atacama_core::smtp::MessageId;

/// A message to store: envelope, trace facts, processed fields and the data as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// When the final `.` arrived.
    pub received_at: SystemTime,
    /// The authenticated user.
    pub user: String,
    /// The reverse-path without angle brackets; empty for `<>`.
    pub mail_from: String,
    /// The forward-paths without angle brackets.
    pub rcpt_to: Vec<String>,
    /// What our `Received:` header says.
    pub trace: ReceivedTrace,
    /// The fields `message::parse` found.
    pub parsed: ParsedMessage,
    /// `markup::render(&parsed.text)`.
    pub html: String,
    /// The data after `354`, dot-unstuffed, stored after our `Received:` header unchanged.
    pub data: Vec<u8>,
    /// The channel it goes to (`atacama_core::channels::Channels::route`).
    pub channel: String,
}

impl NewMessage {
    /// Compresses the data, text and HTML, so that the write transaction only copies them:
    /// call it before taking the writer (the commit thread's prepare stage does).
    pub fn pack(mut self) -> Result<PackedMessage, StoreError> {
        let mut body = BodyWriter::new();
        body.data(std::mem::take(&mut self.data));
        body.html_end(std::mem::take(&mut self.html));
        body.text(std::mem::take(&mut self.parsed.text));
        self.pack_with(body)
    }

    /// [`NewMessage::pack`] for a message whose data, text and HTML went into `body` as they
    /// were ready, each let go once packed; `self.data`, `self.html` and `self.parsed.text` are
    /// not used.
    pub fn pack_with(self, body: BodyWriter) -> Result<PackedMessage, StoreError> {
        let NewMessage {
            received_at,
            user,
            mail_from,
            rcpt_to,
            trace,
            mut parsed,
            channel,
            ..
        } = self;
        if let Some(problem) = channel_name_problem(&channel) {
            return Err(StoreError::InvalidChannel(format!("{channel:?} {problem}")));
        }
        parsed.text = String::new();
        let data_len = body.data_len();
        Ok(PackedMessage {
            received_at,
            user,
            mail_from,
            rcpt_to,
            trace,
            parsed,
            body: body.finish()?,
            data_len,
            channel,
        })
    }
}

/// A [`NewMessage`] with its bulky parts compressed ([`NewMessage::pack`]), ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedMessage {
    received_at: SystemTime,
    user: String,
    mail_from: String,
    rcpt_to: Vec<String>,
    trace: ReceivedTrace,
    /// The parsed fields; the text has moved into `body`.
    parsed: ParsedMessage,
    body: PackedBody,
    data_len: usize,
    channel: String,
}

impl PackedMessage {
    /// The authenticated user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Length of the data as received (before our `Received:` header).
    pub fn data_len(&self) -> usize {
        self.data_len
    }

    /// Bytes the compressed data, text and HTML take.
    pub fn packed_len(&self) -> usize {
        self.body.len()
    }

    /// The Message-ID its `In-Reply-To:` names: its parent's, if that is stored.
    pub(crate) fn in_reply_to(&self) -> Option<&str> {
        self.parsed.headers.in_reply_to.as_deref()
    }
}

/// A stored message with every processed field (the bytes: [`Store::raw_message`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredMessage {
    /// The id it was stored under.
    pub id: MessageId,
    /// Seconds since the Unix epoch.
    pub received_at: u64,
    /// The authenticated user who sent it.
    pub user: String,
    /// The reverse-path; empty for `<>`.
    pub mail_from: String,
    /// The forward-paths.
    pub rcpt_to: Vec<String>,
    /// Subject, From, To, Date, Message-ID and In-Reply-To, as parsed.
    #[serde(flatten)]
    pub headers: Headers,
    /// The text body that was rendered.
    pub text: String,
    /// The rendered HTML.
    pub html: String,
    /// The attachments, listed.
    pub attachments: Vec<Attachment>,
    /// What could not be read or rendered, one sentence each; empty when all went well.
    #[serde(default)]
    pub problems: Vec<String>,
    /// Length of the stored bytes, `Received:` header included.
    pub size: u64,
    /// The stored message whose Message-ID this one's In-Reply-To names.
    pub parent_id: Option<MessageId>,
    /// The channel it was routed to; a message stored before channels existed has the
    /// file's legacy channel (`schema`).
    pub channel: String,
}

/// One page of `messages list` ([`Store::messages_page`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessagePage {
    /// The messages, newest first.
    pub messages: Vec<MessageSummary>,
    /// Whether older messages match too: they are the page `before` the last id here.
    pub more: bool,
}

/// The fields `messages list` shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageSummary {
    /// The id it was stored under.
    pub id: MessageId,
    /// Seconds since the Unix epoch.
    pub received_at: u64,
    /// The authenticated user who sent it.
    pub user: String,
    /// The reverse-path; empty for `<>`.
    pub mail_from: String,
    /// The forward-paths.
    pub rcpt_to: Vec<String>,
    /// `Subject:`, decoded.
    pub subject: Option<String>,
    /// Length of the stored bytes.
    pub size: u64,
    /// The message this one replies to, if stored.
    pub parent_id: Option<MessageId>,
    /// The channel it was routed to.
    pub channel: String,
}

impl Store {
    /// Stores one message; returns once the transaction has committed durably.
    pub fn insert_message(&self, message: &NewMessage) -> Result<MessageId, StoreError> {
        let ids = self.insert_messages(std::slice::from_ref(message))?;
        // Invariant: insert_messages returns one id per message.
        ids.first()
            .copied()
            .ok_or_else(|| StoreError::Database("batch insert returned no id".into()))
    }

    /// Stores messages in one transaction; returns their ids, in order, once it has committed
    /// durably. All or none are stored. A message may thread under one earlier in the batch.
    pub fn insert_messages(&self, messages: &[NewMessage]) -> Result<Vec<MessageId>, StoreError> {
        let packed = messages
            .iter()
            .map(|message| message.clone().pack())
            .collect::<Result<Vec<_>, _>>()?;
        self.insert_packed(packed)
    }

    /// [`Store::insert_messages`] for messages packed ahead of time.
    ///
    /// Durable on return either way: in the journal, its redb commit non-durable until the
    /// next checkpoint; or, for a batch of more than [`journal::JOURNAL_BATCH_MAX`] messages,
    /// too large for the journal, or while the journal is set aside, in a durable redb commit
    /// (which checkpoints the journal).
    ///
    /// A message whose body is in rows (larger than about 1 MiB) commits durably in redb: the
    /// journal holds values, not rows. Each row is dropped once written, and redb writes a
    /// transaction's pages out as its cache fills: the body is never in memory twice.
    pub fn insert_packed(
        &self,
        messages: Vec<PackedMessage>,
    ) -> Result<Vec<MessageId>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let mut delivering = self.delivering();
        if self.is_broken() {
            self.recover_locked(&mut delivering, Instant::now(), Asker::Operation)?;
        }
        self.with_db(|db| insert_locked(db, &mut delivering, messages, &self.legacy_channel))
    }

    /// Makes every journaled batch durable in the database and restarts the journal; false if
    /// there was nothing to do. The committer calls it when idle, the store when it closes.
    /// If an I/O error left the database unusable, the reopen (when due) does it instead.
    pub fn checkpoint(&self) -> Result<bool, StoreError> {
        let mut delivering = self.delivering();
        if self.is_broken() {
            self.recover_locked(&mut delivering, Instant::now(), Asker::Operation)?;
        }
        if delivering.usable && delivering.journal.is_empty() {
            return Ok(false);
        }
        self.with_db(|db| checkpoint_locked(db, &mut delivering))?;
        Ok(true)
    }

    /// One message's fields.
    pub fn message(&self, id: MessageId) -> Result<StoredMessage, StoreError> {
        self.with_recovered_db(|db| read_stored(&db.begin_read()?, id, &self.legacy_channel))
    }

    /// The bytes as stored: our `Received:` header, then the data exactly as received.
    pub fn raw_message(&self, id: MessageId) -> Result<Vec<u8>, StoreError> {
        self.with_recovered_db(|db| {
            let tx = db.begin_read()?;
            let messages = tx.open_table(MESSAGES)?;
            let value = messages.get(id.0)?.ok_or(StoreError::NoSuchMessage(id.0))?;
            if value.value().first() != Some(&FORMAT_PACKED) {
                // Schema 1 kept the bytes in a table of their own.
                let raw = tx.open_table(RAW)?;
                let value = raw.get(id.0)?.ok_or(StoreError::NoSuchMessage(id.0))?;
                return Ok(value.value().to_vec());
            }
            let packed = Packed::parse(value.value())?;
            let rows = body_rows(&tx, &packed)?;
            packed.data_after(packed.header, |n| row(rows.as_ref(), id, n))
        })
    }

    /// Messages newest first, optionally only `user`'s, at most `limit` of them.
    pub fn messages(
        &self,
        user: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<MessageSummary>, StoreError> {
        let limit = limit.unwrap_or(usize::MAX);
        Ok(self.messages_page(user, None, limit)?.messages)
    }

    /// One page of the list: messages newest first, optionally only `user`'s, only those
    /// whose id is below `before`, at most `limit` of them; and whether older ones match too
    /// (the next page is `before` the last id of this one). It reads at most `limit + 1`
    /// entries of an index, never the whole table.
    pub fn messages_page(
        &self,
        user: Option<&str>,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        // One more than asked for, to learn whether there are more.
        let wanted = limit.saturating_add(1);
        let below = before.map_or(Bound::Unbounded, |id| Bound::Excluded(id.0));
        self.with_recovered_db(|db| {
            let tx = db.begin_read()?;
            let table = tx.open_table(MESSAGES)?;
            let mut ids: Vec<u64> = Vec::new();
            match user {
                Some(user) => {
                    let by_user = tx.open_table(BY_USER)?;
                    let upper = match below {
                        Bound::Excluded(id) => Bound::Excluded((user, id)),
                        _ => Bound::Included((user, u64::MAX)),
                    };
                    let range = by_user.range((Bound::Included((user, 0)), upper))?;
                    for entry in range.rev().take(wanted) {
                        ids.push(entry?.0.value().1);
                    }
                }
                None => {
                    let range = table.range::<u64>((Bound::Unbounded, below))?;
                    for entry in range.rev().take(wanted) {
                        ids.push(entry?.0.value());
                    }
                }
            };
            let more = ids.len() > limit;
            ids.truncate(limit);
            let mut messages = Vec::with_capacity(ids.len());
            for id in ids {
                let value = table.get(id)?.ok_or(StoreError::Corrupt(format!(
                    "index names message {id}, which is missing"
                )))?;
                let record = envelope(value.value())?;
                messages.push(summary(MessageId(id), record, &self.legacy_channel));
            }
            Ok(MessagePage { messages, more })
        })
    }
}

/// Message `id` with every field, read in `tx`; `legacy` is the channel of one stored
/// without.
pub(super) fn read_stored(
    tx: &ReadTransaction,
    id: MessageId,
    legacy: &str,
) -> Result<StoredMessage, StoreError> {
    let table = tx.open_table(MESSAGES)?;
    let value = table.get(id.0)?.ok_or(StoreError::NoSuchMessage(id.0))?;
    let value = value.value();
    if value.first() != Some(&FORMAT_PACKED) {
        return Ok(stored(id, decode(value, "message")?, legacy));
    }
    let packed = Packed::parse(value)?;
    let mut record: MessageRecord = decode(packed.envelope, "message")?;
    let rows = body_rows(tx, &packed)?;
    (record.text, record.html) = packed.text_and_html(|n| row(rows.as_ref(), id, n))?;
    Ok(stored(id, record, legacy))
}

/// [`Store::insert_packed`] with the journal held and the database open.
fn insert_locked(
    db: &Database,
    delivering: &mut Delivering,
    messages: Vec<PackedMessage>,
    legacy: &str,
) -> Result<Vec<MessageId>, StoreError> {
    let count = messages.len();
    let mut journaling = delivering.usable && count <= journal::JOURNAL_BATCH_MAX;
    let mut tx = db.begin_write()?;
    let (ids, entries) = {
        let mut tables = Tables::open(&tx, legacy)?;
        let first = match tables.messages.last()? {
            Some((key, _)) => key.value() + 1,
            None => 1,
        };
        let mut entries = Vec::with_capacity(count);
        for (id, message) in (first..).zip(messages) {
            let entry = insert_one(&mut tables, id, message, journaling)?;
            journaling &= entry.value.is_some();
            entries.push(entry);
        }
        let ids = entries.iter().map(|entry| MessageId(entry.id)).collect();
        (ids, entries)
    };
    let payload = journaling
        .then(|| {
            entries
                .into_iter()
                .map(Written::into_entry)
                .collect::<Option<Vec<_>>>()
        })
        .flatten()
        .map(|entries| journal::encode(&entries))
        .filter(|payload| delivering.journal.fits(payload.len()));
    let Some(payload) = payload else {
        // The caller sends 250 on our return (RFC 5321 §6.1).
        tx.set_durability(Durability::Immediate)?;
        tx.commit()?;
        delivering.restart();
        return Ok(ids);
    };
    let seq = delivering.next_seq;
    tx.set_durability(Durability::None)?;
    tx.open_table(META)?.insert(JOURNAL_SEQ_KEY, seq)?;
    tx.commit()?;
    // Taken even if the append fails: a later durable commit holds this number.
    delivering.next_seq = seq.saturating_add(1);
    match delivering.journal.append(seq, &payload) {
        Ok(()) => {
            if delivering.journal.checkpoint_due()
                && let Err(error) = checkpoint_locked(db, delivering)
                && let Some(held) = delivering.checkpoint_failed.admit(Instant::now())
            {
                // The batch is safe in the journal; the next batch tries again.
                logging::checkpoint_failed(&error, held);
            }
        }
        Err(error) => {
            // A full disk meets the journal's zeros first: its redb pages may be written.
            if let Some(held) = delivering.append_failed.admit(Instant::now()) {
                logging::journal_append_failed(&error, held);
            }
            delivering.usable = false;
            // If this fails too, the caller answers 4xx and the reopen rolls the batch back.
            checkpoint_locked(db, delivering)?;
        }
    }
    Ok(ids)
}

/// [`Store::checkpoint`] with the journal held and the database open.
fn checkpoint_locked(db: &Database, delivering: &mut Delivering) -> Result<(), StoreError> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    // Unchanged (the last journaled batch wrote it), but a commit that writes nothing
    // need not reach the disk.
    tx.open_table(META)?
        .insert(JOURNAL_SEQ_KEY, delivering.next_seq.saturating_sub(1))?;
    tx.commit()?;
    delivering.restart();
    Ok(())
}

/// The tables a delivery writes, opened once per transaction.
pub(crate) struct Tables<'tx> {
    tx: &'tx WriteTransaction,
    messages: Table<'tx, u64, &'static [u8]>,
    by_message_id: Table<'tx, &'static str, u64>,
    by_user: Table<'tx, (&'static str, u64), ()>,
    by_channel: Table<'tx, (&'static str, u64), ()>,
    children: Table<'tx, (u64, u64), ()>,
    /// The channel of a replayed value that names none (written before schema 5).
    legacy: &'tx str,
    /// Opened by the first body in rows: most transactions have none.
    body: Option<Table<'tx, (u64, u32), &'static [u8]>>,
}

impl<'tx> Tables<'tx> {
    pub(crate) fn open(
        tx: &'tx WriteTransaction,
        legacy: &'tx str,
    ) -> Result<Tables<'tx>, StoreError> {
        Ok(Tables {
            tx,
            messages: tx.open_table(MESSAGES)?,
            by_message_id: tx.open_table(BY_MESSAGE_ID)?,
            by_user: tx.open_table(BY_USER)?,
            by_channel: tx.open_table(BY_CHANNEL)?,
            children: tx.open_table(CHILDREN)?,
            legacy,
            body: None,
        })
    }

    /// Whether message `id` is stored.
    pub(crate) fn holds(&self, id: u64) -> Result<bool, StoreError> {
        Ok(self.messages.get(id)?.is_some())
    }

    /// Writes the rows of a body, in order, each dropped once written.
    fn put_rows(&mut self, id: u64, rows: Vec<Vec<u8>>) -> Result<(), StoreError> {
        let table = match &mut self.body {
            Some(table) => table,
            None => self.body.insert(self.tx.open_table(BODY)?),
        };
        for (n, row) in (0u32..).zip(rows) {
            table.insert((id, n), row.as_slice())?;
        }
        Ok(())
    }

    /// Writes a journaled message's value and its index entries, the Message-ID only if no
    /// earlier message holds it (a resent copy must not steal replies); returns whether it
    /// did. The channel and parent come from the value's envelope.
    fn put(
        &mut self,
        id: u64,
        value: &[u8],
        user: &str,
        message_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.messages.insert(id, value)?;
        let record = envelope(value)?;
        let channel = record.channel.as_deref().unwrap_or(self.legacy);
        let place = Place {
            channel,
            parent: record.parent_id,
        };
        self.index(id, user, message_id, &place)
    }

    /// Writes a message's index entries, as [`Tables::put`] does.
    fn index(
        &mut self,
        id: u64,
        user: &str,
        message_id: Option<&str>,
        place: &Place<'_>,
    ) -> Result<bool, StoreError> {
        self.by_user.insert((user, id), ())?;
        self.by_channel.insert((place.channel, id), ())?;
        if let Some(parent) = place.parent {
            self.children.insert((parent, id), ())?;
        }
        let Some(message_id) = message_id else {
            return Ok(false);
        };
        if self.by_message_id.get(message_id)?.is_some() {
            return Ok(false);
        }
        self.by_message_id.insert(message_id, id)?;
        Ok(true)
    }
}

/// Where a message sits: its channel, and the message it replies to.
struct Place<'a> {
    channel: &'a str,
    parent: Option<u64>,
}

/// What [`insert_one`] wrote: the journal entry's fields, its value kept only if asked for.
pub(crate) struct Written {
    id: u64,
    value: Option<Vec<u8>>,
    user: String,
    message_id: Option<String>,
}

impl Written {
    fn into_entry(self) -> Option<Entry> {
        Some(Entry {
            id: self.id,
            value: self.value?,
            user: self.user,
            message_id: self.message_id,
        })
    }
}

/// Builds one message's value and writes it with its index entries ([`Tables::put`]).
///
/// With `keep` (the batch may go to the journal) the value of a body inside it is kept for
/// the journal; a body in rows is written a row at a time, and never kept.
fn insert_one(
    tables: &mut Tables<'_>,
    id: u64,
    message: PackedMessage,
    keep: bool,
) -> Result<Written, StoreError> {
    // Look the parent up before indexing this message, so a message never parents itself.
    let parent_id = match message.in_reply_to() {
        Some(parent) => tables.by_message_id.get(parent)?.map(|v| v.value()),
        None => None,
    };
    write_prepared(
        tables,
        id,
        prepare(message, id, parent_id)?,
        parent_id,
        keep,
    )
}

/// Writes a prepared message under `id`, threaded under `parent_id`, with its index entries;
/// what [`insert_one`] and a copy into this store ([`Store::import_messages`]) share.
pub(crate) fn write_prepared(
    tables: &mut Tables<'_>,
    id: u64,
    prepared: Prepared,
    parent_id: Option<u64>,
    keep: bool,
) -> Result<Written, StoreError> {
    let Prepared {
        envelope,
        header,
        body,
        user,
        channel,
        message_id,
        ..
    } = prepared;
    let mut value = value_head(&envelope, header.as_bytes())?;
    let value = match body {
        PackedBody::Inline(body) => {
            value.extend_from_slice(&body);
            drop(body);
            tables.messages.insert(id, value.as_slice())?;
            (keep && value.len() < journal::JOURNAL_BYTES as usize).then_some(value)
        }
        PackedBody::Rows { head, rows } => {
            // Never journaled: the journal replays values, not rows, so the batch commits
            // durably.
            value.extend_from_slice(&head);
            tables.messages.insert(id, value.as_slice())?;
            tables.put_rows(id, rows)?;
            None
        }
    };
    let place = Place {
        channel: &channel,
        parent: parent_id,
    };
    let indexed = tables.index(id, &user, message_id.as_deref(), &place)?;
    Ok(Written {
        id,
        value,
        user,
        message_id: message_id.filter(|_| indexed),
    })
}

/// A message made ready to store under its id: what every backend writes.
pub(crate) struct Prepared {
    /// The JSON [`MessageRecord`] without text and HTML (they are in `body`).
    pub envelope: Vec<u8>,
    /// Our `Received:` header, which names the id.
    pub header: String,
    /// The data, text and HTML, packed.
    pub body: PackedBody,
    /// Seconds since the Unix epoch.
    pub received_at: u64,
    pub user: String,
    pub channel: String,
    /// The Message-ID, if it has a non-empty one.
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub subject: Option<String>,
    /// Length of the stored bytes: the header and the data.
    pub size: u64,
}

/// Builds what is stored of `message` under `id`, threaded under `parent_id` (which the
/// caller looked up before storing it, so that a message never parents itself).
pub(crate) fn prepare(
    message: PackedMessage,
    id: u64,
    parent_id: Option<u64>,
) -> Result<Prepared, StoreError> {
    let received_at = unix_seconds(message.received_at);
    let header = message.trace.header(id, received_at);
    let size = (header.len() + message.data_len) as u64;
    let PackedMessage {
        user,
        mail_from,
        rcpt_to,
        parsed,
        body,
        channel,
        ..
    } = message;
    let headers = parsed.headers;
    let message_id = headers.message_id.clone().filter(|m| !m.is_empty());
    let (in_reply_to, subject) = (headers.in_reply_to.clone(), headers.subject.clone());
    // Text and HTML travel in the packed body, not in the JSON envelope.
    let envelope = encode(&MessageRecord {
        received_at,
        user: user.clone(),
        mail_from,
        rcpt_to,
        headers,
        text: String::new(),
        html: String::new(),
        attachments: parsed.attachments,
        problems: parsed.problems,
        problem: None,
        size,
        parent_id,
        channel: Some(channel.clone()),
    })?;
    Ok(Prepared {
        envelope,
        header,
        body,
        received_at,
        user,
        channel,
        message_id,
        in_reply_to,
        subject,
        size,
    })
}

/// Applies the journal's records that the database's durable state does not hold, in one
/// durable commit; returns the sequence number for the next batch and how many messages it
/// applied.
pub(super) fn replay(
    db: &Database,
    records: &[Record],
    legacy: &str,
) -> Result<(u64, usize), StoreError> {
    let mark = {
        let tx = db.begin_read()?;
        let meta = tx.open_table(META)?;
        meta.get(JOURNAL_SEQ_KEY)?.map_or(0, |v| v.value())
    };
    let last = records.last().map_or(0, |record| record.seq);
    let missing: Vec<&Record> = records.iter().filter(|r| r.seq > mark).collect();
    let mut count = 0;
    if let Some(newest) = missing.last() {
        let tx = db.begin_write()?;
        {
            let mut tables = Tables::open(&tx, legacy)?;
            for entry in missing.iter().flat_map(|record| &record.entries) {
                let message_id = entry.message_id.as_deref();
                tables.put(entry.id, &entry.value, &entry.user, message_id)?;
                count += 1;
            }
            tx.open_table(META)?.insert(JOURNAL_SEQ_KEY, newest.seq)?;
        }
        tx.commit()?;
        log::warn!(
            "recovered {count} messages from the journal ({} batches after the last checkpoint)",
            missing.len()
        );
    }
    // Saturating: a damaged mark must not panic the open.
    Ok((mark.max(last).saturating_add(1), count))
}

/// The table of bodies in rows ([`BODY`]), as read.
type BodyRows = ReadOnlyTable<(u64, u32), &'static [u8]>;

/// The table of a body in rows, opened only for one.
fn body_rows(tx: &ReadTransaction, packed: &Packed<'_>) -> Result<Option<BodyRows>, StoreError> {
    Ok(if packed.in_rows() {
        Some(tx.open_table(BODY)?)
    } else {
        None
    })
}

/// Row `n` of message `id`'s body.
fn row<'t>(
    rows: Option<&'t BodyRows>,
    id: MessageId,
    n: u32,
) -> Result<AccessGuard<'t, &'static [u8]>, StoreError> {
    let missing = || StoreError::Corrupt(format!("message {id}: row {n} of its body is missing"));
    rows.ok_or_else(missing)?
        .get((id.0, n))?
        .ok_or_else(missing)
}

/// The fields of a stored message without its text and HTML, from either schema's value.
pub(crate) fn envelope(value: &[u8]) -> Result<MessageRecord, StoreError> {
    if value.first() == Some(&FORMAT_PACKED) {
        decode(Packed::parse(value)?.envelope, "message")
    } else {
        decode(value, "message")
    }
}

pub(crate) fn stored(id: MessageId, mut r: MessageRecord, legacy: &str) -> StoredMessage {
    let problems = r.all_problems();
    StoredMessage {
        id,
        received_at: r.received_at,
        user: r.user,
        mail_from: r.mail_from,
        rcpt_to: r.rcpt_to,
        headers: r.headers,
        text: r.text,
        html: r.html,
        attachments: r.attachments,
        problems,
        size: r.size,
        parent_id: r.parent_id.map(MessageId),
        channel: r.channel.unwrap_or_else(|| legacy.to_string()),
    }
}

pub(crate) fn summary(id: MessageId, r: MessageRecord, legacy: &str) -> MessageSummary {
    MessageSummary {
        id,
        received_at: r.received_at,
        user: r.user,
        mail_from: r.mail_from,
        rcpt_to: r.rcpt_to,
        subject: r.headers.subject,
        size: r.size,
        parent_id: r.parent_id.map(MessageId),
        channel: r.channel.unwrap_or_else(|| legacy.to_string()),
    }
}
