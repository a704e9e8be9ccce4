//! Copying a whole store into an empty one of either kind (`atacama-mail store copy`), and
//! verifying the two afterwards: how a site moves from redb to PostgreSQL, backs PostgreSQL up
//! into a redb file, or leaves.
//!
//! A copy moves what is stored, not what was delivered: users with their bcrypt hashes (the
//! same password logs in), tokens with their SHA-256 (the same token works), and each message
//! under its id with its envelope, `Received:` header and packed body exactly as stored. A
//! re-delivery would give new ids, and the ids are in `/messages/{id}` URLs, in `parent_id`
//! and in the `Received:` header itself. Both backends keep the same three parts (`packed`),
//! so nothing is decoded or compressed again; the target only rebuilds its indexes.
//!
//! Bounded: messages travel in id order, in batches of at most [`COPY_BATCH_BYTES`] as
//! stored (a larger message is a batch of its own), each batch one transaction of the target.
//! The verification reads both sides a page and a message at a time.

use std::fmt;

use atacama_core::smtp::MessageId;
use ring::digest::{Context, SHA256};

use crate::messages::Prepared;
use crate::packed::PackedBody;
use crate::schema::{MessageRecord, TokenRecord, UserRecord, decode};
use crate::tokens::hex;
use crate::{Backend, StoreError};

/// The most bytes (as stored) one batch of a copy holds, but for a single larger message.
pub const COPY_BATCH_BYTES: usize = 16 << 20;

/// Messages per page the verification reads of each side.
const VERIFY_PAGE: usize = 256;

/// A user as stored, bcrypt hash included, for [`Backend::import_accounts`].
#[derive(Clone, PartialEq, Eq)]
pub struct ExportedUser {
    pub(crate) name: String,
    pub(crate) record: UserRecord,
}

/// A read token as stored (its SHA-256, never the token), for [`Backend::import_accounts`].
#[derive(Clone, PartialEq, Eq)]
pub struct ExportedToken {
    pub(crate) name: String,
    pub(crate) record: TokenRecord,
}

/// A message as stored, for [`Backend::import_messages`]: its id, its JSON envelope (with
/// its channel and parent), our `Received:` header and its packed body, rows included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedMessage {
    pub(crate) id: u64,
    pub(crate) envelope: Vec<u8>,
    pub(crate) header: String,
    pub(crate) body: PackedBody,
}

impl fmt::Debug for ExportedUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the hash.
        f.debug_struct("ExportedUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ExportedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportedToken")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ExportedMessage {
    /// The id it is stored under, and keeps.
    pub fn id(&self) -> MessageId {
        MessageId(self.id)
    }

    /// Bytes as stored: envelope, header and packed body.
    pub fn stored_len(&self) -> usize {
        self.envelope.len() + self.header.len() + self.body.len()
    }

    /// What a store writes of it, as a delivery would have: the id, the parent, and the
    /// columns its envelope holds.
    pub(crate) fn into_prepared(self) -> Result<(u64, Option<u64>, Prepared), StoreError> {
        let record: MessageRecord = decode(&self.envelope, "message")?;
        let channel = record
            .channel
            .ok_or_else(|| StoreError::Corrupt(format!("message {}: no channel", self.id)))?;
        let headers = record.headers;
        let prepared = Prepared {
            envelope: self.envelope,
            header: self.header,
            body: self.body,
            received_at: record.received_at,
            user: record.user,
            channel,
            message_id: headers.message_id.filter(|m| !m.is_empty()),
            in_reply_to: headers.in_reply_to,
            subject: headers.subject,
            size: record.size,
        };
        Ok((self.id, record.parent_id, prepared))
    }
}

/// What [`copy`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Users copied, hashes included.
    pub users: usize,
    /// Tokens copied (their hashes).
    pub tokens: usize,
    /// Messages copied, under their ids.
    pub messages: u64,
    /// Bytes as stored (packed), rows included.
    pub stored_bytes: u64,
}

/// What [`verify`] found equal on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Users equal on both sides (names, status, times).
    pub users: usize,
    /// Tokens equal on both sides (names, times).
    pub tokens: usize,
    /// Messages equal on both sides (listed fields, raw bytes).
    pub messages: u64,
    /// Bytes of the raw messages (`Received:` header and data).
    pub raw_bytes: u64,
    /// SHA-256, in hex, over each message's id and the SHA-256 of its raw bytes, newest first.
    pub sha256: String,
}

