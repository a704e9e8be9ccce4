//! The web side's reads: pages of a set of channels, newest first, and the chain of a
//! message. Each is one read transaction, so it never waits on the commit thread, and reads
//! a bounded number of index entries: never a whole table.

use std::ops::Bound;

use redb::{ReadOnlyTable, ReadTransaction, ReadableDatabase};

use super::messages::{envelope, read_stored};
use super::schema::{BY_CHANNEL, CHILDREN, MESSAGES};
use super::{Store, StoreError, StoredMessage};
use atacama_core::smtp::MessageId;

/// The most messages one page may ask for: each comes with its text and HTML.
pub const MAX_PAGE: usize = 100;

/// The most ancestors a chain follows up from its message (the root is the last reached).
pub const MAX_CHAIN_DEPTH: usize = 1000;

/// The most direct replies a chain lists (the oldest ones).
pub const MAX_CHAIN_REPLIES: usize = 1000;

/// One page of messages ([`Store::page`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The messages, newest first, with their text and HTML.
    pub messages: Vec<StoredMessage>,
    /// Whether older messages match too: the next page is `before` the last id here.
    pub more: bool,
}

/// A message with its ancestors and direct replies ([`Store::chain`]), each in one of the
/// channels asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The ancestors, the root first, down to the message's parent.
    pub ancestors: Vec<StoredMessage>,
    /// The message asked for.
    pub message: StoredMessage,
    /// Its direct replies, oldest first.
    pub replies: Vec<StoredMessage>,
}

impl Store {
    /// The newest messages of `channels`, only those whose id is below `before`, at most
    /// `limit` (capped at [`MAX_PAGE`]) of them, newest first; and whether older ones match too.
    /// One channel for a channel's page, the visible ones for the stream; the feeds are the
    /// first page of 20. Reads at most `limit + 1` entries of the channel index, plus one per
    /// channel.
    pub fn page(
        &self,
        channels: &[&str],
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let limit = limit.min(MAX_PAGE);
        let below = before.map_or(u64::MAX, |id| id.0);
        self.with_recovered_db(|db| {
            let tx = db.begin_read()?;
            let by_channel = tx.open_table(BY_CHANNEL)?;
            // One descending range per channel, merged by id: the newest head goes first.
            let mut ranges = Vec::with_capacity(channels.len());
            for channel in dedup(channels) {
                let range = by_channel.range((
                    Bound::Included((channel, 0)),
                    Bound::Excluded((channel, below)),
                ))?;
                ranges.push(range.rev().peekable());
            }
            let mut ids = Vec::with_capacity(limit.saturating_add(1));
            while ids.len() <= limit {
                let mut newest: Option<(usize, u64)> = None;
                for (n, range) in ranges.iter_mut().enumerate() {
                    let head = match range.peek() {
                        None => continue,
                        Some(Err(_)) => {
                            // Take the error out and report it.
                            if let Some(Err(error)) = range.next() {
                                return Err(error.into());
                            }
                            continue;
                        }
                        Some(Ok((key, _))) => key.value().1,
                    };
                    if newest.is_none_or(|(_, id)| head > id) {
                        newest = Some((n, head));
                    }
                }
                let Some((n, id)) = newest else { break };
                if let Some(range) = ranges.get_mut(n) {
                    range.next();
                }
                ids.push(id);
            }
            let more = ids.len() > limit;
            ids.truncate(limit);
            let messages = ids
                .into_iter()
                .map(|id| self.stored_in(&tx, MessageId(id)))
                .collect::<Result<_, _>>()?;
            Ok(Page { messages, more })
        })
    }

