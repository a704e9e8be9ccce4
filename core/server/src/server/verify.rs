//! The password checks of both runtimes, on threads of their own at the lowest CPU priority.
//!
//! A cost-12 bcrypt check is about 0.3 s of CPU, and a burst of logins keeps every core busy
//! for seconds. The first verifier thread, the steady one, runs at nice +10 and takes each
//! job first; the others run under `SCHED_IDLE` (Linux keeps the policy per thread) and take
//! a job only while the steady one is checking. So a burst is checked on cores that nothing
//! else wants, and a mail thread that wakes takes the core from those checks at once. One
//! check at a time still gets a share of a core however busy the host is: `SCHED_IDLE` alone
//! starved every login while other processes kept both cores busy. A check that an idle
//! thread has run for twice as long as the steady one's last took, with less than a quarter
//! of a core, is starved, not sharing a core with its neighbours: it is handed over, the
//! steady thread checks it again, and the first verdict answers. Logins wait while mail keeps every
//! core busy, which sheds the load in the right place: on sessions not yet admitted.
//!
//! Where `SCHED_IDLE` is refused the other threads fall back to nice +10 too. The figures
//! that decided it: ARCHITECTURE.md, "Password checks under `SCHED_IDLE`".
//!
//! Each job has a give-up deadline, `verifier_wait_timeout` after it is queued: a job still
//! queued then is answered [`Verdict::Busy`] (`454 4.7.0`) without being checked, by a thread
//! of its own at the ordinary priority, so the answer is on time even while mail keeps every
//! core busy. A check still running `verifier_wait_timeout` after it started is starved, and
//! is answered `Busy` the same way; it runs on, and its verdict goes nowhere. At the end of a shutdown's grace period [`Verifier::abort`] answers every queued
//! job at once, so no connection waits for a check that has not started. A runtime's part:
//!
//! ```text
//! sleep(ticket.delay());
//! let verdict = state.verifier.verify(Arc::clone(&request)).await  (smol) | .wait() (std)
//! ticket.finish(&request, verdict, now)
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::completion::{self, Completer, Completion};
use crate::priority::ThreadCpu;
use crate::service::Services;
use atacama_core::policy::Verdict;
use atacama_core::smtp::{AuthOutcome, AuthRequest};

/// How many nice values below the daemon's own the steady verifier thread runs (and the
/// others where `SCHED_IDLE` is refused): CFS then gives a thread at the daemon's own about
/// ten times its share of a contended core.
pub const VERIFIER_NICE: i32 = 10;

/// A check on an idle thread is handed over to the steady one after running twice as long as
/// the steady one's last check took, and never sooner than this, if it is starved: if its
/// thread has had less than a quarter of a core since it started ([`STARVED_BELOW`]).
const HAND_OVER_AFTER_AT_LEAST: Duration = Duration::from_millis(100);

/// A check whose thread has had less than 1/this of a core since it started is starved.
const STARVED_BELOW: u32 = 4;

/// The queue of the verifier threads. Dropping it ends them once the queue is empty.
#[derive(Debug)]
pub struct Verifier {
    queue: Arc<Queue>,
    give_up_after: Duration,
}

/// A check queued for the verifier threads: [`PendingVerdict::wait`] on a thread, or
/// `.await` in a task.
#[derive(Debug)]
#[must_use = "the verdict decides the reply"]
pub struct PendingVerdict(Completion<Verdict>);

/// The jobs not yet started, shared by the checking threads and the deadline thread.
#[derive(Debug, Default)]
struct Queue {
    waiting: Mutex<Waiting>,
    /// Signalled for the steady thread: a job was queued, or the verifier is gone.
    queued_steady: Condvar,
    /// Signalled for the idle threads: a job was queued while the steady thread was checking,
    /// or the verifier is gone.
    queued: Condvar,
    /// Signalled for the deadline thread: the first deadline changed, or the verifier is gone.
    rescheduled: Condvar,
}

