//! `lua/trim.lua`: dead and completed jobs beyond the queue's retentions → gone.

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;

pub(crate) static BINDING: Binding = Binding::new(
    "trim.lua",
    include_str!("../../lua/trim.lua"),
    &[
        Dead, Completed, Results, Jobs, Attempts, Errors, Opts, Stats, Meta, Events,
    ],
    &["limit"],
);

/// Deletes at most `limit` dead and `limit` completed jobs beyond the partition's retentions;
/// how many of each.
pub(crate) async fn call(queue: &Partition<'_>, limit: usize) -> Result<(u64, u64)> {
    let (dead, completed): (u64, u64) = BINDING
        .invoke(queue.keys())
        .arg(limit)
        .invoke_async(&mut queue.conn())
        .await
        .map_err(|e| queue.redis_error("trim", e))?;
    Ok((dead, completed))
}
