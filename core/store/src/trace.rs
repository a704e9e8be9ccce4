//! The `Received:` trace header we prepend (RFC 5321 §4.4) and the date formats it and the
//! command line use.
//!
//! ```text
//! Received: from client.example ([192.0.2.7])
//!     (using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)
//!     by mail.example with ESMTPSA id 42;
//!     Tue, 03 Mar 2026 14:05:09 +0000
//! ```
//! Each clause sits on its own folded line, starting with a tab (RFC 5322 §2.2.3), so the header
//! stays under 78 characters for ordinary names. `ESMTPSA` when the message came over TLS with
//! AUTH, `ESMTPA` for AUTH without TLS (RFC 3848 §2); the TLS comment follows RFC 8314 §7.4.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use atacama_core::smtp::TlsInfo;

/// What the `Received:` header says about where a message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedTrace {
    /// The client's EHLO/HELO name.
    pub helo: String,
    /// The client's address.
    pub peer: IpAddr,
    /// Our host name.
    pub hostname: String,
    /// The TLS parameters, if the message came over TLS.
    pub tls: Option<TlsInfo>,
}

impl ReceivedTrace {
    /// The header, CR LF terminated, for message `id` received at `received_at` (Unix seconds).
    pub fn header(&self, id: u64, received_at: u64) -> String {
        let mut out = String::with_capacity(200);
        out.push_str("Received: from ");
        out.push_str(&header_safe(&self.helo));
        // RFC 5321 §4.1.3: IPv6 address literals carry the `IPv6:` tag.
        match self.peer {
            IpAddr::V4(ip) => _ = write!(out, " ([{ip}])"),
            IpAddr::V6(ip) => _ = write!(out, " ([IPv6:{ip}])"),
        }
        let protocol = match &self.tls {
            Some(tls) => {
                _ = write!(
                    out,
                    "\r\n\t(using {} with cipher {})",
                    comment_safe(&tls.version),
                    comment_safe(&tls.cipher)
                );
                "ESMTPSA"
            }
            None => "ESMTPA",
        };
        _ = write!(
            out,
            "\r\n\tby {} with {protocol} id {id};\r\n\t{}\r\n",
            header_safe(&self.hostname),
            rfc5322_date(received_at)
        );
        out
    }
}

/// Seconds since the Unix epoch; times before it count as the epoch.
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An RFC 5322 §3.3 date in UTC: `Tue, 03 Mar 2026 14:05:09 +0000`.
pub fn rfc5322_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = Civil::from_unix(unix);
    // Invariant: weekday < 7 and 1 <= month <= 12 by construction in `from_unix`.
    let day_name = DAYS.get(t.weekday as usize).copied().unwrap_or("???");
    let month_name = MONTHS.get(t.month as usize - 1).copied().unwrap_or("???");
    format!(
        "{day_name}, {:02} {month_name} {:04} {:02}:{:02}:{:02} +0000",
        t.day, t.year, t.hour, t.minute, t.second
    )
}

/// An RFC 3339 timestamp in UTC: `2026-03-03T14:05:09Z`.
pub fn rfc3339_utc(unix: u64) -> String {
    let t = Civil::from_unix(unix);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// A UTC calendar date and time.
#[derive(Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Sunday.
    weekday: u32,
}

