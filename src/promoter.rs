//! The promoter: the scheduler loop that moves due jobs to `ready` (with `promote.lua`) and
//! returns jobs whose lease ran out.
//!
//! It does not poll. Each `promote.lua` call answers with the Redis server's clock and the
//! earliest due time and lease deadline left, so the loop knows exactly how long to sleep; it
//! sleeps on a local timer for that difference (a *difference* of server times, so the host's
//! clock offset does not matter). A producer that schedules a job earlier than the current
//! head PUBLISHes on the queue's wake channel (from inside `schedule.lua`), which wakes the
//! loop at once. A heartbeat ([`DEFAULT_HEARTBEAT`]) bounds the sleep in case a wake message
//! was missed; after the pub/sub connection is re-established every queue is swept at once.
//!
//! Any number of promoters may run on the same queues: `promote.lua` removes what it moves in
//! the same atomic step, so each job is promoted exactly once.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use crate::error::{Error, Result};
use crate::queue::Queue;
use crate::reconnect::ReconnectBackoff;
use crate::scripts::scripts;

/// Default for [`PromoterConfig::set_batch`].
pub const DEFAULT_BATCH: usize = 1000;
/// Default for [`PromoterConfig::set_heartbeat`].
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// Largest batch accepted: far below Lua's `unpack` limit (about 8000 values).
pub const MAX_BATCH: usize = 5000;

/// Settings of a [`Promoter`].
#[derive(Debug, Clone)]
pub struct PromoterConfig {
    batch: usize,
    heartbeat: Duration,
}

impl Default for PromoterConfig {
    fn default() -> Self {
        PromoterConfig {
            batch: DEFAULT_BATCH,
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }
}

impl PromoterConfig {
    /// Most jobs one `promote.lua` call moves (default [`DEFAULT_BATCH`], at most
    /// [`MAX_BATCH`]). The loop calls again at once while a full batch came back, so this only
    /// bounds how long Redis is busy with one call.
    pub fn set_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Longest sleep without asking Redis (default [`DEFAULT_HEARTBEAT`]); it bounds the delay
    /// if a wake message is lost.
    pub fn set_heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }
}

/// What one [`Promoter::promote`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PromoteReport {
    /// Jobs moved scheduled → ready.
    pub promoted: u64,
    /// Jobs whose lease had ended, moved running → ready.
    pub expired: u64,
    /// Largest promotion lag seen (server time of promotion minus due time), in ms.
    pub max_lag_ms: u64,
    /// How long until the next job is due or the next lease ends, by the server's clock;
    /// `None` when neither exists.
    pub next_in: Option<Duration>,
}

/// Moves due jobs of one or more queues to their ready lists. See the module docs.
#[derive(Debug)]
pub struct Promoter {
    queues: Vec<Queue>,
    config: PromoterConfig,
}

impl Promoter {
    /// A promoter for `queues`, which must all be on the same Redis (their wake channels are
    /// subscribed on one connection, made from the first queue's client).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when no queue is given, the queues are on different Redis
    /// URLs, or the batch is 0 or above [`MAX_BATCH`].
    pub fn new(queues: impl IntoIterator<Item = Queue>, config: PromoterConfig) -> Result<Self> {
        let queues: Vec<Queue> = queues.into_iter().collect();
        let invalid = |reason: &str| Error::InvalidConfig {
            what: "promoter",
            reason: reason.to_owned(),
        };
        let first = queues
            .first()
            .ok_or_else(|| invalid("needs at least one queue"))?;
        if queues.iter().any(|q| q.url() != first.url()) {
            return Err(invalid("queues must all be on the same redis url"));
        }
        if config.batch == 0 || config.batch > MAX_BATCH {
            return Err(invalid("batch must be between 1 and 5000"));
        }
        if config.heartbeat < Duration::from_millis(10) {
            return Err(invalid("heartbeat must be at least 10 ms"));
        }
        Ok(Promoter { queues, config })
    }

