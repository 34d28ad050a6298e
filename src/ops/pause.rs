//! `lua/pause.lua`: pause or resume one partition (no job changes state).

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;

pub(crate) static BINDING: Binding = Binding::new(
    "pause.lua",
    include_str!("../../lua/pause.lua"),
    &[Meta, Gate],
    &["pause"],
);

/// Pauses (`pause`) or resumes the partition; whether its state changed.
pub(crate) async fn call(queue: &Partition<'_>, pause: bool) -> Result<bool> {
    let changed: i64 = BINDING
        .invoke(queue.keys())
        .arg(if pause { "1" } else { "0" })
        .invoke_async(&mut queue.conn())
        .await
        .map_err(|e| queue.redis_error(if pause { "pause" } else { "resume" }, e))?;
    Ok(changed == 1)
}
