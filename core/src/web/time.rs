//! Unix seconds as RFC 3339 (JSON, Atom, `<time datetime>`) and RFC 822 (RSS `pubDate`).
//!
//! Times past 9999-12-31T23:59:59Z are written as that instant: both formats have
//! four-digit years.

/// The last second with a four-digit year.
const MAX_SECS: u64 = 253_402_300_799;

/// `2026-12-06T21:10:39Z` (RFC 3339 §5.6, UTC).
pub fn rfc3339(unix_secs: u64) -> String {
    let t = Civil::of(unix_secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// `Sun, 06 Dec 2026 21:10:39 +0000` (RFC 822 §5 as RSS 2.0 uses it, with RFC 1123's
/// four-digit year).
pub fn rfc822(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = Civil::of(unix_secs);
    // 1970-01-01 was a Thursday.
    let weekday = DAYS.get((t.days % 7) as usize).copied().unwrap_or("Thu");
    let month = MONTHS.get(t.month as usize - 1).copied().unwrap_or("Jan");
    format!(
        "{weekday}, {:02} {month} {:04} {:02}:{:02}:{:02} +0000",
        t.day, t.year, t.hour, t.minute, t.second
    )
}

/// A UTC calendar time.
struct Civil {
    days: u64,
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
}

impl Civil {
    /// Howard Hinnant's `civil_from_days`, for days on or after 1970-01-01.
    fn of(unix_secs: u64) -> Civil {
        let secs = unix_secs.min(MAX_SECS);
        let days = secs / 86_400;
        let of_day = secs % 86_400;
        let z = days + 719_468; // days since 0000-03-01
        let era = z / 146_097;
        let day_of_era = z % 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let mp = (5 * day_of_year + 2) / 153; // March = 0
        let day = day_of_year - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = year_of_era + era * 400 + u64::from(month <= 2);
        Civil {
            days,
            year,
            month,
            day,
            hour: of_day / 3600,
            minute: of_day % 3600 / 60,
            second: of_day % 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let table = [
            (0, "1970-01-01T00:00:00Z", "Thu, 01 Jan 1970 00:00:00 +0000"),
            (
                951_782_400,
                "2000-02-29T00:00:00Z",
                "Tue, 29 Feb 2000 00:00:00 +0000",
            ),
            (
                1_796_591_439,
                "2026-12-06T21:10:39Z",
                "Sun, 06 Dec 2026 21:10:39 +0000",
            ),
            (
                4_107_542_399,
                "2100-02-28T23:59:59Z",
                "Sun, 28 Feb 2100 23:59:59 +0000",
            ),
            (
                4_107_542_400,
                "2100-03-01T00:00:00Z",
                "Mon, 01 Mar 2100 00:00:00 +0000",
            ),
            (
                MAX_SECS,
                "9999-12-31T23:59:59Z",
                "Fri, 31 Dec 9999 23:59:59 +0000",
            ),
            (
                u64::MAX,
                "9999-12-31T23:59:59Z",
                "Fri, 31 Dec 9999 23:59:59 +0000",
            ),
        ];
        for (secs, rfc3339_text, rfc822_text) in table {
            assert_eq!(
                (rfc3339(secs).as_str(), rfc822(secs).as_str()),
                (rfc3339_text, rfc822_text)
            );
        }
    }
}
