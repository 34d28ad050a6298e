//! The dead set: jobs that used their last attempt, failed permanently or could not be decoded
//! wait in `p:{q}:dead` (scored by time of death) with their last error until an operator
//! retries them (`revive.lua`: back to scheduled, due now, attempts reset) or purges them
//! (`purge.lua`: deleted). Both scripts touch only jobs that are in the dead set.

use std::time::Duration;

use crate::error::Result;
use crate::queue::{Partition, Queue};
use crate::time::delay_ms;

/// Jobs per `revive.lua` / `purge.lua` call: keeps each script short and its `ARGV` far below
/// Lua's `unpack` limit.
const DEAD_BATCH: usize = 1000;

/// Which dead jobs to purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge<'a> {
    /// These ids (ids not in the dead set are left alone).
    Ids(&'a [String]),
    /// Every dead job.
    All,
    /// Jobs that died at least this long ago (server clock).
    OlderThan(Duration),
}

impl Queue {
    /// Sends the dead jobs `ids` back to scheduled, due now, with their attempts reset.
    /// Returns the ids that were dead and moved; the others are left alone.
    ///
    /// # Errors
    /// [`crate::Error::Redis`], [`crate::Error::UnexpectedReply`].
    pub async fn retry_dead(&self, ids: &[String]) -> Result<Vec<String>> {
        let mut revived = Vec::new();
        for (part, ids) in self.by_partition(ids) {
            for chunk in ids.chunks(DEAD_BATCH) {
                revived.extend(revive(part, 0, chunk).await?);
            }
        }
        Ok(revived)
    }

    /// Sends every dead job back to scheduled, due now, with attempts reset, in batches.
    /// Returns how many moved.
    ///
    /// # Errors
    /// [`crate::Error::Redis`], [`crate::Error::UnexpectedReply`].
    pub async fn retry_all_dead(&self) -> Result<u64> {
        let mut total = 0;
        for part in self.each_partition() {
            loop {
                let moved = revive(part, DEAD_BATCH, &[]).await?.len();
                total += moved as u64;
                if moved < DEAD_BATCH {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// Deletes dead jobs and everything stored for them. Returns how many were deleted.
    ///
    /// # Errors
    /// [`crate::Error::DelayOverflow`] for an age above [`crate::MAX_DELAY`];
    /// [`crate::Error::Redis`], [`crate::Error::UnexpectedReply`].
    pub async fn purge_dead(&self, which: Purge<'_>) -> Result<u64> {
        let age = match which {
            Purge::Ids(ids) => {
                let mut total = 0;
                for (part, ids) in self.by_partition(ids) {
                    for chunk in ids.chunks(DEAD_BATCH) {
                        total += purge(part, 0, -1, chunk).await?.len() as u64;
                    }
                }
                return Ok(total);
            }
            Purge::All => -1,
            Purge::OlderThan(age) => match delay_ms(age) {
                Some(ms) => ms as i64,
                None => {
                    return Err(crate::Error::DelayOverflow {
                        queue: self.name().to_owned(),
                        delay: age,
                    })
                }
            },
        };
        let mut total = 0;
        for part in self.each_partition() {
            loop {
                let deleted = purge(part, DEAD_BATCH, age, &[]).await?.len();
                total += deleted as u64;
                if deleted < DEAD_BATCH {
                    break;
                }
            }
        }
        Ok(total)
    }
}

/// One `revive.lua` call: the `n` first dead jobs, or `ids` when `n` is 0.
async fn revive(part: Partition<'_>, n: usize, ids: &[String]) -> Result<Vec<String>> {
    let ids = crate::ops::revive::call(&part, n, ids).await?;
    tracing::debug!(
        queue = part.queue().name(),
        partition = part.index(),
        jobs = ids.len(),
        "dead jobs retried"
    );
    Ok(ids)
}

/// One `purge.lua` call: up to `n` jobs at least `age` ms dead (`-1`: any), or `ids`
/// when `n` is 0.
async fn purge(part: Partition<'_>, n: usize, age: i64, ids: &[String]) -> Result<Vec<String>> {
    let ids = crate::ops::purge::call(&part, n, age, ids).await?;
    tracing::debug!(
        queue = part.queue().name(),
        partition = part.index(),
        jobs = ids.len(),
        "dead jobs purged"
    );
    Ok(ids)
}
