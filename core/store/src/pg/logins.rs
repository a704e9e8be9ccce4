//! What MAIL asks of every message, whether its session's login is still an active user,
//! answered without a round trip while the answer is known to be current.
//!
//! Asking the database each time cost b about 30 % of its rate on this machine (a round trip
//! per message, and a thread hop to make it in smol). So a store remembers what it read,
//! and a thread of its own listens on a connection of its own for `atacama_users`, which a
//! trigger on `users` notifies with the name of every user added, changed or removed, by
//! any daemon or command line, or by hand in SQL (`''`: a `TRUNCATE`, forget everyone). A
//! notification forgets that user; losing the listening connection forgets everyone and
//! stops the remembering until it listens again. A change thus reaches every daemon when
//! its notification does, milliseconds after the commit, where asking each time saw it at
//! once: a MAIL checked in between still passes.
//!
//! Nothing read before the listener listened, or before a notification that came while the
//! read was on its way, is remembered: every read notes the generation it started in, and
//! each notification and each loss of the connection starts a new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use atacama_core::logging::Repeats;
use postgres::fallible_iterator::FallibleIterator;

use super::connect::Connector;
use crate::REOPEN_EVERY;

/// The channel the `users` trigger notifies (schema version 2).
pub(super) const CHANNEL: &str = "atacama_users";

/// Logins remembered at most: past it, everyone is forgotten (only logged-in users are
/// asked about, so a site needs that many users to reach it).
const MAX_REMEMBERED: usize = 100_000;

/// How often the listener looks up from its wait to see whether the store is closing.
const LOOK_UP_EVERY: Duration = Duration::from_millis(250);

/// The remembered logins, shared with the listener thread.
pub(super) struct Logins {
    shared: Arc<Shared>,
    listener: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    closing: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Whether the listener listens: only then is anything remembered or answered.
    listening: bool,
    /// Starts anew at each notification and each change of `listening`.
    generation: u64,
    /// User name → active.
    active: HashMap<String, bool>,
}

/// A read about to be made: remembered only if nothing changed while it was on its way.
#[derive(Debug, Clone, Copy)]
pub(super) struct Generation(u64);

impl Logins {
    /// Starts the listener on a connection of its own, made with `connector`; `location`
    /// names the database in its log lines.
    pub(super) fn start(connector: Connector, location: String) -> std::io::Result<Logins> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            closing: AtomicBool::new(false),
        });
        let listening = Arc::clone(&shared);
        let listener = std::thread::Builder::new()
            .name("pg-listen".into())
            .spawn(move || listen(&listening, &connector, &location))?;
        Ok(Logins {
            shared,
            listener: Some(listener),
        })
    }

    /// Whether `name` is an active user, if that is known to be current.
    pub(super) fn known(&self, name: &str) -> Option<bool> {
        let state = self.shared.state();
        if !state.listening {
            return None;
        }
        state.active.get(name).copied()
    }

    /// Taken before reading a user, for [`Logins::remember`]; `None` while not listening.
    pub(super) fn generation(&self) -> Option<Generation> {
        let state = self.shared.state();
        state.listening.then_some(Generation(state.generation))
    }

    /// Remembers what a read that started at `generation` found, unless something changed
    /// meanwhile. A user not found is not remembered: the check is then as rare as a
    /// session whose user was deleted.
    pub(super) fn remember(&self, generation: Generation, name: &str, active: bool) {
        let mut state = self.shared.state();
        if !state.listening || state.generation != generation.0 {
            return;
        }
        if state.active.len() >= MAX_REMEMBERED {
            state.active.clear();
        }
        state.active.insert(name.to_string(), active);
    }
}

impl Logins {
    /// Forgets `name` now, as its notification will.
    pub(super) fn forget(&self, name: &str) {
        self.shared.changed(name);
    }
}

impl Drop for Logins {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        if let Some(listener) = self.listener.take() {
            // Within LOOK_UP_EVERY, or a connect timeout if it was connecting.
            let _ = listener.join();
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Listening or not from now on; everything remembered is forgotten either way.
    fn set_listening(&self, listening: bool) {
        let mut state = self.state();
        state.listening = listening;
        state.generation += 1;
        state.active.clear();
    }

    /// `name` changed (`""`: anyone may have).
    fn changed(&self, name: &str) {
        let mut state = self.state();
        state.generation += 1;
        if name.is_empty() {
            state.active.clear();
        } else {
            state.active.remove(name);
        }
    }
}

/// Connects, listens and forgets what each notification names, until the store closes;
/// after a lost connection, connects again every [`REOPEN_EVERY`].
fn listen(shared: &Shared, connector: &Connector, location: &str) {
    let mut lost = Repeats::new();
    while !shared.closing() {
        let ended = listen_once(shared, connector);
        shared.set_listening(false);
        if let Err(why) = ended
            && !shared.closing()
            && let Some(held) = lost.admit(Instant::now())
        {
            log::warn!(
                "store: not listening for changes of users on {location} (MAIL asks the \
                 database each time until it listens again): {why}{held}"
            );
        }
        let again = Instant::now() + REOPEN_EVERY;
        while !shared.closing() && Instant::now() < again {
            std::thread::sleep(LOOK_UP_EVERY);
        }
    }
}

/// One connection's listening: `Ok` when the store closes, else why it ended.
fn listen_once(shared: &Shared, connector: &Connector) -> Result<(), String> {
    let mut client = connector.connect().map_err(|e| e.to_string())?;
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .map_err(|e| e.to_string())?;
    shared.set_listening(true);
    while !shared.closing() {
        // A new iterator each time: one whose wait has run out returns at once from then on.
        let next = client
            .notifications()
            .timeout_iter(LOOK_UP_EVERY)
            .next()
            .map_err(|e| e.to_string())?;
        match next {
            Some(notification) => shared.changed(notification.payload()),
            // Nothing came in time, or the connection closed, which looks the same.
            None if client.is_closed() => return Err("the connection closed".into()),
            None => {}
        }
    }
    Ok(())
}
