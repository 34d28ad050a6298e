//! `lua/cron.lua`: every change to a recurring schedule (add or edit, pause, resume, remove),
//! compared and set on its state.

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;

pub(crate) static BINDING: Binding = Binding::new(
    "cron.lua",
    include_str!("../../lua/cron.lua"),
    &[Cron, CronAt, Scheduled, Jobs, Attempts, Errors, Opts, Stats, Meta, Events, CronDue],
    &["wake", "id", "read", "state", "spec", "due", "occurrences..."],
);

/// A change to schedule `id`: the state read, the new state ("" removes the schedule), the
/// new spec ("" keeps it), and when it next needs a pass (ms; `None`: never).
pub(crate) struct Change<'a> {
    pub(crate) id: &'a str,
    pub(crate) read: &'a str,
    pub(crate) state: &'a str,
    pub(crate) spec: &'a str,
    pub(crate) due: Option<u64>,
}

/// Makes `change` if the schedule's state is still the one read; removes the occurrences
/// `remove` that still wait for their due time. `None` when the state had changed (nothing
/// written), else how many were removed.
pub(crate) async fn call(
    part: &Partition<'_>,
    change: Change<'_>,
    remove: &[String],
) -> Result<Option<u64>> {
    let Change {
        id,
        read,
        state,
        spec,
        due,
    } = change;
    let removed: i64 = BINDING
        .invoke(part.keys())
        .arg(&part.keys().wake)
        .arg(id)
        .arg(read)
        .arg(state)
        .arg(spec)
        .arg(due.map(|t| t.to_string()).unwrap_or_default())
        .arg(remove)
        .invoke_async(&mut part.conn())
        .await
        .map_err(|e| part.redis_error("change schedule", e))?;
    Ok(u64::try_from(removed).ok())
}
