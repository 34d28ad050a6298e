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

/// Milliseconds in `d` rounded *up*, for a delay before a job is due: a job must never be due
/// before the instant asked for, so 1.2 ms is 2 ms. `None` when `d` exceeds [`MAX_DELAY`].
pub(crate) fn delay_ms_up(d: Duration) -> Option<u64> {
    let ms = delay_ms(d)?;
    Some(ms + u64::from(!d.subsec_nanos().is_multiple_of(1_000_000)))
}

/// Unix milliseconds of `t` rounded *up*, for a due time (see [`delay_ms_up`]); as
/// [`unix_ms`] otherwise.
pub(crate) fn unix_ms_up(t: SystemTime) -> Option<u64> {
    let ms = unix_ms(t)?;
    let fraction = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 1_000_000);
    Some(ms + u64::from(fraction != 0))
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

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Delays convert exactly up to MAX_DELAY, monotonically, and are refused above it.
            #[test]
            fn delays_convert_exactly_or_are_refused(a in any::<u64>(), b in any::<u64>()) {
                let (da, db) = (Duration::from_millis(a.min(b)), Duration::from_millis(a.max(b)));
                match (delay_ms(da), delay_ms(db)) {
                    (Some(x), Some(y)) => prop_assert!(x == a.min(b) && x <= y),
                    (Some(_), None) => prop_assert!(db > MAX_DELAY),
                    (None, None) => prop_assert!(da > MAX_DELAY),
                    (None, Some(_)) => prop_assert!(false, "refused the smaller delay"),
                }
            }

            /// Every time accepted as a due time is an integer a Redis score (a double) holds
            /// exactly, and later times never map to smaller scores.
            #[test]
            fn due_times_are_exact_scores(a in any::<u64>(), b in any::<u64>()) {
                let t = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
                let (lo, hi) = (a.min(b) >> 20, a.max(b) >> 20);
                if let (Some(x), Some(y)) = (unix_ms(t(lo)), unix_ms(t(hi))) {
                    prop_assert!(x <= y);
                    prop_assert!(y < (1u64 << 53));
                    prop_assert_eq!(y as f64 as u64, y);
                    // Plus the longest delay: still exact.
                    let due = y + MAX_DELAY.as_millis() as u64;
                    prop_assert_eq!(due as f64 as u64, due);
                }
            }
        }
    }

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

    /// A due time or delay with a fraction of a millisecond is rounded up, never down: the
    /// job is never due before the instant asked for.
    #[test]
    fn due_times_round_up_to_the_millisecond() {
        assert_eq!(delay_ms_up(Duration::from_micros(1_200)), Some(2));
        assert_eq!(delay_ms_up(Duration::from_nanos(1)), Some(1));
        assert_eq!(delay_ms_up(Duration::from_millis(7)), Some(7));
        assert_eq!(delay_ms_up(Duration::ZERO), Some(0));
        assert_eq!(delay_ms_up(MAX_DELAY + Duration::from_nanos(1)), None);
        let t = from_unix_ms(1_763_740_800_123);
        assert_eq!(unix_ms_up(t), Some(1_763_740_800_123));
        assert_eq!(
            unix_ms_up(t + Duration::from_nanos(1)),
            Some(1_763_740_800_124)
        );
        assert_eq!(
            unix_ms_up(t + Duration::from_micros(999)),
            Some(1_763_740_800_124)
        );
        assert_eq!(unix_ms_up(UNIX_EPOCH - Duration::from_secs(5)), Some(0));
    }
}
