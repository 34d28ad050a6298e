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

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::select_all;
use futures_util::FutureExt;
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

/// A `BLMOVE` sent on a partition's connection: when it ends, the connection back (`None`
/// after an error, so that a new one is made) and whether the key had an element.
type Blocked = Pin<Box<dyn Future<Output = (Option<Conn>, redis::RedisResult<bool>)> + Send>>;

/// One partition: its server, its `ready`, `bell` and `gate` keys, and either its idle
/// connection or the `BLMOVE` in flight on it (with the key it blocks on).
struct Part {
    backend: Backend,
    watched: [String; 3],
    conn: Option<Conn>,
    blocked: Option<(Watch, Blocked)>,
}

/// Waits, on connections of its own, until some partition's `ready` has an element.
///
/// A `BLMOVE` that a wait leaves unanswered (another partition had a job first) stays in
/// flight and the next wait takes it up. Sending another would queue it behind the first on
/// the same connection, where it could not answer before the first does: a partition left
/// without jobs while others keep the worker busy would pile up one blocked command per wait.
pub(super) struct ReadyWaiter {
    parts: Vec<Part>,
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
                        Part {
                            backend: backend.clone(),
                            watched: [k.ready.clone(), k.bell.clone(), k.gate.clone()],
                            conn: None,
                            blocked: None,
                        }
                    })
                })
                .collect(),
            idle_wait,
            outage: ReconnectBackoff::new(),
        }
    }

    /// Returns when a partition's watched list (`watch`, per partition: `ready`, `bell` or
    /// `gate`) has an element, after `idle_wait`, or after a connection error (having waited
    /// out the backoff). A partition's `BLMOVE` that times out in Redis is sent again.
    pub(super) async fn wait(&mut self, watch: &[Watch]) {
        let idle_wait = self.idle_wait;
        let deadline = tokio::time::sleep(idle_wait);
        tokio::pin!(deadline);
        loop {
            for (i, part) in self.parts.iter_mut().enumerate() {
                part.arm(watch.get(i).copied().unwrap_or_default(), idle_wait);
            }
            let ended = tokio::select! {
                () = &mut deadline => return,
                (ended, ..) = select_all(self.parts.iter_mut().enumerate().filter_map(
                    |(i, part)| part.blocked.as_mut().map(|(_, b)| b.as_mut().map(move |r| (i, r)))
                )) => ended,
            };
            let (i, (conn, result)) = ended;
            if let Some(part) = self.parts.get_mut(i) {
                part.blocked = None;
                part.conn = conn;
            }
            // Others may have ended at the same moment (their BLMOVEs all time out together
            // while idle): take them now, not one wait each.
            let mut found = matches!(result, Ok(true));
            for part in &mut self.parts {
                if let Some((_, blocked)) = part.blocked.as_mut() {
                    if let Some((conn, r)) = blocked.as_mut().now_or_never() {
                        part.blocked = None;
                        part.conn = conn;
                        found |= matches!(r, Ok(true));
                    }
                }
            }
            if let Err(e) = result {
                let delay = self.outage.next_delay();
                warn!(error = %e, retry_in = ?delay, "idle wait failed; redis unavailable?");
                tokio::time::sleep(delay).await;
                return;
            }
            self.outage.reset();
            if found {
                return;
            }
            // That BLMOVE timed out in Redis: block again, until the deadline.
        }
    }
}

impl Part {
    /// Makes sure a `BLMOVE` blocks on the `watch` key of this partition: the one in flight if
    /// it blocks on that key, else a new one. One in flight on another key is dropped with its
    /// connection (closed, so that Redis forgets it), as a new one would wait behind it.
    fn arm(&mut self, watch: Watch, idle_wait: Duration) {
        if matches!(&self.blocked, Some((on, _)) if *on == watch) {
            return;
        }
        let [ready, bell, gate] = &self.watched;
        let key = match watch {
            Watch::Ready => ready,
            Watch::Bell => bell,
            Watch::Gate => gate,
        };
        let blocked = blmove(
            self.backend.clone(),
            key.clone(),
            self.conn.take(),
            idle_wait,
        );
        self.blocked = Some((watch, Box::pin(blocked)));
    }
}

/// Blocks until `key` has an element or `idle_wait` passes, on `conn` (made if missing);
/// gives the connection back unless it failed, and whether the key had an element.
async fn blmove(
    backend: Backend,
    key: String,
    conn: Option<Conn>,
    idle_wait: Duration,
) -> (Option<Conn>, redis::RedisResult<bool>) {
    let mut conn = match conn {
        Some(c) => c,
        // Blocking commands need a response timeout longer than the block.
        None => match backend.own_conn(idle_wait + Duration::from_secs(5)).await {
            Ok(c) => c,
            Err(e) => return (None, Err(e)),
        },
    };
    let moved = redis::cmd("BLMOVE")
        .arg(&key)
        .arg(&key)
        .arg("LEFT")
        .arg("LEFT")
        .arg(idle_wait.as_secs_f64())
        .query_async::<Option<Vec<u8>>>(&mut conn)
        .await;
    match moved {
        Ok(element) => (Some(conn), Ok(element.is_some())),
        Err(e) => (None, Err(e)),
    }
}
