//! Timestamp conversions. Internally timestamps are i64 nanoseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Largest millisecond timestamp whose nanosecond form fits in an i64 (year 2262).
pub const MAX_MS: i64 = i64::MAX / 1_000_000;

/// Nanoseconds per millisecond.
pub const NANOS_PER_MS: i64 = 1_000_000;

/// Current wall-clock time in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

/// Converts milliseconds to nanoseconds, or `None` when out of the representable range.
pub fn ms_to_ns(ms: i64) -> Option<i64> {
    if (0..=MAX_MS).contains(&ms) {
        Some(ms * NANOS_PER_MS)
    } else {
        None
    }
}

/// Converts nanoseconds to milliseconds (truncating toward negative infinity).
pub fn ns_to_ms(ns: i64) -> i64 {
    ns.div_euclid(NANOS_PER_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_round_trip_and_bounds() {
        assert_eq!(ms_to_ns(1_700_000_000_000), Some(1_700_000_000_000_000_000));
        assert_eq!(ns_to_ms(1_700_000_000_123_456_789), 1_700_000_000_123);
        assert_eq!(ms_to_ns(-1), None);
        assert_eq!(ms_to_ns(MAX_MS + 1), None);
        assert!(ms_to_ns(MAX_MS).is_some());
    }
}