    /// Promotes everything due in `queue` now: calls `promote.lua` until a call comes back
    /// with less than a full batch.
    ///
    /// # Errors
    /// [`Error::Redis`], [`Error::UnexpectedReply`].
    pub async fn promote(queue: &Queue, batch: usize) -> Result<PromoteReport> {
        let k = queue.keys();
        let mut total = PromoteReport::default();
        let mut conn = queue.conn();
        loop {
            let reply: Vec<i64> = scripts()
                .promote
                .call()
                .key(&k.scheduled)
                .key(&k.ready)
                .key(&k.running)
                .key(&k.leases)
                .key(&k.attempts)
                .key(&k.errors)
                .arg(batch)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| queue.redis_error("promote", e))?;
            let &[now, promoted, expired, next_due, next_lease, max_lag] = reply.as_slice() else {
                return Err(queue.unexpected("promote", format!("reply {reply:?}")));
            };
            total.promoted += promoted.max(0) as u64;
            total.expired += expired.max(0) as u64;
            total.max_lag_ms = total.max_lag_ms.max(max_lag.max(0) as u64);
            let next = [next_due, next_lease].into_iter().filter(|&t| t >= 0).min();
            total.next_in =
                next.map(|t| Duration::from_millis(t.saturating_sub(now).max(0) as u64));
            if (promoted as usize) < batch && (expired as usize) < batch {
                return Ok(total);
            }
        }
    }

    /// Runs the loop until `shutdown` completes. Redis outages are waited out (capped
    /// backoff, logged), not returned as errors. The promoter holds no jobs, so stopping is
    /// immediate and loses nothing.
    ///
    /// # Errors
    /// None at present; the `Result` leaves room for fatal conditions.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let names: Vec<&str> = self.queues.iter().map(|q| q.name()).collect();
        let span = tracing::info_span!("promoter", queues = ?names);
        self.run_inner(shutdown).instrument(span).await
    }

    async fn run_inner(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let channels: HashMap<String, usize> = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| (q.keys().wake.clone(), i))
            .collect();
        let client = self.queues[0].client().clone();
        let mut deadlines = vec![Instant::now(); self.queues.len()];
        let mut outages: Vec<ReconnectBackoff> = self
            .queues
            .iter()
            .map(|_| ReconnectBackoff::new())
            .collect();
        let mut wake: Option<redis::aio::PubSubStream> = None;
        let mut resubscribe_at = Instant::now();
        let mut pubsub_outage = ReconnectBackoff::new();
        tokio::pin!(shutdown);
        info!(batch = self.config.batch, heartbeat = ?self.config.heartbeat, "promoter started");

        loop {
            if wake.is_none() && Instant::now() >= resubscribe_at {
                match subscribe(&client, channels.keys()).await {
                    Ok(stream) => {
                        wake = Some(stream);
                        pubsub_outage.reset();
                        // Wake messages may have been missed while unsubscribed: sweep now.
                        deadlines.fill(Instant::now());
                    }
                    Err(e) => {
                        let delay = pubsub_outage.next_delay();
                        warn!(error = %e, retry_in = ?delay, "cannot subscribe to wake channels");
                        resubscribe_at = Instant::now() + delay;
                    }
                }
            }
            let mut next = deadlines.iter().copied().min().unwrap_or_else(Instant::now);
            if wake.is_none() {
                next = next.min(resubscribe_at);
            }

            tokio::select! {
                biased;
                () = &mut shutdown => break,
                message = next_message(&mut wake) => match message {
                    Some(msg) => {
                        if let Some(&i) = channels.get(msg.get_channel_name()) {
                            debug!(queue = self.queues[i].name(), "woken: an earlier job arrived");
                            deadlines[i] = Instant::now();
                        }
                    }
                    None => {
                        warn!("wake connection lost; reconnecting");
                        wake = None;
                        resubscribe_at = Instant::now();
                    }
                },
                () = tokio::time::sleep_until(next) => {}
            }

            let now = Instant::now();
            for (i, queue) in self.queues.iter().enumerate() {
                if deadlines[i] > now {
                    continue;
                }
                match Promoter::promote(queue, self.config.batch).await {
                    Ok(report) => {
                        outages[i].reset();
                        if report.promoted > 0 || report.expired > 0 {
                            debug!(
                                queue = queue.name(),
                                promoted = report.promoted,
                                expired = report.expired,
                                max_lag_ms = report.max_lag_ms,
                                "promoted"
                            );
                        }
                        if report.expired > 0 {
                            info!(
                                queue = queue.name(),
                                jobs = report.expired,
                                "leases expired: jobs returned to ready"
                            );
                        }
                        let sleep = report
                            .next_in
                            .map_or(self.config.heartbeat, |d| d.min(self.config.heartbeat));
                        deadlines[i] = Instant::now() + sleep;
                    }
                    Err(e) => {
                        let delay = outages[i].next_delay();
                        warn!(queue = queue.name(), error = %e, retry_in = ?delay, "promotion failed");
                        deadlines[i] = Instant::now() + delay;
                    }
                }
            }
        }
        info!("promoter stopped");
        Ok(())
    }
}

/// Subscribes to every wake channel on a fresh pub/sub connection.
async fn subscribe<'a>(
    client: &redis::Client,
    channels: impl Iterator<Item = &'a String>,
) -> redis::RedisResult<redis::aio::PubSubStream> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        for channel in channels {
            pubsub.subscribe(channel).await?;
        }
        Ok(pubsub.into_on_message())
    };
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "timed out subscribing to wake channels",
        ))),
    }
}

/// The next wake message, or `None` when the stream ended; pending forever with no stream.
async fn next_message(wake: &mut Option<redis::aio::PubSubStream>) -> Option<redis::Msg> {
    match wake {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}
