//! `lua/schedule.lua`: new → scheduled, many jobs per call. The one script other languages
//! call directly (README.md, docs/layout.md): its `KEYS` and `ARGV` are a public protocol.

use redis::Value;

use super::Binding;
use crate::error::Result;
use crate::keys::Keys;
use crate::keys::Part::*;
use crate::queue::Partition;
use crate::vocab::ScheduleOutcome;

pub(crate) static BINDING: Binding = Binding::new(
    "schedule.lua",
    include_str!("../../lua/schedule.lua"),
    &[
        Scheduled, Jobs, Stats, Done, Ready, Running, Dead, Attempts, Errors, Due, Opts, Meta,
        Completed, Results, Ranked, Events, CronAt, CronDue,
    ],
    &["wake", "tolerance_ms", "n", "id, mode, ms, envelope, options..."],
);

/// One job of a call: its id, "in" or "at", the delay or due time in ms, its envelope, and
/// its options object ("" for none).
pub(crate) type NewJobArgs<'a> = (&'a str, &'a str, u64, &'a [u8], &'a str);

/// What became of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// The script's own word for it.
    Outcome(ScheduleOutcome),
    /// An "at" time further in the past than the tolerance: nothing written.
    Past,
}

/// What became of one job, and its due time now (ms; `None` when it is not waiting in
/// `scheduled`).
pub(crate) type JobReply = (Written, Option<u64>);

/// The `EVALSHA` of one call for `jobs` (send it in a pipeline with [`Binding::pipeline`]).
pub(crate) fn command<'a>(
    keys: &Keys,
    tolerance_ms: i64,
    jobs: impl ExactSizeIterator<Item = NewJobArgs<'a>>,
) -> redis::Cmd {
    let mut cmd = BINDING.evalsha(keys);
    cmd.arg(&keys.wake).arg(tolerance_ms).arg(jobs.len());
    for (id, mode, ms, envelope, options) in jobs {
        cmd.arg(id).arg(mode).arg(ms).arg(envelope).arg(options);
    }
    cmd
}

/// The state change a call of [`command_guarded`] makes with its jobs: a recurring schedule's
/// id, the state read from `cron_at` ("" for none), the state to write, and when the schedule
/// next needs a pass (ms; `None`: never).
pub(crate) type Guard<'a> = (&'a str, &'a str, &'a str, Option<u64>);

/// The `EVALSHA` of one call for `jobs` that writes them only if `guard`'s schedule still has
/// the state read (see [`parse_guarded`]).
pub(crate) fn command_guarded<'a>(
    keys: &Keys,
    jobs: impl ExactSizeIterator<Item = NewJobArgs<'a>>,
    guard: Guard<'_>,
) -> redis::Cmd {
    let mut cmd = command(keys, -1, jobs);
    cmd.arg(guard.0)
        .arg(guard.1)
        .arg(guard.2)
        .arg(guard.3.map(|t| t.to_string()).unwrap_or_default());
    cmd
}

/// The reply of a guarded call: `None` when the schedule's state had changed (nothing
/// written), else as [`parse`].
pub(crate) fn parse_guarded(
    queue: &Partition<'_>,
    reply: Value,
    jobs: impl ExactSizeIterator<Item = (&'static str, u64)>,
) -> Result<Option<(u64, Vec<JobReply>)>> {
    let codes: Vec<i64> = redis::from_redis_value(reply.clone())
        .map_err(|e| queue.unexpected("schedule", e.to_string()))?;
    if codes.len() == 2 && codes[1] == -2 {
        return Ok(None);
    }
    parse(queue, reply, jobs).map(Some)
}

/// The reply of one call for `jobs` (their mode and ms, in order): the server time it used
/// (ms), and per job what became of it and its due time now (ms; `None` when it is not
/// waiting in `scheduled`).
pub(crate) fn parse(
    queue: &Partition<'_>,
    reply: Value,
    jobs: impl ExactSizeIterator<Item = (&'static str, u64)>,
) -> Result<(u64, Vec<JobReply>)> {
    let n = jobs.len();
    let codes: Vec<i64> =
        redis::from_redis_value(reply).map_err(|e| queue.unexpected("schedule", e.to_string()))?;
    let Some((&now, rest)) = codes.split_first() else {
        return Err(queue.unexpected("schedule", "empty reply"));
    };
    if rest.len() < n {
        return Err(queue.unexpected("schedule", "reply length does not match"));
    }
    let (codes, mut dues) = (&rest[..n], rest[n..].iter());
    let now_ms = now.max(0) as u64;
    let mut out = Vec::with_capacity(n);
    for (&code, (mode, ms)) in codes.iter().zip(jobs) {
        let outcome = match code {
            -1 => {
                out.push((Written::Past, None));
                continue;
            }
            1 => {
                // As `schedule.lua` computes it: whole-ms `now` rounded up for a delay.
                let due = match (mode, ms) {
                    ("in", 0) => now_ms,
                    ("in", ms) => now_ms.saturating_add(1).saturating_add(ms),
                    _ => ms,
                };
                out.push((Written::Outcome(ScheduleOutcome::Created), Some(due)));
                continue;
            }
            0 => ScheduleOutcome::Rejected,
            2 => ScheduleOutcome::Replaced,
            3 => ScheduleOutcome::Debounced,
            4 => ScheduleOutcome::Kept,
            5 => ScheduleOutcome::Running,
            other => return Err(queue.unexpected("schedule", format!("unknown outcome {other}"))),
        };
        let Some(&due) = dues.next() else {
            return Err(queue.unexpected("schedule", "a due time is missing"));
        };
        out.push((Written::Outcome(outcome), u64::try_from(due).ok()));
    }
    if dues.next().is_some() {
        return Err(queue.unexpected("schedule", "reply length does not match"));
    }
    Ok((now_ms, out))
}
