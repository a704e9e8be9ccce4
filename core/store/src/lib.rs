//! Atacama Mail's storage (`atacama-store`): users and messages in one redb file, the delivery
//! journal beside it, and the data directory that holds both ([`data_dir`]). It is the only
//! crate that touches the database, and it does nothing else: it never opens a socket, speaks
//! a protocol or decides what a message says (the pure core, `atacama_core`, parses and
//! renders; the server, `atacama-server`, decides when to write and answers the clients).
//!
//! Two backends behind one trait, [`Backend`]: [`Store`], the redb file described below (the
//! default: embedded, nothing to run), and [`pg::PgStore`], a PostgreSQL database that several
//! daemons share. Both write the same packed message values (`packed`) and pass one
//! conformance suite (`testing::conformance`).
//!
//! The redb tables hold users (JSON),
//! messages (one value each: JSON fields, our `Received:` header, and the data, text and HTML
//! compressed together; a body past about 1 MiB in rows of a table of its own, `packed`), and
//! indexes by Message-ID (threading) and by user. The file carries a schema version
//! ([`SCHEMA_VERSION`]); an older file is read and upgraded, any other refused.
//!
//! # Durability
//! When [`Store::insert_message`] or [`Store::insert_messages`] returns, the message is on disk
//! and the session may send `250` (RFC 5321 §6.1: once a message is accepted, responsibility
//! for it is ours). A batch is one redb write transaction. A batch of one message (one
//! lock-step connection's) commits without an fsync of its own and is made durable by one
//! record in the delivery journal beside the file (`atacama.journal`, `journal`), appended and
//! `fdatasync`ed before the call returns; a batch of several ([`JOURNAL_BATCH_MAX`]) commits
//! durably in redb, one fsync for N messages, which checkpoints the journal too. Now and then
//! (every [`CHECKPOINT_AT`] of journal, after a second without deliveries, and at close) a
//! durable redb commit makes all of it durable in the database too, and the journal starts
//! again. A message whose body is in rows is never journaled: its batch commits durably.
//! After a crash, opening the store applies again, key for key, the records its last durable
//! commit does not hold: a kill -9 loses nothing that was acknowledged. Users and everything
//! else commit durably in redb as before, and so does a batch too large for the journal. Why a
//! journal: ARCHITECTURE.md, "The delivery journal".
//!
//! redb reaches the file through `zeroed::ZeroAhead`, whose thread writes zeros into the holes
//! redb's growth leaves before pages go there, so that an fsync does not also wait for the
//! filesystem's allocation (ARCHITECTURE.md, "Zero-ahead"). The journal is written through one
//! too.
//!
//! # A full disk, or another I/O error
//! After a failed write redb answers every later operation with "Previous I/O error" until
//! the file is closed and opened again: the first `ENOSPC` used to wedge the daemon for good.
//! Now an I/O error marks the store broken ([`StoreError::NoSpace`] for `ENOSPC`/`EDQUOT`, so
//! that the session answers `452 4.3.1`; [`StoreError::Io`] otherwise), each operation fails
//! at once with it, and the store closes the database and opens it again, which takes it back
//! to its last durable commit and replays the journal as after a crash (`recovery` says when:
//! at most once a second, after a full disk only once [`REOPEN_ROOM`] is free). Nothing
//! acknowledged is lost: a journaled batch is durable in the journal, and a batch whose commit
//! failed was never acknowledged. [`Store::health`] tells the server when reopening keeps
//! failing for another reason, so that it exits for systemd to restart it.
//!
//! # One process holds the file
//! The daemon opens the file in redb's single-process mode ([`ConcurrencyMode::ExclusiveWriter`],
//! a whole-file lock): redb's multi-process modes make every commit two-phase, two `fdatasync`
//! where one does (ARCHITECTURE.md, "One process holds the file"). So while the daemon runs,
//! the command line asks it over a Unix socket (`atacama_server::control`) and opens the file
//! itself only when no daemon does. A second open of a held file is refused with
//! [`StoreError::InUse`], in this process or another; [`Store::open_in_waiting`] waits out a
//! command line that holds it for a moment.

