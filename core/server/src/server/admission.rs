//! What the gate decides about a new connection, and how each kind is served. An admitted
//! connection gets a thread or task of its own. One over a cap is still a connection, served
//! by the same loop: `Accepted::refused` makes its only events the gate's `421` and the
//! close (after the handshake, on the implicit-TLS port), and short deadlines keep a client
//! that will not read from holding the server up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use atacama_core::connection::Accepted;
use atacama_core::logging;
use atacama_core::policy::{ConnectionPermit, Slot};
use atacama_core::smtp::Reply;

use super::ServerState;

/// A new connection as the gate left it: serve it with [`Admission::accept`].
#[derive(Debug)]
#[must_use = "an admission is served, or dropped to close without a word"]
pub struct Admission {
    peer: SocketAddr,
    /// The gate's reply, for a connection over a cap.
    refusal: Option<Reply>,
    held: Held,
    /// TLS from the first byte (port 465) rather than STARTTLS (port 587).
    pub implicit_tls: bool,
    /// The deadlines of its IO.
    pub deadlines: Deadlines,
    /// Served where the accept loop runs, not on a thread or task of its own: a refusal on
    /// the plaintext port, whose `421` a fresh socket's send buffer takes at once
    /// (`refusal_write_timeout` is the backstop).
    pub inline: bool,
}

/// What a connection holds until its end: its place in the gate, or (a refusal on the
/// implicit-TLS port) its place among the refusals handshaking at once. Drop it once the
/// connection has been closed.
#[derive(Debug)]
pub struct Held {
    _permit: Option<ConnectionPermit>,
    _slot: Option<Slot>,
}

/// The deadlines of one connection's IO, which the runtime applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// One write (P4).
    pub write: Duration,
    /// The TLS handshake, on 465 or after STARTTLS (T11).
    pub handshake: Duration,
    /// After the last reply, how long to wait for the client's close.
    pub linger: Duration,
}

impl Admission {
    /// The client.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the gate refused it.
    pub fn is_refusal(&self) -> bool {
        self.refusal.is_some()
    }

    /// Starts the connection's bookkeeping (an admitted one logs `connection open`, at the
    /// address `local` gives; a refusal logs nothing more), and hands over what it holds.
    pub fn accept(
        self,
        local: impl FnOnce() -> Option<SocketAddr>,
        now: Instant,
    ) -> (Accepted, Held) {
        let accepted = match self.refusal {
            Some(reply) => Accepted::refused(self.peer, reply, now),
            None => Accepted::new(self.peer, local(), now),
        };
        (accepted, self.held)
    }
}

impl ServerState {
    /// The gate's verdict on a new connection from `peer`: admitted, holding its place in the
    /// gate; or refused (logged `connection refused`) and served as its `421`; or `None`:
    /// close it without a word (see [`ServerState::refuse`]).
    pub fn admit(&self, peer: SocketAddr, implicit_tls: bool) -> Option<Admission> {
        match self.gate.admit(peer.ip()) {
            Ok(permit) => Some(Admission {
                peer,
                refusal: None,
                held: Held {
                    _permit: Some(permit),
                    _slot: None,
                },
                implicit_tls,
                deadlines: Deadlines {
                    write: self.limits.write_timeout,
                    handshake: self.limits.tls_handshake_timeout,
                    linger: self.limits.close_linger,
                },
                inline: false,
            }),
            Err(reply) => {
                logging::connection_refused(peer, &reply);
                self.refuse(peer, reply, implicit_tls)
            }
        }
    }

    /// A refusal: the connection from `peer` is told `reply` and closed, never waiting on
    /// the client for long and never for its close. On the implicit-TLS port the reply can
    /// only go inside TLS, so at most `max_refusals_in_flight` handshake at once; beyond
    /// them it is `None` (logged at debug level): close without a word.
    pub fn refuse(&self, peer: SocketAddr, reply: Reply, implicit_tls: bool) -> Option<Admission> {
        let tls_timeout = self.refusal_tls_timeout();
        let (slot, write) = if implicit_tls {
            let Some(slot) = self.refusals.try_enter() else {
                logging::refused_without_reply(peer, &"too many refusals in flight");
                return None;
            };
            (Some(slot), tls_timeout)
        } else {
            (None, self.limits.refusal_write_timeout)
        };
        Some(Admission {
            peer,
            refusal: Some(reply),
            held: Held {
                _permit: None,
                _slot: slot,
            },
            implicit_tls,
            deadlines: Deadlines {
                write,
                handshake: tls_timeout,
                linger: Duration::ZERO,
            },
            inline: !implicit_tls,
        })
    }
}
