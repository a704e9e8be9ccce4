//! The work behind a session's requests, one call each, shared by both runtimes.
//!
//! Both calls block (bcrypt, fsync): the smol runtime runs them on its blocking pool, the
//! threaded runtime on the connection's thread. Throttling AUTH is the caller's job.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::counters::LiveCounters;
use crate::priority::MailPressure;
use crate::store_calls::{StoreCall, StoreCalls};
use atacama_core::channels::Channels;
use atacama_core::config::Config;
use atacama_core::logging::{self, Repeats};
use atacama_core::smtp::{
    AuthOutcome, AuthRequest, Delivery, DeliveryError, MailCheck, MailVerdict, MessageId,
};
use atacama_core::{markup, message};
use atacama_store::{
    Backend, BodyWriter, GIVE_UP_AFTER, NewMessage, PackedMessage, ReceivedTrace, StoreError,
};

/// How long a starting server waits for a redb file: a command line holds it for one command,
/// a bcrypt hash at most. A second server holds it for good, and is reported after.
pub const OPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `limits.store_timeout_secs`' default.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(60);

/// The store plus the facts about this server that delivery needs.
#[derive(Debug)]
pub struct Services {
    store: Arc<dyn Backend>,
    hostname: String,
    /// Where each message goes (`[channels]`).
    channels: Channels,
    /// The directory whose file system holds the database, and the bytes that must stay free
    /// there, else MAIL is refused (`452 4.3.1`); `None` or 0 bytes: no floor.
    floor_dir: Option<PathBuf>,
    min_free_bytes: u64,
    /// How long the store tries to recover before the server exits, for the log.
    give_up_after: Duration,
    /// Whether the last look found the filesystem below the floor (logged on each change).
    below_floor: AtomicBool,
    /// Failed-delivery lines, held back while they repeat (a full disk fails every one).
    failures: Mutex<Repeats>,
    /// Lines saying the free space cannot be measured, held back likewise.
    unmeasured: Mutex<Repeats>,
    /// Lines saying a MAIL's login could not be checked, held back likewise.
    unchecked: Mutex<Repeats>,
    /// What `/metrics` reports: messages accepted, deliveries and logins failed, web traffic.
    counters: LiveCounters,
    /// When mail last arrived: the web side yields to it meanwhile.
    mail_pressure: MailPressure,
    /// The store calls running now (commits, probes), and how long a session waits for one.
    store_calls: StoreCalls,
    store_timeout: Duration,
}

impl Services {
    /// Wraps an open store; `hostname` goes into `Received:` headers. No free-space floor
    /// until [`Services::with_min_free_space`] sets one; the channels are
    /// [`Channels::default`] until [`Services::with_channels`] sets them; the store gives up
    /// recovering after its default, [`GIVE_UP_AFTER`], until
    /// [`Services::with_give_up_after`].
    pub fn new(store: Arc<dyn Backend>, hostname: impl Into<String>) -> Services {
        Services {
            store,
            hostname: hostname.into(),
            channels: Channels::default(),
            floor_dir: None,
            min_free_bytes: 0,
            give_up_after: GIVE_UP_AFTER,
            below_floor: AtomicBool::new(false),
            failures: Mutex::new(Repeats::new()),
            unmeasured: Mutex::new(Repeats::new()),
            unchecked: Mutex::new(Repeats::new()),
            counters: LiveCounters::new(),
            mail_pressure: MailPressure::new(Instant::now()),
            store_calls: StoreCalls::default(),
            store_timeout: DEFAULT_STORE_TIMEOUT,
        }
    }

    /// Sets how long a delivery waits for the commit that holds its message
    /// (`limits.store_timeout_secs`).
    pub fn with_store_timeout(mut self, timeout: Duration) -> Services {
        self.store_timeout = timeout;
        self
    }

    /// How long a delivery waits for its commit before it is answered `451 4.3.0`.
    pub fn store_timeout(&self) -> Duration {
        self.store_timeout
    }

