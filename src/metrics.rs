//! What a promoter measures as it works: promotion lag (the server's time of promotion minus
//! the job's due time) as a histogram, and counts of what it moved, per queue.
//!
//! Queue-wide event totals (scheduled, retried, dead, ...) live in Redis instead (the `stats`
//! hash, see [`crate::keys`]), because every producer and worker process adds to them; read
//! them with [`crate::Queue::stats`]. The figures here are this process's own, so summing them
//! over several promoter replicas gives the total.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Upper bounds (inclusive, ms) of the promotion-lag histogram buckets; one more bucket holds
/// everything above the last bound.
pub const LAG_BUCKETS_MS: [u64; 15] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000,
];

/// A fixed-bucket histogram of promotion lags in milliseconds. Recording never overflows
/// (counts saturate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LagHistogram {
    counts: [u64; LAG_BUCKETS_MS.len() + 1],
    sum_ms: u64,
    count: u64,
}

impl LagHistogram {
    /// Adds one observation.
    pub fn record(&mut self, lag_ms: u64) {
        let bucket = LAG_BUCKETS_MS.partition_point(|&bound| bound < lag_ms);
        self.counts[bucket] = self.counts[bucket].saturating_add(1);
        self.sum_ms = self.sum_ms.saturating_add(lag_ms);
        self.count = self.count.saturating_add(1);
    }

    /// Adds observations already counted per bucket (one count per bucket, in order, as
    /// `promote.lua` returns them) with their sum.
    pub(crate) fn record_counts(&mut self, counts: &[u64], sum_ms: u64) {
        for (mine, &n) in self.counts.iter_mut().zip(counts) {
            *mine = mine.saturating_add(n);
            self.count = self.count.saturating_add(n);
        }
        self.sum_ms = self.sum_ms.saturating_add(sum_ms);
    }

    /// Adds every observation of `other`.
    pub fn merge(&mut self, other: &LagHistogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine = mine.saturating_add(theirs);
        }
        self.sum_ms = self.sum_ms.saturating_add(other.sum_ms);
        self.count = self.count.saturating_add(other.count);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of all observed lags, ms.
    pub fn sum_ms(&self) -> u64 {
        self.sum_ms
    }

    /// The upper bound (ms) of the bucket that holds quantile `q` (0 to 1) of the
    /// observations: the lag that fraction of them were at or under, to the bucket. `None`
    /// without observations; `Some(u64::MAX)` when the quantile falls above the last bound.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let (bound, _) = self
            .cumulative()
            .into_iter()
            .find(|&(_, total)| total >= rank)?;
        Some(bound.unwrap_or(u64::MAX))
    }

    /// The observations made since `earlier`, a copy of this histogram taken before.
    pub fn since(&self, earlier: &LagHistogram) -> LagHistogram {
        let mut counts = self.counts;
        for (mine, theirs) in counts.iter_mut().zip(earlier.counts) {
            *mine = mine.saturating_sub(theirs);
        }
        LagHistogram {
            counts,
            sum_ms: self.sum_ms.saturating_sub(earlier.sum_ms),
            count: self.count.saturating_sub(earlier.count),
        }
    }

    /// `(upper bound in ms, observations at or below it)` for each bucket, as Prometheus
    /// histograms want them (cumulative); the last entry has bound `None` (+Inf) and equals
    /// [`LagHistogram::count`].
    pub fn cumulative(&self) -> Vec<(Option<u64>, u64)> {
        let mut total = 0u64;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                total = total.saturating_add(n);
                (LAG_BUCKETS_MS.get(i).copied(), total)
            })
            .collect()
    }
}

/// What one promoter process did to one queue since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueActivity {
    /// Jobs this process moved scheduled → ready.
    pub promoted: u64,
    /// Jobs this process returned to ready because their lease ended.
    pub expired: u64,
    /// Promotion lags of the jobs this process promoted.
    pub lag: LagHistogram,
    /// The error of the latest promotion pass, `None` when it succeeded.
    pub last_error: Option<String>,
    /// Times this process found that Redis had lost the queue's data
    /// ([`crate::PromoteReport::data_lost`]).
    pub data_losses: u64,
}

/// A live view of a promoter's per-queue activity; cheap to clone and to read from another
/// task (for example a metrics endpoint).
#[derive(Debug, Clone, Default)]
pub struct PromoterMetrics {
    queues: Arc<Mutex<BTreeMap<String, QueueActivity>>>,
}

impl PromoterMetrics {
    /// A copy of the current figures, by queue name.
    pub fn snapshot(&self) -> BTreeMap<String, QueueActivity> {
        self.lock().clone()
    }

    pub(crate) fn add_queue(&self, queue: &str) {
        self.lock().entry(queue.to_owned()).or_default();
    }

    pub(crate) fn record(&self, queue: &str, outcome: Result<&crate::PromoteReport, String>) {
        let mut queues = self.lock();
        let activity = queues.entry(queue.to_owned()).or_default();
        match outcome {
            Ok(report) => {
                activity.promoted = activity.promoted.saturating_add(report.promoted);
                activity.expired = activity.expired.saturating_add(report.expired);
                activity.lag.merge(&report.lag);
                activity.data_losses += u64::from(report.data_lost);
                activity.last_error = None;
            }
            Err(error) => activity.last_error = Some(error),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, QueueActivity>> {
        // The map holds plain counters: a panic elsewhere cannot leave it inconsistent.
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_land_in_their_bucket_and_accumulate() {
        let mut h = LagHistogram::default();
        for lag in [0, 1, 2, 3, 60_000, 60_001, u64::MAX] {
            h.record(lag);
        }
        let c = h.cumulative();
        assert_eq!(c.len(), LAG_BUCKETS_MS.len() + 1);
        assert_eq!(c[0], (Some(1), 2)); // 0 and 1
        assert_eq!(c[1], (Some(2), 3));
        assert_eq!(c[2], (Some(5), 4));
        assert_eq!(c[LAG_BUCKETS_MS.len() - 1], (Some(60_000), 5));
        assert_eq!(c[LAG_BUCKETS_MS.len()], (None, 7));
        assert_eq!(h.count(), 7);
        assert_eq!(h.sum_ms(), u64::MAX, "the sum saturates");
        let mut merged = h;
        merged.merge(&h);
        assert_eq!(merged.count(), 14);
    }

    #[test]
    fn quantiles_are_bucket_bounds_and_intervals_subtract() {
        let mut h = LagHistogram::default();
        assert_eq!(h.quantile_ms(0.99), None);
        for _ in 0..98 {
            h.record(1);
        }
        h.record(40);
        h.record(45);
        assert_eq!(h.quantile_ms(0.5), Some(1));
        assert_eq!(h.quantile_ms(0.98), Some(1));
        assert_eq!(h.quantile_ms(0.99), Some(50));
        let before = h;
        h.record(70_000);
        assert_eq!(h.quantile_ms(1.0), Some(u64::MAX));
        let recent = h.since(&before);
        assert_eq!(recent.count(), 1);
        assert_eq!(recent.quantile_ms(0.5), Some(u64::MAX));
        assert_eq!(h.since(&h).count(), 0);
    }
}
