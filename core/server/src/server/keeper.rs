//! The store's timer, the same in both runtimes: reopens the database after an I/O error even
//! when no delivery comes ([`atacama_store::Backend::recover`], once a [`KEEP_EVERY`]), and when
//! the store gives up ([`Health::Failed`]) tells the runtime, which stops pinging the systemd
//! watchdog, shuts down and exits non-zero, so that systemd restarts it.
//!
//! ```text
//! state.when_store_fails(wake the main loop);   // std: close the signal iterator; smol: a channel
//! wait for a stop signal or the wake;
//! watchdog: ping while !state.store_failed();
//! shut down as for SIGTERM; state.run_error() → Err → exit 1
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::service::Services;
use crate::systemd;
use atacama_core::logging;
use atacama_store::{Health, REOPEN_EVERY};

/// How often the keeper looks at the store: as often as a reopen may be tried.
pub const KEEP_EVERY: Duration = REOPEN_EVERY;

/// Something that wakes the runtime's main loop; called once, from the keeper's thread.
type Wake = Box<dyn FnOnce() + Send>;

/// The keeper's thread, stopped when this is dropped.
pub struct StoreKeeper {
    /// Dropped to stop the thread.
    _stop: Sender<()>,
    failure: Arc<Failure>,
}

/// Whether the store failed for good, and whom to tell.
#[derive(Default)]
struct Failure {
    failed: AtomicBool,
    wake: Mutex<Option<Wake>>,
}

impl std::fmt::Debug for StoreKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreKeeper")
            .field("failed", &self.has_failed())
            .finish()
    }
}

impl StoreKeeper {
    /// Starts the thread; it holds `services` until this is dropped.
    pub fn start(services: Arc<Services>) -> std::io::Result<StoreKeeper> {
        let (stop, stopped) = mpsc::channel();
        let failure = Arc::new(Failure::default());
        let told = Arc::clone(&failure);
        std::thread::Builder::new()
            .name("store-keeper".into())
            .spawn(move || keep(&services, &stopped, &told))?;
        Ok(StoreKeeper {
            _stop: stop,
            failure,
        })
    }

    /// Whether the store gave up: the server must stop and exit non-zero.
    pub fn has_failed(&self) -> bool {
        self.failure.failed.load(Ordering::Acquire)
    }

    /// Calls `wake` once the store gives up (at once if it has already).
    pub fn when_failed(&self, wake: impl FnOnce() + Send + 'static) {
        let mut slot = self
            .failure
            .wake
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.has_failed() {
            drop(slot);
            wake();
        } else {
            *slot = Some(Box::new(wake));
        }
    }
}

impl Failure {
    /// Sets the flag (the watchdog stops), tells systemd the server is stopping, then wakes
    /// whoever asked.
    fn fail(&self) {
        let wake = {
            let mut slot = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
            self.failed.store(true, Ordering::Release);
            slot.take()
        };
        systemd::stopping();
        if let Some(wake) = wake {
            wake();
        }
    }
}

/// Looks at the store every [`KEEP_EVERY`] until told to stop or the store gives up.
fn keep(services: &Services, stop: &Receiver<()>, failure: &Failure) {
    loop {
        match stop.recv_timeout(KEEP_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        // A database that stopped answering holds this thread here; `/healthz` tells.
        let probing = services.store_call(std::time::Instant::now());
        let health = services.store().recover();
        drop(probing);
        if health == Health::Failed {
            logging::store_failed_for_good(services.give_up_after());
            failure.fail();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atacama_store::Store;

    #[test]
    fn a_wake_asked_for_after_the_failure_is_called_at_once_and_before_it_once() {
        let failure = Arc::new(Failure::default());
        let keeper = StoreKeeper {
            _stop: mpsc::channel().0,
            failure: Arc::clone(&failure),
        };
        let (told, heard) = mpsc::channel();
        let early = told.clone();
        keeper.when_failed(move || early.send("early").unwrap());
        assert!(!keeper.has_failed());
        assert!(heard.try_recv().is_err());
        failure.fail();
        assert!(keeper.has_failed());
        assert_eq!(heard.try_recv(), Ok("early"));
        keeper.when_failed(move || told.send("late").unwrap());
        assert_eq!(heard.try_recv(), Ok("late"));
        assert!(heard.try_recv().is_err(), "each wake is called once");
    }

    #[test]
    fn dropping_the_keeper_ends_its_thread_and_lets_go_of_the_services() {
        let dir = tempfile::tempdir().unwrap();
        let services = Arc::new(Services::new(
            Arc::new(Store::open_in(dir.path(), 4).unwrap()),
            "mail.example",
        ));
        let keeper = StoreKeeper::start(Arc::clone(&services)).unwrap();
        assert_eq!(Arc::strong_count(&services), 2);
        drop(keeper);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&services) > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(Arc::strong_count(&services), 1);
    }
}