mod backend;
pub mod copy;
pub mod data_dir;
mod export;
mod journal;
mod messages;
mod packed;
pub mod pg;
mod reads;
mod recovery;
mod schema;
mod space;
mod tokens;
mod trace;
mod users;
mod zeroed;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::{Builder, ConcurrencyMode, Database};

use atacama_core::channels::{DEFAULT_CHANNEL, channel_name_problem};
use atacama_core::logging::{self, Repeats};
use recovery::Asker;

pub use backend::Backend;
pub use messages::{MessagePage, MessageSummary, NewMessage, PackedMessage, StoredMessage};
pub use packed::BodyWriter;
pub use reads::{Chain, MAX_CHAIN_DEPTH, MAX_CHAIN_REPLIES, MAX_PAGE, Page};
pub use recovery::{GIVE_UP_AFTER, Health, REOPEN_EVERY, REOPEN_ROOM};
pub use schema::SCHEMA_VERSION;
pub use space::free_bytes;
pub use tokens::{MAX_TOKEN_NAME_BYTES, TOKEN_BYTES, Token, validate_token_name};
pub use trace::{ReceivedTrace, rfc3339_utc, rfc5322_date, unix_seconds};
pub use users::{MAX_PASSWORD_BYTES, MAX_USER_NAME_BYTES, User, validate_user_name};

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "atacama.redb";

/// The delivery journal's extension: beside `atacama.redb`, `atacama.journal`.
pub const JOURNAL_EXTENSION: &str = "journal";

pub use journal::{CHECKPOINT_AT, JOURNAL_BATCH_MAX, JOURNAL_BYTES};

/// Memory redb may use for its page cache and write buffer, per open handle.
///
/// redb's default is 1 GiB, and a server that mostly appends fills it: the daemon's PSS was
/// 468 MiB after 5 400 messages of 10 KB. Mail is written once and read back rarely (by the
/// command line, in its own process), so the cache needs little more than one group-commit
/// batch (64 × about 90 KB of pages) and the hot index pages. A bounded cache also reuses its
/// memory, where a growing one faults in and zeroes fresh pages on every commit (9 % of the
/// server's samples in perf). Measured on the 2-core sandbox, fresh data dir on disk, 400
/// messages on 1 connection then 5 000 on 20, two runs each: 20 connections went from
/// 2 604 / 2 657 to 2 964 / 3 117 msg/s (smol) and 2 530 / 2 753 to 2 857 / 2 831 (std), with
/// PSS after the run 467 → 27 MiB. 8, 32 and 128 MiB did as well as 16 on msg/s.
pub const CACHE_BYTES: usize = 16 << 20;

/// How long to pause between attempts to open a file in use.
pub const IN_USE_RETRY: Duration = Duration::from_millis(20);

