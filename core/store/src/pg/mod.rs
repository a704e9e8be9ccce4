//! The PostgreSQL store ([`PgStore`]): users, tokens and messages in a database that several
//! daemons share, on one host or many, smol and std alike; the database's own replication
//! and backups carry the data.
//!
//! # The client
//! The blocking `postgres` crate, called from the threads that call the store: the commit
//! thread, the verify threads and the web threads of either runtime, each of which already
//! blocks on redb the same way. One code path serves both runtimes, and a `Client` is a
//! socket plus a small current-thread tokio runtime of its own, driven only while its caller
//! waits: no tokio reactor thread, no second executor beside smol. `tokio-postgres` driven
//! from smol through `tokio-util`'s compat layer would have made the store async for one
//! runtime only, and the std runtime would have needed an executor anyway.
//! A bounded pool ([`pool`]) holds at most `store.pool_size` connections. `store.url` is read
//! as libpq reads it where the crate does not ([`connect`]: TLS through rustls, always
//! verified; [`pgpass`]: libpq's password file).
//!
//! # What is stored
//! In versioned migrations ([`schema`]): `users` and `tokens` as the redb store keeps them
//! (bcrypt hashes; SHA-256 of tokens), and `messages` with columns an operator can query
//! (id, received_at, user_name, channel, message_id, in_reply_to, parent_id, subject, size)
//! beside the JSON envelope, our `Received:` header and the body packed as redb packs it
//! (`packed`): the same encoders and decoders, so both backends read and write the same bytes.
//! A body past about 1 MiB goes into `message_rows`, a row per MiB, as in redb.
//!
//! # Durability and faults
//! A batch of deliveries is one transaction; [`Backend::insert_packed`] returns once `COMMIT`
//! has returned, which with `synchronous_commit` on (the server's setting) means the WAL is
//! flushed. A lost connection fails the operation at once with [`StoreError::Io`] (the
//! session answers `451`), and the store is [`Health::Recovering`]: operations are refused
//! without a round trip while it reconnects, at most once per [`crate::REOPEN_EVERY`] (on the
//! next operation or the server's timer), never in a loop; after
//! [`Backend::set_give_up_after`] of failed attempts it is [`Health::Failed`].

mod connect;
mod export;
mod logins;
mod messages;
mod pgpass;
mod pool;
mod schema;
mod users;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use atacama_core::logging::Repeats;
use atacama_core::smtp::MessageId;
use postgres::Client;

use crate::copy::{ExportedMessage, ExportedToken, ExportedUser};
use crate::recovery::{self, Asker, Recovery};
use crate::{
    Backend, Chain, GIVE_UP_AFTER, Health, MessagePage, PackedMessage, Page, REOPEN_EVERY,
    StoreError, StoredMessage, Token, User,
};
use connect::Connector;
use logins::Logins;
use pool::{Conn, Pool, Pooled, Unavailable};

pub use pool::POOL_WAIT;
pub use schema::{Migration, PG_SCHEMA_VERSION};

