//! How deliveries reach the store, the same in both runtimes (`[limits] group_commit`).
//!
//! Group commit (the default): deliveries from all connections go to a two-stage pipeline.
//! A `prepare` thread parses and renders each message ([`Services::prepare_checked`]) as it
//! arrives; the `commit` thread stores whatever prepared messages queued up while its
//! previous commit ran, in one durable transaction ([`Services::store_prepared`]; a lone
//! message is made durable by a journal record instead, see [`atacama_store`]). One fsync
//! then acknowledges many messages, the next batch is processed while the disk syncs the
//! last, and each `250` still waits for the commit that holds its message (DESIGN.md,
//! Storage). A lone message waits for nobody: each stage takes what is queued, it never
//! waits for more. When no other delivery is in flight, the commit thread, idle, prepares
//! the message itself: the pipeline has nothing to overlap, and a hand-off between threads
//! is then pure latency.
//!
//! Without it, each delivery is its own transaction, run by the runtime where it runs
//! blocking work ([`Services::deliver`], on a thread of its own: [`PROCESSING_STACK`]).
//!
//! ```text
//! match state.deliveries.submit(delivery, received_at) {
//!     Submitted::Queued(pending) => pending.wait() (a thread)
//!         | pending.await until pending.deadline(), then pending.timed_out_later() (a task),
//!     Submitted::Direct(job) => job.run() on a thread that may block,
//! }
//! ```
//!
//! Either way a delivery waits `limits.store_timeout_secs` at most: a database that stopped
//! answering gets the client a `451 4.3.0` to try again later, not a wait without end.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use super::completion::{self, Completer, Completion};
use crate::service::Services;
use atacama_core::logging::{self, Repeats};
use atacama_core::smtp::{Delivery, DeliveryError, MessageId};
use atacama_store::PackedMessage;

/// Messages stored in one transaction at most: bounds the memory of a batch and the
/// latency of its first message.
pub const MAX_BATCH: usize = 64;

/// The stack of every thread that parses and renders messages: the prepare and commit
/// threads, and the one a direct delivery runs on.
///
/// mail-parser recurses once per attached-message level. `message::parse` refuses more than
/// `message::MAX_DEPTH` (32) levels; at that bound the costliest shape (every level inside a
/// base64 part) takes ~37 KiB of stack in a release build and ~147 KiB in a debug one (0.9
/// and 3.6 KiB a level, measured with `core/tests/message_nesting.rs`). 4 MiB leaves a wide
/// margin, whatever the platform's default or `RUST_MIN_STACK` say; untouched, it is only
/// address space.
pub const PROCESSING_STACK: usize = 4 << 20;

/// How long the commit thread waits for work before it checkpoints the journal
/// ([`atacama_store::Backend::checkpoint`]). Not needed for durability (the journal is durable);
/// it only keeps what a restart replays short.
pub const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);

/// What a delivery comes to: the id of the stored message, or why it was not stored.
pub type Outcome = Result<MessageId, DeliveryError>;

/// The way deliveries reach the store, chosen by `[limits] group_commit`.
#[derive(Debug)]
pub enum Deliveries {
    /// One transaction per delivery, run by the runtime.
    Direct(Arc<Services>),
    /// Batched by the committer's prepare and commit threads.
    Grouped(Committer),
}

/// What to do with a submitted delivery.
#[derive(Debug)]
#[must_use = "a delivery is stored only once it is waited for or run"]
pub enum Submitted {
    /// Queued for the committer: wait for (or await) its outcome.
    Queued(PendingDelivery),
    /// To be stored by the caller, on a thread that may block.
    Direct(Box<DirectDelivery>),
}

/// A delivery queued for the committer: [`PendingDelivery::wait`] on a thread, or `.await`
/// in a task (it needs no particular executor) until [`PendingDelivery::deadline`], then
/// [`PendingDelivery::timed_out_later`]'s answer.
#[derive(Debug)]
#[must_use = "the outcome decides the reply"]
pub struct PendingDelivery {
    outcome: Completion<Outcome>,
    /// `limits.store_timeout_secs` after it was submitted.
    deadline: Instant,
    user: String,
    services: Arc<Services>,
}