/// What went wrong in the store. Each variant names the thing it is about. Serialisable: the
/// daemon sends it to the command line over the control socket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StoreError {
    /// `user add` for a name that is taken.
    UserExists(String),
    /// No user of that name.
    NoSuchUser(String),
    /// No message with that id.
    NoSuchMessage(u64),
    /// The user name is empty, too long, or holds whitespace or control characters.
    InvalidUserName(String),
    /// A message's channel is not a channel name (`[a-z0-9-]{1,32}`).
    InvalidChannel(String),
    /// `token add` for a name that is taken.
    TokenExists(String),
    /// No token of that name.
    NoSuchToken(String),
    /// The token name is empty, too long, or holds other than letters, digits, `-`, `_`, `.`.
    InvalidTokenName(String),
    /// Passwords of 72 bytes or more are refused: bcrypt would silently ignore the rest.
    PasswordTooLong,
    /// An empty password is refused.
    PasswordEmpty,
    /// The file was written by a different schema version of Atacama Mail.
    SchemaVersion {
        /// The version stored in the file.
        found: u64,
        /// The version this build reads and writes.
        expected: u64,
    },
    /// Another handle, in this process or another, has the file open: a running server, or a
    /// command line for the moment it runs.
    InUse(String),
    /// A stored record could not be decoded.
    Corrupt(String),
    /// bcrypt refused to hash (for example a cost outside 4..=31).
    Hash(String),
    /// redb failed (other than by an I/O error).
    Database(String),
    /// The file system is full, or a quota is reached (`ENOSPC`, `EDQUOT`). The database is
    /// reopened once there is room ([`Store::health`]).
    NoSpace(String),
    /// Reading or writing the files failed (`EIO`, …), or an earlier such failure left the
    /// database unusable until it is reopened ([`Store::health`]).
    Io(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::UserExists(name) => write!(f, "user {name:?} already exists"),
            StoreError::NoSuchUser(name) => write!(f, "no user named {name:?}"),
            StoreError::NoSuchMessage(id) => write!(f, "no message with id {id}"),
            StoreError::InvalidUserName(problem) => write!(f, "invalid user name: {problem}"),
            StoreError::InvalidChannel(problem) => write!(f, "invalid channel name: {problem}"),
            StoreError::TokenExists(name) => write!(f, "token {name:?} already exists"),
            StoreError::NoSuchToken(name) => write!(f, "no token named {name:?}"),
            StoreError::InvalidTokenName(problem) => write!(f, "invalid token name: {problem}"),
            StoreError::PasswordTooLong => write!(
                f,
                "password is longer than {MAX_PASSWORD_BYTES} bytes (bcrypt would ignore the rest)"
            ),
            StoreError::PasswordEmpty => write!(f, "password is empty"),
            StoreError::SchemaVersion { found, expected } => write!(
                f,
                "database schema version {found} is not supported by this build \
                 (expected {expected})"
            ),
            StoreError::InUse(path) => write!(f, "{path} is open in another process"),
            StoreError::Corrupt(what) => write!(f, "corrupt database record: {what}"),
            StoreError::Hash(problem) => write!(f, "password hashing failed: {problem}"),
            StoreError::Database(problem) => write!(f, "database error: {problem}"),
            StoreError::NoSpace(problem) => write!(f, "out of disk space: {problem}"),
            StoreError::Io(problem) => write!(f, "I/O error: {problem}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// An I/O error, as [`StoreError::NoSpace`] if the disk or a quota is full, else as
    /// [`StoreError::Io`]; `context` (a file name) goes first when there is one.
    pub fn from_io(error: &io::Error, context: Option<&Path>) -> StoreError {
        let problem = match context {
            Some(path) => format!("{}: {error}", path.display()),
            None => error.to_string(),
        };
        match error.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                StoreError::NoSpace(problem)
            }
            // Made up by redb, not the system: "not a redb database" and the like.
            _ if error.raw_os_error().is_none() => StoreError::Database(problem),
            _ => StoreError::Io(problem),
        }
    }

    /// Whether the error may have left the database unusable, so that it must be reopened:
    /// redb fails every operation after a failed write until it is.
    pub fn needs_reopen(&self) -> bool {
        matches!(self, StoreError::NoSpace(_) | StoreError::Io(_))
    }
}

/// redb's errors, with its I/O errors told apart: they decide the reply (`452` for a full
/// disk) and whether the database is reopened.
fn from_redb(error: redb::Error) -> StoreError {
    match error {
        redb::Error::Io(error) => StoreError::from_io(&error, None),
        redb::Error::PreviousIo | redb::Error::DatabaseClosed | redb::Error::Backend(_) => {
            StoreError::Io(error.to_string())
        }
        error => StoreError::Database(error.to_string()),
    }
}

macro_rules! database_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                from_redb(error.into())
            }
        }
    )*};
}

