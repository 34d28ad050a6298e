//! `lua/share.lua`: a promoter's heartbeat in a partitioned queue's `promoters` set.

use super::Binding;
use crate::error::{Error, Result};
use crate::keys::Part::*;
use crate::queue::Queue;

pub(crate) static BINDING: Binding = Binding::new(
    "share.lua",
    include_str!("../../lua/share.lua"),
    &[Promoters],
    &["id", "alive_ms"],
);

/// Marks promoter `id` alive for `alive_ms`; the ids of every live promoter of `queue`.
pub(crate) async fn call(queue: &Queue, id: &str, alive_ms: u64) -> Result<Vec<String>> {
    BINDING
        .invoke(queue.root_keys())
        .arg(id)
        .arg(alive_ms)
        .invoke_async(&mut queue.conn())
        .await
        .map_err(|e: redis::RedisError| -> Error { queue.redis_error("share partitions", e) })
}
