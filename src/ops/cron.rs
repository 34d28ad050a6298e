//! `lua/cron.lua`: every change to a recurring schedule (add or edit, pause, resume, remove),
//! compared and set on its state.

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;

pub(crate) static BINDING: Binding = Binding::new(
    "cron.lua",
    include_str!("../../lua/cron.lua"),
    &[Cron, CronAt, Scheduled, Jobs, Attempts, Errors, Opts, Stats, Meta, Events],
    &["wake", "id", "read", "state", "spec", "occurrences..."],
);

/// Sets schedule `id`'s state to `state` ("" removes it) and, when given, its spec, if its
/// state is still `read`; removes the occurrences `remove` that still wait for their due
/// time. `None` when the state had changed (nothing written), else how many were removed.
pub(crate) async fn call(
    part: &Partition<'_>,
    id: &str,
    read: &str,
    state: &str,
    spec: &str,
    remove: &[String],
) -> Result<Option<u64>> {
    let removed: i64 = BINDING
        .invoke(part.keys())
        .arg(&part.keys().wake)
        .arg(id)
        .arg(read)
        .arg(state)
        .arg(spec)
        .arg(remove)
        .invoke_async(&mut part.conn())
        .await
        .map_err(|e| part.redis_error("change schedule", e))?;
    Ok(u64::try_from(removed).ok())
}
