//! `lua/promote.lua`: scheduled → ready for due jobs, running → ready for expired leases.

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::metrics::LAG_BUCKETS_MS;
use crate::queue::Partition;

pub(crate) static BINDING: Binding = Binding::new(
    "promote.lua",
    include_str!("../../lua/promote.lua"),
    &[
        Scheduled, Ready, Running, Leases, Attempts, Errors, Stats, Meta, Due, Dead, Jobs, Opts,
        Ranked, Bell, Events,
    ],
    &["batch", "format", "ended"],
);

/// What one call did.
#[derive(Debug)]
pub(crate) struct Promoted {
    /// The server time the call used (ms).
    pub(crate) now_ms: i64,
    /// The microseconds of the server's clock past `now_ms` (0-999).
    pub(crate) now_us: i64,
    /// Jobs moved scheduled → ready (== batch: call again).
    pub(crate) promoted: u64,
    /// Leases that ended: those jobs moved running → ready (== batch: call again).
    pub(crate) expired: u64,
    /// Due time of the new head of `scheduled` (ms).
    pub(crate) next_due_ms: Option<i64>,
    /// Earliest lease deadline in `running` (ms).
    pub(crate) next_lease_ms: Option<i64>,
    /// Largest promotion lag among the promoted jobs (ms).
    pub(crate) max_lag_ms: u64,
    /// Sum of their lags (ms).
    pub(crate) sum_lag_ms: u64,
    /// `meta` was missing: Redis lost the queue's data since it was opened.
    pub(crate) lost: bool,
    /// Due jobs whose time ran out: dead or deleted instead of promoted.
    pub(crate) timed_out: u64,
    /// Promoted jobs per lag bucket, one more than `bounds`.
    pub(crate) lag_counts: Vec<u64>,
}

/// Promotes at most `batch` due jobs and as many expired leases; `format` is written back to
/// `meta` if it is missing; lags are counted into the buckets of [`LAG_BUCKETS_MS`], which
/// the script holds as a constant (see the test below).
pub(crate) async fn call(queue: &Partition<'_>, batch: usize, format: u32) -> Result<Promoted> {
    let reply: Vec<i64> = BINDING
        .invoke(queue.keys())
        .arg(batch)
        .arg(format)
        .arg(&queue.keys().ended)
        .invoke_async(&mut queue.conn())
        .await
        .map_err(|e| queue.redis_error("promote", e))?;
    let Some((
        &[now, promoted, expired, next_due, next_lease, max_lag, sum_lag, lost, timed_out, now_us],
        counts,
    )) = reply.split_first_chunk::<10>()
    else {
        return Err(queue.unexpected("promote", format!("reply {reply:?}")));
    };
    let lag_counts: Vec<u64> = counts.iter().map(|&n| n.max(0) as u64).collect();
    if lag_counts.len() != LAG_BUCKETS_MS.len() + 1
        || lag_counts.iter().sum::<u64>() != promoted.max(0) as u64
    {
        return Err(queue.unexpected("promote", "one lag count per bucket expected"));
    }
    let time = |t: i64| (t >= 0).then_some(t);
    Ok(Promoted {
        now_ms: now,
        now_us: now_us.clamp(0, 999),
        promoted: promoted.max(0) as u64,
        expired: expired.max(0) as u64,
        next_due_ms: time(next_due),
        next_lease_ms: time(next_lease),
        max_lag_ms: max_lag.max(0) as u64,
        sum_lag_ms: sum_lag.max(0) as u64,
        lost: lost == 1,
        timed_out: timed_out.max(0) as u64,
        lag_counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script counts lags into its own copy of the bucket bounds (arguments would cost
    /// every call): it must be the histogram's.
    #[test]
    fn the_script_counts_lags_into_the_histograms_buckets() {
        let source = include_str!("../../lua/promote.lua");
        let numbers = |name: &str| -> Vec<u64> {
            let start = format!("local {name} = {{");
            let line = source
                .lines()
                .find(|l| l.starts_with(&start))
                .unwrap_or_else(|| panic!("promote.lua sets `{start}...}}`"));
            line[start.len()..]
                .trim_end_matches('}')
                .split(',')
                .map(|n| n.trim().parse().expect("a whole number"))
                .collect()
        };
        assert_eq!(numbers("bounds"), LAG_BUCKETS_MS);
        // One count per bucket, and one for lags above the last bound, all starting at 0.
        assert_eq!(numbers("counts"), [0; LAG_BUCKETS_MS.len() + 1]);
    }
}