/// Why a copy or its verification failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyError {
    /// A store failed.
    Store {
        /// Which one: [`Backend::location`].
        location: String,
        /// What failed.
        error: StoreError,
    },
    /// The target holds data already: a copy never merges.
    NotEmpty {
        /// The target.
        location: String,
        /// What it holds: "messages", "2 user(s)"…
        holds: String,
    },
    /// The two sides differ; what first did.
    Differs(String),
    /// A copy stopped at `cause` after its users and tokens, and its messages up to `after`
    /// (none: `None`), were in the target `location`.
    Stopped {
        location: String,
        after: Option<MessageId>,
        cause: Box<CopyError>,
    },
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyError::Store { location, error } => write!(f, "{location}: {error}"),
            CopyError::NotEmpty { location, holds } => write!(
                f,
                "{location} is not empty (it holds {holds}): a copy goes into an empty store only, \
                 never merges (a copy that stopped goes on with --resume)"
            ),
            CopyError::Differs(what) => write!(f, "verification failed: {what}"),
            CopyError::Stopped {
                location,
                after,
                cause,
            } => {
                let holds = match after {
                    Some(id) => format!("the users, the tokens and the messages up to {id}"),
                    None => "the users and the tokens, and no message yet".to_string(),
                };
                write!(
                    f,
                    "{cause}\nthe copy stopped there: {location} holds {holds}; the same \
                     command with --resume goes on from there"
                )
            }
        }
    }
}

impl std::error::Error for CopyError {}

/// An error of `store`'s, naming it.
fn failed_at(store: &dyn Backend) -> impl Fn(StoreError) -> CopyError + Copy + '_ {
    move |error| CopyError::Store {
        location: store.location(),
        error,
    }
}

/// Copies every user, token and message of `from` into `to`, which must be empty; ids, hashes,
/// times and bytes are kept. Verify afterwards with [`verify`]. On an error `to` holds what
/// was copied so far, whole batches only ([`CopyError::Stopped`]): [`resume`] goes on from
/// there.
pub fn copy(from: &dyn Backend, to: &dyn Backend) -> Result<Copied, CopyError> {
    let (source, target) = (failed_at(from), failed_at(to));
    refuse_unless_empty(to)?;
    let users = from.export_users().map_err(source)?;
    let tokens = from.export_tokens().map_err(source)?;
    to.import_accounts(&users, &tokens).map_err(target)?;
    let copied = Copied {
        users: users.len(),
        tokens: tokens.len(),
        messages: 0,
        stored_bytes: 0,
    };
    copy_messages(from, to, None, copied)
}

/// Goes on with a [`copy`] that stopped: `to` must hold `from`'s users and tokens and its
/// messages up to some id, as a stopped copy leaves it (or nothing at all); the messages
/// after that id are copied. Verify afterwards with [`verify`], which also finds a target
/// that was something else than a stopped copy of `from`. The counts are of what this call
/// copied.
pub fn resume(from: &dyn Backend, to: &dyn Backend) -> Result<Copied, CopyError> {
    let (source, target) = (failed_at(from), failed_at(to));
    let (users, tokens) = (to.users().map_err(target)?, to.tokens().map_err(target)?);
    let newest = to
        .messages(None, Some(1))
        .map_err(target)?
        .first()
        .map(|m| m.id);
    let copied = Copied {
        users: 0,
        tokens: 0,
        messages: 0,
        stored_bytes: 0,
    };
    if users.is_empty() && tokens.is_empty() && newest.is_none() {
        return copy(from, to);
    }
    if users != from.users().map_err(source)? || tokens != from.tokens().map_err(source)? {
        return Err(CopyError::Differs(format!(
            "{} holds other users or tokens than {}: it is not a copy of it that stopped",
            to.location(),
            from.location()
        )));
    }
    if let Some(newest) = newest {
        match from.raw_message(newest) {
            Ok(_) => {}
            Err(StoreError::NoSuchMessage(_)) => {
                return Err(CopyError::Differs(format!(
                    "{} holds message {newest}, which {} does not: it is not a copy of it \
                     that stopped",
                    to.location(),
                    from.location()
                )));
            }
            Err(error) => return Err(source(error)),
        }
    }
    copy_messages(from, to, newest, copied)
}

/// Copies `from`'s messages after `after` (all: `None`), a batch at a time; `copied` so far.
fn copy_messages(
    from: &dyn Backend,
    to: &dyn Backend,
    mut after: Option<MessageId>,
    mut copied: Copied,
) -> Result<Copied, CopyError> {
    let (source, target) = (failed_at(from), failed_at(to));
    let stopped = |after: Option<MessageId>, cause: CopyError| CopyError::Stopped {
        location: to.location(),
        after,
        cause: Box::new(cause),
    };
    loop {
        let batch = from
            .export_messages(after, COPY_BATCH_BYTES)
            .map_err(|e| stopped(after, source(e)))?;
        let Some(last) = batch.last() else {
            return Ok(copied);
        };
        let last = last.id();
        let (count, bytes) = (
            batch.len() as u64,
            batch.iter().map(|m| m.stored_len() as u64).sum::<u64>(),
        );
        to.import_messages(batch)
            .map_err(|e| stopped(after, target(e)))?;
        after = Some(last);
        copied.messages += count;
        copied.stored_bytes += bytes;
    }
}

