//! Conversions between `std::time` values and the integer milliseconds stored in Redis.
//!
//! Redis scores are unix milliseconds on the *Redis server's* clock: scripts read it with
//! `TIME`. The host clock is only used to turn a caller's absolute `SystemTime` into
//! milliseconds; it never decides what is due.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest delay accepted: about 100 years. Keeps `now + delay` far inside the 2^53 range
/// in which a Redis score (a double) holds every integer exactly.
pub const MAX_DELAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Milliseconds in `d`, or `None` when `d` exceeds [`MAX_DELAY`].
pub(crate) fn delay_ms(d: Duration) -> Option<u64> {
    if d > MAX_DELAY {
        return None;
    }
    u64::try_from(d.as_millis()).ok()
}

/// Unix milliseconds of `t`; times before 1970 count as 0, times beyond the
/// [`MAX_DELAY`] horizon as `None`.
pub(crate) fn unix_ms(t: SystemTime) -> Option<u64> {
    let ms = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => u64::try_from(d.as_millis()).ok()?,
        Err(_) => 0,
    };
    // 1970 + 2 * MAX_DELAY: still an exact double, and no job is due later.
    if ms > 2 * MAX_DELAY.as_millis() as u64 {
        return None;
    }
    Some(ms)
}

/// The `SystemTime` of a unix millisecond value read from Redis.
pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_and_refuse_overflow() {
        assert_eq!(delay_ms(Duration::from_millis(1500)), Some(1500));
        assert_eq!(delay_ms(MAX_DELAY + Duration::from_millis(1)), None);
        assert_eq!(delay_ms(Duration::MAX), None);
        let t = from_unix_ms(1_763_740_800_123);
        assert_eq!(unix_ms(t), Some(1_763_740_800_123));
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(5)), Some(0));
        assert_eq!(unix_ms(UNIX_EPOCH + MAX_DELAY * 3), None);
    }
}
