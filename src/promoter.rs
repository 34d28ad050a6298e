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
//!
//! A promoter made with [`Promoter::for_namespace`] serves every queue of a namespace: it
//! starts with the registered queues, subscribes to the wake channels of all queues by
//! pattern, and adds a queue the moment its first job is scheduled (that job is the new head,
//! so `schedule.lua` publishes), or at the next heartbeat when it appears in the registry.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, error, info, warn, Instrument};

use crate::config::STORAGE_FORMAT;
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::metrics::{LagHistogram, PromoterMetrics, LAG_BUCKETS_MS};
use crate::namespace::Namespace;
use crate::queue::Queue;
use crate::reconnect::ReconnectBackoff;
use crate::wake::{self, Heard, Listener};

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
    /// The promotion lag of every job moved.
    pub lag: LagHistogram,
    /// How long until the next job is due or the next lease ends, by the server's clock;
    /// `None` when neither exists.
    pub next_in: Option<Duration>,
    /// The queue's `meta` key was missing: Redis lost the queue's data since the queue was
    /// opened (a restart without persistence, a flush, a failover to a replica that had not
    /// caught up). Jobs stored before are gone. The key is written again, so one pass reports
    /// it.
    pub data_lost: bool,
}

/// Moves due jobs of one or more queues to their ready lists. See the module docs.
#[derive(Debug)]
pub struct Promoter {
    queues: Vec<Queue>,
    /// Set for a promoter of every queue of a namespace.
    namespace: Option<Namespace>,
    config: PromoterConfig,
    metrics: PromoterMetrics,
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
        let first = queues
            .first()
            .ok_or_else(|| invalid("needs at least one queue"))?;
        if queues
            .iter()
            .any(|q| q.url() != first.url() || q.config().prefix() != first.config().prefix())
        {
            return Err(invalid(
                "queues must all be on the same redis url and key prefix",
            ));
        }
        config.validate()?;
        let metrics = PromoterMetrics::default();
        for queue in &queues {
            metrics.add_queue(queue.name());
        }
        Ok(Promoter {
            queues,
            namespace: None,
            config,
            metrics,
        })
    }

    /// A promoter for every queue of `namespace`, including queues created while it runs.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a batch of 0 or above [`MAX_BATCH`].
    pub fn for_namespace(namespace: Namespace, config: PromoterConfig) -> Result<Self> {
        config.validate()?;
        Ok(Promoter {
            queues: Vec::new(),
            namespace: Some(namespace),
            config,
            metrics: PromoterMetrics::default(),
        })
    }

    /// A live view of what this promoter does, per queue; keep it before calling
    /// [`Promoter::run`].
    pub fn metrics(&self) -> PromoterMetrics {
        self.metrics.clone()
    }

    /// Promotes everything due in `queue` now: calls `promote.lua` until a call comes back
    /// with less than a full batch.
    ///
    /// # Errors
    /// [`Error::Redis`], [`Error::UnexpectedReply`].
    pub async fn promote(queue: &Queue, batch: usize) -> Result<PromoteReport> {
        let mut total = PromoteReport::default();
        loop {
            let p =
                crate::ops::promote::call(queue, batch, STORAGE_FORMAT, &LAG_BUCKETS_MS).await?;
            total.lag.record_counts(&p.lag_counts, p.sum_lag_ms);
            total.promoted += p.promoted;
            total.data_lost |= p.lost;
            total.expired += p.expired;
            total.max_lag_ms = total.max_lag_ms.max(p.max_lag_ms);
            let next = [p.next_due_ms, p.next_lease_ms].into_iter().flatten().min();
            total.next_in =
                next.map(|t| Duration::from_millis(t.saturating_sub(p.now_ms).max(0) as u64));
            if (p.promoted as usize) < batch && (p.expired as usize) < batch {
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
        let span = match &self.namespace {
            Some(ns) => tracing::info_span!("promoter", namespace = ns.prefix()),
            None => {
                let names: Vec<&str> = self.queues.iter().map(|q| q.name()).collect();
                tracing::info_span!("promoter", queues = ?names)
            }
        };
        self.run_inner(shutdown).instrument(span).await
    }

    async fn run_inner(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let Promoter {
            queues,
            namespace,
            config,
            metrics,
        } = self;
        let mut set = QueueSet::default();
        for queue in queues {
            set.add(queue, &metrics);
        }
        let backend = match (&namespace, set.queues.first()) {
            (Some(ns), _) => ns.backend().clone(),
            (None, Some(queue)) => queue.namespace().backend().clone(),
            (None, None) => return Ok(()),
        };
        // A namespace promoter re-reads the registry every heartbeat, starting now.
        let mut registry_at = Instant::now();
        let mut wake: Option<Listener> = None;
        let mut resubscribe_at = Instant::now();
        let mut pubsub_outage = ReconnectBackoff::new();
        tokio::pin!(shutdown);
        info!(batch = config.batch, heartbeat = ?config.heartbeat, "promoter started");

        loop {
            if let Some(ns) = &namespace {
                if Instant::now() >= registry_at {
                    registry_at = Instant::now() + config.heartbeat;
                    match ns.queue_names().await {
                        Ok(names) => {
                            for name in names {
                                set.open(ns, &name, &metrics, &mut wake).await;
                            }
                        }
                        Err(e) => warn!(error = %e, "cannot read the queue registry"),
                    }
                }
            }
            if wake.is_none() && Instant::now() >= resubscribe_at {
                let pattern = namespace.as_ref().map(|ns| Keys::wake_pattern(ns.prefix()));
                let channels = set.channels.keys().cloned().collect();
                match Listener::open(&backend, channels, pattern).await {
                    Ok(listener) => {
                        wake = Some(listener);
                        pubsub_outage.reset();
                        // Wake messages may have been missed while unsubscribed: sweep now.
                        set.deadlines.fill(Instant::now());
                    }
                    Err(e) => {
                        let delay = pubsub_outage.next_delay();
                        warn!(error = %e, retry_in = ?delay, "cannot subscribe to wake channels");
                        resubscribe_at = Instant::now() + delay;
                    }
                }
            }
            let mut next = set
                .deadlines
                .iter()
                .copied()
                .min()
                .unwrap_or_else(|| Instant::now() + config.heartbeat);
            if wake.is_none() {
                next = next.min(resubscribe_at);
            }
            if namespace.is_some() {
                next = next.min(registry_at);
            }

            tokio::select! {
                biased;
                () = &mut shutdown => break,
                heard = wake::next(&mut wake) => match heard {
                    Heard::Wake(channel) => match (set.channels.get(&channel), &namespace) {
                        (Some(&i), _) => {
                            debug!(queue = set.queues[i].name(), "woken: an earlier job arrived");
                            set.deadlines[i] = Instant::now();
                        }
                        (None, Some(ns)) => {
                            if let Some(name) = Keys::queue_of_wake_channel(ns.prefix(), &channel) {
                                set.open(ns, name, &metrics, &mut wake).await;
                            }
                        }
                        (None, None) => {}
                    },
                    Heard::Moved(channel) => {
                        // The slot moved: listen on its new shard, and sweep in case a
                        // message fell between the two.
                        if let Some(&i) = set.channels.get(&channel) {
                            info!(queue = set.queues[i].name(), "wake channel moved with its slot; subscribing again");
                            set.deadlines[i] = Instant::now();
                            if let Some(listener) = wake.as_mut() {
                                if let Err(e) = listener.add(&channel).await {
                                    warn!(error = %e, "cannot subscribe again; reconnecting");
                                    wake = None;
                                }
                            }
                        }
                    }
                    Heard::Gap => {
                        warn!("wake connection dropped and came back; sweeping every queue");
                        set.deadlines.fill(Instant::now());
                    }
                    Heard::Closed => {
                        warn!("wake connection lost; reconnecting");
                        wake = None;
                        resubscribe_at = Instant::now();
                    }
                },
                () = tokio::time::sleep_until(next) => {}
            }

            let now = Instant::now();
            for (i, queue) in set.queues.iter().enumerate() {
                if set.deadlines[i] > now {
                    continue;
                }
                match Promoter::promote(queue, config.batch).await {
                    Ok(report) => {
                        set.outages[i].reset();
                        metrics.record(queue.name(), Ok(&report));
                        if report.promoted > 0 || report.expired > 0 {
                            debug!(
                                queue = queue.name(),
                                promoted = report.promoted,
                                expired = report.expired,
                                max_lag_ms = report.max_lag_ms,
                                "promoted"
                            );
                        }
                        if report.data_lost {
                            error!(
                                queue = queue.name(),
                                "redis lost this queue's data (restarted without persistence, \
                                 flushed, or failed over to a replica that had not caught up): \
                                 jobs scheduled before now are gone; carrying on with new ones"
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
                            .map_or(config.heartbeat, |d| d.min(config.heartbeat));
                        set.deadlines[i] = Instant::now() + sleep;
                    }
                    Err(e) => {
                        metrics.record(queue.name(), Err(e.to_string()));
                        let delay = set.outages[i].next_delay();
                        warn!(queue = queue.name(), error = %e, retry_in = ?delay, "promotion failed");
                        set.deadlines[i] = Instant::now() + delay;
                    }
                }
            }
        }
        info!("promoter stopped");
        Ok(())
    }
}

impl PromoterConfig {
    fn validate(&self) -> Result<()> {
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(invalid("batch must be between 1 and 5000"));
        }
        if self.heartbeat < Duration::from_millis(10) {
            return Err(invalid("heartbeat must be at least 10 ms"));
        }
        Ok(())
    }
}

fn invalid(reason: &str) -> Error {
    Error::InvalidConfig {
        what: "promoter",
        reason: reason.to_owned(),
    }
}

/// The queues a running promoter serves, each with its next deadline and outage backoff.
#[derive(Default)]
struct QueueSet {
    queues: Vec<Queue>,
    /// Wake channel → index in `queues`.
    channels: HashMap<String, usize>,
    /// Names of the queues served.
    names: HashSet<String>,
    deadlines: Vec<Instant>,
    outages: Vec<ReconnectBackoff>,
}

impl QueueSet {
    /// Adds `queue`, due for a pass at once; a queue already present is left as it is.
    fn add(&mut self, queue: Queue, metrics: &PromoterMetrics) {
        let channel = queue.keys().wake.clone();
        if self.channels.contains_key(&channel) {
            return;
        }
        metrics.add_queue(queue.name());
        self.names.insert(queue.name().to_owned());
        self.channels.insert(channel, self.queues.len());
        self.queues.push(queue);
        self.deadlines.push(Instant::now());
        self.outages.push(ReconnectBackoff::new());
    }

    /// Opens queue `name` of `ns` and adds it, unless it is already served, and listens to
    /// its wake channel.
    async fn open(
        &mut self,
        ns: &Namespace,
        name: &str,
        metrics: &PromoterMetrics,
        wake: &mut Option<Listener>,
    ) {
        if self.names.contains(name) {
            return;
        }
        match ns.queue(name).await {
            Ok(queue) => {
                info!(queue = name, "serving a new queue");
                if let Some(listener) = wake.as_mut() {
                    if let Err(e) = listener.add(&queue.keys().wake).await {
                        warn!(error = %e, "cannot subscribe to a wake channel; reconnecting");
                        *wake = None;
                    }
                }
                self.add(queue, metrics);
            }
            Err(e) => warn!(queue = name, error = %e, "cannot open a discovered queue"),
        }
    }
}
