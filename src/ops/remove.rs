//! `lua/remove.lua`: a whole queue → gone (`queue rm`).

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;

pub(crate) static BINDING: Binding = Binding::new(
    "remove.lua",
    include_str!("../../lua/remove.lua"),
    &[
        Scheduled, Ready, Running, Dead, Jobs, Attempts, Leases, Errors, Due, Done, Seq, Meta,
        Stats, Gate, Opts, Completed, Results, Ranked, Bell, Events, Cron, CronAt,
        CronDue, Limits, LimitTat, LimitHeld, LimitWait, LimitStats,
    ],
    &["force"],
);

/// Deletes every key of the queue unless it holds jobs or recurring schedules and `force` is
/// false. Returns whether it was removed, and how many jobs and schedules it held.
pub(crate) async fn call(queue: &Partition<'_>, force: bool) -> Result<(bool, u64, u64)> {
    let (removed, jobs, schedules): (i64, u64, u64) = BINDING
        .invoke(queue.keys())
        .arg(if force { "1" } else { "0" })
        .invoke_async(&mut queue.conn())
        .await
        .map_err(|e| queue.redis_error("remove queue", e))?;
    Ok((removed == 1, jobs, schedules))
}