/// Checks that `to` holds what `from` does: the same users (names, status, times) and tokens
/// (names, times), and the same messages, page by page (ids and listed fields), each with raw
/// bytes of the same SHA-256. Reports the lowest id whose bytes differ.
pub fn verify(from: &dyn Backend, to: &dyn Backend) -> Result<Verified, CopyError> {
    let (source, target) = (failed_at(from), failed_at(to));
    let users = from.users().map_err(source)?;
    if users != to.users().map_err(target)? {
        return Err(CopyError::Differs("the users differ".into()));
    }
    let tokens = from.tokens().map_err(source)?;
    if tokens != to.tokens().map_err(target)? {
        return Err(CopyError::Differs("the tokens differ".into()));
    }
    let mut verified = Verified {
        users: users.len(),
        tokens: tokens.len(),
        messages: 0,
        raw_bytes: 0,
        sha256: String::new(),
    };
    let mut all = Context::new(&SHA256);
    let mut differing: Option<(u64, u64)> = None; // (lowest id, how many)
    let mut before = None;
    loop {
        let page = from
            .messages_page(None, before, VERIFY_PAGE)
            .map_err(source)?;
        let theirs = to
            .messages_page(None, before, VERIFY_PAGE)
            .map_err(target)?;
        if let Some(first) = first_difference(&page.messages, &theirs.messages) {
            return Err(CopyError::Differs(format!(
                "message {first}: listed differently (or missing) on one side"
            )));
        }
        if page.more != theirs.more {
            return Err(CopyError::Differs(format!(
                "one side has messages below {} that the other lacks",
                page.messages.last().map_or(0, |m| m.id.0)
            )));
        }
        for summary in &page.messages {
            let id = summary.id;
            let ours = from.raw_message(id).map_err(source)?;
            let (digest, len) = (sha256(&ours), ours.len() as u64);
            drop(ours);
            let same = match to.raw_message(id) {
                Ok(raw) => sha256(&raw) == digest,
                Err(StoreError::NoSuchMessage(_)) => false,
                Err(error) => return Err(target(error)),
            };
            if !same {
                let (lowest, count) = differing.unwrap_or((id.0, 0));
                differing = Some((lowest.min(id.0), count + 1));
            }
            all.update(&id.0.to_be_bytes());
            all.update(&digest);
            verified.messages += 1;
            verified.raw_bytes += len;
        }
        match page.messages.last() {
            Some(last) if page.more => before = Some(last.id),
            _ => break,
        }
    }
    if let Some((lowest, count)) = differing {
        return Err(CopyError::Differs(format!(
            "the raw bytes of message {lowest} differ (SHA-256), and of {count} message(s) in all"
        )));
    }
    verified.sha256 = hex(all.finish().as_ref());
    Ok(verified)
}

/// Refuses a store that holds a user, a token or a message.
fn refuse_unless_empty(to: &dyn Backend) -> Result<(), CopyError> {
    let failed = |error| CopyError::Store {
        location: to.location(),
        error,
    };
    let users = to.users().map_err(failed)?.len();
    let tokens = to.tokens().map_err(failed)?.len();
    let messages = to.messages(None, Some(1)).map_err(failed)?.len();
    if users + tokens + messages == 0 {
        return Ok(());
    }
    let holds = match (users, tokens, messages) {
        (_, _, 1..) => "messages".to_string(),
        (1.., _, _) => format!("{users} user(s)"),
        _ => format!("{tokens} token(s)"),
    };
    Err(CopyError::NotEmpty {
        location: to.location(),
        holds,
    })
}

/// The id of the first entry where two lists differ, or where one ends first.
fn first_difference(
    ours: &[crate::MessageSummary],
    theirs: &[crate::MessageSummary],
) -> Option<MessageId> {
    ours.iter()
        .zip(theirs)
        .find(|(a, b)| a != b)
        .map(|(a, _)| a.id)
        .or_else(|| {
            let n = ours.len().min(theirs.len());
            ours.get(n).or_else(|| theirs.get(n)).map(|m| m.id)
        })
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(ring::digest::digest(&SHA256, bytes).as_ref());
    out
}
