//! The idle wait: a worker with nothing to do blocks in Redis (`BLMOVE ready ready LEFT
//! LEFT`, which puts the element straight back) on a connection of its own, so that no command
//! is sent while nothing is ready, apart from one wake every idle wait.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tracing::warn;

use crate::queue::Queue;
use crate::reconnect::ReconnectBackoff;

/// Waits, on a connection of its own, until `ready` has an element.
pub(super) struct ReadyWaiter {
    client: redis::Client,
    ready_key: String,
    idle_wait: Duration,
    conn: Option<MultiplexedConnection>,
    outage: ReconnectBackoff,
}

impl ReadyWaiter {
    pub(super) fn new(queue: &Queue, idle_wait: Duration) -> Self {
        ReadyWaiter {
            client: queue.client().clone(),
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
                // Blocking commands need a response timeout longer than the block: redis-rs
                // puts 500 ms on connections by default.
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(self.idle_wait + Duration::from_secs(5)));
                let conn = self
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
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
