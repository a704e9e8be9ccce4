//! A bounded pool of connections to PostgreSQL, shared by the threads that call the store.
//!
//! At most `size` connections are open; a caller waits for one at most [`POOL_WAIT`], then
//! fails (the session answers `451` and the client retries). A connection is made when needed
//! and kept when given back, unless it was closed (its server went away) or the pool was
//! cleared since it was taken ([`Pool::clear`], after a lost connection: its siblings lost
//! theirs too, but no one finds out until they are used).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use postgres::{Client, Statement};

use super::connect::Connector;

/// The longest a caller waits for a connection when all `store.pool_size` are in use.
pub const POOL_WAIT: Duration = Duration::from_secs(10);

/// The connections, and the config to make more.
pub(super) struct Pool {
    connector: Connector,
    size: usize,
    slots: Mutex<Slots>,
    freed: Condvar,
}

/// A connection and the statements prepared on it.
pub(super) struct Conn {
    pub client: Client,
    /// By their SQL: parsed and planned once per connection, not once per use (the parse
    /// and the round trip it takes were most of a short query's cost).
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    fn new(client: Client) -> Conn {
        Conn {
            client,
            statements: HashMap::new(),
        }
    }

    /// `sql` prepared on this connection: the first use prepares it, later ones reuse it.
    pub fn prepared(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

struct Slots {
    idle: Vec<Conn>,
    /// Connections open: idle, and taken.
    open: usize,
    /// Counts the clears: a connection taken before one is not given back.
    generation: u64,
}

/// Why no connection could be had.
pub(super) enum Unavailable {
    /// Connecting failed: the database cannot be reached.
    Connect(postgres::Error),
    /// All connections stayed in use for [`POOL_WAIT`].
    Busy,
}

/// A connection taken from the pool, given back when dropped.
pub(super) struct Pooled<'p> {
    pool: &'p Pool,
    /// `None` only while being dropped.
    conn: Option<Conn>,
    generation: u64,
}

impl Pool {
    /// A pool of at most `size` connections (at least one), none open yet.
    pub fn new(connector: Connector, size: usize) -> Pool {
        Pool {
            connector,
            size: size.max(1),
            slots: Mutex::new(Slots {
                idle: Vec::new(),
                open: 0,
                generation: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// An idle connection, a new one if fewer than `size` are open, else the first given back
    /// within [`POOL_WAIT`].
    pub fn get(&self) -> Result<Pooled<'_>, Unavailable> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut slots = self.slots();
        loop {
            let generation = slots.generation;
            if let Some(conn) = slots.idle.pop() {
                if conn.client.is_closed() {
                    slots.open = slots.open.saturating_sub(1);
                    continue;
                }
                return Ok(self.pooled(conn, generation));
            }
            if slots.open < self.size {
                slots.open += 1;
                drop(slots);
                // Outside the lock: connecting takes a round trip or a timeout.
                return match self.connector.connect() {
                    Ok(client) => Ok(self.pooled(Conn::new(client), generation)),
                    Err(error) => {
                        self.forget_one();
                        Err(Unavailable::Connect(error))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Unavailable::Busy);
            }
            slots = self
                .freed
                .wait_timeout(slots, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// An idle connection if there is one, without waiting or connecting.
    pub fn idle(&self) -> Option<Pooled<'_>> {
        let mut slots = self.slots();
        let generation = slots.generation;
        let conn = slots.idle.pop()?;
        Some(self.pooled(conn, generation))
    }

    /// Closes the idle connections, and those taken now once given back.
    pub fn clear(&self) {
        let idle = {
            let mut slots = self.slots();
            slots.generation = slots.generation.wrapping_add(1);
            slots.open = slots.open.saturating_sub(slots.idle.len());
            std::mem::take(&mut slots.idle)
        };
        // Closed outside the lock: each sends a goodbye to the server.
        drop(idle);
        self.freed.notify_all();
    }

    /// The most connections it opens.
    pub fn size(&self) -> usize {
        self.size
    }

    fn pooled(&self, conn: Conn, generation: u64) -> Pooled<'_> {
        Pooled {
            pool: self,
            conn: Some(conn),
            generation,
        }
    }

    /// A connection is closed, or was never made: room for another.
    fn forget_one(&self) {
        let mut slots = self.slots();
        slots.open = slots.open.saturating_sub(1);
        drop(slots);
        self.freed.notify_one();
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Pooled<'_> {
    /// The connection, with its prepared statements.
    pub fn conn(&mut self) -> Option<&mut Conn> {
        self.conn.as_mut()
    }

    /// Whether its connection is closed, or the pool was cleared since it was taken: a
    /// failure seen on it then says nothing about the database now.
    pub fn is_stale(&self) -> bool {
        self.pool.slots().generation != self.generation
    }

    /// Whether its connection is closed (the server went away).
    pub fn is_closed(&self) -> bool {
        self.conn
            .as_ref()
            .is_none_or(|conn| conn.client.is_closed())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let mut slots = self.pool.slots();
        if conn.client.is_closed() || slots.generation != self.generation {
            slots.open = slots.open.saturating_sub(1);
            drop(slots);
            drop(conn);
        } else {
            slots.idle.push(conn);
            drop(slots);
        }
        self.pool.freed.notify_one();
    }
}