database_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// An open database. Cheap to share by reference across threads (`Send + Sync`).
///
/// Locks, always taken in this order: `delivering`, `recovery`, `db` (its write half only to
/// reopen the database).
pub struct Store {
    /// `None` only while a reopen is under way, or after it failed.
    db: RwLock<Option<Open>>,
    path: PathBuf,
    bcrypt_cost: u32,
    /// Verified against for unknown and disabled users: same cost, same work.
    dummy_hash: String,
    /// Messages that only the journal held when this store was opened, now in the database.
    recovered: usize,
    /// The schema version the file had when it was opened (0: new).
    schema_found: u64,
    /// The channel of messages stored before schema 5 (`schema`): read from the file.
    legacy_channel: String,
    /// Held by a delivery from its write transaction to its journal record's sync.
    delivering: Mutex<Delivering>,
    /// Set while an I/O error has left the database unusable: the one check on the fast path.
    broken: AtomicBool,
    /// Counts the reopens, so that a failure seen on a database since replaced is ignored.
    generation: AtomicU64,
    /// When to reopen, and the log lines about it.
    recovery: Mutex<Watch>,
}

/// The database and what its backend knows of its I/O errors.
#[derive(Debug)]
struct Open {
    db: Database,
    last_error: std::sync::Arc<zeroed::LastError>,
}

/// The recovery's bookkeeping and its log lines, each held back while it repeats.
#[derive(Debug)]
struct Watch {
    recovery: recovery::Recovery,
    broke: Repeats,
    reopened: Repeats,
    reopen_failed: Repeats,
}

/// The journal and what the store knows about it.
#[derive(Debug)]
struct Delivering {
    journal: journal::Journal,
    /// The sequence number the next journaled batch gets; above every one in the journal.
    next_seq: u64,
    /// False once an append failed and the checkpoint after it did too: the journal may hold
    /// a gap, so batches commit durably in redb until a checkpoint succeeds.
    usable: bool,
    /// `journal append failed` lines, held back while they repeat.
    append_failed: Repeats,
    /// `checkpoint failed` lines, held back while they repeat.
    checkpoint_failed: Repeats,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("bcrypt_cost", &self.bcrypt_cost)
            .finish()
    }
}

impl Store {
    /// Opens the database at `path`, creating it (but not its directory) if missing.
    ///
    /// A new file is created readable by its owner only: it holds password hashes and mail.
    /// New and changed passwords are hashed at `bcrypt_cost` (4..=31); unknown and disabled
    /// users are verified against a dummy hash of that cost. One handle at a time may have the
    /// file open; while one does, others get [`StoreError::InUse`].
    ///
    /// A file of an older schema is migrated; its messages get [`DEFAULT_CHANNEL`]
    /// ([`Store::open_with_channel`] names another).
    pub fn open(path: &Path, bcrypt_cost: u32) -> Result<Store, StoreError> {
        Store::open_with_channel(path, bcrypt_cost, DEFAULT_CHANNEL)
    }

    /// [`Store::open`]; the messages of a file from before channels (schema 4 or older) get
    /// `default_channel` (the configured `channels.default`), recorded in the file as the
    /// channel of every message stored without one. A file already migrated keeps the channel
    /// it was migrated with.
    pub fn open_with_channel(
        path: &Path,
        bcrypt_cost: u32,
        default_channel: &str,
    ) -> Result<Store, StoreError> {
        check_open_args(bcrypt_cost, default_channel)?;
        let open = open_database(path)?;
        let db = &open.db;
        let schema_found = schema::check_or_initialise(db, default_channel)?;
        let legacy_channel =
            schema::legacy_channel(db)?.unwrap_or_else(|| default_channel.to_string());
        let journal_path = path.with_extension(JOURNAL_EXTENSION);
        let opened = |e: io::Error| StoreError::from_io(&e, Some(&journal_path));
        let created = !journal_path.exists();
        let key = schema::journal_key(db)?;
        let (journal, records) =
            journal::Journal::open(open_private_file(&journal_path).map_err(opened)?, key)
                .map_err(opened)?;
        if created {
            // The journal's name must survive a crash as surely as its records.
            sync_parent(&journal_path).map_err(opened)?;
        }
        let (next_seq, recovered) = messages::replay(db, &records, &legacy_channel)?;
        Ok(Store {
            db: RwLock::new(Some(open)),
            path: path.to_path_buf(),
            bcrypt_cost,
            dummy_hash: users::dummy_hash(bcrypt_cost),
            recovered,
            schema_found,
            legacy_channel,
            delivering: Mutex::new(Delivering {
                journal,
                next_seq,
                usable: true,
                append_failed: Repeats::new(),
                checkpoint_failed: Repeats::new(),
            }),
            broken: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            recovery: Mutex::new(Watch {
                recovery: recovery::Recovery::new(GIVE_UP_AFTER),
                broke: Repeats::new(),
                reopened: Repeats::new(),
                reopen_failed: Repeats::new(),
            }),
        })
    }