/// A delivery its runtime stores itself (group commit off).
#[derive(Debug)]
#[must_use = "a delivery is stored only once it is run"]
pub struct DirectDelivery {
    services: Arc<Services>,
    delivery: Delivery,
    received_at: SystemTime,
}

/// The sending side of the committer's threads. Dropping it lets them store what is queued
/// and end; their handles on the store go with them.
#[derive(Debug)]
pub struct Committer {
    /// To the prepare thread.
    jobs: Sender<Job>,
    /// To the commit thread, for a delivery it prepares itself.
    alone: Sender<Work>,
    /// Deliveries submitted and not yet answered.
    in_flight: Arc<AtomicUsize>,
    /// Told of each delivery ([`Services::mail_pressure`]).
    services: Arc<Services>,
}

/// One delivery waiting for its commit.
#[derive(Debug)]
struct Job {
    delivery: Delivery,
    received_at: SystemTime,
    done: Completer<Outcome>,
}

/// A delivery processed into its record (or its processing failure), waiting for a commit.
#[derive(Debug)]
struct Prepared {
    message: Result<PackedMessage, DeliveryError>,
    done: Completer<Outcome>,
}

/// What the commit thread receives.
#[derive(Debug)]
enum Work {
    /// From the prepare thread.
    Prepared(Box<Prepared>),
    /// Submitted while nothing else was in flight: to be prepared by the commit thread.
    Alone(Box<Job>),
}

impl Deliveries {
    /// Group commit through new committer threads if `grouped`, else one transaction each.
    pub fn new(services: Arc<Services>, grouped: bool) -> std::io::Result<Deliveries> {
        if grouped {
            Committer::start(services).map(Deliveries::Grouped)
        } else {
            Ok(Deliveries::Direct(services))
        }
    }

    /// Hands over a delivery received at `received_at`; never blocks.
    pub fn submit(&self, delivery: Delivery, received_at: SystemTime) -> Submitted {
        match self {
            Deliveries::Direct(services) => {
                services.mail_pressure().note_delivery(Instant::now());
                Submitted::Direct(Box::new(DirectDelivery {
                    services: Arc::clone(services),
                    delivery,
                    received_at,
                }))
            }
            Deliveries::Grouped(committer) => {
                Submitted::Queued(committer.submit(delivery, received_at))
            }
        }
    }
}

impl Committer {
    /// Starts the prepare and commit threads.
    pub fn start(services: Arc<Services>) -> std::io::Result<Committer> {
        // Unbounded, yet bounded by the connection gate: a session has one delivery pending
        // at most, in one of the two queues.
        let (jobs, queue) = mpsc::channel();
        let (prepared, to_commit) = mpsc::channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        // One commit thread per transaction the store may have committing at once: one for
        // redb; several for a database server, which flushes their commits together. They
        // take turns at the queue, so each batch is what queued while the others committed.
        let to_commit = Arc::new(Mutex::new(to_commit));
        for _ in 0..services.store().concurrent_commits().max(1) {
            let (committing, queue, answered) = (
                Arc::clone(&services),
                Arc::clone(&to_commit),
                Arc::clone(&in_flight),
            );
            std::thread::Builder::new()
                .name("commit".into())
                .stack_size(PROCESSING_STACK)
                .spawn(move || commit_loop(&committing, &queue, &answered))?;
        }
        let alone = prepared.clone();
        let preparing = Arc::clone(&services);
        std::thread::Builder::new()
            .name("prepare".into())
            .stack_size(PROCESSING_STACK)
            .spawn(move || prepare_loop(&preparing, &queue, &prepared))?;
        Ok(Committer {
            jobs,
            alone,
            in_flight,
            services,
        })
    }

    /// Queues `delivery` for the next commit.
    pub fn submit(&self, delivery: Delivery, received_at: SystemTime) -> PendingDelivery {
        let now = Instant::now();
        self.services.mail_pressure().note_delivery(now);
        let user = delivery.user.clone();
        let (done, outcome) = completion::pair();
        let job = Job {
            delivery,
            received_at,
            done,
        };
        // If the thread is gone the job comes back and is dropped: `closing` answers it.
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            let _ = self.alone.send(Work::Alone(Box::new(job)));
        } else {
            let _ = self.jobs.send(job);
        }
        PendingDelivery {
            outcome,
            deadline: now + self.services.store_timeout(),
            user,
            services: Arc::clone(&self.services),
        }
    }
}