#[derive(Debug, Default)]
struct Waiting {
    /// Oldest first. Every job gets the same give-up time, so deadlines grow (but for the
    /// moment between reading the clock and taking the lock: a job is then given up late by
    /// that moment).
    jobs: VecDeque<Job>,
    /// The jobs being checked, each with the time its client hears `Busy` if the check has
    /// not answered by then.
    running: Vec<Running>,
    /// The ticket of the next job to start.
    next_ticket: u64,
    /// Checks an idle thread has run too long, by ticket, for the steady thread to run too.
    handed_over: VecDeque<u64>,
    /// How long the steady thread's last check took: a check on an idle thread that takes
    /// twice as long is starved.
    steady_took: Duration,
    /// The steady thread is checking a job: the idle threads may take the next ones.
    steady_checking: bool,
    /// The server aborts: every job is answered `Busy` at once.
    aborting: bool,
    /// The [`Verifier`] is gone: the threads end once `jobs` is empty.
    closed: bool,
}

/// A job being checked: its thread answers through [`Waiting::finish`] with its ticket.
#[derive(Debug)]
struct Running {
    ticket: u64,
    request: Arc<AuthRequest>,
    answer_by: Instant,
    /// When to hand the check to the steady thread if it is starved by then: for a check on
    /// an idle thread, until it is.
    hand_over_at: Option<Instant>,
    began: Instant,
    /// The CPU clock of the idle thread checking it, and its reading when the check began.
    cpu: Option<(ThreadCpu, Duration)>,
    done: Completer<Verdict>,
}

#[derive(Debug)]
struct Job {
    request: Arc<AuthRequest>,
    give_up_at: Instant,
    done: Completer<Verdict>,
}

impl Verifier {
    /// Starts `threads` verifier threads (at least one) checking against `services`, and the
    /// thread that gives up on a job queued for longer than `give_up_after`.
    pub fn start(
        services: Arc<Services>,
        threads: usize,
        give_up_after: Duration,
    ) -> std::io::Result<Verifier> {
        let reporting = Arc::clone(&services);
        Verifier::start_with(
            threads,
            give_up_after,
            move |request| services.check_password(request),
            move |request, verified| reporting.report_check(request, verified),
        )
    }

    /// [`Verifier::start`] with `check` in place of the store's, and `report` turning the
    /// check that answers into its outcome (a check handed over runs twice, and only the first
    /// to finish is reported).
    fn start_with<R: 'static>(
        threads: usize,
        give_up_after: Duration,
        check: impl Fn(&AuthRequest) -> R + Send + Sync + 'static,
        report: impl Fn(&AuthRequest, R) -> AuthOutcome + Send + Sync + 'static,
    ) -> std::io::Result<Verifier> {
        let verifier = Verifier {
            queue: Arc::default(),
            give_up_after,
        };
        let (check, report) = (Arc::new(check), Arc::new(report));
        for n in 0..threads.max(1) {
            let rank = if n == 0 { Rank::Steady } else { Rank::Idle };
            let queue = Arc::clone(&verifier.queue);
            let (check, report) = (Arc::clone(&check), Arc::clone(&report));
            std::thread::Builder::new()
                .name("verify".into())
                .spawn(move || check_loop(&queue, &*check, &*report, rank, give_up_after))?;
        }
        let queue = Arc::clone(&verifier.queue);
        std::thread::Builder::new()
            .name("verify-deadline".into())
            .spawn(move || deadline_loop(&queue))?;
        Ok(verifier)
    }

    /// Queues a check, to be given up `verifier_wait_timeout` from now; never blocks.
    pub fn verify(&self, request: Arc<AuthRequest>) -> PendingVerdict {
        self.queue(request, Instant::now() + self.give_up_after)
    }

    /// Answers `Busy` to every job not yet started, and to every later one at once; the
    /// checks running finish. Called once the shutdown's grace period is over.
    pub fn abort(&self) {
        let mut waiting = self.queue.lock();
        waiting.aborting = true;
        waiting.give_up(Instant::now());
    }

    fn queue(&self, request: Arc<AuthRequest>, give_up_at: Instant) -> PendingVerdict {
        let (done, verdict) = completion::pair();
        let job = Job {
            request,
            give_up_at,
            done,
        };
        let mut waiting = self.queue.lock();
        if waiting.aborting {
            job.done.complete(Verdict::Busy);
        } else {
            if waiting.jobs.is_empty() {
                self.queue.rescheduled.notify_one();
            }
            waiting.jobs.push_back(job);
            if waiting.steady_checking {
                self.queue.queued.notify_one();
            } else {
                self.queue.queued_steady.notify_one();
            }
        }
        PendingVerdict(verdict)
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.queued_steady.notify_all();
        self.queue.queued.notify_all();
        self.queue.rescheduled.notify_one();
    }
}

