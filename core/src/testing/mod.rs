//! Test support shared by the conversation tests, the property tests and the fuzz targets
//! (cargo feature `testing`): a harness that drives a real [`Session`](crate::smtp::Session)
//! on a virtual clock, a scripted runtime, and the invariant checks every event must pass.

pub mod fuzz;
mod harness;
pub mod http;
mod invariants;
mod script;

pub use harness::{Harness, plain, test_config, tls_info};
pub use invariants::{Checker, Violation, check_reply_bytes};
pub use script::{PASSWORD, Recording, ScriptedRuntime, run_chunks};
