//! `lua/revive.lua`: dead → scheduled, due now, attempts reset (`dead retry`).

use super::{ids_after_time, Binding};
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;

pub(crate) static BINDING: Binding = Binding::new(
    "revive.lua",
    include_str!("../../lua/revive.lua"),
    &[Dead, Scheduled, Attempts, Stats, Opts, Meta, Events],
    &["wake", "n", "ids..."],
);

/// Revives the `n` jobs that died first, or (`n` = 0) the dead ones among `ids`; returns the
/// ids revived.
pub(crate) async fn call(queue: &Partition<'_>, n: usize, ids: &[String]) -> Result<Vec<String>> {
    let reply = BINDING
        .invoke(queue.keys())
        .arg(&queue.keys().wake)
        .arg(n)
        .arg(ids)
        .invoke_async(&mut queue.conn())
        .await
        .map_err(|e| queue.redis_error("dead retry", e))?;
    ids_after_time(queue, "dead retry", reply)
}
