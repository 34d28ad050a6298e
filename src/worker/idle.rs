//! The idle wait: a worker with nothing to do blocks in Redis (`BLMOVE ready ready LEFT
//! LEFT`, which puts the element straight back) on a connection of its own per partition, so
//! that no command is sent while nothing is ready, apart from one wake every idle wait. A
//! partitioned queue is waited on in every partition at once, and a worker that serves
//! several queues waits on all of their partitions: the first that has a job ends the wait. On a cluster each connection follows its partition's slot. A paused partition is
//! waited on at its `gate` instead (`BLMOVE gate gate`), which a resume fills: a paused queue
//! costs no polling, and its jobs in `ready` do not wake the worker. A partition of a queue
//! that uses priorities keeps its ready jobs in `ranked` (a ZSET, which cannot be waited on
//! without taking from it): it is waited on at its `bell`, which `promote.lua` rings when it
//! ranks jobs and `claim.lua` empties when `ranked` is empty.

use std::time::Duration;

use futures_util::future::select_all;
use tracing::warn;

use crate::conn::{Backend, Conn};
use crate::queue::Queue;
use crate::reconnect::ReconnectBackoff;

/// Which key of a partition the idle wait blocks on, as its last claim found it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Watch {
    /// `ready`: the usual.
    #[default]
    Ready,
    /// `bell`: the queue uses priorities.
    Bell,
    /// `gate`: the partition is paused.
    Gate,
}

/// Waits, on connections of its own, until some partition's `ready` has an element.
pub(super) struct ReadyWaiter {
    /// Each partition's server, `ready`, `bell` and `gate` keys, and its connection once made;
    /// the partitions of the worker's queues in order.
    parts: Vec<(Backend, [String; 3], Option<Conn>)>,
    idle_wait: Duration,
    outage: ReconnectBackoff,
}

impl ReadyWaiter {
    pub(super) fn new(queues: &[Queue], idle_wait: Duration) -> Self {
        ReadyWaiter {
            parts: queues
                .iter()
                .flat_map(|queue| {
                    let backend = queue.namespace().backend();
                    queue.each_partition().map(move |part| {
                        let k = part.keys();
                        let watched = [k.ready.clone(), k.bell.clone(), k.gate.clone()];
                        (backend.clone(), watched, None)
                    })
                })
                .collect(),
            idle_wait,
            outage: ReconnectBackoff::new(),
        }
    }

    /// Returns when a partition's watched list (`watch`, per partition: `ready`, `bell` or
    /// `gate`) has an element, after `idle_wait`, or after a connection error (having waited
    /// out the backoff).
    pub(super) async fn wait(&mut self, watch: &[Watch]) {
        let idle_wait = self.idle_wait;
        let waits =
            self.parts
                .iter_mut()
                .enumerate()
                .map(|(i, (backend, [ready, bell, gate], conn))| {
                    let key = match watch.get(i).copied().unwrap_or_default() {
                        Watch::Ready => ready,
                        Watch::Bell => bell,
                        Watch::Gate => gate,
                    };
                    Box::pin(wait_one(backend, key, conn, idle_wait))
                });
        let (result, ..) = select_all(waits).await;
        if let Err(e) = result {
            let delay = self.outage.next_delay();
            warn!(error = %e, retry_in = ?delay, "idle wait failed; redis unavailable?");
            tokio::time::sleep(delay).await;
        } else {
            self.outage.reset();
        }
    }
}

/// Blocks until `ready` has an element or `idle_wait` passes, on `conn` (made if missing,
/// dropped after an error).
async fn wait_one(
    backend: &Backend,
    ready: &str,
    conn: &mut Option<Conn>,
    idle_wait: Duration,
) -> redis::RedisResult<()> {
    let result = async {
        let c = match conn {
            Some(c) => c,
            None => {
                // Blocking commands need a response timeout longer than the block. A wait
                // abandoned when another partition answered first stays queued on its
                // connection, so the next one may wait behind it: allow for two.
                let c = backend
                    .own_conn(idle_wait * 2 + Duration::from_secs(5))
                    .await?;
                conn.insert(c)
            }
        };
        redis::cmd("BLMOVE")
            .arg(ready)
            .arg(ready)
            .arg("LEFT")
            .arg("LEFT")
            .arg(idle_wait.as_secs_f64())
            .query_async::<Option<Vec<u8>>>(c)
            .await
    }
    .await;
    if result.is_err() {
        *conn = None;
    }
    result.map(|_| ())
}
