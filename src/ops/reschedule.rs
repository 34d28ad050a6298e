//! `lua/reschedule.lua`: scheduled | ready | dead → scheduled at a new time.

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;
use crate::vocab::JobState;

pub(crate) static BINDING: Binding = Binding::new(
    "reschedule.lua",
    include_str!("../../lua/reschedule.lua"),
    &[
        Scheduled, Ready, Running, Dead, Jobs, Attempts, Due, Opts, Completed, Results,
        Ranked, Meta, Events,
    ],
    &["wake", "id", "mode", "ms", "tolerance_ms"],
);

/// What the script did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Moved {
    /// Moved from this state; now due at this server time (ms).
    From(JobState, u64),
    /// It is running: nothing changed.
    Running,
    /// No such job.
    Unknown,
    /// An "at" time too far in the past; the server's time then (ms). Nothing changed.
    Past(u64),
}

/// Moves job `id` to `ms` (mode "at") or server now + `ms` (mode "in").
pub(crate) async fn call(
    queue: &Partition<'_>,
    id: &str,
    mode: &str,
    ms: u64,
    tolerance_ms: i64,
) -> Result<Moved> {
    let (state, value): (String, i64) = BINDING
        .invoke(queue.keys())
        .arg(&queue.keys().wake)
        .arg(id)
        .arg(mode)
        .arg(ms)
        .arg(tolerance_ms)
        .invoke_async(&mut queue.conn())
        .await
        .map_err(|e| queue.redis_error("reschedule", e))?;
    let value = value.max(0) as u64;
    Ok(match (state.as_str(), JobState::parse(&state)) {
        ("past", _) => Moved::Past(value),
        ("unknown", _) => Moved::Unknown,
        (_, Some(JobState::Running)) => Moved::Running,
        (_, Some(from)) => Moved::From(from, value),
        (_, None) => return Err(queue.unexpected("reschedule", format!("state {state:?}"))),
    })
}
