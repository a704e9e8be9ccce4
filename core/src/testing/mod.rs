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

/// `bytes` cut at `points` (unsorted; each taken modulo `bytes.len() + 1`), for the property
/// tests that any split of the same bytes gives the same result.
pub fn split_at_points(bytes: &[u8], mut points: Vec<usize>) -> Vec<&[u8]> {
    points.iter_mut().for_each(|p| *p %= bytes.len() + 1);
    points.sort_unstable();
    let mut chunks = Vec::with_capacity(points.len() + 1);
    let (mut rest, mut at) = (bytes, 0);
    for point in points {
        // Sorted and at most `bytes.len()`: the cut is always inside `rest`.
        let (chunk, tail) = rest.split_at_checked(point - at).unwrap_or((rest, &[]));
        chunks.push(chunk);
        (rest, at) = (tail, point);
    }
    chunks.push(rest);
    chunks
}