    /// Whether a store call (a commit, the keeper's probe) has run longer than
    /// [`Services::store_timeout`] at `now`: the store is not answering, and `/healthz`
    /// says so.
    pub fn store_overdue(&self, now: Instant) -> bool {
        self.store_calls
            .longest(now)
            .is_some_and(|running| running >= self.store_timeout)
    }

    /// A call into the store that began at `now`, for [`Services::store_overdue`] until
    /// the returned guard is dropped.
    pub fn store_call(&self, now: Instant) -> StoreCall<'_> {
        self.store_calls.begin(now)
    }

    /// A delivery that waited [`Services::store_timeout`] for its commit: logged (held back
    /// while it repeats), counted, and answered `451 4.3.0`. The message may still be
    /// stored when the commit ends: the client sends it again, and it is there twice, which
    /// loses nothing (RFC 5321 §6.1 prefers a duplicate to a loss).
    pub fn commit_timed_out(&self, user: &str) -> Result<MessageId, DeliveryError> {
        let error = format!(
            "the store did not commit within {} s (limits.store_timeout_secs)",
            self.store_timeout.as_secs()
        );
        self.counters.deliveries_failed(1);
        self.failed(|held| logging::delivery_failed(user, &error, held));
        Err(DeliveryError::other(error))
    }

    /// Sets the channels messages are routed to.
    pub fn with_channels(mut self, channels: Channels) -> Services {
        self.channels = channels;
        self
    }

    /// The channels messages are routed to, and read from.
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// Sets the free-space floor of [`Services::free_space_ok`]: `bytes` on the file system
    /// of `dir`, where the database is.
    pub fn with_min_free_space(mut self, dir: impl Into<PathBuf>, bytes: u64) -> Services {
        self.floor_dir = Some(dir.into());
        self.min_free_bytes = bytes;
        self
    }

    /// Sets how long the store keeps trying to recover from an I/O error before it gives up
    /// ([`atacama_store::Health::Failed`]).
    pub fn with_give_up_after(mut self, after: Duration) -> Services {
        self.store.set_give_up_after(after);
        self.give_up_after = after;
        self
    }

    /// Opens the store `[store]` names ([`crate::store::open`]) with the configured bcrypt
    /// cost, waiting up to [`OPEN_WAIT`] for a command line that holds a redb file to finish;
    /// the free-space floor is `limits.min_free_space_mb` where the database is on this
    /// machine ([`crate::store::local_dir`]), and the store gives up recovering after
    /// `limits.store_reopen_timeout_secs`. Messages go to `[channels]`; a database from before
    /// channels gives its messages `channels.default`.
    pub fn open(config: &Config) -> Result<Services, StoreError> {
        // Checked when the config was loaded; an error here names the key all the same.
        let channels = config
            .channels()
            .map_err(|e| StoreError::InvalidChannel(e.to_string()))?;
        let store = crate::store::open(config, OPEN_WAIT)?;
        let services = Services::new(store, config.hostname.clone())
            .with_channels(channels)
            .with_give_up_after(Duration::from_secs(config.limits.store_reopen_timeout_secs))
            .with_store_timeout(Duration::from_secs(config.limits.store_timeout_secs));
        Ok(match crate::store::local_dir(config) {
            Some(dir) => services
                .with_min_free_space(dir, config.limits.min_free_space_mb.saturating_mul(1 << 20)),
            None => services,
        })
    }

    /// Whether the file system of the data directory has at least the floor free
    /// (`limits.min_free_space_mb`, Postfix's `queue_minfree`): MAIL gets `452 4.3.1` when it
    /// has not, before any byte of the message is written. One `statvfs`. Where the space
    /// cannot be measured (logged), there is no floor: the store's own errors still answer.
    pub fn free_space_ok(&self) -> bool {
        let dir = match &self.floor_dir {
            Some(dir) if self.min_free_bytes > 0 => dir.as_path(),
            _ => return true,
        };
        match atacama_store::free_bytes(dir) {
            Ok(free) => {
                let ok = free >= self.min_free_bytes;
                self.note_floor(dir, free, ok);
                ok
            }
            Err(error) => {
                let held = self
                    .unmeasured
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .admit(Instant::now());
                if let Some(held) = held {
                    logging::free_space_unknown(dir, &error, held);
                }
                true
            }
        }
    }

    /// The counters `/metrics` reports, bumped where each event happens.
    pub fn counters(&self) -> &LiveCounters {
        &self.counters
    }

    /// When mail last arrived, for the web side to yield to it.
    pub fn mail_pressure(&self) -> &MailPressure {
        &self.mail_pressure
    }

    /// The underlying store.
    pub fn store(&self) -> &dyn Backend {
        &*self.store
    }

    /// How long the store tries to recover from an I/O error before the server gives up.
    pub fn give_up_after(&self) -> Duration {
        self.give_up_after
    }

    /// Our host name, as written into `Received:` headers.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The bcrypt cost of password hashes and of the dummy hash for unknown users.
    pub fn bcrypt_cost(&self) -> u32 {
        self.store.bcrypt_cost()
    }

    /// Checks credentials: the same bcrypt work whether or not the user exists.
    ///
    /// A store failure is a `TemporaryFailure` (454), so a broken disk never counts against
    /// the client as a wrong password. So is a panic below: every AUTH gets one reply (A16).
    pub fn authenticate(&self, request: &AuthRequest) -> AuthOutcome {
        self.report_check(request, self.check_password(request))
    }

    /// [`Services::authenticate`]'s check alone, with no word to the log or the counters:
    /// the verifier may check a request twice, and reports only the check that answers.
    pub fn check_password(&self, request: &AuthRequest) -> Result<bool, StoreError> {
        catch_unwind(AssertUnwindSafe(|| {
            self.store
                .verify_user(&request.username, request.password.expose())
        }))
        .unwrap_or_else(|_| Err(StoreError::Database("panic while verifying".into())))
    }

    /// The outcome of [`Services::check_password`]'s answer, logged and counted once.
    pub fn report_check(
        &self,
        request: &AuthRequest,
        verified: Result<bool, StoreError>,
    ) -> AuthOutcome {
        match verified {
            Ok(true) => AuthOutcome::Accepted,
            Ok(false) => {
                self.counters.auth_failed();
                // {:?} escapes control characters: the name is the client's, not ours.
                log::info!(
                    "authentication failed user={:?} mechanism={}",
                    request.username,
                    request.mechanism.name()
                );
                AuthOutcome::Rejected
            }
            Err(error) => {
                log::error!(
                    "authentication of user={:?} could not be checked: {error}",
                    request.username
                );
                AuthOutcome::TemporaryFailure
            }
        }
    }

    /// Decides whether a MAIL may start a transaction: the login must still be active (a user
    /// disabled or deleted since AUTH is refused, and the session closes), and the data
    /// directory's filesystem must have `min_free_space` left, so that a full disk refuses
    /// mail before a byte of it is read. A cheap read and one `statvfs`: no fsync, no bcrypt;
    /// on a database server, a round trip unless the store knows the login
    /// ([`Backend::login_active`]).
    pub fn check_mail(&self, check: &MailCheck) -> MailVerdict {
        self.mail_verdict(check, self.store.login_active(&check.user))
    }

    /// [`Services::check_mail`] if it needs no wait on the network (a local store, or a
    /// login the database store knows); `None`: run `check_mail` where a thread may wait.
    pub fn check_mail_now(&self, check: &MailCheck) -> Option<MailVerdict> {
        let active = self.store.login_active_now(&check.user)?;
        Some(self.mail_verdict(check, active))
    }

    /// [`Services::check_mail`] for a thread that may wait, but not without end: what
    /// [`Services::check_mail_now`] cannot answer is asked on a thread of its own, and
    /// waited for [`Services::store_timeout`] at most ([`Services::mail_check_timed_out`]
    /// then; the thread ends with its read).
    pub fn check_mail_within_timeout(self: &Arc<Self>, check: &MailCheck) -> MailVerdict {
        if let Some(verdict) = self.check_mail_now(check) {
            return verdict;
        }
        let (answer, verdict) = std::sync::mpsc::channel();
        let (services, asked) = (Arc::clone(self), check.clone());
        let asking = std::thread::Builder::new()
            .name("mail-check".into())
            .spawn(move || {
                // Nobody listens after the timeout.
                let _ = answer.send(services.check_mail(&asked));
            });
        if let Err(error) = asking {
            log::error!("no thread to check a MAIL's login, asked here: {error}");
            return self.check_mail(check);
        }
        verdict
            .recv_timeout(self.store_timeout)
            .unwrap_or_else(|_| self.mail_check_timed_out(check))
    }

    /// A MAIL whose check of the login waited [`Services::store_timeout`]: logged (held
    /// back while it repeats), and answered as a store that cannot be read (`451 4.3.0`).
    pub fn mail_check_timed_out(&self, check: &MailCheck) -> MailVerdict {
        let error = format!(
            "the store did not answer within {} s (limits.store_timeout_secs)",
            self.store_timeout.as_secs()
        );
        self.mail_verdict(check, Err(StoreError::Database(error)))
    }

    fn mail_verdict(&self, check: &MailCheck, active: Result<bool, StoreError>) -> MailVerdict {
        match active {
            Ok(true) => {}
            Ok(false) => {
                log::warn!(
                    "login of user={:?} is no longer valid (disabled or deleted): session closed",
                    check.user
                );
                return MailVerdict::LoginRevoked;
            }
            // The store refuses everything while the disk it filled is full: so does MAIL.
            Err(StoreError::NoSpace(_)) => return MailVerdict::InsufficientStorage,
            Err(error) => {
                let held = self
                    .unchecked
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .admit(Instant::now());
                if let Some(held) = held {
                    logging::mail_check_failed(&check.user, &error, held);
                }
                return MailVerdict::Unavailable;
            }
        }
        if self.free_space_ok() {
            MailVerdict::Accepted
        } else {
            MailVerdict::InsufficientStorage
        }
    }

    /// Logs when the filesystem goes under the floor or back over it, not on every MAIL.
    fn note_floor(&self, dir: &Path, free: u64, ok: bool) {
        let was_below = self.below_floor.swap(!ok, Ordering::Relaxed);
        if was_below != ok {
            return; // no change
        }
        let mib = |bytes: u64| bytes / (1024 * 1024);
        if ok {
            log::warn!(
                "{} has {} MiB free again: mail is accepted",
                dir.display(),
                mib(free)
            );
        } else {
            log::error!(
                "{} has {} MiB free, under the floor of {} MiB (limits.min_free_space_mb): \
                 MAIL gets 452 4.3.1 until space is freed",
                dir.display(),
                mib(free),
                mib(self.min_free_bytes)
            );
        }
    }

    /// Parses, renders and stores one message; returns once it is durably committed. A
    /// panic in parsing, rendering or storing is a failed delivery (`451 4.3.0`), not a
    /// lost connection.
    pub fn deliver(
        &self,
        delivery: Delivery,
        received_at: SystemTime,
    ) -> Result<MessageId, DeliveryError> {
        let (user, size) = (delivery.user.clone(), delivery.data.len());
        let stored = catch_unwind(AssertUnwindSafe(|| {
            let message = self.prepare(delivery, received_at)?;
            let _running = self.store_calls.begin(Instant::now());
            self.store.insert_packed(vec![message])
        }))
        .unwrap_or_else(|_| Err(StoreError::Database("panic while storing".into())));
        let id = stored
            .and_then(|ids| {
                // Invariant: one id per message stored.
                ids.first()
                    .copied()
                    .ok_or_else(|| StoreError::Database("insert returned no id".into()))
            })
            .map_err(|error| {
                self.counters.deliveries_failed(1);
                self.failed(|held| logging::delivery_failed(&user, &error, held));
                delivery_error(&error)
            })?;
        self.counters.messages_accepted(1);
        log_accepted(id, &user, size);
        Ok(id)
    }

    /// Stores several messages in one durable transaction (group commit). Results are in
    /// the order of `batch`: a message whose processing panics fails alone (`451 4.3.0`);
    /// a failed transaction fails every other message with the same error.
    pub fn deliver_batch(
        &self,
        batch: Vec<(Delivery, SystemTime)>,
    ) -> Vec<Result<MessageId, DeliveryError>> {
        let prepared = batch
            .into_iter()
            .map(|(delivery, received_at)| self.prepare_checked(delivery, received_at))
            .collect();
        self.store_prepared(prepared)
    }

    /// [`Services::prepare`]: everything but the transaction. A panic in parsing or rendering
    /// is a failed delivery (logged), so one bad message cannot take its batch or its thread
    /// down.
    pub fn prepare_checked(
        &self,
        delivery: Delivery,
        received_at: SystemTime,
    ) -> Result<PackedMessage, DeliveryError> {
        let user = delivery.user.clone();
        let packed = catch_unwind(AssertUnwindSafe(|| self.prepare(delivery, received_at)))
            .unwrap_or_else(|_| Err(StoreError::Database("panic while processing".into())));
        packed.map_err(|error| {
            self.counters.deliveries_failed(1);
            self.failed(|held| logging::delivery_failed(&user, &error, held));
            delivery_error(&error)
        })
    }

    /// Stores the prepared messages of a batch in one durable transaction; the second half
    /// of [`Services::deliver_batch`], for a committer that prepares ahead of its commits.
    /// Results are in the order of `prepared`: a message that failed to prepare keeps its
    /// error, the others share the transaction's fate.
    pub fn store_prepared(
        &self,
        prepared: Vec<Result<PackedMessage, DeliveryError>>,
    ) -> Vec<Result<MessageId, DeliveryError>> {
        let mut outcomes: Vec<Option<Result<MessageId, DeliveryError>>> = Vec::new();
        let mut messages = Vec::new();
        for message in prepared {
            match message {
                Ok(message) => {
                    messages.push(message);
                    outcomes.push(None);
                }
                Err(error) => outcomes.push(Some(Err(error))),
            }
        }
        // For the log lines: the store takes the messages.
        let accepted: Vec<(String, usize)> = messages
            .iter()
            .map(|message| (message.user().to_owned(), message.data_len()))
            .collect();
        let stored = catch_unwind(AssertUnwindSafe(|| {
            let _running = self.store_calls.begin(Instant::now());
            self.store.insert_packed(messages)
        }))
        .unwrap_or_else(|_| Err(StoreError::Database("panic while storing".into())));
        let stored: Vec<Result<MessageId, DeliveryError>> = match stored {
            Ok(ids) => ids.into_iter().map(Ok).collect(),
            Err(error) => {
                self.counters.deliveries_failed(accepted.len() as u64);
                self.failed(|held| logging::batch_failed(accepted.len(), &error, held));
                vec![Err(delivery_error(&error)); accepted.len()]
            }
        };
        // Paired with its message, each stored outcome logs its acceptance as it is used.
        let mut stored = stored
            .into_iter()
            .zip(&accepted)
            .map(|(outcome, (user, size))| {
                if let Ok(id) = outcome {
                    self.counters.messages_accepted(1);
                    log_accepted(id, user, *size);
                }
                outcome
            });
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.or_else(|| stored.next()).unwrap_or_else(|| {
                    Err(DeliveryError::other(
                        "internal error: the store lost a message",
                    ))
                })
            })
            .collect()
    }

    /// The record a delivery becomes, packed: parsed fields, rendered text, trace facts.
    ///
    /// Each part is packed as soon as it is ready and let go (issue 24: a delivery of the
    /// largest message stays within four times its size): the data once parsed, the HTML a
    /// piece at a time as it is rendered ([`markup::render_to`]; a small message's in one
    /// piece, not copied), then the text. So what is
    /// held at once is at most the text and the packed data and HTML, never the HTML whole
    /// nor any part twice. HTML cut at its limit is recorded as a problem.
    pub fn prepare(
        &self,
        delivery: Delivery,
        received_at: SystemTime,
    ) -> Result<PackedMessage, StoreError> {
        let Delivery {
            user,
            helo,
            peer,
            tls,
            mail_from,
            rcpt_to,
            data,
        } = delivery;
        let mut parsed = message::parse(&data);
        let mut body = BodyWriter::new();
        body.data(data);
        let text = std::mem::take(&mut parsed.text);
        let rendered = markup::render_to(&text, &mut |html| body.html(html));
        body.html_end(rendered.html);
        if let Some(cut) = rendered.cut {
            parsed.problems.push(cut.to_string());
        }
        body.text(text);
        let channel = self.channels.route(&rcpt_to).to_string();
        let message = NewMessage {
            received_at,
            user,
            mail_from,
            rcpt_to,
            trace: ReceivedTrace {
                helo,
                peer: peer.ip(),
                hostname: self.hostname.clone(),
                tls,
            },
            parsed,
            html: String::new(),
            data: Vec::new(),
            channel,
        };
        message.pack_with(body)
    }
}

