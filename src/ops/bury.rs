//! `lua/bury.lua`: running → dead, with an error record.

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;
use crate::vocab::Reason;

pub(crate) static BINDING: Binding = Binding::new(
    "bury.lua",
    include_str!("../../lua/bury.lua"),
    &[
        Running, Leases, Dead, Attempts, Errors, Stats, Opts, Scheduled, Jobs, Meta, Events,
        LimitHeld, LimitWait, Ready, Bell,
    ],
    &["id", "token", "reason", "message", "ended", "wake"],
);

/// Moves job `id` to the dead set; false when the lease is no longer `token`'s.
pub(crate) async fn call(
    queue: &Partition<'_>,
    id: &str,
    token: &str,
    reason: Reason,
    message: &str,
) -> Result<bool> {
    let mut call = BINDING.evalsha(queue.keys());
    call.arg(id)
        .arg(token)
        .arg(reason.as_str())
        .arg(message)
        .arg(&queue.keys().ended)
        .arg(&queue.keys().wake);
    let wait = queue.queue().config().durability();
    let (died, confirmed): (i64, _) = BINDING
        .call_waiting(&mut queue.conn(), call, wait)
        .await
        .map_err(|e| queue.redis_error("bury", e))?;
    super::check_replicated(queue, "bury", wait, confirmed)?;
    Ok(died != 0)
}
