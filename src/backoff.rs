//! Retry policy: how long a failed job waits before its next attempt.
//!
//! The default is [`Exponential`] with full jitter: attempt `n` (1-based) waits a uniformly
//! random time in `[0, min(cap, base * 2^(n-1))]`. Full jitter spreads a burst of failures (a
//! webhook endpoint that was down for everyone) over the whole window instead of retrying them
//! in lock-step. Defaults: [`DEFAULT_BASE`] = 1 s, [`DEFAULT_CAP`] = 1 h; with the default of
//! [`crate::DEFAULT_MAX_ATTEMPTS`] attempts a job is retried for up to about 8.5 minutes of
//! ceiling in total before it goes to the dead set.
//!
//! All arithmetic saturates: no attempt number or base overflows; the cap always wins. The
//! random source is an [`Rng`] handed in by the caller, so tests can seed it.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Default first-retry ceiling of [`Exponential`].
pub const DEFAULT_BASE: Duration = Duration::from_secs(1);
/// Default cap of [`Exponential`].
pub const DEFAULT_CAP: Duration = Duration::from_secs(3600);

/// A retry policy: the delay before the attempt after failed attempt `attempt` (1-based).
///
/// Implement it for a custom policy and hand it to
/// [`crate::WorkerConfig::set_backoff`]. Implementations must not panic.
pub trait Backoff: Send + Sync + fmt::Debug {
    /// The delay after failed attempt `attempt` (the first run is attempt 1).
    fn delay(&self, attempt: u32, rng: &mut Rng) -> Duration;
}

/// Exponential backoff with a cap and full jitter (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exponential {
    base: Duration,
    cap: Duration,
}

impl Exponential {
    /// A policy whose first retry waits up to `base`, doubling per attempt up to `cap`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `base` is zero, `cap < base`, or `cap` exceeds
    /// [`crate::MAX_DELAY`].
    pub fn new(base: Duration, cap: Duration) -> Result<Self> {
        if base.is_zero() {
            return Err(invalid("must have a base above zero"));
        }
        if cap < base {
            return Err(invalid("must have a cap at least as large as its base"));
        }
        if cap > crate::MAX_DELAY {
            return Err(invalid("must have a cap of at most 100 years"));
        }
        Ok(Exponential { base, cap })
    }

    /// The upper end of the jitter window after failed attempt `attempt`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1);
        let factor = 2u32.saturating_pow(doublings);
        self.base
            .checked_mul(factor)
            .unwrap_or(self.cap)
            .min(self.cap)
    }
}

impl Default for Exponential {
    fn default() -> Self {
        Exponential {
            base: DEFAULT_BASE,
            cap: DEFAULT_CAP,
        }
    }
}

impl Backoff for Exponential {
    fn delay(&self, attempt: u32, rng: &mut Rng) -> Duration {
        let ceiling_ms = self.ceiling(attempt).as_millis().min(u128::from(u64::MAX)) as u64;
        Duration::from_millis(rng.below(ceiling_ms.saturating_add(1)))
    }
}

/// The same delay after every failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixed {
    delay: Duration,
}

impl Fixed {
    /// Every retry waits `delay`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `delay` exceeds [`crate::MAX_DELAY`].
    pub fn new(delay: Duration) -> Result<Self> {
        if delay > crate::MAX_DELAY {
            return Err(invalid("must have a delay of at most 100 years"));
        }
        Ok(Fixed { delay })
    }
}

impl Backoff for Fixed {
    fn delay(&self, _attempt: u32, _rng: &mut Rng) -> Duration {
        self.delay
    }
}

fn invalid(reason: &str) -> Error {
    Error::InvalidConfig {
        what: "backoff policy",
        reason: reason.to_owned(),
    }
}

/// A per-job backoff stored in the job's envelope, chosen by the producer. Only the built-in
/// policies can travel with a job; a custom [`Backoff`] lives in the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t")]
#[non_exhaustive]
pub enum BackoffSpec {
    /// [`Exponential`] with these bounds, in milliseconds.
    #[serde(rename = "exp")]
    Exponential {
        /// First-retry ceiling.
        base_ms: u64,
        /// Cap.
        cap_ms: u64,
    },
    /// [`Fixed`] with this delay, in milliseconds.
    #[serde(rename = "fixed")]
    Fixed {
        /// The delay.
        delay_ms: u64,
    },
}

impl From<Exponential> for BackoffSpec {
    fn from(p: Exponential) -> Self {
        BackoffSpec::Exponential {
            base_ms: p.base.as_millis() as u64,
            cap_ms: p.cap.as_millis() as u64,
        }
    }
}

impl From<Fixed> for BackoffSpec {
    fn from(p: Fixed) -> Self {
        BackoffSpec::Fixed {
            delay_ms: p.delay.as_millis() as u64,
        }
    }
}

impl BackoffSpec {
    /// The delay this spec gives. A spec that does not validate (hand-written into Redis) falls
    /// back to the default exponential policy rather than failing the job's retry.
    pub fn delay(&self, attempt: u32, rng: &mut Rng) -> Duration {
        match *self {
            BackoffSpec::Exponential { base_ms, cap_ms } => Exponential::new(
                Duration::from_millis(base_ms),
                Duration::from_millis(cap_ms),
            )
            .unwrap_or_default()
            .delay(attempt, rng),
            BackoffSpec::Fixed { delay_ms } => {
                Duration::from_millis(delay_ms).min(crate::MAX_DELAY)
            }
        }
    }
}

