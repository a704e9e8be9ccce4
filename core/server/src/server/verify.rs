//! The password checks of both runtimes, on threads of their own at the lowest CPU priority.
//!
//! A cost-12 bcrypt check is about 0.3 s of CPU, and a burst of logins keeps every core busy
//! for seconds. The verifier threads run under `SCHED_IDLE` (Linux keeps the policy per
//! thread): a mail thread that wakes takes the core from a check at once, and when nothing
//! else runs a check is as fast as before. The price is that logins wait while mail keeps
//! every core busy, which sheds the load in the right place: on sessions not yet admitted.
//!
//! Measured on the 2-core sandbox (disk; 20 senders log in, then 50 fresh logins start while
//! they send; four runs each, alternating): against nice +10, the previous policy, the
//! senders' p99 during the storm went from 16.7 / 13.4 / 16.7 / 14.1 ms to 7.5 / 8.1 / 9.0 /
//! 5.6 ms (1.2–1.4× their p99 without a storm, from 1.8–3.4×), their msg/s from 2 590–3 530
//! to 4 000–5 150, and the storm's logins/s went from 6.2–7.0 to 6.7–7.0. Nice +10 had in turn halved
//! that p99 against nice 0. Where `SCHED_IDLE` is refused the threads fall back to nice +10.
//!
//! ```text
//! take one of `verifier_running` permits (the runtime's semaphore, with its timeout)
//! let verdict = state.verifier.verify(request.clone()).await  (smol) | .wait() (std)
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use super::completion::{self, Completer, Completion};
use crate::service::Services;
use atacama_core::smtp::{AuthOutcome, AuthRequest};

/// The nice value of the verifier threads where `SCHED_IDLE` is refused: CFS then gives a
/// nice-0 thread about ten times their share of a contended core.
pub const VERIFIER_NICE: i32 = 10;

/// The sending side of the verifier threads. Dropping it ends them once the queue is empty.
#[derive(Debug)]
pub struct Verifier {
    jobs: Sender<Job>,
}

#[derive(Debug)]
struct Job {
    request: AuthRequest,
    done: Completer<AuthOutcome>,
}

/// A check queued for the verifier threads: [`PendingVerdict::wait`] on a thread, or
/// `.await` in a task.
#[derive(Debug)]
#[must_use = "the verdict decides the reply"]
pub struct PendingVerdict(Completion<AuthOutcome>);

impl Verifier {
    /// Starts `threads` verifier threads (at least one) checking against `services`.
    pub fn start(services: Arc<Services>, threads: usize) -> std::io::Result<Verifier> {
        let (jobs, queue) = mpsc::channel();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads.max(1) {
            let (services, queue) = (Arc::clone(&services), Arc::clone(&queue));
            std::thread::Builder::new()
                .name("verify".into())
                .spawn(move || verify_loop(&services, &queue))?;
        }
        Ok(Verifier { jobs })
    }

    /// Queues a check; never blocks.
    pub fn verify(&self, request: AuthRequest) -> PendingVerdict {
        let (done, verdict) = completion::pair();
        // If the threads are gone the job comes back and is dropped: `unavailable` answers.
        let _ = self.jobs.send(Job { request, done });
        PendingVerdict(verdict)
    }
}

impl PendingVerdict {
    /// Blocks the thread until the check is done.
    pub fn wait(self) -> AuthOutcome {
        self.0.wait().unwrap_or(AuthOutcome::TemporaryFailure)
    }
}

impl Future for PendingVerdict {
    type Output = AuthOutcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<AuthOutcome> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|verdict| verdict.unwrap_or(AuthOutcome::TemporaryFailure))
    }
}

/// Checks until every [`Verifier`] is gone. `Services::authenticate` turns a panic into a
/// temporary failure, so one bad check cannot end a thread.
fn verify_loop(services: &Services, queue: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        // The lock is held only while waiting for a job, not while checking it.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let verdict = services.authenticate(&job.request);
        job.done.complete(verdict);
    }
}

/// Moves the calling thread to `SCHED_IDLE`, else to [`VERIFIER_NICE`]. Where both fail (or
/// on other systems) the thread competes as an ordinary one: slower mail under a login storm,
/// nothing worse.
#[allow(unsafe_code)] // sched_setscheduler and setpriority have no safe wrapper in std
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: sched_setscheduler reads the sched_param we pass, which lives across the call;
    // setpriority takes integers only. `pid`/`who` 0 is the calling thread on Linux.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, 0, VERIFIER_NICE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atacama_store::Store;
    use std::time::SystemTime;

    fn request(password: &str) -> AuthRequest {
        AuthRequest {
            mechanism: "PLAIN",
            username: "alice".into(),
            password: password.into(),
        }
    }

    #[test]
    fn checks_on_the_verifier_threads_give_the_verdicts_of_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path(), 4).unwrap();
        store.add_user("alice", "right", SystemTime::now()).unwrap();
        let services = Arc::new(Services::new(store, "mail.example"));
        let verifier = Verifier::start(Arc::clone(&services), 2).unwrap();
        let pending: Vec<_> = ["right", "wrong", "right"]
            .map(|password| verifier.verify(request(password)))
            .into_iter()
            .collect();
        let verdicts: Vec<AuthOutcome> = pending.into_iter().map(PendingVerdict::wait).collect();
        assert_eq!(
            verdicts,
            [
                AuthOutcome::Accepted,
                AuthOutcome::Rejected,
                AuthOutcome::Accepted
            ]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_verifier_thread_runs_at_the_idle_priority_and_no_other_does() {
        /// The calling thread's scheduling policy.
        #[allow(unsafe_code)] // sched_getscheduler has no safe wrapper in std
        fn policy() -> i32 {
            // SAFETY: takes an integer; 0 is the calling thread.
            unsafe { libc::sched_getscheduler(0) }
        }
        let here = policy();
        let lowered = std::thread::spawn(|| {
            lower_priority();
            policy()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, libc::SCHED_IDLE);
        assert_ne!(here, libc::SCHED_IDLE, "the test thread is an ordinary one");
        assert_eq!(policy(), here, "only the verifier thread was lowered");
    }

    #[test]
    fn a_verifier_that_is_gone_answers_a_temporary_failure() {
        let (jobs, queue) = mpsc::channel::<Job>();
        drop(queue);
        let verifier = Verifier { jobs };
        assert_eq!(
            verifier.verify(request("x")).wait(),
            AuthOutcome::TemporaryFailure
        );
    }
}
