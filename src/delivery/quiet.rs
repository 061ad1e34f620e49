//! The quiet hours: the local hours in which no bulk SMS goes out (21:00–07:00 by
//! default); follow-ups to tipsters go at any hour.

use crate::clock::VN_OFFSET_MS;
use crate::config::BroadcastConfig;

/// Local minutes of the day (Asia/Ho_Chi_Minh) at `ms` since the epoch.
fn local_minute(ms: i64) -> i64 {
    ((ms + VN_OFFSET_MS) / 60_000).rem_euclid(1440)
}

/// Parses `HH:MM` into minutes of the day.
pub fn parse_hhmm(s: &str) -> Option<i64> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
}

/// The hours in which no bulk SMS goes out (21:00–07:00 local time by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    start: i64,
    end: i64,
}

impl QuietHours {
    /// From the configuration; invalid times fall back to 21:00–07:00.
    pub fn from_config(c: &BroadcastConfig) -> QuietHours {
        QuietHours {
            start: parse_hhmm(&c.quiet_start).unwrap_or(21 * 60),
            end: parse_hhmm(&c.quiet_end).unwrap_or(7 * 60),
        }
    }

    /// Whether `ms` falls in the quiet hours.
    pub fn is_quiet(&self, ms: i64) -> bool {
        let m = local_minute(ms);
        match self.start.cmp(&self.end) {
            std::cmp::Ordering::Equal => false,
            std::cmp::Ordering::Less => m >= self.start && m < self.end,
            std::cmp::Ordering::Greater => m >= self.start || m < self.end,
        }
    }

    /// The first moment at or after `ms` that is not quiet.
    pub fn next_open(&self, ms: i64) -> i64 {
        if !self.is_quiet(ms) {
            return ms;
        }
        let m = local_minute(ms);
        let wait = (self.end - m).rem_euclid(1440);
        // To the start of the end minute.
        ms - ms.rem_euclid(60_000) + wait * 60_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64, m: i64) -> i64 {
        // 2026-06-26 local time (UTC+7).
        let day = 1_782_432_000_000; // 2026-06-26 00:00 UTC
        day + (h * 60 + m) * 60_000 - VN_OFFSET_MS
    }

    #[test]
    fn quiet_hours_wrap_midnight() {
        let q = QuietHours::from_config(&BroadcastConfig::default());
        assert!(!q.is_quiet(at(20, 59)));
        assert!(q.is_quiet(at(21, 0)));
        assert!(q.is_quiet(at(23, 30)));
        assert!(q.is_quiet(at(3, 0)));
        assert!(q.is_quiet(at(6, 59)));
        assert!(!q.is_quiet(at(7, 0)));
        assert_eq!(q.next_open(at(22, 15)), at(7, 0) + 86_400_000);
        assert_eq!(q.next_open(at(5, 10)), at(7, 0));
        assert_eq!(q.next_open(at(12, 0)), at(12, 0));
    }

    #[test]
    fn quiet_hours_can_be_off_or_daytime() {
        let off = QuietHours::from_config(&BroadcastConfig {
            quiet_start: "00:00".into(),
            quiet_end: "00:00".into(),
            ..BroadcastConfig::default()
        });
        assert!(!off.is_quiet(at(23, 0)));
        let day = QuietHours::from_config(&BroadcastConfig {
            quiet_start: "12:00".into(),
            quiet_end: "13:30".into(),
            ..BroadcastConfig::default()
        });
        assert!(day.is_quiet(at(12, 45)));
        assert!(!day.is_quiet(at(13, 30)));
        assert_eq!(day.next_open(at(12, 0)), at(13, 30));
        assert_eq!(parse_hhmm("25:00"), None);
        assert_eq!(parse_hhmm("7:05"), Some(425));
    }
}