/// How often [`Backend::recover`] asks an idle connection whether the database is still
/// there, while the store works: so that `/healthz` tells within seconds, and a restarted
/// server's dead connections are dropped before a delivery meets them.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// How long connecting may take when `store.url` does not say (`connect_timeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the database is and how to reach it: the `[store]` section of the config.
#[derive(Clone, PartialEq, Eq)]
pub struct PgConfig {
    /// A libpq connection URL or key=value string (`store.url`).
    pub url: String,
    /// The password, read by the caller from `store.password_file`; used if given, in place
    /// of any in the URL.
    pub password: Option<String>,
    /// The most connections a store opens (`store.pool_size`).
    pub pool_size: usize,
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password, nor the URL, which may hold one.
        f.debug_struct("PgConfig")
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

/// The most delivery transactions one daemon commits at once ([`Backend::concurrent_commits`]).
pub const MAX_CONCURRENT_COMMITS: usize = 4;

/// A store in a PostgreSQL database. `Send + Sync`: shared by reference or in an `Arc`.
pub struct PgStore {
    pool: Pool,
    /// The URL without its password, for the log.
    location: String,
    bcrypt_cost: u32,
    /// Verified against for unknown and disabled users: same cost, same work.
    dummy_hash: String,
    /// The configured default channel: every message here was stored with a channel, so it
    /// is only what [`Backend::legacy_channel`] answers.
    default_channel: String,
    /// Set while the database cannot be reached: the one check on the fast path.
    broken: AtomicBool,
    watch: Mutex<Watch>,
    /// Made with the pool's connector: the listener's own connection.
    connector: Connector,
    /// Started by the first MAIL check (a command line never makes one); `None` inside if
    /// its thread could not start, and every check then asks the database.
    logins: OnceLock<Option<Logins>>,
}

/// When to reconnect, and the log lines about it, each held back while it repeats.
struct Watch {
    recovery: Recovery,
    /// When [`PgStore::probe`] last asked.
    probed: Option<Instant>,
    lost: Repeats,
    back: Repeats,
    still_lost: Repeats,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.location)
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database `config` names and brings its schema up to date
    /// ([`PgStore::migrate`]); refuses a schema newer than this build knows
    /// ([`StoreError::SchemaVersion`]). Passwords are hashed at `bcrypt_cost` (4..=31).
    /// `default_channel` is what [`Backend::legacy_channel`] answers.
    pub fn open(
        config: &PgConfig,
        bcrypt_cost: u32,
        default_channel: &str,
    ) -> Result<PgStore, StoreError> {
        crate::check_open_args(bcrypt_cost, default_channel)?;
        if config.pool_size == 0 {
            return Err(StoreError::Database(
                "store.pool_size must be at least 1".into(),
            ));
        }
        let connector = Connector::new(config)?;
        let location = connector.location();
        let pool = Pool::new(connector.clone(), config.pool_size);
        {
            let mut pooled = pool.get().map_err(|e| unavailable(e, &location))?;
            let client = pooled_client(&mut pooled)?;
            schema::migrate(client)?;
        }
        Ok(PgStore {
            pool,
            location,
            bcrypt_cost,
            dummy_hash: crate::users::dummy_hash(bcrypt_cost),
            default_channel: default_channel.to_string(),
            broken: AtomicBool::new(false),
            watch: Mutex::new(Watch {
                recovery: Recovery::new(GIVE_UP_AFTER),
                probed: None,
                lost: Repeats::new(),
                back: Repeats::new(),
                still_lost: Repeats::new(),
            }),
            connector,
            logins: OnceLock::new(),
        })
    }

    /// The remembered logins, their listener started on first use.
    fn logins(&self) -> Option<&Logins> {
        self.logins
            .get_or_init(
                || match Logins::start(self.connector.clone(), self.location.clone()) {
                    Ok(logins) => Some(logins),
                    Err(error) => {
                        log::error!(
                            "store: cannot start a thread to listen for changes of users, MAIL \
                         asks the database each time: {error}"
                        );
                        None
                    }
                },
            )
            .as_ref()
    }

    /// Applies the migrations the database lacks, under an advisory lock so that daemons
    /// starting at once do not both migrate; what `atacama-mail store migrate` runs.
    pub fn migrate(config: &PgConfig) -> Result<Migration, StoreError> {
        let connector = Connector::new(config)?;
        let mut client = connector
            .connect()
            .map_err(|e| unavailable(Unavailable::Connect(e), &connector.location()))?;
        schema::migrate(&mut client)
    }

    /// Where `config` points, without its password: what [`Backend::location`] says.
    pub fn location_of(config: &PgConfig) -> Result<String, StoreError> {
        Ok(Connector::new(config)?.location())
    }