impl PendingDelivery {
    /// Blocks the thread until the message is committed (or failed), or the deadline.
    pub fn wait(self) -> Outcome {
        match self.outcome.wait_until(self.deadline) {
            Ok(outcome) => outcome.unwrap_or_else(closing),
            Err(_) => self.services.commit_timed_out(&self.user),
        }
    }

    /// When a task awaiting this should stop and answer [`PendingDelivery::timed_out_later`].
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// What a task answers once the deadline passed without an outcome (`451 4.3.0`), for
    /// after it let go of this.
    pub fn timed_out_later(&self) -> impl FnOnce() -> Outcome + Send + 'static {
        let (services, user) = (Arc::clone(&self.services), self.user.clone());
        move || services.commit_timed_out(&user)
    }
}

impl Future for PendingDelivery {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        Pin::new(&mut self.outcome)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or_else(closing))
    }
}

impl DirectDelivery {
    /// Processes and stores the message in its own durable transaction; blocks.
    ///
    /// The work runs on a thread of its own with [`PROCESSING_STACK`]: the caller's thread
    /// (smol's blocking pool, a connection thread) has whatever stack its spawner chose.
    pub fn run(self) -> Outcome {
        let DirectDelivery {
            services,
            delivery,
            received_at,
        } = self;
        let user = delivery.user.clone();
        let deadline = Instant::now() + services.store_timeout();
        let (answer, outcome) = mpsc::channel();
        let delivering = Arc::clone(&services);
        let worker = std::thread::Builder::new()
            .name("deliver".into())
            .stack_size(PROCESSING_STACK)
            .spawn(move || {
                // Nobody listens after the deadline: the outcome is logged all the same.
                let _ = answer.send(delivering.deliver(delivery, received_at));
            });
        match worker {
            // A worker past the deadline runs on, detached, and ends with its commit.
            Ok(_) => match outcome.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(outcome) => outcome,
                Err(RecvTimeoutError::Timeout) => services.commit_timed_out(&user),
                // `deliver` catches panics; this one came from outside it.
                Err(RecvTimeoutError::Disconnected) => {
                    Err(DeliveryError::other("panic while delivering"))
                }
            },
            Err(error) => {
                log::error!("no thread for a delivery of user={user:?}: {error}");
                Err(DeliveryError::other(format!(
                    "cannot start a thread: {error}"
                )))
            }
        }
    }
}

/// The outcome of a delivery whose committer went away without an answer.
fn closing() -> Outcome {
    Err(DeliveryError::other("the store is closing"))
}

/// Processes deliveries in arrival order until every [`Committer`] is gone; dropping
/// `prepared` at the end lets the commit thread finish the queue and end.
fn prepare_loop(services: &Services, queue: &Receiver<Job>, prepared: &Sender<Work>) {
    for job in queue {
        let message = services.prepare_checked(job.delivery, job.received_at);
        let ready = Prepared {
            message,
            done: job.done,
        };
        // The commit thread outlives this one; if it is gone anyway, `closing` answers.
        if prepared.send(Work::Prepared(Box::new(ready))).is_err() {
            return;
        }
    }
}

