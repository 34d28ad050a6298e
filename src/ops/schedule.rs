//! `lua/schedule.lua`: new → scheduled, many jobs per call. The one script other languages
//! call directly (README.md, docs/layout.md): its `KEYS` and `ARGV` are a public protocol.

use redis::Value;

use super::Binding;
use crate::error::Result;
use crate::keys::Keys;
use crate::keys::Part::*;
use crate::queue::Partition;

pub(crate) static BINDING: Binding = Binding::new(
    "schedule.lua",
    include_str!("../../lua/schedule.lua"),
    &[Scheduled, Jobs, Stats, Done],
    &["wake", "tolerance_ms", "n", "id, mode, ms, envelope..."],
);

/// One job of a call: its id, "in" or "at", the delay or due time in ms, its envelope.
pub(crate) type NewJobArgs<'a> = (&'a str, &'a str, u64, &'a [u8]);

/// What became of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Written: a new job.
    New,
    /// The id exists, or finished within the dedup window: nothing written.
    Exists,
    /// An "at" time further in the past than the tolerance: nothing written.
    Past,
}

/// The `EVALSHA` of one call for `jobs` (send it in a pipeline with [`Binding::pipeline`]).
pub(crate) fn command<'a>(
    keys: &Keys,
    tolerance_ms: i64,
    jobs: impl ExactSizeIterator<Item = NewJobArgs<'a>>,
) -> redis::Cmd {
    let mut cmd = BINDING.evalsha(keys);
    cmd.arg(&keys.wake).arg(tolerance_ms).arg(jobs.len());
    for (id, mode, ms, envelope) in jobs {
        cmd.arg(id).arg(mode).arg(ms).arg(envelope);
    }
    cmd
}

/// The reply of one call for `n` jobs: the server time it used (ms), and one result per job.
pub(crate) fn parse(queue: &Partition<'_>, reply: Value, n: usize) -> Result<(u64, Vec<Written>)> {
    let codes: Vec<i64> =
        redis::from_redis_value(reply).map_err(|e| queue.unexpected("schedule", e.to_string()))?;
    let Some((&now, codes)) = codes.split_first() else {
        return Err(queue.unexpected("schedule", "empty reply"));
    };
    if codes.len() != n {
        return Err(queue.unexpected("schedule", "reply length does not match"));
    }
    let created = codes
        .iter()
        .map(|&code| match code {
            1 => Written::New,
            0 => Written::Exists,
            _ => Written::Past,
        })
        .collect();
    Ok((now.max(0) as u64, created))
}