    /// Whether the database cannot be reached: the fast path's one check.
    fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Runs `f` on a connection of the pool. A lost connection (or none to be had) marks the
    /// store [`Health::Recovering`]; while it is, `f` runs only once a reconnect worked.
    /// Hold no connection while hashing a password: `f` should only talk to the database.
    fn with_client<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_conn(|conn| f(&mut conn.client))
    }

    /// [`PgStore::with_client`] with the connection's prepared statements
    /// ([`Conn::prepared`]): for the queries every delivery or login makes.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.is_broken() {
            self.reconnect_if_due(Asker::Operation)?;
        }
        let mut pooled = match self.pool.get() {
            Ok(pooled) => pooled,
            Err(unavailable_now) => {
                let lost = matches!(unavailable_now, Unavailable::Connect(_));
                let error = unavailable(unavailable_now, &self.location);
                if lost {
                    self.lost(&error);
                }
                return Err(error);
            }
        };
        let result = f(pooled_conn(&mut pooled)?);
        if let Err(error) = &result
            && (pooled.is_closed() || matches!(error, StoreError::Io(_)))
            && !pooled.is_stale()
        {
            self.lost(error);
        }
        result
    }

    /// The database could not be reached: refuse operations until a reconnect works, and
    /// close every pooled connection (they went to the same server).
    fn lost(&self, error: &StoreError) {
        let mut watch = self.watch();
        let now = Instant::now();
        if watch.recovery.broke(now, error.clone()) {
            self.broken.store(true, Ordering::Release);
            if let Some(held) = watch.lost.admit(now) {
                log::error!(
                    "store: lost the database {}, refusing deliveries until it is back: \
                     {error}{held}",
                    self.location
                );
            }
        }
        drop(watch);
        self.pool.clear();
    }

    /// If the database was lost: tries to reach it again when that is due, else fails at once
    /// with why it was lost.
    fn reconnect_if_due(&self, asker: Asker) -> Result<(), StoreError> {
        let next = self.watch().recovery.next(Instant::now(), || true, asker);
        match next {
            recovery::Next::Proceed => Ok(()),
            recovery::Next::Refuse(cause) => Err(cause),
            // Outside the lock: others are refused meanwhile, `next` counted this attempt.
            recovery::Next::Reopen => match self.reconnect() {
                Ok(()) => {
                    let mut watch = self.watch();
                    self.broken.store(false, Ordering::Release);
                    let now = Instant::now();
                    if let (Some(outage), Some(held)) =
                        (watch.recovery.reopened(now), watch.back.admit(now))
                    {
                        log::warn!(
                            "store: the database {} is back after {:.1} s ({} operations \
                             refused meanwhile){held}",
                            self.location,
                            outage.lasted.as_secs_f64(),
                            outage.refused
                        );
                    }
                    Ok(())
                }
                Err(error) => {
                    let mut watch = self.watch();
                    let now = Instant::now();
                    watch.recovery.reopen_failed(now, error.clone());
                    if let Some(held) = watch.still_lost.admit(now) {
                        log::error!(
                            "store: the database {} is still unreachable, trying again every \
                             {} s: {error}{held}",
                            self.location,
                            REOPEN_EVERY.as_secs()
                        );
                    }
                    Err(error)
                }
            },
        }
    }

    /// Asks an idle connection, if there is one, whether the database is still there, at most
    /// once per [`PROBE_EVERY`]; a lost one marks the store [`Health::Recovering`]. Never
    /// waits for a connection: a busy pool is being asked already.
    fn probe(&self) {
        let now = Instant::now();
        {
            let mut watch = self.watch();
            if watch
                .probed
                .is_some_and(|last| now.saturating_duration_since(last) < PROBE_EVERY)
            {
                return;
            }
            watch.probed = Some(now);
        }
        let Some(mut pooled) = self.pool.idle() else {
            return;
        };
        let Some(client) = pooled.conn().map(|conn| &mut conn.client) else {
            return;
        };
        if let Err(error) = client.simple_query("") {
            let error = StoreError::from(error);
            if !pooled.is_stale() {
                self.lost(&error);
            }
        }
    }

    /// Drops the pooled connections and makes one anew.
    fn reconnect(&self) -> Result<(), StoreError> {
        self.pool.clear();
        let mut pooled = self
            .pool
            .get()
            .map_err(|e| unavailable(e, &self.location))?;
        pooled_client(&mut pooled)?.simple_query("SELECT 1")?;
        Ok(())
    }

    /// A change of `name` made through this store is seen by its next MAIL check at once:
    /// the notification would come a little later.
    fn forgetting<T>(&self, name: &str, changed: T) -> T {
        if let Some(Some(logins)) = self.logins.get() {
            logins.forget(name);
        }
        changed
    }

    /// A remembered login, unless the database is lost: then MAIL asks it, and hears
    /// at once that it is away.
    fn login_known(&self, logins: Option<&Logins>, name: &str) -> Option<bool> {
        if self.is_broken() {
            return None;
        }
        logins?.known(name)
    }

    fn watch(&self) -> MutexGuard<'_, Watch> {
        self.watch.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for PgStore {
    fn reads_wait_on_network(&self) -> bool {
        true
    }

    fn concurrent_commits(&self) -> usize {
        // Half the pool, up to 4: reads, logins and the probe keep connections too.
        (self.pool.size() / 2).clamp(1, MAX_CONCURRENT_COMMITS)
    }

    fn bcrypt_cost(&self) -> u32 {
        self.bcrypt_cost
    }

    fn legacy_channel(&self) -> &str {
        &self.default_channel
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn health(&self) -> Health {
        if !self.is_broken() {
            return Health::Working;
        }
        self.watch().recovery.health(Instant::now())
    }

    fn recover(&self) -> Health {
        if self.is_broken() {
            // The outcome is in the health and the log.
            let _ = self.reconnect_if_due(Asker::Timer);
        } else {
            self.probe();
        }
        self.health()
    }

    fn set_give_up_after(&self, after: Duration) {
        self.watch().recovery.set_give_up_after(after);
    }

    fn add_user(&self, name: &str, password: &str, now: SystemTime) -> Result<(), StoreError> {
        users::add(self, name, password, now)
    }

    fn set_password(&self, name: &str, password: &str, now: SystemTime) -> Result<(), StoreError> {
        users::set_password(self, name, password, now)
    }

    fn enable_user(&self, name: &str, now: SystemTime) -> Result<(), StoreError> {
        self.forgetting(name, users::set_active(self, name, true, now))
    }

    fn disable_user(&self, name: &str, now: SystemTime) -> Result<(), StoreError> {
        self.forgetting(name, users::set_active(self, name, false, now))
    }

    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.forgetting(name, users::delete(self, name))
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        users::list(self, None)
    }

    fn user(&self, name: &str) -> Result<User, StoreError> {
        let found = users::list(self, Some(name))?.pop();
        found.ok_or_else(|| StoreError::NoSuchUser(name.to_string()))
    }

    fn login_active(&self, name: &str) -> Result<bool, StoreError> {
        let logins = self.logins();
        if let Some(active) = self.login_known(logins, name) {
            return Ok(active);
        }
        let generation = logins.and_then(Logins::generation);
        let Some(active) = crate::backend::login_of(self.user(name))? else {
            return Ok(false);
        };
        if let (Some(logins), Some(generation)) = (logins, generation) {
            logins.remember(generation, name, active);
        }
        Ok(active)
    }

    fn login_active_now(&self, name: &str) -> Option<Result<bool, StoreError>> {
        self.login_known(self.logins(), name).map(Ok)
    }

    fn verify_user(&self, name: &str, password: &str) -> Result<bool, StoreError> {
        users::verify(self, name, password)
    }

    fn add_token(&self, name: &str, now: SystemTime) -> Result<String, StoreError> {
        users::add_token(self, name, now)
    }

    fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        users::tokens(self)
    }

    fn revoke_token(&self, name: &str) -> Result<(), StoreError> {
        users::revoke_token(self, name)
    }

    fn token_valid(&self, token: &str) -> Result<bool, StoreError> {
        users::token_valid(self, token)
    }

    fn insert_packed(&self, batch: Vec<PackedMessage>) -> Result<Vec<MessageId>, StoreError> {
        messages::insert(self, batch)
    }

    fn message(&self, id: MessageId) -> Result<StoredMessage, StoreError> {
        messages::stored(self, id)
    }

    fn raw_message(&self, id: MessageId) -> Result<Vec<u8>, StoreError> {
        messages::raw(self, id)
    }

    fn messages_page(
        &self,
        user: Option<&str>,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        messages::list(self, user, before, limit)
    }

    fn page(
        &self,
        channels: &[&str],
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        messages::page(self, channels, before, limit)
    }

    fn chain(&self, id: MessageId, channels: &[&str]) -> Result<Chain, StoreError> {
        messages::chain(self, id, channels)
    }

    fn message_channel(&self, id: MessageId) -> Result<Option<String>, StoreError> {
        messages::channel(self, id)
    }

    fn export_users(&self) -> Result<Vec<ExportedUser>, StoreError> {
        export::users(self)
    }

    fn export_tokens(&self) -> Result<Vec<ExportedToken>, StoreError> {
        export::tokens(self)
    }

    fn export_messages(
        &self,
        after: Option<MessageId>,
        max_bytes: usize,
    ) -> Result<Vec<ExportedMessage>, StoreError> {
        export::messages(self, after, max_bytes)
    }

    fn import_accounts(
        &self,
        users: &[ExportedUser],
        tokens: &[ExportedToken],
    ) -> Result<(), StoreError> {
        export::import_accounts(self, users, tokens)
    }

    fn import_messages(&self, batch: Vec<ExportedMessage>) -> Result<(), StoreError> {
        export::import_messages(self, batch)
    }
}

