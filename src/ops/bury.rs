//! `lua/bury.lua`: running → dead, with an error record.

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;
use crate::vocab::Reason;

pub(crate) static BINDING: Binding = Binding::new(
    "bury.lua",
    include_str!("../../lua/bury.lua"),
    &[Running, Leases, Dead, Attempts, Errors, Stats],
    &["id", "token", "reason", "message"],
);

/// Moves job `id` to the dead set; false when the lease is no longer `token`'s.
pub(crate) async fn call(
    queue: &Partition<'_>,
    id: &str,
    token: &str,
    reason: Reason,
    message: &str,
) -> Result<bool> {
    let died: i64 = BINDING
        .invoke(queue.keys())
        .arg(id)
        .arg(token)
        .arg(reason.as_str())
        .arg(message)
        .invoke_async(&mut queue.conn())
        .await
        .map_err(|e| queue.redis_error("bury", e))?;
    Ok(died != 0)
}
