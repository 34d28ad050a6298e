//! How the promoters of a partitioned queue split its partitions, without a leader.
//!
//! Every promoter serving a partitioned queue calls `share.lua` three times per heartbeat:
//! it marks itself alive for two thirds of a heartbeat and reads who else is alive. With the
//! live ids sorted, a promoter at rank `r` of `n` serves the partitions `p` with
//! `p % n == r`. A promoter that stops (killed or not) drops out of the others' view within
//! two thirds of a heartbeat and is replaced at their next call, so none of its partitions
//! waits longer than one heartbeat. Views may briefly differ: then a partition is served by
//! two promoters, which is harmless (each job is promoted exactly once by `promote.lua`), or
//! by none for less than a heartbeat. When `share.lua` cannot be reached, a promoter serves
//! every partition: it would rather do duplicate work than leave a partition alone.
//! Queues of one partition are not shared: every promoter serves them, as before.

use std::time::Duration;

use tokio::time::Instant;

use crate::queue::Queue;

/// This promoter's place among the live promoters of one partitioned queue.
#[derive(Debug)]
pub(crate) struct Share {
    /// Rank and count of live promoters; `(0, 1)`: serve everything.
    rank: usize,
    of: usize,
    /// When to say "alive" again.
    pub(crate) refresh_at: Instant,
}

impl Share {
    pub(crate) fn new() -> Self {
        Share {
            rank: 0,
            of: 1,
            refresh_at: Instant::now(),
        }
    }

    /// Whether this promoter serves partition `part`.
    pub(crate) fn owns(&self, part: u16) -> bool {
        usize::from(part) % self.of == self.rank
    }

    /// Says "alive" as `id` and recomputes the split; returns whether it changed. On error
    /// the promoter serves every partition until the next refresh.
    pub(crate) async fn refresh(&mut self, queue: &Queue, id: &str, heartbeat: Duration) -> bool {
        let alive_ms = (heartbeat.as_millis() as u64 * 2 / 3).max(10);
        self.refresh_at = Instant::now() + heartbeat / 3;
        let (rank, of) = match crate::ops::share::call(queue, id, alive_ms).await {
            Ok(mut ids) => {
                ids.sort();
                match ids.iter().position(|other| other == id) {
                    Some(rank) => (rank, ids.len()),
                    None => (0, 1),
                }
            }
            Err(e) => {
                tracing::warn!(queue = queue.name(), error = %e, "cannot share partitions; serving all of them");
                (0, 1)
            }
        };
        let changed = (rank, of) != (self.rank, self.of);
        if changed {
            tracing::info!(
                queue = queue.name(),
                rank,
                promoters = of,
                "partitions shared among promoters: serving those with p % {of} == {rank}"
            );
        }
        (self.rank, self.of) = (rank, of);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_split_partitions_without_overlap_or_gaps() {
        for of in 1..5 {
            let shares: Vec<Share> = (0..of)
                .map(|rank| Share {
                    rank,
                    of,
                    refresh_at: Instant::now(),
                })
                .collect();
            for part in 0..16u16 {
                let owners = shares.iter().filter(|s| s.owns(part)).count();
                assert_eq!(owners, 1, "partition {part} with {of} promoters");
            }
        }
    }
}
