//! The idle wait: a worker with nothing to do blocks in Redis (`BLMOVE ready ready LEFT
//! LEFT`, which puts the element straight back) on a connection of its own, so that no command
//! is sent while nothing is ready, apart from one wake every idle wait.

use std::time::Duration;

use tracing::warn;

use crate::conn::{Backend, Conn};
use crate::queue::Queue;
use crate::reconnect::ReconnectBackoff;

/// Waits, on a connection of its own, until `ready` has an element.
pub(super) struct ReadyWaiter {
    backend: Backend,
    ready_key: String,
    idle_wait: Duration,
    conn: Option<Conn>,
    outage: ReconnectBackoff,
}

impl ReadyWaiter {
    pub(super) fn new(queue: &Queue, idle_wait: Duration) -> Self {
        ReadyWaiter {
            backend: queue.namespace().backend().clone(),
            ready_key: queue.keys().ready.clone(),
            idle_wait,
            conn: None,
            outage: ReconnectBackoff::new(),
        }
    }

    /// Returns when `ready` has an element, after `idle_wait`, or after a connection error
    /// (having waited out the backoff).
    pub(super) async fn wait(&mut self) {
        if let Err(e) = self.try_wait().await {
            self.conn = None;
            let delay = self.outage.next_delay();
            warn!(error = %e, retry_in = ?delay, "idle wait failed; redis unavailable?");
            tokio::time::sleep(delay).await;
        } else {
            self.outage.reset();
        }
    }

    async fn try_wait(&mut self) -> redis::RedisResult<()> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                // Blocking commands need a response timeout longer than the block. On a
                // cluster the connection follows the slot of `ready` if it moves.
                let conn = self
                    .backend
                    .own_conn(self.idle_wait + Duration::from_secs(5))
                    .await?;
                self.conn.insert(conn)
            }
        };
        let _moved: Option<Vec<u8>> = redis::cmd("BLMOVE")
            .arg(&self.ready_key)
            .arg(&self.ready_key)
            .arg("LEFT")
            .arg("LEFT")
            .arg(self.idle_wait.as_secs_f64())
            .query_async(conn)
            .await?;
        Ok(())
    }
}
