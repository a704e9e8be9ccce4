//! Rate limiting for a log line that repeats: pure bookkeeping, time as an argument.
//!
//! A full disk fails every delivery the same way, thousands a second; one line per failure
//! buried the journal (25 000 lines in a few seconds) and told the operator nothing more than
//! the first. A [`Repeats`] lets one line through per [`REPEAT_WINDOW`] and counts the rest,
//! and the next line written says how many were held back ([`Held`]).

use std::fmt;
use std::time::{Duration, Instant};

/// At most one line of a kind per this long.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10);

/// One kind of log line: whether to write it now, and how many were held back before it.
#[derive(Debug, Clone, Default)]
pub struct Repeats {
    /// When a line of this kind was last written.
    last: Option<Instant>,
    /// Lines held back since then.
    held: u64,
}

/// What a written line adds about the ones held back since the previous one: nothing if none
/// were, else ` (repeated N times in the last S s)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Lines held back.
    pub count: u64,
    /// Since the previous line written.
    pub over: Duration,
}

impl Repeats {
    /// A kind of line not yet written.
    pub fn new() -> Repeats {
        Repeats::default()
    }

    /// A line of this kind happens at `now`: `Some` to write it (with what was held back
    /// since the last one), `None` to hold it back and count it. Times going backwards count
    /// as no time passing.
    pub fn admit(&mut self, now: Instant) -> Option<Held> {
        let since = match self.last {
            Some(last) => now.saturating_duration_since(last),
            None => Duration::MAX,
        };
        if since < REPEAT_WINDOW {
            self.held = self.held.saturating_add(1);
            return None;
        }
        let held = Held {
            count: std::mem::take(&mut self.held),
            over: if self.last.is_some() {
                since
            } else {
                Duration::ZERO
            },
        };
        self.last = Some(now);
        Some(held)
    }
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return Ok(());
        }
        let times = if self.count == 1 { "time" } else { "times" };
        // Whole seconds, rounded up: "in the last 0 s" would read as nothing at all.
        let secs = self.over.as_secs() + u64::from(self.over.subsec_nanos() > 0);
        write!(f, " (repeated {} {times} in the last {secs} s)", self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_line_is_written_then_one_per_window_with_the_count_held_back() {
        let t0 = Instant::now();
        let mut r = Repeats::new();
        let first = r.admit(t0).unwrap();
        assert_eq!(first.to_string(), "", "nothing held back yet");
        // 2 431 more within the window: all held back.
        for i in 1..=2431u32 {
            assert_eq!(r.admit(t0 + S * i / 400), None, "line {i}");
        }
        let next = r.admit(t0 + REPEAT_WINDOW).unwrap();
        assert_eq!(
            next,
            Held {
                count: 2431,
                over: REPEAT_WINDOW
            }
        );
        assert_eq!(next.to_string(), " (repeated 2431 times in the last 10 s)");
        // The window starts again from the line written.
        assert_eq!(r.admit(t0 + REPEAT_WINDOW + 9 * S), None);
        assert_eq!(
            r.admit(t0 + 2 * REPEAT_WINDOW + S).unwrap().to_string(),
            " (repeated 1 time in the last 11 s)"
        );
    }

    #[test]
    fn a_line_after_a_quiet_spell_is_written_at_once_with_nothing_held() {
        let t0 = Instant::now();
        let mut r = Repeats::new();
        assert!(r.admit(t0).is_some());
        let later = r.admit(t0 + 60 * S).unwrap();
        assert_eq!(later.count, 0);
        assert_eq!(later.to_string(), "");
    }

    #[test]
    fn time_going_backwards_holds_the_line_back_and_does_not_panic() {
        let t0 = Instant::now() + 100 * S;
        let mut r = Repeats::new();
        assert!(r.admit(t0).is_some());
        assert_eq!(r.admit(t0 - 50 * S), None);
        assert_eq!(
            r.admit(t0 + REPEAT_WINDOW).unwrap().to_string(),
            " (repeated 1 time in the last 10 s)"
        );
    }
}