    /// Message `id` with its ancestors (from the root down, following `parent_id` at most
    /// [`MAX_CHAIN_DEPTH`] steps) and its direct replies (oldest first, at most
    /// [`MAX_CHAIN_REPLIES`]), those of them in `channels`; [`StoreError::NoSuchMessage`]
    /// if the message is missing or in none of them. An ancestor outside `channels` is left
    /// out and the walk goes on above it.
    pub fn chain(&self, id: MessageId, channels: &[&str]) -> Result<Chain, StoreError> {
        self.with_recovered_db(|db| {
            let tx = db.begin_read()?;
            let messages = tx.open_table(MESSAGES)?;
            let visible = |channel: Option<&str>| {
                channels.contains(&channel.unwrap_or(self.legacy_channel()))
            };
            let record = match messages.get(id.0)? {
                Some(value) => envelope(value.value())?,
                None => return Err(StoreError::NoSuchMessage(id.0)),
            };
            if !visible(record.channel.as_deref()) {
                return Err(StoreError::NoSuchMessage(id.0));
            }
            let above = visible_ancestors(id, record.parent_id, |up| {
                let Some(value) = messages.get(up)? else {
                    return Ok(None);
                };
                let record = envelope(value.value())?;
                Ok(Some((visible(record.channel.as_deref()), record.parent_id)))
            })?;
            let ancestors = above
                .into_iter()
                .rev()
                .map(|up| self.stored_in(&tx, MessageId(up)))
                .collect::<Result<_, _>>()?;
            let message = self.stored_in(&tx, id)?;
            let replies = self.replies(&tx, &messages, id, &visible)?;
            Ok(Chain {
                ancestors,
                message,
                replies,
            })
        })
    }

    /// The channel of message `id`, without reading its body (to tell whether a parent is
    /// visible); `None` if there is no such message.
    pub fn message_channel(&self, id: MessageId) -> Result<Option<String>, StoreError> {
        self.with_recovered_db(|db| {
            let tx = db.begin_read()?;
            let messages = tx.open_table(MESSAGES)?;
            let Some(value) = messages.get(id.0)? else {
                return Ok(None);
            };
            let channel = envelope(value.value())?.channel;
            Ok(Some(
                channel.unwrap_or_else(|| self.legacy_channel().to_string()),
            ))
        })
    }

    /// The visible direct replies of `id`, oldest first.
    fn replies(
        &self,
        tx: &ReadTransaction,
        messages: &ReadOnlyTable<u64, &'static [u8]>,
        id: MessageId,
        visible: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let children = tx.open_table(CHILDREN)?;
        let mut replies = Vec::new();
        for entry in children.range((id.0, 0)..=(id.0, u64::MAX))? {
            if replies.len() >= MAX_CHAIN_REPLIES {
                break;
            }
            let reply = entry?.0.value().1;
            let Some(value) = messages.get(reply)? else {
                continue;
            };
            if visible(envelope(value.value())?.channel.as_deref()) {
                replies.push(self.stored_in(tx, MessageId(reply))?);
            }
        }
        Ok(replies)
    }

    /// Message `id` with its text and HTML, read in `tx`; a missing one is a damaged index.
    fn stored_in(&self, tx: &ReadTransaction, id: MessageId) -> Result<StoredMessage, StoreError> {
        read_stored(tx, id, self.legacy_channel())
    }
}

/// The ancestors of message `id`, whose parent is `parent`, that are visible: nearest first,
/// at most [`MAX_CHAIN_DEPTH`] of them. `up(ancestor)` tells whether one is visible and its
/// parent, or `None` if it is not stored; the walk goes on above a hidden one.
pub(crate) fn visible_ancestors(
    id: MessageId,
    parent: Option<u64>,
    mut up: impl FnMut(u64) -> Result<Option<(bool, Option<u64>)>, StoreError>,
) -> Result<Vec<u64>, StoreError> {
    let mut above = Vec::new();
    let (mut child, mut parent) = (id.0, parent);
    while let Some(ancestor) = parent {
        // Ids grow: a parent is always older. Anything else is a damaged record, and must not
        // make a loop.
        if ancestor >= child || above.len() >= MAX_CHAIN_DEPTH {
            break;
        }
        let Some((visible, next)) = up(ancestor)? else {
            break;
        };
        if visible {
            above.push(ancestor);
        }
        (child, parent) = (ancestor, next);
    }
    Ok(above)
}

/// `channels` without repeats, in order (a repeated channel would list its messages twice).
fn dedup<'a>(channels: &[&'a str]) -> Vec<&'a str> {
    let mut unique: Vec<&str> = Vec::with_capacity(channels.len());
    for channel in channels {
        if !unique.contains(channel) {
            unique.push(channel);
        }
    }
    unique
}

#[cfg(test)]
mod tests;
