//! Messages in PostgreSQL: a batch of deliveries in one transaction, and the reads, each with
//! the limits of the redb store's (`crate::reads`) and on an index.
//!
//! Ids come from the sequence `message_ids`, so they are unique across every daemon on the
//! database and ascend within a batch; two daemons' batches may commit in either order. A
//! message threads under the first-stored one (the lowest id) whose Message-ID its
//! In-Reply-To names, looked up before it is stored: in the database, else earlier in its
//! batch.

use std::collections::HashMap;

use atacama_core::smtp::MessageId;
use postgres::GenericClient;
use postgres::Row;

use super::pool::Conn;
use super::{PgStore, bigint, text_column, unsigned};
use crate::messages::{Prepared, prepare, stored as stored_message, summary};
use crate::packed::{Packed, PackedBody};
use crate::reads::visible_ancestors;
use crate::schema::{MessageRecord, decode};
use crate::{
    Chain, MAX_CHAIN_REPLIES, MAX_PAGE, MessagePage, PackedMessage, Page, StoreError, StoredMessage,
};

/// The columns [`stored_from`] reads.
const STORED: &str = "id, envelope::text, body";

/// One message by id, with [`STORED`]'s columns (a literal: it is prepared once per
/// connection, which takes a `&'static str`).
const STORED_BY_ID: &str = "SELECT id, envelope::text, body FROM messages WHERE id = $1";

/// The whole batch in one statement: one round trip and one plan, however many messages.
pub(super) const INSERT: &str =
    "INSERT INTO messages (id, received_at, user_name, channel, message_id,
        in_reply_to, parent_id, subject, size, envelope, header, body)
    SELECT id, to_timestamp(received_at), user_name, channel, message_id, in_reply_to,
        parent_id, subject, size, envelope::json, header, body
    FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::bigint[], $8::text[], $9::bigint[], $10::text[], $11::bytea[], $12::bytea[])
        AS batch(id, received_at, user_name, channel, message_id, in_reply_to, parent_id,
            subject, size, envelope, header, body)";

/// Ids for a batch, ascending: the sequence is not transactional, so this needs no
/// transaction (a batch that fails leaves a gap, as a rolled-back one would).
const NEXT_IDS: &str = "SELECT nextval('message_ids') FROM generate_series(1, $1::bigint)";

/// The first-stored message of each Message-ID asked for.
const PARENTS: &str = "SELECT message_id, min(id) FROM messages WHERE message_id = ANY($1)
    GROUP BY message_id";

/// Stores a batch atomically; returns the ids once its commit has returned.
///
/// Round trips are what a batch costs here, more than the bytes: the ids, the parents if a
/// message replies, and the insert. A batch whose bodies all fit in their row is one
/// `INSERT` in autocommit, whose implicit transaction commits before the server says it is
/// ready again (`execute` returns then), so no `BEGIN` and `COMMIT` of their own; one with
/// the rows of a large body needs an explicit transaction around its statements.
pub(super) fn insert(
    store: &PgStore,
    batch: Vec<PackedMessage>,
) -> Result<Vec<MessageId>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let count = bigint(batch.len() as u64, "batch size")?;
    store.with_conn(|conn| {
        let next_ids = conn.prepared(NEXT_IDS)?;
        let insert = conn.prepared(INSERT)?;
        let mut ids = conn
            .client
            .query(&next_ids, &[&count])?
            .iter()
            .map(|row| row.try_get::<_, i64>(0))
            .collect::<Result<Vec<_>, _>>()?;
        ids.sort_unstable();
        let mut parents = stored_parents(conn, &batch)?;
        let mut columns = Columns::with_capacity(ids.len());
        let mut stored = Vec::with_capacity(ids.len());
        for (id, message) in ids.into_iter().zip(batch) {
            // Before this message is stored: a message never parents itself.
            let parent = message
                .in_reply_to()
                .and_then(|wanted| parents.get(text_column(wanted).as_ref()))
                .copied();
            let parent = parent.map(|p| unsigned(p, "messages.id")).transpose()?;
            let prepared = prepare(message, unsigned(id, "messages.id")?, parent)?;
            if let Some(message_id) = &prepared.message_id {
                // The first stored keeps it: a resent copy must not steal replies.
                parents
                    .entry(text_column(message_id).into_owned())
                    .or_insert(id);
            }
            columns.push(id, parent, prepared)?;
            stored.push(MessageId(unsigned(id, "messages.id")?));
        }
        // The caller sends 250 on our return (RFC 5321 §6.1): after the commit, whose WAL
        // flush `synchronous_commit` waits for.
        if columns.rows.is_empty() {
            columns.insert(&mut conn.client, &insert)?;
        } else {
            let mut tx = conn.client.transaction()?;
            columns.insert(&mut tx, &insert)?;
            tx.commit()?;
        }
        Ok(stored)
    })
}

