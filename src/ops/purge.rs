//! `lua/purge.lua`: dead → gone (`dead purge`).

use super::{ids_after_time, Binding};
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;

pub(crate) static BINDING: Binding = Binding::new(
    "purge.lua",
    include_str!("../../lua/purge.lua"),
    &[Dead, Jobs, Attempts, Errors, Stats, Opts, Meta, Events],
    &["n", "min_age_ms", "ids..."],
);

/// Purges up to `n` jobs at least `age_ms` dead (-1: any age), or (`n` = 0) the dead ones
/// among `ids`; returns the ids purged.
pub(crate) async fn call(
    queue: &Partition<'_>,
    n: usize,
    age_ms: i64,
    ids: &[String],
) -> Result<Vec<String>> {
    let reply = BINDING
        .invoke(queue.keys())
        .arg(n)
        .arg(age_ms)
        .arg(ids)
        .invoke_async(&mut queue.conn())
        .await
        .map_err(|e| queue.redis_error("dead purge", e))?;
    ids_after_time(queue, "dead purge", reply)
}