impl Civil {
    fn from_unix(unix: u64) -> Civil {
        let days = (unix / 86_400) as i64;
        let secs = (unix % 86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
            // 1970-01-01 was a Thursday.
            weekday: ((days + 4) % 7) as u32,
        }
    }
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) in the proleptic Gregorian
/// calendar. Howard Hinnant's `civil_from_days`, for days >= 0.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Printable ASCII without spaces: anything else in a client-supplied name becomes `?`, so it
/// can neither end the header nor smuggle another one.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// As [`header_safe`], and no parentheses or backslash, which would end or escape a comment.
fn comment_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '(' | ')' | '\\' => '?',
            c if c.is_ascii_graphic() => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn civil_dates_match_known_days() {
        let cases: &[(u64, &str, &str)] = &[
            (0, "1970-01-01T00:00:00Z", "Thu, 01 Jan 1970 00:00:00 +0000"),
            (
                951_782_400,
                "2000-02-29T00:00:00Z",
                "Tue, 29 Feb 2000 00:00:00 +0000",
            ),
            (
                951_868_799,
                "2000-02-29T23:59:59Z",
                "Tue, 29 Feb 2000 23:59:59 +0000",
            ),
            (
                978_307_199,
                "2000-12-31T23:59:59Z",
                "Sun, 31 Dec 2000 23:59:59 +0000",
            ),
            (
                1_709_210_096,
                "2024-02-29T12:34:56Z",
                "Thu, 29 Feb 2024 12:34:56 +0000",
            ),
            (
                4_107_542_400,
                "2100-03-01T00:00:00Z",
                "Mon, 01 Mar 2100 00:00:00 +0000",
            ),
            (
                4_107_542_399,
                "2100-02-28T23:59:59Z",
                "Sun, 28 Feb 2100 23:59:59 +0000",
            ),
            (
                253_402_300_799,
                "9999-12-31T23:59:59Z",
                "Fri, 31 Dec 9999 23:59:59 +0000",
            ),
        ];
        for &(unix, rfc3339, rfc5322) in cases {
            assert_eq!(rfc3339_utc(unix), rfc3339, "{unix}");
            assert_eq!(rfc5322_date(unix), rfc5322, "{unix}");
        }
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // Walk 1970..2400 day by day: the civil date advances by exactly one day each time.
        let mut prev = civil_from_days(0);
        for days in 1..(430 * 366) {
            let next = civil_from_days(days);
            let (y, m, d) = prev;
            let expected = if next.1 == m {
                (y, m, d + 1)
            } else if m == 12 {
                (y + 1, 1, 1)
            } else {
                (y, m + 1, 1)
            };
            assert_eq!(next, expected, "day {days}");
            prev = next;
        }
    }

    #[test]
    fn times_before_the_epoch_count_as_the_epoch() {
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_millis(1500)), 1);
    }

    #[test]
    fn received_header_over_tls_says_esmtpsa_and_the_cipher() {
        let trace = ReceivedTrace {
            helo: "client.example".into(),
            peer: "192.0.2.7".parse().unwrap(),
            hostname: "mail.example".into(),
            tls: Some(TlsInfo {
                version: "TLSv1.3".into(),
                cipher: "TLS13_AES_256_GCM_SHA384".into(),
            }),
        };
        assert_eq!(
            trace.header(42, 1_772_546_709),
            "Received: from client.example ([192.0.2.7])\r\n\
             \t(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)\r\n\
             \tby mail.example with ESMTPSA id 42;\r\n\
             \tTue, 03 Mar 2026 14:05:09 +0000\r\n"
        );
    }

    #[test]
    fn received_header_without_tls_says_esmtpa_and_tags_ipv6() {
        let trace = ReceivedTrace {
            helo: "bad\r\nX-Injected: yes".into(),
            peer: "2001:db8::1".parse().unwrap(),
            hostname: "mail.example".into(),
            tls: None,
        };
        assert_eq!(
            trace.header(7, 0),
            "Received: from bad??X-Injected:?yes ([IPv6:2001:db8::1])\r\n\
             \tby mail.example with ESMTPA id 7;\r\n\
             \tThu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn tls_comment_cannot_close_early() {
        let trace = ReceivedTrace {
            helo: "c".into(),
            peer: "192.0.2.1".parse().unwrap(),
            hostname: "h".into(),
            tls: Some(TlsInfo {
                version: "v) (x".into(),
                cipher: "c\\".into(),
            }),
        };
        assert!(trace.header(1, 0).contains("(using v???x with cipher c?)"));
    }
}
