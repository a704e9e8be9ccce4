//! Atacama Mail's core (`atacama-core`): everything that decides anything, and nothing that
//! does IO. The SMTP session (`smtp`), the web side's HTTP/1.1 connection (`http`) and what
//! it serves (`web`: routes, pages, JSON, feeds), SASL, the markup renderer, MIME processing
//! (`message`), the channel a message goes to (`channels`), the limits that span
//! connections (`policy`), the configuration's keys and checks (`config`), the wording of
//! every log line (`logging`) and the bookkeeping of one connection's loop (`connection`)
//! take bytes, facts and time as arguments and return replies and requests. The runtimes and
//! the server (`atacama-server`) carry those out.
//!
//! It never opens a file or a socket, reads a clock, starts a thread or draws OS randomness,
//! and it has no unsafe code; nothing it depends on does IO (no database, TLS, password
//! hashing or libc). `.ci/run` checks its dependency tree. Feature `testing`: the session
//! harness, invariant checks and fuzz entry points shared by the tests and the fuzz targets.

#![forbid(unsafe_code)]
// Input reaches most of this crate: no `unwrap`, `expect` or slice indexing outside its unit
// tests (integration tests and benches are crates of their own, not held to it).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod channels;
pub mod config;
pub mod connection;
pub mod http;
pub mod logging;
pub mod markup;
pub mod message;
pub mod policy;
pub mod sasl;
pub mod smtp;
#[cfg(feature = "testing")]
pub mod testing;
pub mod web;
