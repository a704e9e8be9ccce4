//! What a running Atacama Mail server is made of (`atacama-server`), shared by both runtimes:
//! the work behind a session's requests (`service`), the life of a server and the threads it
//! runs (`server`: commit, password verifiers, store keeper), the command line's socket into a
//! running daemon (`control`), rustls configs (`tls`), systemd notify and socket activation
//! (`systemd`), the command line of both binaries (`cli`), the stderr logger (`logger`),
//! reading the configuration file (`config`), opening the store `[store]` names (`store`),
//! the web read side's answer to one request (`web`) and the counters `/metrics` reports
//! (`counters`).
//!
//! This is where the IO around the pure core (`atacama_core`) lives, but it makes no protocol
//! decision of its own: replies, limits and log wording come from the core, and the database
//! is only reached through `atacama_store`. It never moves a connection's bytes either: the
//! runtimes own the sockets and the waiting.

pub mod cli;
pub mod config;
pub mod control;
pub mod counters;
pub mod logger;
pub mod priority;
pub mod server;
pub mod service;
pub mod store;
pub mod store_calls;
pub mod systemd;
pub mod tls;
pub mod web;
