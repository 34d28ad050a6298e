//! `lua/extend.lua`: running → running, the lease pushed out.

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;

pub(crate) static BINDING: Binding = Binding::new(
    "extend.lua",
    include_str!("../../lua/extend.lua"),
    &[Running, Leases],
    &["id", "token", "lease_ms"],
);

/// Extends job `id`'s lease to server now + `lease_ms`; false when the lease is no longer
/// `token`'s.
pub(crate) async fn call(queue: &Partition<'_>, id: &str, token: &str, lease_ms: u64) -> Result<bool> {
    let deadline: i64 = BINDING
        .invoke(queue.keys())
        .arg(id)
        .arg(token)
        .arg(lease_ms)
        .invoke_async(&mut queue.conn())
        .await
        .map_err(|e| queue.redis_error("extend", e))?;
    Ok(deadline != 0)
}
