//! The sockets of the open connections, so that the stop and the abort can wake the threads
//! blocked on them. A connection's thread blocks until its client sends, its session's
//! deadline passes, or it is woken from here; it looks at nothing now and then (a 100 ms
//! tick on every connection was 100 000 wake-ups a second for 10 000 idle ones).
//!
//! A wake is `shutdown(Shutdown::Read)` on the socket (and an unpark, for a thread waiting
//! with nothing to read): the blocked read returns 0, as a read started after it would at
//! once, and the thread, seeing [`Registration::woken`], asks the stop and abort flags what
//! happened rather than taking it for the client's close. Writes still work, so an idle
//! session can still send its `421 4.3.0`.
//!
//! The stop wakes only the connections marked idle (no mail transaction in progress: the
//! stop ends them at once); a transaction's reads must go on until it ends, or the grace
//! period does. A thread marks itself idle before it reads the stop flag, and the stop sets
//! that flag before it reads the marks, all `SeqCst`: one of the two sees the other, so no
//! idle thread sleeps through a stop. After its wait the thread clears the mark before it
//! reads the flag again, so a thread the stop woke always learns of the stop before of any
//! command it read meanwhile, and its session, idle, closes.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, Thread};

/// The open connections' sockets.
#[derive(Debug, Default)]
pub struct Sockets {
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    next: u64,
    by_id: HashMap<u64, Arc<Watched>>,
}

/// One connection as the registry sees it.
#[derive(Debug)]
struct Watched {
    tcp: Arc<TcpStream>,
    thread: Thread,
    /// Waiting where the stop ends the session at once.
    idle: AtomicBool,
    /// Its read side was shut from here: an end of reading is ours, not the client's.
    woken: AtomicBool,
}

/// A connection's place in [`Sockets`], held by its thread; dropping it leaves.
#[derive(Debug)]
pub struct Registration<'a> {
    sockets: &'a Sockets,
    id: u64,
    watched: Arc<Watched>,
}

impl Sockets {
    /// No connections yet.
    pub fn new() -> Sockets {
        Sockets::default()
    }

    /// Registers `tcp`, served by the calling thread, until the registration is dropped.
    pub fn register(&self, tcp: &Arc<TcpStream>) -> Registration<'_> {
        let watched = Arc::new(Watched {
            tcp: Arc::clone(tcp),
            thread: thread::current(),
            idle: AtomicBool::new(false),
            woken: AtomicBool::new(false),
        });
        let mut open = self.lock();
        let id = open.next;
        open.next += 1;
        open.by_id.insert(id, Arc::clone(&watched));
        Registration {
            sockets: self,
            id,
            watched,
        }
    }

    /// At the stop, once the stop flag is set: wakes the connections waiting idle.
    pub fn wake_idle(&self) {
        for watched in self.lock().by_id.values() {
            if watched.idle.load(Ordering::SeqCst) {
                watched.wake();
            }
        }
    }

    /// At the abort, once the abort flag is set: wakes every connection.
    pub fn wake_all(&self) {
        for watched in self.lock().by_id.values() {
            watched.wake();
        }
    }

    /// How many connections are registered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        // Every statement leaves the map whole, so a poisoned lock carries no news.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Watched {
    fn wake(&self) {
        // Marked first: the thread that sees its read end asks this.
        self.woken.store(true, Ordering::SeqCst);
        // It fails only if the socket is no longer connected: its reads end anyway.
        let _ = self.tcp.shutdown(Shutdown::Read);
        self.thread.unpark();
    }
}

impl Registration<'_> {
    /// Marks the connection as waiting where the stop ends its session at once, or no
    /// longer; set before reading the stop flag, cleared before reading it again after.
    pub fn set_idle(&self, idle: bool) {
        self.watched.idle.store(idle, Ordering::SeqCst);
    }

    /// Whether the stop or the abort shut the socket's read side: it reads nothing more.
    pub fn woken(&self) -> bool {
        self.watched.woken.load(Ordering::SeqCst)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.sockets.lock().by_id.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    /// A connected pair on loopback: (server side, client side).
    fn pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (Arc::new(server), client)
    }

    /// Reads on `tcp` in a thread of its own (registered there), with no timeout; returns
    /// what the read returned, whether it was woken, and how long it took.
    fn blocked_read(
        sockets: &Sockets,
        tcp: &Arc<TcpStream>,
        idle: bool,
        wake: impl FnOnce(),
    ) -> (usize, bool, Duration) {
        std::thread::scope(|scope| {
            let (registered, registered_rx) = std::sync::mpsc::channel();
            let reader = scope.spawn(move || {
                let registration = sockets.register(tcp);
                registration.set_idle(idle);
                registered.send(()).unwrap();
                let started = Instant::now();
                let mut buf = [0u8; 16];
                let n = (&**tcp).read(&mut buf).unwrap();
                (n, registration.woken(), started.elapsed())
            });
            registered_rx.recv().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            wake();
            reader.join().unwrap()
        })
    }

    #[test]
    fn the_stop_ends_the_blocked_read_of_an_idle_connection() {
        let sockets = Sockets::new();
        let (server, _client) = pair();
        let (n, woken, took) = blocked_read(&sockets, &server, true, || sockets.wake_idle());
        assert_eq!((n, woken), (0, true));
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_eq!(sockets.len(), 0, "the registration left with its thread");
    }

    #[test]
    fn the_stop_leaves_a_transaction_reading_and_the_abort_does_not() {
        let sockets = Sockets::new();
        let (server, mut client) = pair();
        let (n, woken, _) = blocked_read(&sockets, &server, false, || {
            sockets.wake_idle();
            // Still reading: the client's next bytes reach it.
            std::thread::sleep(Duration::from_millis(50));
            std::io::Write::write_all(&mut client, b"DATA").unwrap();
        });
        assert_eq!((n, woken), (4, false));
        let (n, woken, _) = blocked_read(&sockets, &server, false, || sockets.wake_all());
        assert_eq!((n, woken), (0, true));
    }
}
