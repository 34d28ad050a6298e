//! `lua/wait.lua`: marks a job as waited for (its end is told on the `ended` channel).

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;

pub(crate) static BINDING: Binding = Binding::new(
    "wait.lua",
    include_str!("../../lua/wait.lua"),
    &[Jobs, Dead, Completed, Opts],
    &["id"],
);

/// Where the job was when it was marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// No such job.
    Unknown,
    /// It has ended (dead, or completed and kept): nothing marked.
    Ended,
    /// Scheduled, ready or running: marked.
    Waiting,
}

/// Marks job `id` as waited for.
pub(crate) async fn call(queue: &Partition<'_>, id: &str) -> Result<Found> {
    let state: String = BINDING
        .invoke(queue.keys())
        .arg(id)
        .invoke_async(&mut queue.conn())
        .await
        .map_err(|e| queue.redis_error("wait", e))?;
    Ok(match state.as_str() {
        "unknown" => Found::Unknown,
        "dead" | "completed" => Found::Ended,
        "waiting" => Found::Waiting,
        other => return Err(queue.unexpected("wait", format!("state {other:?}"))),
    })
}
