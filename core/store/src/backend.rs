//! The store as the server and the command line use it: one trait, [`Backend`], with the redb
//! implementation ([`Store`], embedded, the default) and the PostgreSQL one side by side, and
//! one conformance suite (`testing::conformance`) that both must pass.
//!
//! Each method means the same on every backend: the same errors for the same mistakes, the
//! same ids in the same order, the same durability (a delivery returns only once its
//! transaction has committed). What differs is kept out of the trait: redb's journal and
//! file, PostgreSQL's connections.

use std::time::{Duration, SystemTime};

use atacama_core::smtp::MessageId;

use crate::copy::{ExportedMessage, ExportedToken, ExportedUser};
use crate::{
    Chain, Health, MessagePage, MessageSummary, NewMessage, PackedMessage, Page, Store, StoreError,
    StoredMessage, Token, User,
};

/// Whether a user read for MAIL is active; `None`: there is no such user.
pub(crate) fn login_of(found: Result<User, StoreError>) -> Result<Option<bool>, StoreError> {
    match found {
        Ok(user) => Ok(Some(user.active)),
        Err(StoreError::NoSuchUser(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

/// What a store does, whatever holds the data. Object-safe: the server holds an
/// `Arc<dyn Backend>`.
pub trait Backend: Send + Sync + std::fmt::Debug {
    // --- What it is ---

    /// The bcrypt cost new and changed passwords are hashed at.
    fn bcrypt_cost(&self) -> u32;

    /// The channel of messages stored before channels existed.
    fn legacy_channel(&self) -> &str;

    /// Where the data is, for the log and the command line: a file, or a database URL without
    /// its password.
    fn location(&self) -> String;

    // --- Health ---

    /// Whether the store can take deliveries now.
    fn health(&self) -> Health;

    /// Tries to make a broken store usable again when that is due; the server calls it on a
    /// timer. Cheap when the store works.
    fn recover(&self) -> Health;

    /// How long recovery may fail before [`Health::Failed`].
    fn set_give_up_after(&self, after: Duration);

    /// Messages acknowledged before a crash that the open recovered (redb's journal); zero
    /// where the database itself recovers them.
    fn recovered(&self) -> usize {
        0
    }

    /// Makes what is durable elsewhere (redb's journal) durable in the database too; false
    /// if there was nothing to do. The committer calls it when idle.
    fn checkpoint(&self) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Whether a read waits on the network (a database server), not on a local file: an
    /// async runtime then moves even a short read, such as MAIL's check of the login, off
    /// the threads that run the sessions, since one round trip there (or a wait for a pooled
    /// connection) would hold up every session on the thread.
    fn reads_wait_on_network(&self) -> bool {
        false
    }

    /// How many delivery transactions may be committing at once. redb has one writer; a
    /// database server takes several, each on a connection of its own, and flushes their
    /// commits together, so the committer runs that many commit threads.
    fn concurrent_commits(&self) -> usize {
        1
    }

    // --- Users ---

    /// Adds a user; [`StoreError::UserExists`] if the name is taken.
    fn add_user(&self, name: &str, password: &str, now: SystemTime) -> Result<(), StoreError>;

    /// Replaces a user's password.
    fn set_password(&self, name: &str, password: &str, now: SystemTime) -> Result<(), StoreError>;

    /// Lets a disabled user log in again.
    fn enable_user(&self, name: &str, now: SystemTime) -> Result<(), StoreError>;

    /// Stops a user from logging in; their messages stay.
    fn disable_user(&self, name: &str, now: SystemTime) -> Result<(), StoreError>;

    /// Removes a user; their messages stay.
    fn delete_user(&self, name: &str) -> Result<(), StoreError>;

    /// Every user, by name.
    fn users(&self) -> Result<Vec<User>, StoreError>;

    /// One user.
    fn user(&self, name: &str) -> Result<User, StoreError>;

    /// Whether `name` is a user, and active: what MAIL asks of its session's login. A store
    /// may answer from what it knows to be current ([`Backend::login_active_now`]).
    fn login_active(&self, name: &str) -> Result<bool, StoreError> {
        Ok(login_of(self.user(name))?.unwrap_or(false))
    }

    /// [`Backend::login_active`] if it is answered without waiting on the network; `None`:
    /// ask [`Backend::login_active`] where a thread may wait.
    fn login_active_now(&self, name: &str) -> Option<Result<bool, StoreError>> {
        (!self.reads_wait_on_network()).then(|| self.login_active(name))
    }

    /// Whether `password` is an active user's: a bcrypt verification, as long for an
    /// unknown or disabled user as for a known one.
    fn verify_user(&self, name: &str, password: &str) -> Result<bool, StoreError>;

    // --- Read tokens ---

    /// Adds a token and returns it; only its hash is kept.
    fn add_token(&self, name: &str, now: SystemTime) -> Result<String, StoreError>;

    /// Every token, by name (never the token).
    fn tokens(&self) -> Result<Vec<Token>, StoreError>;

    /// Removes a token.
    fn revoke_token(&self, name: &str) -> Result<(), StoreError>;

    /// Whether `token` is one that was added and not revoked.
    fn token_valid(&self, token: &str) -> Result<bool, StoreError>;

    // --- Deliveries ---

    /// Stores packed messages in one transaction and returns their ids, in order, once it
    /// has committed durably: all or none. A message threads under the one stored earlier,
    /// in this batch or before, whose Message-ID its In-Reply-To names (the first stored, if
    /// several share it).
    fn insert_packed(&self, messages: Vec<PackedMessage>) -> Result<Vec<MessageId>, StoreError>;

    /// [`Backend::insert_packed`] for messages not yet packed.
    fn insert_messages(&self, messages: &[NewMessage]) -> Result<Vec<MessageId>, StoreError> {
        let packed = messages
            .iter()
            .map(|message| message.clone().pack())
            .collect::<Result<Vec<_>, _>>()?;
        self.insert_packed(packed)
    }

    /// One message; returns once it has committed durably.
    fn insert_message(&self, message: &NewMessage) -> Result<MessageId, StoreError> {
        let ids = self.insert_messages(std::slice::from_ref(message))?;
        ids.first()
            .copied()
            .ok_or_else(|| StoreError::Database("batch insert returned no id".into()))
    }

    // --- Reads ---

    /// One message's fields.
    fn message(&self, id: MessageId) -> Result<StoredMessage, StoreError>;

    /// The bytes as stored: our `Received:` header, then the data exactly as received.
    fn raw_message(&self, id: MessageId) -> Result<Vec<u8>, StoreError>;

    /// One page of the list: newest first, optionally only `user`'s, only ids below
    /// `before`, at most `limit`; and whether older ones match too.
    fn messages_page(
        &self,
        user: Option<&str>,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<MessagePage, StoreError>;

    /// Messages newest first, optionally only `user`'s, at most `limit` of them.
    fn messages(
        &self,
        user: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<MessageSummary>, StoreError> {
        Ok(self
            .messages_page(user, None, limit.unwrap_or(usize::MAX))?
            .messages)
    }

    /// The newest messages of `channels` below `before`, at most `limit` (capped at
    /// [`crate::MAX_PAGE`]), with their text and HTML; and whether older ones match too.
    fn page(
        &self,
        channels: &[&str],
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// Message `id` with its visible ancestors and direct replies
    /// ([`crate::MAX_CHAIN_DEPTH`], [`crate::MAX_CHAIN_REPLIES`]);
    /// [`StoreError::NoSuchMessage`] if it is missing or in none of `channels`.
    fn chain(&self, id: MessageId, channels: &[&str]) -> Result<Chain, StoreError>;

    /// The channel of message `id`, without its body; `None` if there is no such message.
    fn message_channel(&self, id: MessageId) -> Result<Option<String>, StoreError>;

    // --- Copying (`crate::copy`) ---

    /// Every user as stored, bcrypt hash included, by name.
    fn export_users(&self) -> Result<Vec<ExportedUser>, StoreError> {
        Err(cannot_copy(self))
    }

    /// Every token as stored (its hash), by name.
    fn export_tokens(&self) -> Result<Vec<ExportedToken>, StoreError> {
        Err(cannot_copy(self))
    }

    /// The messages after `after` in id order, as stored, rows included, until they hold
    /// `max_bytes` (one larger message comes alone); empty once there are no more.
    fn export_messages(
        &self,
        after: Option<MessageId>,
        max_bytes: usize,
    ) -> Result<Vec<ExportedMessage>, StoreError> {
        let _ = (after, max_bytes);
        Err(cannot_copy(self))
    }

    /// Adds users and tokens exported from another store, hashes and times as they were, in
    /// one transaction; refuses a taken name.
    fn import_accounts(
        &self,
        users: &[ExportedUser],
        tokens: &[ExportedToken],
    ) -> Result<(), StoreError> {
        let _ = (users, tokens);
        Err(cannot_copy(self))
    }

    /// Stores exported messages under their own ids, in one transaction, durable on return;
    /// refuses a taken id. Later deliveries get ids above the largest.
    fn import_messages(&self, batch: Vec<ExportedMessage>) -> Result<(), StoreError> {
        drop(batch);
        Err(cannot_copy(self))
    }
}

/// What the copy methods of a backend without them answer.
fn cannot_copy(backend: &(impl Backend + ?Sized)) -> StoreError {
    StoreError::Database(format!("{} cannot be copied", backend.location()))
}

impl Backend for Store {
    fn bcrypt_cost(&self) -> u32 {
        Store::bcrypt_cost(self)
    }

    fn legacy_channel(&self) -> &str {
        Store::legacy_channel(self)
    }

    fn location(&self) -> String {
        self.path().display().to_string()
    }

    fn health(&self) -> Health {
        Store::health(self)
    }

    fn recover(&self) -> Health {
        Store::recover(self)
    }

    fn set_give_up_after(&self, after: Duration) {
        Store::set_give_up_after(self, after)
    }

    fn recovered(&self) -> usize {
        Store::recovered(self)
    }

    fn checkpoint(&self) -> Result<bool, StoreError> {
        Store::checkpoint(self)
    }

    fn add_user(&self, name: &str, password: &str, now: SystemTime) -> Result<(), StoreError> {
        Store::add_user(self, name, password, now)
    }

    fn set_password(&self, name: &str, password: &str, now: SystemTime) -> Result<(), StoreError> {
        Store::set_password(self, name, password, now)
    }

    fn enable_user(&self, name: &str, now: SystemTime) -> Result<(), StoreError> {
        Store::enable_user(self, name, now)
    }

    fn disable_user(&self, name: &str, now: SystemTime) -> Result<(), StoreError> {
        Store::disable_user(self, name, now)
    }

    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        Store::delete_user(self, name)
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        Store::users(self)
    }

    fn user(&self, name: &str) -> Result<User, StoreError> {
        Store::user(self, name)
    }

    fn verify_user(&self, name: &str, password: &str) -> Result<bool, StoreError> {
        Store::verify_user(self, name, password)
    }

    fn add_token(&self, name: &str, now: SystemTime) -> Result<String, StoreError> {
        Store::add_token(self, name, now)
    }

    fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        Store::tokens(self)
    }

    fn revoke_token(&self, name: &str) -> Result<(), StoreError> {
        Store::revoke_token(self, name)
    }

    fn token_valid(&self, token: &str) -> Result<bool, StoreError> {
        Store::token_valid(self, token)
    }

    fn insert_packed(&self, messages: Vec<PackedMessage>) -> Result<Vec<MessageId>, StoreError> {
        Store::insert_packed(self, messages)
    }

    fn message(&self, id: MessageId) -> Result<StoredMessage, StoreError> {
        Store::message(self, id)
    }

    fn raw_message(&self, id: MessageId) -> Result<Vec<u8>, StoreError> {
        Store::raw_message(self, id)
    }

    fn messages_page(
        &self,
        user: Option<&str>,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        Store::messages_page(self, user, before, limit)
    }

    fn page(
        &self,
        channels: &[&str],
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        Store::page(self, channels, before, limit)
    }

    fn chain(&self, id: MessageId, channels: &[&str]) -> Result<Chain, StoreError> {
        Store::chain(self, id, channels)
    }

    fn message_channel(&self, id: MessageId) -> Result<Option<String>, StoreError> {
        Store::message_channel(self, id)
    }

    fn export_users(&self) -> Result<Vec<ExportedUser>, StoreError> {
        Store::export_users(self)
    }

    fn export_tokens(&self) -> Result<Vec<ExportedToken>, StoreError> {
        Store::export_tokens(self)
    }

    fn export_messages(
        &self,
        after: Option<MessageId>,
        max_bytes: usize,
    ) -> Result<Vec<ExportedMessage>, StoreError> {
        Store::export_messages(self, after, max_bytes)
    }

    fn import_accounts(
        &self,
        users: &[ExportedUser],
        tokens: &[ExportedToken],
    ) -> Result<(), StoreError> {
        Store::import_accounts(self, users, tokens)
    }

    fn import_messages(&self, batch: Vec<ExportedMessage>) -> Result<(), StoreError> {
        Store::import_messages(self, batch)
    }
}