    /// Opens `data_dir/atacama.redb`, creating the directory (mode 0700) and the file if missing.
    /// The verdict on the directory is the caller's: [`crate::data_dir::DataDir::prepare`].
    pub fn open_in(data_dir: &Path, bcrypt_cost: u32) -> Result<Store, StoreError> {
        Store::open_in_with_channel(data_dir, bcrypt_cost, DEFAULT_CHANNEL)
    }

    /// [`Store::open_in`] with the default channel of [`Store::open_with_channel`].
    pub fn open_in_with_channel(
        data_dir: &Path,
        bcrypt_cost: u32,
        default_channel: &str,
    ) -> Result<Store, StoreError> {
        data_dir::create(data_dir)
            .map_err(|e| StoreError::Database(format!("{}: {e}", data_dir.display())))?;
        Store::open_with_channel(&data_dir.join(DATABASE_FILE), bcrypt_cost, default_channel)
    }

    /// [`Store::open_in`], trying again while the file is [in use](StoreError::InUse), for up to
    /// `wait`: a command line holds it for as long as its command takes (a bcrypt hash at most).
    /// `default_channel`: as for [`Store::open_with_channel`].
    pub fn open_in_waiting(
        data_dir: &Path,
        bcrypt_cost: u32,
        default_channel: &str,
        wait: Duration,
    ) -> Result<Store, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            match Store::open_in_with_channel(data_dir, bcrypt_cost, default_channel) {
                Err(StoreError::InUse(_)) if Instant::now() < deadline => {
                    std::thread::sleep(IN_USE_RETRY);
                }
                result => return result,
            }
        }
    }

    /// The file this store was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bcrypt cost new hashes are made with.
    pub fn bcrypt_cost(&self) -> u32 {
        self.bcrypt_cost
    }

    /// The channel of messages stored before channels existed: the default channel the file
    /// was migrated with.
    pub fn legacy_channel(&self) -> &str {
        &self.legacy_channel
    }

    /// What the open did to the file's schema: from the version it had (0 for a new file) to
    /// [`SCHEMA_VERSION`]; what `atacama-mail store migrate` reports.
    pub fn migration(&self) -> pg::Migration {
        pg::Migration {
            from: self.schema_found,
            to: SCHEMA_VERSION,
        }
    }

    /// How many messages the open recovered from the journal: acknowledged before a crash,
    /// durable in the journal only (the log says so too, at warning).
    pub fn recovered(&self) -> usize {
        self.recovered
    }

    /// Whether the store can take deliveries: [`Health::Failed`] once reopening the database
    /// has failed for [`GIVE_UP_AFTER`], and the server should exit non-zero.
    pub fn health(&self) -> Health {
        if !self.is_broken() {
            return Health::Working;
        }
        self.watch().recovery.health(Instant::now())
    }

    /// Sets how long reopening may fail (other than for a full disk) before [`Health::Failed`]:
    /// `limits.store_reopen_timeout_secs`, [`GIVE_UP_AFTER`] unless set.
    pub fn set_give_up_after(&self, after: Duration) {
        self.watch().recovery.set_give_up_after(after);
    }

    /// How long reopening may fail before [`Health::Failed`].
    pub fn give_up_after(&self) -> Duration {
        self.watch().recovery.give_up_after()
    }

    /// Reopens the database if an I/O error left it unusable and a reopen is due; the server
    /// calls it on a timer, so that a store nobody writes to recovers too. Cheap otherwise.
    pub fn recover(&self) -> Health {
        if self.is_broken() {
            // The outcome is in the health and the log.
            let _ = self.recover_locked(&mut self.delivering(), Instant::now(), Asker::Timer);
        }
        self.health()
    }

    /// Whether an I/O error has left the database unusable: the fast path's one check.
    fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Runs `f` on the database; an error that leaves it unusable marks it for reopening.
    /// Take no other lock of the store inside `f`.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (result, generation) = {
            let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
            let generation = self.generation.load(Ordering::Acquire);
            let result = match db.as_ref() {
                Some(open) => f(&open.db).map_err(|error| open.explain(error)),
                None => Err(StoreError::Io(
                    "the database is closed after an I/O error, to be reopened".into(),
                )),
            };
            (result, generation)
        };
        if let Err(error) = &result
            && error.needs_reopen()
        {
            self.broke(generation, error);
        }
        result
    }

    /// [`Store::with_db`], after a reopen if one is due: for whatever does not hold
    /// `delivering` (reads, users).
    fn with_recovered_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.is_broken() {
            self.recover_locked(&mut self.delivering(), Instant::now(), Asker::Operation)?;
        }
        self.with_db(f)
    }

    /// An operation on the database of `generation` failed with `error`, which leaves it
    /// unusable: it is reopened at the next operation (or tick) from now, and until then each
    /// one gets the error.
    fn broke(&self, generation: u64, error: &StoreError) {
        let mut watch = self.watch();
        if generation != self.generation.load(Ordering::Acquire) {
            return; // that database is gone; the one in its place is not known to fail
        }
        let now = Instant::now();
        if watch.recovery.broke(now, error.clone()) {
            self.broken.store(true, Ordering::Release);
            if let Some(held) = watch.broke.admit(now) {
                logging::store_unusable(error, held);
            }
        }
    }

    /// If the database is unusable: reopens it when a reopen is due, else fails at once with
    /// what broke it. `delivering` is the caller's hold of it.
    fn recover_locked(
        &self,
        delivering: &mut Delivering,
        now: Instant,
        asker: Asker,
    ) -> Result<(), StoreError> {
        if !self.is_broken() {
            return Ok(());
        }
        let mut watch = self.watch();
        match watch.recovery.next(now, || self.has_room(), asker) {
            recovery::Next::Proceed => Ok(()),
            recovery::Next::Refuse(cause) => Err(cause),
            recovery::Next::Reopen => match self.reopen(delivering) {
                Ok(replayed) => {
                    self.broken.store(false, Ordering::Release);
                    let now = Instant::now();
                    if let (Some(outage), Some(held)) =
                        (watch.recovery.reopened(now), watch.reopened.admit(now))
                    {
                        logging::store_reopened(outage.lasted, outage.refused, replayed, held);
                    }
                    Ok(())
                }
                Err(error) => {
                    watch.recovery.reopen_failed(now, error.clone());
                    if let Some(held) = watch.reopen_failed.admit(now) {
                        logging::store_reopen_failed(&error, REOPEN_EVERY, held);
                    }
                    Err(error)
                }
            },
        }
    }

    /// Whether the data directory's file system has [`REOPEN_ROOM`] free, or cannot tell.
    fn has_room(&self) -> bool {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        space::free_bytes(dir).map_or(true, |free| free >= REOPEN_ROOM)
    }

    /// Closes the database and opens it again, which takes it back to its last durable
    /// commit, then applies the journal's records it does not hold, as an open after a crash
    /// does; returns how many messages that applied. On failure the database stays closed.
    fn reopen(&self, delivering: &mut Delivering) -> Result<usize, StoreError> {
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        // Closed first: the file is locked while a handle has it. redb leaves a file closed
        // after an I/O error for the next open to recover.
        drop(db.take());
        self.generation.fetch_add(1, Ordering::AcqRel);
        let reopened = open_database(&self.path)?;
        let records = delivering.journal.records().map_err(|e| {
            StoreError::from_io(&e, Some(&self.path.with_extension(JOURNAL_EXTENSION)))
        })?;
        let (next_seq, replayed) = messages::replay(&reopened.db, &records, &self.legacy_channel)
            .map_err(|e| reopened.explain(e))?;
        // Numbers taken by batches whose append failed stay taken.
        delivering.next_seq = delivering.next_seq.max(next_seq);
        delivering.restart();
        *db = Some(reopened);
        Ok(replayed)
    }

    fn watch(&self) -> MutexGuard<'_, Watch> {
        self.recovery.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The journal, for a delivery or a checkpoint. A panic while it was held leaves its state
    /// in doubt, so the journal is then set aside until a checkpoint succeeds.
    fn delivering(&self) -> MutexGuard<'_, Delivering> {
        self.delivering.lock().unwrap_or_else(|poisoned| {
            let mut delivering = poisoned.into_inner();
            delivering.usable = false;
            delivering
        })
    }
}