impl Services {
    /// Writes a failed-delivery line through `log`, unless lines like it are held back.
    fn failed(&self, log: impl FnOnce(logging::Held)) {
        let held = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(Instant::now());
        if let Some(held) = held {
            log(held);
        }
    }
}

/// What the session is told: a full disk is `452 4.3.1`, anything else `451 4.3.0`.
fn delivery_error(error: &StoreError) -> DeliveryError {
    match error {
        StoreError::NoSpace(_) => DeliveryError::no_space(error.to_string()),
        _ => DeliveryError::other(error.to_string()),
    }
}

fn log_accepted(id: MessageId, user: &str, size: usize) {
    log::info!("message accepted id={id} user={user:?} size={size}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use atacama_core::smtp::TlsInfo;
    use atacama_store::Store;
    use std::time::{Duration, UNIX_EPOCH};

    fn services() -> (tempfile::TempDir, Services) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_in(dir.path(), 4).unwrap());
        (dir, Services::new(store, "mail.example"))
    }

    fn delivery(tls: bool) -> Delivery {
        Delivery {
            user: "alice".into(),
            helo: "client.example".into(),
            peer: "192.0.2.7:40000".parse().unwrap(),
            tls: tls.then(|| TlsInfo {
                version: "TLSv1.3".into(),
                cipher: "TLS13_AES_128_GCM_SHA256".into(),
            }),
            mail_from: "alice".into(),
            rcpt_to: vec!["bob@example.test".into()],
            data: b"Subject: hi\r\n\r\n<b>bold</b> & more\r\n".to_vec(),
        }
    }

    fn auth(user: &str, password: &str) -> AuthRequest {
        AuthRequest {
            mechanism: atacama_core::smtp::Mechanism::Plain,
            username: user.into(),
            password: password.into(),
        }
    }

    /// The commit path routes each message by its recipients (`Channels::route`).
    #[test]
    fn each_delivery_is_stored_in_the_channel_its_recipients_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path(), 4).unwrap();
        let names = |n: &[&str]| n.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let channels =
            Channels::new(None, &names(&["general", "travel"]), &names(&["family"])).unwrap();
        let s = Services::new(Arc::new(store), "mail.example").with_channels(channels);
        for (rcpt, channel) in [
            (&["bob@example.test"][..], "general"),
            (&["post+travel@example.test"], "travel"),
            (&["general+travel@example.test"], "general"),
            (&["nobody@example.test", "Family@example.test"], "family"),
        ] {
            let mut d = delivery(true);
            d.rcpt_to = rcpt.iter().map(|r| r.to_string()).collect();
            let id = s.deliver(d, UNIX_EPOCH + Duration::from_secs(1)).unwrap();
            assert_eq!(s.store().message(id).unwrap().channel, channel, "{rcpt:?}");
        }
    }

    /// `Services::open` gives the store `limits.store_reopen_timeout_secs` and puts the floor
    /// of `limits.min_free_space_mb` on the data directory, where the redb file is.
    #[test]
    fn open_takes_the_give_up_time_and_the_floor_from_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.auth.bcrypt_cost = 4;
        config.limits.store_reopen_timeout_secs = 7;
        config.limits.min_free_space_mb = atacama_core::config::MAX_MIN_FREE_SPACE_MB;
        let s = Services::open(&config).unwrap();
        assert_eq!(s.give_up_after(), Duration::from_secs(7));
        assert_eq!(s.floor_dir.as_deref(), Some(config.data_dir.as_path()));
        assert!(!s.free_space_ok(), "no test disk has 1 TiB free");
        assert_eq!(s.bcrypt_cost(), 4);
    }

    #[test]
    fn services_can_be_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Services>();
    }

    #[test]
    fn authenticate_accepts_only_an_active_user_with_the_right_password() {
        let (_dir, s) = services();
        s.store().add_user("alice", "pw", UNIX_EPOCH).unwrap();
        s.store().add_user("dora", "pw", UNIX_EPOCH).unwrap();
        s.store().disable_user("dora", UNIX_EPOCH).unwrap();
        assert_eq!(s.authenticate(&auth("alice", "pw")), AuthOutcome::Accepted);
        assert_eq!(
            s.authenticate(&auth("alice", "nope")),
            AuthOutcome::Rejected
        );
        assert_eq!(s.authenticate(&auth("nobody", "pw")), AuthOutcome::Rejected);
        assert_eq!(s.authenticate(&auth("dora", "pw")), AuthOutcome::Rejected);
        assert_eq!(s.authenticate(&auth("", "")), AuthOutcome::Rejected);
    }

    #[test]
    fn check_mail_refuses_a_login_disabled_or_deleted_since_auth() {
        let (_dir, s) = services();
        s.store().add_user("alice", "pw", UNIX_EPOCH).unwrap();
        let check = |user: &str| {
            s.check_mail(&MailCheck {
                user: user.to_string(),
            })
        };
        assert_eq!(check("alice"), MailVerdict::Accepted);
        s.store().disable_user("alice", UNIX_EPOCH).unwrap();
        assert_eq!(check("alice"), MailVerdict::LoginRevoked);
        s.store().enable_user("alice", UNIX_EPOCH).unwrap();
        assert_eq!(check("alice"), MailVerdict::Accepted);
        s.store().delete_user("alice").unwrap();
        assert_eq!(check("alice"), MailVerdict::LoginRevoked);
    }

    #[test]
    fn check_mail_refuses_below_the_free_space_floor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path(), 4).unwrap();
        store.add_user("alice", "pw", UNIX_EPOCH).unwrap();
        let free = atacama_store::free_bytes(dir.path()).unwrap();
        let check = MailCheck {
            user: "alice".into(),
        };
        let s = Services::new(Arc::new(store), "mail.example")
            .with_min_free_space(dir.path(), free.saturating_mul(4));
        assert_eq!(s.check_mail(&check), MailVerdict::InsufficientStorage);
        assert_eq!(s.check_mail(&check), MailVerdict::InsufficientStorage);
        let b = dir.path().join("b");
        let s =
            Services::new(Arc::new(Store::open_in(&b, 4).unwrap()), "m").with_min_free_space(&b, 1);
        s.store().add_user("alice", "pw", UNIX_EPOCH).unwrap();
        assert_eq!(s.check_mail(&check), MailVerdict::Accepted);
    }

    #[test]
    fn deliver_stores_trace_header_data_and_rendered_text() {
        let (_dir, s) = services();
        let received_at = UNIX_EPOCH + Duration::from_secs(1_772_546_709);
        let d = delivery(true);
        let id = s.deliver(d.clone(), received_at).unwrap();
        let raw = s.store().raw_message(id).unwrap();
        let expected_header = "Received: from client.example ([192.0.2.7])\r\n\
             \t(using TLSv1.3 with cipher TLS13_AES_128_GCM_SHA256)\r\n\
             \tby mail.example with ESMTPSA id 1;\r\n\
             \tTue, 03 Mar 2026 14:05:09 +0000\r\n";
        assert_eq!(raw, [expected_header.as_bytes(), &d.data].concat());
        let stored = s.store().message(id).unwrap();
        let parsed = message::parse(&d.data);
        assert_eq!(stored.text, parsed.text);
        assert_eq!(stored.html, markup::render(&parsed.text));
        assert_eq!(stored.headers, parsed.headers);
        assert_eq!(
            (stored.user.as_str(), stored.mail_from.as_str()),
            ("alice", "alice")
        );
        assert_eq!(stored.rcpt_to, d.rcpt_to);
        assert_eq!(stored.size, raw.len() as u64);
    }

    #[test]
    fn deliver_without_tls_says_esmtpa() {
        let (_dir, s) = services();
        let id = s.deliver(delivery(false), UNIX_EPOCH).unwrap();
        let raw = String::from_utf8(s.store().raw_message(id).unwrap()).unwrap();
        assert!(
            raw.contains("\r\n\tby mail.example with ESMTPA id 1;\r\n"),
            "{raw}"
        );
        assert!(!raw.contains("using"));
    }

    #[test]
    fn deliver_batch_returns_ids_in_order() {
        let (_dir, s) = services();
        let batch = vec![(delivery(true), UNIX_EPOCH), (delivery(false), UNIX_EPOCH)];
        let results = s.deliver_batch(batch);
        assert_eq!(results, [Ok(MessageId(1)), Ok(MessageId(2))]);
        assert_eq!(s.deliver_batch(Vec::new()), []);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn free_space_ok_is_false_below_the_floor_and_true_again_once_space_is_freed() {
        let fs = atacama_store::testing::Tmpfs::mount(64);
        let store = Store::open_in(fs.path(), 4).unwrap();
        let floor = 8 << 20;
        let s =
            Services::new(Arc::new(store), "mail.example").with_min_free_space(fs.path(), floor);
        // The zero-ahead threads of a new store take their share within moments.
        std::thread::sleep(Duration::from_millis(500));
        assert!(s.free_space_ok());
        let free = atacama_store::free_bytes(fs.path()).unwrap();
        let filler = fs.path().join("filler");
        std::fs::write(&filler, vec![1u8; (free - floor + (1 << 20)) as usize]).unwrap();
        assert!(!s.free_space_ok(), "1 MiB under the floor");
        std::fs::remove_file(&filler).unwrap();
        assert!(s.free_space_ok());
        std::fs::write(&filler, vec![1u8; (free - floor / 2) as usize]).unwrap();
        assert!(!s.free_space_ok());
        assert!(
            s.with_min_free_space(fs.path(), 0).free_space_ok(),
            "no floor, no refusal"
        );
    }

    #[test]
    fn free_space_ok_without_a_measure_lets_mail_through() {
        let (dir, s) = services();
        let s = s.with_min_free_space(dir.path(), u64::MAX);
        assert!(!s.free_space_ok(), "no disk has that much room");
        // A data directory gone from under the server: no measure, no floor.
        let gone = dir.path().to_path_buf();
        drop(dir);
        assert!(!gone.exists());
        assert!(s.free_space_ok());
    }

    #[test]
    fn a_full_disk_is_a_no_space_delivery_error_and_anything_else_other() {
        let full = StoreError::NoSpace("No space left on device (os error 28)".into());
        assert_eq!(
            delivery_error(&full),
            DeliveryError::no_space("out of disk space: No space left on device (os error 28)")
        );
        assert_eq!(
            delivery_error(&StoreError::Io("EIO".into())).kind,
            atacama_core::smtp::DeliveryFailure::Other
        );
    }

    #[test]
    fn store_prepared_keeps_a_failed_preparation_in_its_place() {
        let (_dir, s) = services();
        let (a, b) = (delivery(true), delivery(false));
        let failed = DeliveryError::other("panic while processing");
        let prepared = vec![
            s.prepare_checked(a, UNIX_EPOCH),
            Err(failed.clone()),
            s.prepare_checked(b.clone(), UNIX_EPOCH),
        ];
        let outcomes = s.store_prepared(prepared);
        assert_eq!(outcomes, [Ok(MessageId(1)), Err(failed), Ok(MessageId(2))]);
        let stored = s.store().messages(None, None).unwrap();
        assert_eq!(stored.len(), 2);
        assert!(
            s.store()
                .raw_message(MessageId(2))
                .unwrap()
                .ends_with(&b.data)
        );
    }
}
