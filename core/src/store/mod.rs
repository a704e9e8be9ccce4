//! The database: users and messages in one redb file (cargo feature `store`).
//!
//! This is the only module that touches the database. Records are JSON in redb tables: users,
//! messages, the raw bytes, and indexes by Message-ID (threading) and by user. The file carries
//! a schema version ([`SCHEMA_VERSION`]); a file of another version is refused.
//!
//! # Durability
//! Every write transaction commits with `Durability::Immediate`: when [`Store::insert_message`]
//! or [`Store::insert_messages`] returns, the message is on disk and the session may send `250`
//! (RFC 5321 §6.1: once a message is accepted, responsibility for it is ours). A batch is one
//! transaction, so a later group commit acknowledges N messages for one fsync.
//!
//! # Sharing the file with the command line
//! The command line runs beside a live daemon: `user add` while the server accepts mail is the
//! normal case. redb locks its file, so either both processes open it in redb's multi-process
//! mode, or the command line asks the daemon over a local control socket. We open every handle in
//! [`redb::ConcurrencyMode::MultiWriter`]: any process may read and write; write transactions are
//! serialised by an OFD byte-range lock (so two handles in one process behave exactly like two
//! processes, which is what the concurrency tests use), and readers follow other processes'
//! commits.
//!
//! Measured with `cargo run --release -p atacama-core --example store_concurrency` (4 KiB values,
//! one durable commit each, 1000–3000 commits, on the 2-core sandbox where fsync is cheap; quiet
//! runs, ranges over runs):
//!
//! | mode | commit mean | commit p99 | read transaction |
//! |---|---|---|---|
//! | `ExclusiveWriter` (default) | 0.51–0.56 ms | 0.70–0.83 ms | 0.9–1.7 µs |
//! | `MultiWriter` | 0.77–0.98 ms | 1.0–1.2 ms | 4.6–4.8 µs |
//! | `MultiWriter`, second handle open | 0.78–0.83 ms | 1.0–1.1 ms | 4.6–6.6 µs |
//! | Unix-socket round trip (control socket) | 17–19 µs | 31–42 µs | |
//!
//! Multi-process mode costs about 0.3 ms per commit here; on a real disk a durable commit costs
//! 1–10 ms of fsync, which dwarfs it, and a batch pays it once. Under disk contention from other
//! builds both modes swung to 4–7 ms per commit, so the difference is noise next to fsync. A
//! control socket would be cheaper per request but needs a protocol, socket permissions, and a
//! second path for when the daemon is not running (where the command line must open the file
//! itself anyway); it would also keep read-only commands from even opening the file while the
//! daemon runs. One code path wins. The price: `Durability::None` is refused in this mode, so a
//! group commit must batch messages into one transaction ([`Store::insert_messages`]), not chain
//! non-durable commits.

mod messages;
mod schema;
mod trace;
mod users;

use std::fmt;
use std::path::{Path, PathBuf};

use redb::{Builder, ConcurrencyMode, Database};

pub use messages::{MessageSummary, NewMessage, StoredMessage};
pub use schema::SCHEMA_VERSION;
pub use trace::{ReceivedTrace, rfc3339_utc, rfc5322_date, unix_seconds};
pub use users::{MAX_PASSWORD_BYTES, MAX_USER_NAME_BYTES, User, validate_user_name};

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "atacama.redb";

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

/// What went wrong in the store. Each variant names the thing it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// `user add` for a name that is taken.
    UserExists(String),
    /// No user of that name.
    NoSuchUser(String),
    /// No message with that id.
    NoSuchMessage(u64),
    /// The user name is empty, too long, or holds whitespace or control characters.
    InvalidUserName(String),
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
    /// A stored record could not be decoded.
    Corrupt(String),
    /// bcrypt refused to hash (for example a cost outside 4..=31).
    Hash(String),
    /// redb or the file system failed.
    Database(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::UserExists(name) => write!(f, "user {name:?} already exists"),
            StoreError::NoSuchUser(name) => write!(f, "no user named {name:?}"),
            StoreError::NoSuchMessage(id) => write!(f, "no message with id {id}"),
            StoreError::InvalidUserName(problem) => write!(f, "invalid user name: {problem}"),
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
            StoreError::Corrupt(what) => write!(f, "corrupt database record: {what}"),
            StoreError::Hash(problem) => write!(f, "password hashing failed: {problem}"),
            StoreError::Database(problem) => write!(f, "database error: {problem}"),
        }
    }
}

impl std::error::Error for StoreError {}

macro_rules! database_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                StoreError::Database(error.to_string())
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
pub struct Store {
    db: Database,
    path: PathBuf,
    bcrypt_cost: u32,
    /// Verified against for unknown and disabled users: same cost, same work.
    dummy_hash: String,
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
    /// users are verified against a dummy hash of that cost. Any number of handles, in this
    /// process or others, may have the file open at once.
    pub fn open(path: &Path, bcrypt_cost: u32) -> Result<Store, StoreError> {
        if !(4..=31).contains(&bcrypt_cost) {
            return Err(StoreError::Hash(format!(
                "bcrypt cost {bcrypt_cost} is outside 4..=31"
            )));
        }
        create_private_file(path)
            .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?;
        let db = Builder::new()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?;
        schema::check_or_initialise(&db)?;
        Ok(Store {
            db,
            path: path.to_path_buf(),
            bcrypt_cost,
            dummy_hash: users::dummy_hash(bcrypt_cost),
        })
    }

    /// Opens `data_dir/atacama.redb`, creating the directory (mode 0700) and the file if missing.
    pub fn open_in(data_dir: &Path, bcrypt_cost: u32) -> Result<Store, StoreError> {
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        dir.create(data_dir)
            .map_err(|e| StoreError::Database(format!("{}: {e}", data_dir.display())))?;
        Store::open(&data_dir.join(DATABASE_FILE), bcrypt_cost)
    }

    /// The file this store was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bcrypt cost new hashes are made with.
    pub fn bcrypt_cost(&self) -> u32 {
        self.bcrypt_cost
    }
}

/// Creates `path` with mode 0600 unless it exists; redb then initialises the empty file.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        result => result.map(drop),
    }
}

#[cfg(test)]
pub(crate) mod tests;