impl PendingVerdict {
    /// Blocks the thread until the check is done or given up.
    pub fn wait(self) -> Verdict {
        self.0.wait().unwrap_or(GONE)
    }
}

impl Future for PendingVerdict {
    type Output = Verdict;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Verdict> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|verdict| verdict.unwrap_or(GONE))
    }
}

/// The verdict when a job was dropped unanswered (its thread is gone): nothing could be
/// checked, logged as `unavailable`.
const GONE: Verdict = Verdict::Checked(AuthOutcome::TemporaryFailure);

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // The queue is whole after each statement: a poisoned lock carries no news.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Waiting {
    /// The next job to check at `now`, once those before it past their deadline are given up.
    fn next(&mut self, now: Instant) -> Option<Job> {
        self.give_up(now);
        self.jobs.pop_front()
    }

    /// Answers `Busy` to the jobs past their deadline at `now` (to all when aborting), and
    /// returns the first deadline still ahead.
    fn give_up(&mut self, now: Instant) -> Option<Instant> {
        let mut first = None;
        while let Some(job) = self.jobs.front() {
            if !self.aborting && job.give_up_at > now {
                first = Some(job.give_up_at);
                break;
            }
            if let Some(job) = self.jobs.pop_front() {
                job.done.complete(Verdict::Busy);
            }
        }
        for starved in self.running.extract_if(.., |job| job.answer_by <= now) {
            starved.done.complete(Verdict::Busy);
        }
        let running = self.running.iter().map(|job| job.answer_by).min();
        first.into_iter().chain(running).min()
    }

    /// Hands the checks that idle threads have run past their time at `now` to the steady
    /// thread; returns whether any was, and when the next one will be.
    fn hand_over(&mut self, now: Instant) -> (bool, Option<Instant>) {
        let mut any = false;
        let look_again_in = self.steady_took.max(HAND_OVER_AFTER_AT_LEAST);
        for job in &mut self.running {
            if job.hand_over_at.is_none_or(|at| at > now) {
                continue;
            }
            if job.progressing(now) {
                job.hand_over_at = Some(now + look_again_in);
            } else {
                job.hand_over_at = None;
                self.handed_over.push_back(job.ticket);
                any = true;
            }
        }
        (
            any,
            self.running.iter().filter_map(|job| job.hand_over_at).min(),
        )
    }

    /// The next check for the steady thread that an idle thread was handed and is still
    /// running: its request and ticket.
    fn next_handed_over(&mut self) -> Option<(Arc<AuthRequest>, u64)> {
        while let Some(ticket) = self.handed_over.pop_front() {
            if let Some(job) = self.running.iter().find(|job| job.ticket == ticket) {
                return Some((Arc::clone(&job.request), ticket));
            }
        }
        None
    }

    /// Notes that `job`'s check started on a thread of `rank` at `now`, to be answered `Busy`
    /// at `answer_by` if it has not finished by then; returns the ticket to
    /// [`Waiting::finish`] it with.
    fn start(&mut self, job: Job, rank: Rank, now: Instant, answer_by: Instant) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1);
        let hand_over_after = self.steady_took.saturating_mul(2);
        let idle = rank == Rank::Idle;
        let cpu = idle.then(ThreadCpu::of_this_thread).flatten();
        self.running.push(Running {
            ticket,
            request: job.request,
            answer_by,
            hand_over_at: idle.then(|| now + hand_over_after.max(HAND_OVER_AFTER_AT_LEAST)),
            began: now,
            cpu: cpu.and_then(|cpu| Some((cpu, cpu.used()?))),
            done: job.done,
        });
        ticket
    }

    /// Where the check of `ticket` is answered, unless it was given up meanwhile.
    fn finish(&mut self, ticket: u64) -> Option<Completer<Verdict>> {
        let at = self.running.iter().position(|job| job.ticket == ticket)?;
        Some(self.running.swap_remove(at).done)
    }
}

impl Running {
    /// Whether its thread has had at least a quarter of a core since the check began: then it
    /// shares a core with its neighbours, and is not starved. Without a clock to read, no.
    fn progressing(&self, now: Instant) -> bool {
        let Some((cpu, at_start)) = self.cpu else {
            return false;
        };
        let Some(used) = cpu.used() else {
            return false;
        };
        let wall = now.saturating_duration_since(self.began);
        used.saturating_sub(at_start).saturating_mul(STARVED_BELOW) >= wall
    }
}

