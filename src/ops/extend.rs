//! `lua/extend.lua`: running → running, the lease pushed out; says whether the job's
//! cancellation was asked.

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;

pub(crate) static BINDING: Binding = Binding::new(
    "extend.lua",
    include_str!("../../lua/extend.lua"),
    &[Running, Leases, Opts],
    &["id", "token", "lease_ms"],
);

/// What an extension found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extended {
    /// The lease runs on.
    Held,
    /// The lease runs on, and the job's cancellation was asked: stop the handler.
    CancelAsked,
    /// The lease is no longer the caller's.
    Lost,
}

/// Extends job `id`'s lease to server now + `lease_ms`.
pub(crate) async fn call(
    queue: &Partition<'_>,
    id: &str,
    token: &str,
    lease_ms: u64,
) -> Result<Extended> {
    let deadline: i64 = BINDING
        .invoke(queue.keys())
        .arg(id)
        .arg(token)
        .arg(lease_ms)
        .invoke_async(&mut queue.conn())
        .await
        .map_err(|e| queue.redis_error("extend", e))?;
    Ok(match deadline {
        0 => Extended::Lost,
        d if d < 0 => Extended::CancelAsked,
        _ => Extended::Held,
    })
}