/// A small, fast, seedable random source (SplitMix64) for jitter. Not for secrets.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator that yields the same sequence for the same seed: for tests.
    pub fn seeded(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// A generator seeded from the process's random hash keys and the clock.
    pub fn from_entropy() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        hasher.write_u64(nanos);
        hasher.write_u32(std::process::id());
        Rng {
            state: hasher.finish(),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (0 when `n` is 0), by widening multiplication.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_then_caps() {
        let p = Exponential::new(Duration::from_millis(100), Duration::from_secs(1)).unwrap();
        let ceilings: Vec<u64> = (1..=6).map(|a| p.ceiling(a).as_millis() as u64).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        // Attempt 0 is treated as 1; huge attempts saturate to the cap without overflow.
        assert_eq!(p.ceiling(0), Duration::from_millis(100));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn full_jitter_stays_in_window_and_is_seeded() {
        let p = Exponential::default();
        let mut a = Rng::seeded(7);
        let mut b = Rng::seeded(7);
        for attempt in 1..50 {
            let d = p.delay(attempt, &mut a);
            assert!(d <= p.ceiling(attempt));
            assert_eq!(d, p.delay(attempt, &mut b));
        }
    }

    #[test]
    fn huge_bases_do_not_overflow() {
        let p = Exponential::new(crate::MAX_DELAY, crate::MAX_DELAY).unwrap();
        assert_eq!(p.ceiling(64), crate::MAX_DELAY);
        let _ = p.delay(64, &mut Rng::seeded(1));
    }

    #[test]
    fn invalid_policies_are_refused() {
        assert!(Exponential::new(Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(Exponential::new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
        assert!(Fixed::new(crate::MAX_DELAY * 2).is_err());
    }

    #[test]
    fn specs_match_their_policies() {
        let p = Exponential::new(Duration::from_millis(50), Duration::from_secs(5)).unwrap();
        let spec = BackoffSpec::from(p);
        let (mut a, mut b) = (Rng::seeded(3), Rng::seeded(3));
        for attempt in 1..10 {
            assert_eq!(spec.delay(attempt, &mut a), p.delay(attempt, &mut b));
        }
        let fixed = BackoffSpec::from(Fixed::new(Duration::from_millis(250)).unwrap());
        assert_eq!(fixed.delay(9, &mut a), Duration::from_millis(250));
    }

    mod properties {
        use super::super::Rng;
        use super::*;
        use proptest::prelude::{any, prop_assert, proptest, ProptestConfig, Strategy};

        /// A valid exponential policy: base 1 ms ..= cap ..= MAX_DELAY.
        fn policy() -> impl Strategy<Value = Exponential> {
            let max = crate::MAX_DELAY.as_millis() as u64;
            (1..=max, 0..=max).prop_map(move |(base, extra)| {
                let cap = base.saturating_add(extra).min(max);
                Exponential::new(Duration::from_millis(base), Duration::from_millis(cap)).unwrap()
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// The ceiling never overflows, never exceeds the cap, never falls below the first
            /// step, and never shrinks from one attempt to the next.
            #[test]
            fn exponential_ceiling_is_monotone_and_capped(p in policy(), attempt in any::<u32>()) {
                let c = p.ceiling(attempt);
                prop_assert!(c <= p.cap);
                prop_assert!(c >= p.base);
                prop_assert!(p.ceiling(attempt.saturating_add(1)) >= c);
            }

            /// A jittered delay lies inside its window, for any seed.
            #[test]
            fn exponential_delay_is_inside_the_window(
                p in policy(), attempt in any::<u32>(), seed in any::<u64>()
            ) {
                let d = p.delay(attempt, &mut Rng::seeded(seed));
                prop_assert!(d <= p.ceiling(attempt));
            }

            /// A stored spec, whatever numbers a producer (or a hand edit) put in it, gives a
            /// delay of at most MAX_DELAY and never panics: a retry's due time is
            /// `now + delay`, never before now and never past the exact range of a score.
            #[test]
            fn any_stored_spec_gives_a_bounded_delay(
                a in any::<u64>(), b in any::<u64>(), attempt in any::<u32>(), seed in any::<u64>()
            ) {
                let mut rng = Rng::seeded(seed);
                for spec in [
                    BackoffSpec::Exponential { base_ms: a, cap_ms: b },
                    BackoffSpec::Fixed { delay_ms: a },
                ] {
                    prop_assert!(spec.delay(attempt, &mut rng) <= crate::MAX_DELAY);
                }
            }

            #[test]
            fn below_stays_below(n in any::<u64>(), seed in any::<u64>()) {
                let v = Rng::seeded(seed).below(n);
                prop_assert!(v < n || (n == 0 && v == 0));
            }
        }
    }

    #[test]
    fn below_is_in_range() {
        let mut rng = Rng::seeded(42);
        assert_eq!(rng.below(0), 0);
        for n in [1u64, 2, 3, 1000, u64::MAX] {
            for _ in 0..100 {
                assert!(rng.below(n) < n);
            }
        }
    }
}