/// Stores batches until the prepare thread and every [`Committer`] are gone and the queue
/// is empty.
fn commit_loop(services: &Services, queue: &Mutex<Receiver<Work>>, in_flight: &AtomicUsize) {
    let mut checkpoint_failed = Repeats::new();
    loop {
        // The queue is held only while a batch is taken: the other commit threads, if any,
        // take the next one meanwhile.
        let work = {
            let queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
            let first = match queue.recv_timeout(IDLE_CHECKPOINT) {
                Ok(first) => first,
                Err(RecvTimeoutError::Timeout) => {
                    // Nothing came for a while: what only the journal holds goes into the
                    // database durably now, while no delivery waits for it.
                    if let Err(error) = services.store().checkpoint()
                        && let Some(held) = checkpoint_failed.admit(Instant::now())
                    {
                        logging::checkpoint_failed(&error, held);
                    }
                    match queue.recv() {
                        Ok(first) => first,
                        Err(_) => return,
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut work = vec![first];
            // What was prepared during the last commit; never a wait for more.
            work.extend(queue.try_iter().take(MAX_BATCH - 1));
            work
        };
        let (messages, done): (Vec<_>, Vec<_>) = work
            .into_iter()
            .map(|work| match work {
                Work::Prepared(ready) => {
                    let Prepared { message, done } = *ready;
                    (message, done)
                }
                Work::Alone(job) => {
                    let Job {
                        delivery,
                        received_at,
                        done,
                    } = *job;
                    (services.prepare_checked(delivery, received_at), done)
                }
            })
            .unzip();
        let outcomes = services.store_prepared(messages);
        // A connection that is gone drops its answer; its message is stored all the same.
        for (done, outcome) in done.into_iter().zip(outcomes) {
            // Counted down before the answer, so that the connection's next message, sent
            // on it, finds the pipeline idle.
            in_flight.fetch_sub(1, Ordering::AcqRel);
            done.complete(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atacama_store::Store;
    use std::time::UNIX_EPOCH;

    fn services() -> (tempfile::TempDir, Arc<Services>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_in(dir.path(), 4).unwrap());
        (dir, Arc::new(Services::new(store, "mail.example")))
    }

    fn delivery(subject: &str) -> Delivery {
        Delivery {
            user: "alice".into(),
            helo: "client.example".into(),
            peer: "192.0.2.7:40000".parse().unwrap(),
            tls: None,
            mail_from: "alice".into(),
            rcpt_to: vec!["bob@example.test".into()],
            data: format!("Subject: {subject}\r\n\r\nbody\r\n").into_bytes(),
        }
    }

    #[test]
    fn deliveries_from_many_threads_are_each_stored_once() {
        let (_dir, services) = services();
        let deliveries = Deliveries::new(Arc::clone(&services), true).unwrap();
        let mut ids: Vec<MessageId> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|n| {
                    let deliveries = &deliveries;
                    scope.spawn(move || {
                        let Submitted::Queued(pending) =
                            deliveries.submit(delivery(&format!("m{n}")), UNIX_EPOCH)
                        else {
                            panic!("group commit queues");
                        };
                        pending.wait().unwrap()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        ids.sort();
        assert_eq!(ids, (1..=8).map(MessageId).collect::<Vec<_>>());
        for id in ids {
            assert!(services.store().message(id).is_ok());
        }
    }

    /// On PostgreSQL several commit threads take turns at the queue: 200 deliveries from 20
    /// threads are each stored once, under ids no two share, the subjects all there.
    #[test]
    fn several_commit_threads_store_each_delivery_once() {
        let url = atacama_store::testing::Postgres::shared().fresh_database();
        let config = atacama_store::pg::PgConfig {
            url,
            password: None,
            pool_size: 8,
        };
        let store = atacama_store::pg::PgStore::open(&config, 4, "general").unwrap();
        assert_eq!(atacama_store::Backend::concurrent_commits(&store), 4);
        let services = Arc::new(Services::new(Arc::new(store), "mail.example"));
        let deliveries = Deliveries::new(Arc::clone(&services), true).unwrap();
        let mut ids: Vec<MessageId> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..20)
                .map(|n| {
                    let deliveries = &deliveries;
                    scope.spawn(move || {
                        (0..10)
                            .map(|m| {
                                let subject = format!("t{n}m{m}");
                                let Submitted::Queued(pending) =
                                    deliveries.submit(delivery(&subject), UNIX_EPOCH)
                                else {
                                    panic!("group commit queues");
                                };
                                pending.wait().unwrap()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 200);
        let mut subjects: Vec<String> = ids
            .iter()
            .map(|&id| {
                let message = services.store().message(id).unwrap();
                message.headers.subject.unwrap()
            })
            .collect();
        subjects.sort();
        subjects.dedup();
        assert_eq!(subjects.len(), 200);
    }

    #[test]
    fn each_delivery_tells_the_web_side_that_mail_is_arriving() {
        for grouped in [true, false] {
            let (_dir, services) = services();
            assert!(!services.mail_pressure().busy(Instant::now()));
            let deliveries = Deliveries::new(Arc::clone(&services), grouped).unwrap();
            let outcome = match deliveries.submit(delivery("busy"), UNIX_EPOCH) {
                Submitted::Queued(pending) => pending.wait(),
                Submitted::Direct(job) => job.run(),
            };
            assert!(outcome.is_ok());
            assert!(
                services.mail_pressure().busy(Instant::now()),
                "grouped={grouped}"
            );
        }
    }

    #[test]
    fn a_lone_delivery_is_committed_without_waiting_for_company() {
        let (_dir, services) = services();
        let committer = Committer::start(services).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(
            committer.submit(delivery("alone"), UNIX_EPOCH).wait(),
            Ok(MessageId(1))
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn once_every_delivery_is_answered_the_next_one_is_alone() {
        let (_dir, services) = services();
        let committer = Committer::start(Arc::clone(&services)).unwrap();
        // Ten at once: the first is prepared by the commit thread, the rest by the prepare
        // thread; all are answered, and then nothing is in flight.
        let pending: Vec<_> = (0..10)
            .map(|n| committer.submit(delivery(&format!("burst{n}")), UNIX_EPOCH))
            .collect();
        for outcome in pending {
            assert!(outcome.wait().is_ok());
        }
        assert_eq!(committer.in_flight.load(Ordering::Acquire), 0);
        // One at a time: each is alone, and stored.
        for n in 0..3 {
            let id = committer
                .submit(delivery(&format!("lone{n}")), UNIX_EPOCH)
                .wait()
                .unwrap();
            let stored = services.store().message(id).unwrap();
            assert_eq!(stored.headers.subject, Some(format!("lone{n}")));
            assert_eq!(committer.in_flight.load(Ordering::Acquire), 0);
        }
    }

    #[test]
    fn without_group_commit_the_caller_stores_the_message() {
        let (_dir, services) = services();
        let deliveries = Deliveries::new(Arc::clone(&services), false).unwrap();
        let Submitted::Direct(job) = deliveries.submit(delivery("direct"), UNIX_EPOCH) else {
            panic!("no committer without group commit");
        };
        assert_eq!(job.run(), Ok(MessageId(1)));
    }

    #[test]
    fn a_direct_delivery_runs_on_a_stack_of_its_own() {
        use base64::Engine as _;
        // Nested to the bound, every level inside base64: ~147 KiB of stack in a debug build,
        // more than the caller's thread below has.
        let levels = atacama_core::message::MAX_DEPTH - 1;
        let inner =
            "Content-Type: message/rfc822\r\n\r\n".repeat(levels) + "Subject: in\r\n\r\nx\r\n";
        let mut data = "Subject: deep\r\nContent-Type: message/rfc822\r\n\
                        Content-Transfer-Encoding: base64\r\n\r\n"
            .to_owned();
        data += &base64::engine::general_purpose::STANDARD.encode(inner);
        data += "\r\n";
        let (_dir, services) = services();
        let deliveries = Deliveries::new(Arc::clone(&services), false).unwrap();
        let Submitted::Direct(job) = deliveries.submit(
            Delivery {
                data: data.into_bytes(),
                ..delivery("deep")
            },
            UNIX_EPOCH,
        ) else {
            panic!("no committer without group commit");
        };
        let outcome = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || job.run())
            .unwrap()
            .join()
            .unwrap();
        let stored = services.store().message(outcome.unwrap()).unwrap();
        assert_eq!(stored.headers.subject.as_deref(), Some("deep"));
        assert!(stored.problems.is_empty(), "{:?}", stored.problems);
    }

    #[test]
    fn a_dropped_committer_stores_what_is_queued_and_lets_go_of_the_store() {
        let (_dir, services) = services();
        let committer = Committer::start(Arc::clone(&services)).unwrap();
        let pending: Vec<_> = (0..3)
            .map(|n| committer.submit(delivery(&format!("q{n}")), UNIX_EPOCH))
            .collect();
        drop(committer);
        for outcome in pending {
            assert!(outcome.wait().is_ok());
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while Arc::strong_count(&services) > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(Arc::strong_count(&services), 1, "the thread has ended");
    }

    #[test]
    fn a_committer_that_is_gone_answers_store_closing() {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (alone, to_commit) = mpsc::channel::<Work>();
        drop((queue, to_commit));
        let (_dir, services) = services();
        let committer = Committer {
            jobs,
            alone,
            in_flight: Arc::new(AtomicUsize::new(0)),
            services,
        };
        assert_eq!(
            committer.submit(delivery("late"), UNIX_EPOCH).wait(),
            Err(DeliveryError::other("the store is closing"))
        );
    }
}
