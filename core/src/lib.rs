//! Atacama Mail core: everything that decides anything.
//!
//! The pure modules (`smtp`, `sasl`, `markup`, `message`, `config`) never touch a socket, a
//! clock or a thread; the runtimes feed them bytes and time and carry out what they ask.
//! `store` (cargo feature `store`) is the only module that touches the database; `service` (the
//! work behind a session's requests), `control` (the command line's socket into a running
//! daemon's store) and `cli` (the command line of both binaries) build on it. `data_dir`
//! (features `store` or `tls`) creates and checks the data directory and opens its files.
//!
//! Shared by both runtimes: `policy` (connection gate, login throttle, verifier queue: pure
//! bookkeeping), `logging` (the wording of every log line), `tls` (cargo feature `tls`:
//! rustls server configs, self-signed generation, reload), `systemd` (cargo feature
//! `systemd`: readiness, watchdog, socket activation), and `server` (features `store`, `tls`
//! and `systemd`: the state every connection shares, the life of a server, and the
//! bookkeeping of one connection's loop).

#[cfg(feature = "store")]
pub mod cli;
pub mod config;
#[cfg(feature = "store")]
pub mod control;
#[cfg(any(feature = "store", feature = "tls"))]
pub mod data_dir;
pub mod logging;
pub mod markup;
pub mod message;
pub mod policy;
pub mod sasl;
#[cfg(all(feature = "store", feature = "tls", feature = "systemd"))]
pub mod server;
#[cfg(feature = "store")]
pub mod service;
pub mod smtp;
#[cfg(feature = "store")]
pub mod store;
#[cfg(feature = "systemd")]
pub mod systemd;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "tls")]
pub mod tls;