impl Delivering {
    /// After a durable commit: nothing in the journal is needed any more.
    fn restart(&mut self) {
        self.journal.restart();
        self.usable = true;
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // What only the journal holds becomes durable in the database, so a clean shutdown
        // leaves nothing to replay.
        if let Err(error) = self.checkpoint() {
            log::warn!("checkpoint on close failed (the journal keeps the messages): {error}");
        }
    }
}

impl Open {
    /// `error` as the caller is told it: redb's "Previous I/O error" as the error it was.
    fn explain(&self, error: StoreError) -> StoreError {
        match (&error, self.last_error.get()) {
            (StoreError::Io(_), Some(first)) => first,
            _ => error,
        }
    }
}

/// Refuses a default channel that is not a channel name, and a bcrypt cost outside 4..=31:
/// what every backend's open checks first.
fn check_open_args(bcrypt_cost: u32, default_channel: &str) -> Result<(), StoreError> {
    if let Some(problem) = channel_name_problem(default_channel) {
        return Err(StoreError::InvalidChannel(format!(
            "{default_channel:?} {problem}"
        )));
    }
    if !(4..=31).contains(&bcrypt_cost) {
        return Err(StoreError::Hash(format!(
            "bcrypt cost {bcrypt_cost} is outside 4..=31"
        )));
    }
    Ok(())
}

