//! The time, as tinbao keeps it: Unix milliseconds in UTC, shown in Vietnam time.

/// Vietnam's offset from UTC (UTC+7 all year, no daylight saving), in milliseconds.
pub const VN_OFFSET_MS: i64 = 7 * 3_600_000;

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