/// Which verifier thread this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rank {
    /// The first: at [`VERIFIER_NICE`], and it takes each job first.
    Steady,
    /// The others: under `SCHED_IDLE`, taking a job only while the steady thread checks one.
    Idle,
}

/// Checks until the [`Verifier`] is gone and its queue empty. `Services::check_password` turns
/// a panic into a store error, so one bad check cannot end a thread.
fn check_loop<R>(
    queue: &Queue,
    check: &dyn Fn(&AuthRequest) -> R,
    report: &dyn Fn(&AuthRequest, R) -> AuthOutcome,
    rank: Rank,
    answer_within: Duration,
) {
    match rank {
        Rank::Steady => crate::priority::lower_thread_priority(VERIFIER_NICE),
        Rank::Idle => crate::priority::set_thread_idle(VERIFIER_NICE),
    }
    let wake = match rank {
        Rank::Steady => &queue.queued_steady,
        Rank::Idle => &queue.queued,
    };
    loop {
        // The lock is held only while waiting for a job, not while checking it.
        let (request, ticket) = {
            let mut waiting = queue.lock();
            loop {
                if rank == Rank::Steady
                    && let Some(handed_over) = waiting.next_handed_over()
                {
                    waiting.steady_checking = true;
                    if !waiting.jobs.is_empty() {
                        queue.queued.notify_one();
                    }
                    break handed_over;
                }
                let mine = rank == Rank::Steady || waiting.steady_checking;
                if let Some(job) = mine.then(|| waiting.next(Instant::now())).flatten() {
                    if rank == Rank::Steady {
                        waiting.steady_checking = true;
                    }
                    if waiting.steady_checking && !waiting.jobs.is_empty() {
                        queue.queued.notify_one();
                    }
                    let now = Instant::now();
                    let request = Arc::clone(&job.request);
                    let ticket = waiting.start(job, rank, now, now + answer_within);
                    queue.rescheduled.notify_one();
                    break (request, ticket);
                }
                if waiting.closed {
                    return;
                }
                waiting = wake.wait(waiting).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let began = Instant::now();
        let verdict = check(&request);
        let done = {
            let mut waiting = queue.lock();
            // Free before answering: the job a client sends next goes to the steady thread.
            if rank == Rank::Steady {
                waiting.steady_checking = false;
                waiting.steady_took = began.elapsed();
            }
            waiting.finish(ticket)
        };
        if let Some(done) = done {
            done.complete(Verdict::Checked(report(&request, verdict)));
        }
    }
}

/// Gives up on each job at its deadline, and hands starved checks to the steady thread, at
/// the ordinary priority: the checking threads may all be busy, or starved, when it comes.
fn deadline_loop(queue: &Queue) {
    let mut waiting = queue.lock();
    loop {
        let now = Instant::now();
        let (handed_over, next_hand_over) = waiting.hand_over(now);
        if handed_over {
            queue.queued_steady.notify_one();
        }
        let next = waiting.give_up(now).into_iter().chain(next_hand_over).min();
        if waiting.closed && waiting.jobs.is_empty() && waiting.running.is_empty() {
            return;
        }
        waiting = match next {
            Some(at) => {
                let left = at.saturating_duration_since(now);
                let rescheduled = queue.rescheduled.wait_timeout(waiting, left);
                rescheduled.unwrap_or_else(PoisonError::into_inner).0
            }
            None => queue
                .rescheduled
                .wait(waiting)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atacama_core::smtp::Mechanism;
    use atacama_store::Store;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::SystemTime;

    const LONG: Duration = Duration::from_secs(3600);

    fn request(password: &str) -> Arc<AuthRequest> {
        Arc::new(AuthRequest {
            mechanism: Mechanism::Plain,
            username: "alice".into(),
            password: password.into(),
        })
    }

    /// A request that the test's checks tell apart by its user name.
    fn by(username: &str) -> Arc<AuthRequest> {
        Arc::new(AuthRequest {
            mechanism: Mechanism::Plain,
            username: username.into(),
            password: "x".into(),
        })
    }

    /// The calling thread's scheduling policy and nice value.
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)] // sched_getscheduler and getpriority have no safe wrapper in std
    fn priority() -> (i32, i32) {
        // SAFETY: both take integers only; 0 is the calling thread.
        unsafe {
            let policy = libc::sched_getscheduler(0);
            (policy, libc::getpriority(libc::PRIO_PROCESS, 0))
        }
    }

    /// [`Verifier::start_with`] with checks that give their outcome.
    fn start_checking(
        threads: usize,
        give_up_after: Duration,
        check: impl Fn(&AuthRequest) -> AuthOutcome + Send + Sync + 'static,
    ) -> std::io::Result<Verifier> {
        Verifier::start_with(threads, give_up_after, check, |_, outcome| outcome)
    }

    /// A job in a queue of our own, with its verdict.
    fn job(give_up_at: Instant) -> (Job, PendingVerdict) {
        let (done, verdict) = completion::pair();
        let request = request("x");
        let job = Job {
            request,
            give_up_at,
            done,
        };
        (job, PendingVerdict(verdict))
    }

    /// A verifier with one thread whose checks accept, each once `release` lets it go on;
    /// `started` hears of each check as it starts, and the count is of checks run. Its jobs
    /// are given up `give_up_after` after they are queued, or after they start.
    fn held_verifier(
        give_up_after: Duration,
    ) -> (
        Verifier,
        mpsc::Receiver<()>,
        mpsc::Sender<()>,
        Arc<AtomicUsize>,
    ) {
        let (started, started_rx) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let checks = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&checks);
        let verifier = start_checking(1, give_up_after, move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = started.send(());
            let _ = release_rx.lock().unwrap().recv();
            AuthOutcome::Accepted
        })
        .unwrap();
        (verifier, started_rx, release, checks)
    }

    #[test]
    fn checks_on_the_verifier_threads_give_the_verdicts_of_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path(), 4).unwrap();
        store.add_user("alice", "right", SystemTime::now()).unwrap();
        let services = Arc::new(Services::new(Arc::new(store), "mail.example"));
        let verifier = Verifier::start(Arc::clone(&services), 2, LONG).unwrap();
        let pending: Vec<_> = ["right", "wrong", "right"]
            .map(|password| verifier.verify(request(password)))
            .into_iter()
            .collect();
        let verdicts: Vec<Verdict> = pending.into_iter().map(PendingVerdict::wait).collect();
        assert_eq!(
            verdicts,
            [
                AuthOutcome::Accepted,
                AuthOutcome::Rejected,
                AuthOutcome::Accepted
            ]
            .map(Verdict::Checked)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_steady_thread_checks_first_at_nice_10_and_the_others_only_beside_it_when_idle() {
        let here = priority();
        let (seen, seen_rx) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let verifier = start_checking(3, LONG, move |request| {
            let _ = seen.send((request.username.clone(), priority()));
            if request.username == "held" {
                let _ = release_rx.lock().unwrap().recv();
            }
            AuthOutcome::Accepted
        })
        .unwrap();
        let steady = (here.0, (here.1 + VERIFIER_NICE).min(19));
        for _ in 0..3 {
            assert_eq!(
                verifier.verify(by("alone")).wait(),
                Verdict::Checked(AuthOutcome::Accepted)
            );
            assert_eq!(seen_rx.recv().unwrap(), ("alone".into(), steady));
        }
        let held = verifier.verify(by("held"));
        assert_eq!(seen_rx.recv().unwrap(), ("held".into(), steady));
        let beside = verifier.verify(by("beside"));
        assert_eq!(beside.wait(), Verdict::Checked(AuthOutcome::Accepted));
        assert_eq!(seen_rx.recv().unwrap().1.0, libc::SCHED_IDLE);
        release.send(()).unwrap();
        assert_eq!(held.wait(), Verdict::Checked(AuthOutcome::Accepted));
        assert_eq!(priority(), here, "only the verifier threads were lowered");
    }

    #[test]
    fn a_job_past_its_deadline_is_given_up_and_one_within_it_is_checked() {
        let t0 = Instant::now();
        let mut waiting = Waiting::default();
        let (late, late_verdict) = job(t0 + Duration::from_secs(1));
        let (on_time, _) = job(t0 + Duration::from_secs(3));
        waiting.jobs.extend([late, on_time]);
        let next = waiting.next(t0 + Duration::from_secs(2));
        assert_eq!(
            next.map(|job| job.give_up_at),
            Some(t0 + Duration::from_secs(3))
        );
        assert_eq!(late_verdict.wait(), Verdict::Busy);
        assert!(waiting.jobs.is_empty());
    }

    #[test]
    fn the_first_deadline_ahead_is_when_to_look_again() {
        let t0 = Instant::now();
        let mut waiting = Waiting::default();
        let (first, _) = job(t0 + Duration::from_secs(1));
        let (second, _) = job(t0 + Duration::from_secs(2));
        waiting.jobs.extend([first, second]);
        assert_eq!(waiting.give_up(t0), Some(t0 + Duration::from_secs(1)));
        assert_eq!(
            waiting.give_up(t0 + Duration::from_secs(1)),
            Some(t0 + Duration::from_secs(2))
        );
        assert_eq!(waiting.give_up(t0 + Duration::from_secs(2)), None);
    }

    #[test]
    fn a_job_queued_behind_a_check_is_given_up_at_its_deadline_without_being_checked() {
        let (verifier, started, release, checks) = held_verifier(LONG);
        let running = verifier.verify(request("first"));
        started.recv().unwrap();
        // Its deadline is already here: the deadline thread answers while the check runs.
        let late = verifier.queue(request("second"), Instant::now());
        assert_eq!(late.wait(), Verdict::Busy);
        assert_eq!(checks.load(Ordering::SeqCst), 1);
        release.send(()).unwrap();
        assert_eq!(running.wait(), Verdict::Checked(AuthOutcome::Accepted));
        let within = verifier.verify(request("third"));
        release.send(()).unwrap();
        assert_eq!(within.wait(), Verdict::Checked(AuthOutcome::Accepted));
        assert_eq!(checks.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_check_still_running_at_its_deadline_is_answered_busy_and_the_thread_goes_on() {
        let give_up_after = Duration::from_secs(1);
        let (verifier, started, release, checks) = held_verifier(give_up_after);
        let asked = Instant::now();
        let starved = verifier.verify(request("first"));
        started.recv().unwrap();
        // Answered by the deadline thread while the check is still held.
        assert_eq!(starved.wait(), Verdict::Busy);
        assert!(asked.elapsed() >= give_up_after);
        release.send(()).unwrap();
        let next = verifier.verify(request("second"));
        started.recv().unwrap();
        release.send(()).unwrap();
        assert_eq!(next.wait(), Verdict::Checked(AuthOutcome::Accepted));
        assert_eq!(checks.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_started_check_is_answered_by_its_thread_or_at_its_deadline_never_both() {
        let t0 = Instant::now();
        let mut waiting = Waiting::default();
        let (quick, quick_verdict) = job(t0 + LONG);
        let (slow, slow_verdict) = job(t0 + LONG);
        let quick = waiting.start(quick, Rank::Steady, t0, t0 + Duration::from_secs(2));
        let slow = waiting.start(slow, Rank::Steady, t0, t0 + Duration::from_secs(1));
        assert_eq!(waiting.give_up(t0), Some(t0 + Duration::from_secs(1)));
        assert_eq!(
            waiting.give_up(t0 + Duration::from_secs(1)),
            Some(t0 + Duration::from_secs(2))
        );
        assert_eq!(slow_verdict.wait(), Verdict::Busy);
        assert!(waiting.finish(slow).is_none(), "already answered");
        waiting
            .finish(quick)
            .expect("still running")
            .complete(Verdict::Checked(AuthOutcome::Rejected));
        assert_eq!(
            quick_verdict.wait(),
            Verdict::Checked(AuthOutcome::Rejected)
        );
        assert_eq!(waiting.give_up(t0 + LONG), None);
    }

    #[test]
    fn an_idle_threads_check_is_handed_over_once_after_twice_the_steady_threads_last() {
        let t0 = Instant::now();
        let second = |n| t0 + Duration::from_secs(n);
        let mut waiting = Waiting {
            steady_took: Duration::from_secs(1),
            ..Waiting::default()
        };
        let (first_idle, _) = job(t0 + LONG);
        let (second_idle, _) = job(t0 + LONG);
        let (on_steady, _) = job(t0 + LONG);
        let first_idle = waiting.start(first_idle, Rank::Idle, t0, t0 + LONG);
        let second_idle = waiting.start(second_idle, Rank::Idle, t0, t0 + LONG);
        waiting.start(on_steady, Rank::Steady, t0, t0 + LONG);
        assert_eq!(waiting.hand_over(second(1)), (false, Some(second(2))));
        assert_eq!(waiting.hand_over(second(2)), (true, None));
        assert_eq!(waiting.hand_over(second(3)), (false, None));
        // The first finished on its idle thread meanwhile: the steady thread skips it.
        assert!(waiting.finish(first_idle).is_some());
        let next = waiting.next_handed_over().map(|(_, ticket)| ticket);
        assert_eq!(next, Some(second_idle));
        assert!(waiting.next_handed_over().is_none());
        // Before the steady thread has checked anything: after the least time.
        let mut waiting = Waiting::default();
        let (fresh, _) = job(t0 + LONG);
        waiting.start(fresh, Rank::Idle, t0, t0 + LONG);
        let at = t0 + HAND_OVER_AFTER_AT_LEAST;
        assert_eq!(waiting.hand_over(t0), (false, Some(at)));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_idle_threads_check_that_gets_a_quarter_of_a_core_is_looked_at_again_not_handed_over() {
        let t0 = Instant::now();
        let mut waiting = Waiting::default();
        let (sharing, _) = job(t0 + LONG);
        // Started here: this thread's clock is the check's.
        waiting.start(sharing, Rank::Idle, t0, t0 + LONG);
        let cpu = ThreadCpu::of_this_thread().unwrap();
        let start = cpu.used().unwrap();
        while cpu.used().unwrap() < start + Duration::from_millis(60) {
            std::hint::black_box(0);
        }
        // 60 ms of CPU in 200 ms is more than a quarter of a core.
        let at = t0 + Duration::from_millis(200);
        let again = at + HAND_OVER_AFTER_AT_LEAST;
        assert_eq!(waiting.hand_over(at), (false, Some(again)));
        // Nothing more in the next 2 s is less than a quarter: starved.
        assert_eq!(waiting.hand_over(at + Duration::from_secs(2)), (true, None));
        assert_eq!(waiting.handed_over.len(), 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_check_starved_on_an_idle_thread_is_answered_by_the_steady_one_and_reported_once() {
        let (release, release_rx) = mpsc::channel::<()>();
        let (unstarve, unstarve_rx) = mpsc::channel::<()>();
        let (release_rx, unstarve_rx) = (Mutex::new(release_rx), Mutex::new(unstarve_rx));
        let [checks, finished, reports] = [(); 3].map(|()| Arc::new(AtomicUsize::new(0)));
        let (counted, ended, reported) = (checks.clone(), finished.clone(), reports.clone());
        let check = move |request: &AuthRequest| {
            counted.fetch_add(1, Ordering::SeqCst);
            if priority().0 == libc::SCHED_IDLE {
                // Starved: no CPU until the test is done.
                let _ = unstarve_rx.lock().unwrap().recv();
            } else if request.username == "held" {
                let _ = release_rx.lock().unwrap().recv();
            }
            ended.fetch_add(1, Ordering::SeqCst);
            AuthOutcome::Accepted
        };
        let report = move |_: &AuthRequest, outcome| {
            reported.fetch_add(1, Ordering::SeqCst);
            outcome
        };
        let verifier = Verifier::start_with(2, LONG, check, report).unwrap();
        let held = verifier.verify(by("held"));
        while checks.load(Ordering::SeqCst) < 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let starved = verifier.verify(by("starved"));
        while checks.load(Ordering::SeqCst) < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        release.send(()).unwrap();
        assert_eq!(held.wait(), Verdict::Checked(AuthOutcome::Accepted));
        assert_eq!(starved.wait(), Verdict::Checked(AuthOutcome::Accepted));
        assert_eq!(
            checks.load(Ordering::SeqCst),
            3,
            "checked again, by the steady one"
        );
        unstarve.send(()).unwrap();
        while finished.load(Ordering::SeqCst) < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The idle thread's verdict came second: not reported (logged, counted) again.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(reports.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn abort_answers_the_queued_jobs_and_later_ones_busy_and_lets_the_running_check_finish() {
        let (verifier, started, release, checks) = held_verifier(LONG);
        let running = verifier.verify(request("first"));
        started.recv().unwrap();
        let queued = verifier.verify(request("second"));
        verifier.abort();
        assert_eq!(queued.wait(), Verdict::Busy);
        assert_eq!(verifier.verify(request("third")).wait(), Verdict::Busy);
        release.send(()).unwrap();
        assert_eq!(running.wait(), Verdict::Checked(AuthOutcome::Accepted));
        assert_eq!(checks.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_job_whose_thread_is_gone_answers_a_temporary_failure() {
        let (job, verdict) = job(Instant::now() + LONG);
        drop(job);
        assert_eq!(
            verdict.wait(),
            Verdict::Checked(AuthOutcome::TemporaryFailure)
        );
    }
}