/// What to tell the caller when no connection could be had.
fn unavailable(unavailable: Unavailable, location: &str) -> StoreError {
    match unavailable {
        Unavailable::Connect(error) => match StoreError::from(error) {
            StoreError::Io(problem) => {
                StoreError::Io(format!("connecting to {location}: {problem}"))
            }
            StoreError::Database(problem) => {
                StoreError::Database(format!("connecting to {location}: {problem}"))
            }
            other => other,
        },
        Unavailable::Busy => StoreError::Io(format!(
            "all store.pool_size connections to {location} stayed in use for {} s",
            POOL_WAIT.as_secs()
        )),
    }
}

/// The connection of `pooled`, which holds one until dropped.
fn pooled_client<'a>(pooled: &'a mut Pooled<'_>) -> Result<&'a mut Client, StoreError> {
    Ok(&mut pooled_conn(pooled)?.client)
}

/// The connection of `pooled`, with its prepared statements.
fn pooled_conn<'a>(pooled: &'a mut Pooled<'_>) -> Result<&'a mut Conn, StoreError> {
    pooled
        .conn()
        .ok_or_else(|| StoreError::Database("a pooled connection was given back twice".into()))
}

/// PostgreSQL's errors: the server's own as [`StoreError::Database`] with their SQLSTATE,
/// but a lost or refused connection (and the server shutting down or starting) as
/// [`StoreError::Io`], which marks the store [`Health::Recovering`].
impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> Self {
        if let Some(db) = error.as_db_error() {
            let code = db.code().code();
            let problem = format!("{} ({code}): {}", db.severity(), db.message());
            // Class 08: connection exception; 57P01-03: shutting down, crashed, starting.
            return if code.starts_with("08") || code.starts_with("57P") {
                StoreError::Io(problem)
            } else {
                StoreError::Database(problem)
            };
        }
        let io = std::error::Error::source(&error).is_some_and(|s| s.is::<std::io::Error>());
        if error.is_closed() || io {
            StoreError::Io(error.to_string())
        } else {
            StoreError::Database(error.to_string())
        }
    }
}

#[cfg(test)]
mod tests;

/// `t` as PostgreSQL's `bigint` (seconds, ids, sizes): past `i64::MAX` is an error, never a
/// wrap.
fn bigint(t: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(t).map_err(|_| StoreError::Database(format!("{what} {t} exceeds a bigint")))
}

/// A `bigint` read back as the `u64` it was written from.
fn unsigned(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{what} is negative: {n}")))
}

/// Text for a `text` column, which cannot hold NUL: U+FFFD in its place (the envelope keeps
/// the original, in a `json` column, which can).
fn text_column(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}
