//! Test support shared by the conversation tests, the property tests and the fuzz targets
//! (cargo feature `testing`): a harness that drives a real [`Session`] on a virtual clock,
//! and the invariant checks every event must pass.

mod harness;
mod invariants;

pub use harness::{Harness, plain, test_config, tls_info};
pub use invariants::{Checker, Violation, check_reply_bytes};
