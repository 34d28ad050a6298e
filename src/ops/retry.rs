//! `lua/retry.lua`: running → scheduled (a failure, a snooze, a hand-back).

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;
use crate::vocab::Reason;

pub(crate) static BINDING: Binding = Binding::new(
    "retry.lua",
    include_str!("../../lua/retry.lua"),
    &[
        Running, Leases, Scheduled, Attempts, Errors, Stats, Dead, Jobs, Opts, Meta, Events,
        LimitHeld, LimitWait, Ready, Bell,
    ],
    &[
        "wake", "id", "token", "delay_ms", "counts", "reason", "message", "ended",
    ],
);

/// Sends job `id` back to `scheduled`, due in `delay_ms`. `counts` false gives the attempt
/// back; `error` (if any) becomes its last error record. A job whose cancellation was asked,
/// or whose retry would land past its expiry, ends instead (dead or deleted: still true).
/// False when the lease is no longer `token`'s.
pub(crate) async fn call(
    queue: &Partition<'_>,
    id: &str,
    token: &str,
    delay_ms: u64,
    counts: bool,
    error: Option<(Reason, &str)>,
) -> Result<bool> {
    let (reason, message) = error.map_or(("", ""), |(r, m)| (r.as_str(), m));
    let due: i64 = BINDING
        .invoke(queue.keys())
        .arg(&queue.keys().wake)
        .arg(id)
        .arg(token)
        .arg(delay_ms)
        .arg(if counts { "1" } else { "0" })
        .arg(reason)
        .arg(message)
        .arg(&queue.keys().ended)
        .invoke_async(&mut queue.conn())
        .await
        .map_err(|e| queue.redis_error("retry", e))?;
    Ok(due != 0)
}
