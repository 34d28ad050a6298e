//! `lua/cancel.lua`: scheduled | ready | dead → gone.

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;
use crate::vocab::JobState;

pub(crate) static BINDING: Binding = Binding::new(
    "cancel.lua",
    include_str!("../../lua/cancel.lua"),
    &[
        Scheduled, Ready, Running, Dead, Jobs, Attempts, Errors, Stats, Due, Opts, Meta,
        Completed, Results, Ranked, Events,
    ],
    &["id", "ended"],
);

/// What the script found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// The job was in this state and is now gone.
    Removed(JobState),
    /// It is running: its cancellation is asked (its worker stops it).
    Running,
    /// No such job.
    Unknown,
}

/// Cancels job `id`; for a running job, asks for its cancellation.
pub(crate) async fn call(queue: &Partition<'_>, id: &str) -> Result<Found> {
    let state: String = BINDING
        .invoke(queue.keys())
        .arg(id)
        .arg(&queue.keys().ended)
        .invoke_async(&mut queue.conn())
        .await
        .map_err(|e| queue.redis_error("cancel", e))?;
    Ok(match (state.as_str(), JobState::parse(&state)) {
        ("unknown", _) => Found::Unknown,
        (_, Some(JobState::Running)) => Found::Running,
        (_, Some(from)) => Found::Removed(from),
        (_, None) => return Err(queue.unexpected("cancel", format!("state {state:?}"))),
    })
}