/// Message `id` with every field.
pub(super) fn stored(store: &PgStore, id: MessageId) -> Result<StoredMessage, StoreError> {
    // Prepared once per connection: the web side's one read per message page.
    store.with_conn(|conn| {
        let statement = conn.prepared(STORED_BY_ID)?;
        let row = conn.client.query_opt(&statement, &[&key(id)?])?;
        let row = row.ok_or(StoreError::NoSuchMessage(id.0))?;
        stored_from(&mut conn.client, &row, store.legacy())
    })
}

/// The bytes as stored: our `Received:` header, then the data exactly as received.
pub(super) fn raw(store: &PgStore, id: MessageId) -> Result<Vec<u8>, StoreError> {
    // Prepared once per connection: `store verify` reads every message with it.
    store.with_conn(|conn| {
        let statement = conn.prepared("SELECT header, body FROM messages WHERE id = $1")?;
        let row = conn.client.query_opt(&statement, &[&key(id)?])?;
        let row = row.ok_or(StoreError::NoSuchMessage(id.0))?;
        let (header, body): (&[u8], &[u8]) = (row.try_get(0)?, row.try_get(1)?);
        Packed::from_parts(b"", header, body)
            .data_after(header, |n| body_row(&mut conn.client, id, n))
    })
}

/// One page of the list, newest first: `limit + 1` entries of the id or user index.
pub(super) fn list(
    store: &PgStore,
    user: Option<&str>,
    before: Option<MessageId>,
    limit: usize,
) -> Result<MessagePage, StoreError> {
    let wanted = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    let below = below(before);
    let rows = store.with_client(|client| {
        Ok(match user {
            Some(user) if user.contains('\0') => Vec::new(),
            Some(user) => client.query(
                "SELECT id, envelope::text FROM messages WHERE user_name = $1 AND id < $2
                 ORDER BY id DESC LIMIT $3",
                &[&user, &below, &wanted],
            )?,
            None => client.query(
                "SELECT id, envelope::text FROM messages WHERE id < $1 ORDER BY id DESC LIMIT $2",
                &[&below, &wanted],
            )?,
        })
    })?;
    let more = rows.len() > limit;
    let messages = rows
        .iter()
        .take(limit)
        .map(|row| {
            let (id, record) = envelope_of(row)?;
            Ok(summary(id, record, store.legacy()))
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(MessagePage { messages, more })
}

/// The newest messages of `channels` below `before`: at most `limit + 1` entries of each
/// channel's index, merged, as redb's page does.
pub(super) fn page(
    store: &PgStore,
    channels: &[&str],
    before: Option<MessageId>,
    limit: usize,
) -> Result<Page, StoreError> {
    let limit = limit.min(MAX_PAGE);
    let wanted = limit as i64 + 1;
    let below = below(before);
    let channels = storable(channels);
    // A scan of each channel's index from `below` down, not of all their messages.
    let sql = format!(
        "SELECT {STORED} FROM messages WHERE id IN (
            SELECT newest.id FROM (SELECT DISTINCT unnest($1::text[]) AS name) AS channel,
                LATERAL (SELECT id FROM messages WHERE messages.channel = channel.name
                         AND id < $2 ORDER BY id DESC LIMIT $3) AS newest
            ORDER BY newest.id DESC LIMIT $3)
         ORDER BY id DESC"
    );
    store.with_client(|client| {
        let rows = client.query(&sql, &[&channels, &below, &wanted])?;
        let more = rows.len() > limit;
        let messages = rows
            .iter()
            .take(limit)
            .map(|row| stored_from(client, row, store.legacy()))
            .collect::<Result<_, _>>()?;
        Ok(Page { messages, more })
    })
}

/// Message `id` with its visible ancestors (root first) and direct replies (oldest first).
pub(super) fn chain(
    store: &PgStore,
    id: MessageId,
    channels: &[&str],
) -> Result<Chain, StoreError> {
    let visible = |channel: &str| channels.contains(&channel);
    let channels = storable(channels);
    store.with_client(|client| {
        let place = |client: &mut postgres::Client, id: u64| {
            let row = client.query_opt(
                "SELECT channel, parent_id FROM messages WHERE id = $1",
                &[&key(MessageId(id))?],
            )?;
            row.map(|row| {
                let channel: &str = row.try_get(0)?;
                let parent: Option<i64> = row.try_get(1)?;
                let parent = parent
                    .map(|p| unsigned(p, "messages.parent_id"))
                    .transpose()?;
                Ok((visible(channel), parent))
            })
            .transpose()
        };
        let parent = match place(client, id.0)? {
            Some((true, parent)) => parent,
            _ => return Err(StoreError::NoSuchMessage(id.0)),
        };
        let above = visible_ancestors(id, parent, |up| place(client, up))?;
        let above = above
            .into_iter()
            .map(|up| bigint(up, "message id"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ancestors = stored_where(client, "id = ANY($1)", &[&above], store.legacy())?;
        // Parents are older: ascending ids go from the root down.
        ancestors.sort_by_key(|message| message.id.0);
        let message = stored_where(client, "id = $1", &[&key(id)?], store.legacy())?
            .pop()
            .ok_or(StoreError::NoSuchMessage(id.0))?;
        let replies = stored_where(
            client,
            "parent_id = $1 AND channel = ANY($2) ORDER BY id LIMIT $3",
            &[&key(id)?, &channels, &(MAX_CHAIN_REPLIES as i64)],
            store.legacy(),
        )?;
        Ok(Chain {
            ancestors,
            message,
            replies,
        })
    })
}

/// The channel of message `id`; `None` if there is no such message.
pub(super) fn channel(store: &PgStore, id: MessageId) -> Result<Option<String>, StoreError> {
    store.with_conn(|conn| {
        let statement = conn.prepared("SELECT channel FROM messages WHERE id = $1")?;
        let row = conn.client.query_opt(&statement, &[&key(id)?])?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    })
}

impl PgStore {
    fn legacy(&self) -> &str {
        &self.default_channel
    }
}

/// The first-stored id of each Message-ID the batch's In-Reply-To headers name.
fn stored_parents(
    conn: &mut Conn,
    batch: &[PackedMessage],
) -> Result<HashMap<String, i64>, StoreError> {
    let wanted: Vec<String> = batch
        .iter()
        .filter_map(PackedMessage::in_reply_to)
        .map(|wanted| text_column(wanted).into_owned())
        .collect();
    let mut parents = HashMap::with_capacity(wanted.len());
    if wanted.is_empty() {
        return Ok(parents);
    }
    let parents_of = conn.prepared(PARENTS)?;
    let rows = conn.client.query(&parents_of, &[&wanted])?;
    for row in rows {
        parents.insert(row.try_get(0)?, row.try_get(1)?);
    }
    Ok(parents)
}

/// A batch's messages, column by column: [`INSERT`]'s arrays.
#[derive(Default)]
pub(super) struct Columns {
    ids: Vec<i64>,
    received_at: Vec<i64>,
    users: Vec<String>,
    channels: Vec<String>,
    message_ids: Vec<Option<String>>,
    in_reply_to: Vec<Option<String>>,
    parents: Vec<Option<i64>>,
    subjects: Vec<Option<String>>,
    sizes: Vec<i64>,
    envelopes: Vec<String>,
    headers: Vec<Vec<u8>>,
    bodies: Vec<Vec<u8>>,
    /// The rows of bodies past about 1 MiB: (message id, rows).
    rows: Vec<(i64, Vec<Vec<u8>>)>,
}

impl Columns {
    pub(super) fn with_capacity(n: usize) -> Columns {
        Columns {
            ids: Vec::with_capacity(n),
            envelopes: Vec::with_capacity(n),
            bodies: Vec::with_capacity(n),
            ..Columns::default()
        }
    }

    /// Adds one prepared message, stored under `id` below `parent`.
    pub(super) fn push(
        &mut self,
        id: i64,
        parent: Option<u64>,
        prepared: Prepared,
    ) -> Result<(), StoreError> {
        let envelope = String::from_utf8(prepared.envelope)
            .map_err(|_| StoreError::Corrupt("message envelope: not UTF-8".into()))?;
        let (body, rows) = match prepared.body {
            PackedBody::Inline(body) => (body, Vec::new()),
            PackedBody::Rows { head, rows } => (head, rows),
        };
        let text = |column: Option<String>| column.map(|c| text_column(&c).into_owned());
        self.ids.push(id);
        self.received_at
            .push(bigint(prepared.received_at, "received_at")?);
        self.users.push(prepared.user);
        self.channels.push(prepared.channel);
        self.message_ids.push(text(prepared.message_id));
        self.in_reply_to.push(text(prepared.in_reply_to));
        self.parents
            .push(parent.map(|p| bigint(p, "parent id")).transpose()?);
        self.subjects.push(text(prepared.subject));
        self.sizes.push(bigint(prepared.size, "size")?);
        self.envelopes.push(envelope);
        self.headers.push(prepared.header.into_bytes());
        self.bodies.push(body);
        if !rows.is_empty() {
            self.rows.push((id, rows));
        }
        Ok(())
    }

    /// Writes the batch: the messages in one statement ([`INSERT`] prepared), then the rows
    /// of large bodies.
    pub(super) fn insert(
        self,
        tx: &mut impl GenericClient,
        insert: &postgres::Statement,
    ) -> Result<(), StoreError> {
        tx.execute(
            insert,
            &[
                &self.ids,
                &self.received_at,
                &self.users,
                &self.channels,
                &self.message_ids,
                &self.in_reply_to,
                &self.parents,
                &self.subjects,
                &self.sizes,
                &self.envelopes,
                &self.headers,
                &self.bodies,
            ],
        )?;
        drop(self.bodies);
        if self.rows.is_empty() {
            return Ok(());
        }
        let insert_row =
            tx.prepare("INSERT INTO message_rows (message, n, bytes) VALUES ($1, $2, $3)")?;
        for (id, rows) in self.rows {
            for (n, row) in (0i32..).zip(rows) {
                // Each row dropped once sent: a large body is not held twice.
                tx.execute(&insert_row, &[&id, &n, &row])?;
            }
        }
        Ok(())
    }
}

/// The messages `condition` selects, with every field.
fn stored_where(
    client: &mut postgres::Client,
    condition: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
    legacy: &str,
) -> Result<Vec<StoredMessage>, StoreError> {
    let rows = client.query(
        &format!("SELECT {STORED} FROM messages WHERE {condition}"),
        params,
    )?;
    rows.iter()
        .map(|row| stored_from(client, row, legacy))
        .collect()
}

/// A message with every field from a row of [`STORED`], its body's rows read if it has them.
fn stored_from(
    client: &mut impl GenericClient,
    row: &Row,
    legacy: &str,
) -> Result<StoredMessage, StoreError> {
    let (id, mut record) = envelope_of(row)?;
    let body: &[u8] = row.try_get(2)?;
    let packed = Packed::from_parts(b"", b"", body);
    (record.text, record.html) = packed.text_and_html(|n| body_row(client, id, n))?;
    Ok(stored_message(id, record, legacy))
}

/// The id and the envelope of a row that begins with them.
fn envelope_of(row: &Row) -> Result<(MessageId, MessageRecord), StoreError> {
    let id = MessageId(unsigned(row.try_get(0)?, "messages.id")?);
    let envelope: &str = row.try_get(1)?;
    Ok((id, decode(envelope.as_bytes(), "message")?))
}

/// Row `n` of message `id`'s body.
pub(super) fn body_row(
    client: &mut impl GenericClient,
    id: MessageId,
    n: u32,
) -> Result<Vec<u8>, StoreError> {
    let number = i32::try_from(n)
        .map_err(|_| StoreError::Corrupt(format!("message {id}: row {n} is past any body")))?;
    let row = client.query_opt(
        "SELECT bytes FROM message_rows WHERE message = $1 AND n = $2",
        &[&key(id)?, &number],
    )?;
    let row = row.ok_or_else(|| {
        StoreError::Corrupt(format!("message {id}: row {n} of its body is missing"))
    })?;
    Ok(row.try_get(0)?)
}

/// A message id as the `bigint` key; one past `i64::MAX` cannot be stored, so is not there.
fn key(id: MessageId) -> Result<i64, StoreError> {
    i64::try_from(id.0).map_err(|_| StoreError::NoSuchMessage(id.0))
}

/// The channel names a `text` column can hold: the others have no messages.
fn storable<'a>(channels: &[&'a str]) -> Vec<&'a str> {
    channels
        .iter()
        .copied()
        .filter(|c| !c.contains('\0'))
        .collect()
}

/// The bound below which a page lists: every id if none is given.
fn below(before: Option<MessageId>) -> i64 {
    before.map_or(i64::MAX, |id| i64::try_from(id.0).unwrap_or(i64::MAX))
}
