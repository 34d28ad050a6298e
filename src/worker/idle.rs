//! The idle wait: a worker with nothing to do blocks in Redis (`BLMOVE ready ready LEFT
//! LEFT`, which puts the element straight back) on a connection of its own per partition, so
//! that no command is sent while nothing is ready, apart from one wake every idle wait. A
//! partitioned queue is waited on in every partition at once, and a worker that serves
//! several queues waits on all of their partitions: the first that has a job ends the wait. On a cluster each connection follows its partition's slot. A paused partition is
//! waited on at its `gate` instead (`BLMOVE gate gate`), which a resume fills: a paused queue
//! costs no polling, and its jobs in `ready` do not wake the worker.

use std::time::Duration;

use futures_util::future::select_all;
use tracing::warn;

use crate::conn::{Backend, Conn};
use crate::queue::Queue;
use crate::reconnect::ReconnectBackoff;

/// Waits, on connections of its own, until some partition's `ready` has an element.
pub(super) struct ReadyWaiter {
    /// Each partition's server, `ready` and `gate` keys, and its connection once made; the
    /// partitions of the worker's queues in order.
    parts: Vec<(Backend, String, String, Option<Conn>)>,
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
                        let keys = part.keys();
                        (backend.clone(), keys.ready.clone(), keys.gate.clone(), None)
                    })
                })
                .collect(),
            idle_wait,
            outage: ReconnectBackoff::new(),
        }
    }

    /// Returns when a `ready` list (a `gate`, for the partitions `paused` marks) has an
    /// element, after `idle_wait`, or after a connection error (having waited out the
    /// backoff).
    pub(super) async fn wait(&mut self, paused: &[bool]) {
        let idle_wait = self.idle_wait;
        let waits = self
            .parts
            .iter_mut()
            .enumerate()
            .map(|(i, (backend, ready, gate, conn))| {
                let key = if paused.get(i).copied().unwrap_or(false) {
                    gate
                } else {
                    ready
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