/// Opens (or creates) the redb file at `path` for this process alone.
fn open_database(path: &Path) -> Result<Open, StoreError> {
    let opened = |e: io::Error| StoreError::from_io(&e, Some(path));
    let file = open_private_file(path).map_err(opened)?;
    let backend = zeroed::ZeroAhead::new(file).map_err(opened)?;
    let last_error = backend.last_error();
    let db = Builder::new()
        .set_concurrency_mode(ConcurrencyMode::ExclusiveWriter)
        .set_cache_size(CACHE_BYTES)
        .create_with_backend(backend)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                StoreError::InUse(path.display().to_string())
            }
            redb::DatabaseError::Storage(redb::StorageError::Io(e)) => opened(e),
            e => match StoreError::from(e) {
                StoreError::Database(problem) => {
                    StoreError::Database(format!("{}: {problem}", path.display()))
                }
                // The recovery of a file left after an I/O error may meet another.
                StoreError::Io(problem) => last_error
                    .get()
                    .unwrap_or_else(|| StoreError::Io(format!("{}: {problem}", path.display()))),
                other => other,
            },
        })?;
    Ok(Open { db, last_error })
}

/// Syncs the directory holding `path`, so a file just created there is found after a crash.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        #[cfg(unix)]
        Some(dir) => std::fs::File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })?
        .sync_all(),
        _ => Ok(()),
    }
}

/// Opens `path` to read and write, created with mode 0600 if missing (redb initialises an
/// empty file), never through a link, and only as a regular file of the data directory's
/// owner ([`data_dir::open_file`]): a link from `atacama.journal` elsewhere once had that file
/// grown to 16 MiB of zeros.
fn open_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    data_dir::open_file(path, data_dir::Access::ReadWrite)
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

#[cfg(all(test, target_os = "linux"))]
mod full_disk_tests;
