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
use crate::metrics::{LagHistogram, PromoterMetrics};
use crate::namespace::Namespace;
use crate::queue::{Partition, Queue};
use crate::reconnect::ReconnectBackoff;
use crate::retention::TRIM_LIMIT;
use crate::share::Share;
use crate::sleep::sleep_until;
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
    /// How long until the next job is due or the next lease ends, by the server's clock, from
    /// when the report was made (the server read its clock during the call; it is taken to
    /// have done so halfway through the round trip); `None` when neither exists.
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

    /// Promotes everything due in `queue` now (every partition): calls `promote.lua` until a
    /// call comes back with less than a full batch.
    ///
    /// # Errors
    /// [`Error::Redis`], [`Error::UnexpectedReply`].
    pub async fn promote(queue: &Queue, batch: usize) -> Result<PromoteReport> {
        let mut total = PromoteReport::default();
        for part in queue.each_partition() {
            let report = promote_partition(part, batch).await?;
            total.lag.merge(&report.lag);
            total.promoted += report.promoted;
            total.expired += report.expired;
            total.data_lost |= report.data_lost;
            total.max_lag_ms = total.max_lag_ms.max(report.max_lag_ms);
            total.next_in = match (total.next_in, report.next_in) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(total)
    }

    /// Runs the loop until `shutdown` completes. Redis outages are waited out (capped
    /// backoff, logged), not returned as errors. The promoter holds no jobs, so stopping is
    /// immediate and loses nothing: `shutdown` is obeyed wherever the loop is waiting, also in
    /// the middle of a Redis call (each script is atomic; an abandoned call either ran whole
    /// or not at all).
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
        async move {
            let result = tokio::select! {
                biased;
                () = shutdown => Ok(()),
                result = self.run_inner() => result,
            };
            info!("promoter stopped");
            result
        }
        .instrument(span)
        .await
    }

    /// The loop; returns only when there is nothing to serve.
    async fn run_inner(self) -> Result<()> {
        let Promoter {
            queues,
            namespace,
            config,
            metrics,
        } = self;
        let mut set = QueueSet::new();
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
        // Through Sentinel: which primary connection the promoter last saw.
        let mut primary = backend.generation();
        info!(batch = config.batch, heartbeat = ?config.heartbeat, "promoter started");

        loop {
            if backend.generation() != primary {
                // A failover was followed: jobs came due while the old primary went; sweep
                // now rather than at each queue's next deadline.
                primary = backend.generation();
                info!("a new primary (sentinel failover): sweeping every queue");
                set.sweep_all();
            }
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
            set.share(config.heartbeat).await;
            if wake.is_none() && Instant::now() >= resubscribe_at {
                let pattern = namespace.as_ref().map(|ns| Keys::wake_pattern(ns.prefix()));
                let channels = set.channels.keys().cloned().collect();
                match Listener::open(&backend, channels, pattern).await {
                    Ok(listener) => {
                        wake = Some(listener);
                        pubsub_outage.reset();
                        // Wake messages may have been missed while unsubscribed: sweep now.
                        set.sweep_all();
                    }
                    Err(e) => {
                        let delay = pubsub_outage.next_delay();
                        warn!(error = %e, retry_in = ?delay, "cannot subscribe to wake channels");
                        resubscribe_at = Instant::now() + delay;
                    }
                }
            }
            let mut next = set.next_deadline(config.heartbeat);
            if wake.is_none() {
                next = next.min(resubscribe_at);
            }
            if namespace.is_some() {
                next = next.min(registry_at);
            }

            tokio::select! {
                heard = wake::next(&mut wake) => match heard {
                    Heard::Wake(channel, payload) => match (set.channels.get(&channel), &namespace) {
                        (Some(&u), _) => {
                            debug!(queue = set.name(u), payload, "woken: an earlier job arrived, or a schedule changed");
                            set.units[u].deadline = Instant::now();
                            if payload == "cron" {
                                set.units[u].cron_at = Instant::now();
                            }
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
                        if let Some(&u) = set.channels.get(&channel) {
                            info!(queue = set.name(u), "wake channel moved with its slot; subscribing again");
                            set.units[u].deadline = Instant::now();
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
                        set.sweep_all();
                    }
                    Heard::Closed => {
                        warn!("wake connection lost; reconnecting");
                        wake = None;
                        resubscribe_at = Instant::now();
                    }
                },
                () = sleep_until(next) => {}
            }
            set.promote_due(&config, &metrics).await;
        }
    }
}

/// Enforces a partition's retentions (`trim.lua`): calls again while a call deleted a full
/// [`TRIM_LIMIT`] (at most 10 calls a heartbeat); every deletion is logged.
async fn trim_partition(part: Partition<'_>) {
    for _ in 0..10 {
        match crate::ops::trim::call(&part, TRIM_LIMIT).await {
            Ok((dead, completed)) => {
                if dead > 0 || completed > 0 {
                    info!(
                        queue = part.queue().name(),
                        partition = part.index(),
                        dead,
                        completed,
                        "retention: deleted the oldest dead and completed jobs beyond it"
                    );
                }
                if (dead as usize) < TRIM_LIMIT && (completed as usize) < TRIM_LIMIT {
                    return;
                }
            }
            Err(e) => {
                warn!(queue = part.queue().name(), partition = part.index(), error = %e, "cannot enforce the retention; trying at the next heartbeat");
                return;
            }
        }
    }
}

/// Promotes everything due in one partition: `promote.lua` until a call comes back with less
/// than a full batch.
async fn promote_partition(part: Partition<'_>, batch: usize) -> Result<PromoteReport> {
    let mut total = PromoteReport::default();
    loop {
        let sent = Instant::now();
        let p = crate::ops::promote::call(&part, batch, STORAGE_FORMAT).await?;
        let received = Instant::now();
        total.lag.record_counts(&p.lag_counts, p.sum_lag_ms);
        total.promoted += p.promoted;
        total.data_lost |= p.lost;
        total.expired += p.expired;
        total.max_lag_ms = total.max_lag_ms.max(p.max_lag_ms);
        let next = [p.next_due_ms, p.next_lease_ms].into_iter().flatten().min();
        // From the server's clock to the microsecond: `now_ms` alone is rounded down, which
        // made every sleep up to a millisecond too long (half a millisecond on average). And
        // from when the server read it, not from the reply: the script reads it first thing,
        // about halfway through the round trip (the request and the reply take about as
        // long), so the time left is counted from the reply's arrival less half the round
        // trip. Counting it from the reply made every sleep a tenth of a millisecond too
        // long. Waking a little early costs one more call, never an early job: the script
        // promotes only what is due by the server's clock.
        total.next_in = next.map(|t| {
            let us = t
                .saturating_sub(p.now_ms)
                .saturating_mul(1000)
                .saturating_sub(p.now_us);
            Duration::from_micros(us.max(0) as u64)
                .saturating_sub(received.saturating_duration_since(sent) / 2)
        });
        if ((p.promoted + p.timed_out) as usize) < batch && (p.expired as usize) < batch {
            return Ok(total);
        }
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

/// One partition a running promoter serves, with its next deadline and outage backoff.
struct Unit {
    /// Index in `QueueSet::queues`.
    queue: usize,
    part: u16,
    deadline: Instant,
    outage: ReconnectBackoff,
    /// When its retentions are next enforced (`trim.lua`, once a heartbeat).
    trim_at: Instant,
    /// When its recurring schedules' occurrences are next created (src/cron.rs): once a
    /// heartbeat, at once when a schedule is added, edited or resumed.
    cron_at: Instant,
}

/// The queues a running promoter serves: one unit per partition.
struct QueueSet {
    queues: Vec<Queue>,
    /// Per queue: this promoter's share of its partitions (`None`: one partition, not shared).
    shares: Vec<Option<Share>>,
    units: Vec<Unit>,
    /// Wake channel → index in `units`.
    channels: HashMap<String, usize>,
    /// Names of the queues served.
    names: HashSet<String>,
    /// This promoter's id among the promoters sharing partitioned queues.
    id: String,
}

impl QueueSet {
    fn new() -> Self {
        QueueSet {
            queues: Vec::new(),
            shares: Vec::new(),
            units: Vec::new(),
            channels: HashMap::new(),
            names: HashSet::new(),
            id: crate::id::new_id(),
        }
    }

    /// Adds `queue`, every partition due for a pass at once; a queue already present is left
    /// as it is.
    fn add(&mut self, queue: Queue, metrics: &PromoterMetrics) {
        if self.names.contains(queue.name()) {
            return;
        }
        metrics.add_queue(queue.name());
        self.names.insert(queue.name().to_owned());
        let q = self.queues.len();
        for part in queue.each_partition() {
            self.channels
                .insert(part.keys().wake.clone(), self.units.len());
            self.units.push(Unit {
                queue: q,
                part: part.index(),
                deadline: Instant::now(),
                outage: ReconnectBackoff::new(),
                trim_at: Instant::now(),
                cron_at: Instant::now(),
            });
        }
        self.shares.push((queue.partitions() > 1).then(Share::new));
        self.queues.push(queue);
    }

    /// Opens queue `name` of `ns` and adds it, unless it is already served, and listens to
    /// its partitions' wake channels.
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
                info!(
                    queue = name,
                    partitions = queue.partitions(),
                    "serving a new queue"
                );
                if let Some(listener) = wake.as_mut() {
                    for part in queue.each_partition() {
                        if let Err(e) = listener.add(&part.keys().wake).await {
                            warn!(error = %e, "cannot subscribe to a wake channel; reconnecting");
                            *wake = None;
                            break;
                        }
                    }
                }
                self.add(queue, metrics);
            }
            Err(e) => warn!(queue = name, error = %e, "cannot open a discovered queue"),
        }
    }

    fn name(&self, unit: usize) -> &str {
        self.queues[self.units[unit].queue].name()
    }

    /// Whether this promoter serves `unit` now.
    fn serves(&self, unit: &Unit) -> bool {
        self.shares[unit.queue]
            .as_ref()
            .is_none_or(|share| share.owns(unit.part))
    }

    /// Every unit due for a pass now.
    fn sweep_all(&mut self) {
        let now = Instant::now();
        for unit in &mut self.units {
            unit.deadline = now;
        }
    }

    /// The earliest deadline of a unit served, or of a share refresh; a heartbeat from now
    /// when there is none.
    fn next_deadline(&self, heartbeat: Duration) -> Instant {
        let units = self
            .units
            .iter()
            .filter(|u| self.serves(u))
            .map(|u| u.deadline);
        let shares = self.shares.iter().flatten().map(|s| s.refresh_at);
        units
            .chain(shares)
            .min()
            .unwrap_or_else(|| Instant::now() + heartbeat)
    }

    /// Refreshes this promoter's share of each partitioned queue that is due; a partition
    /// that comes to it is swept at once.
    async fn share(&mut self, heartbeat: Duration) {
        let now = Instant::now();
        for q in 0..self.queues.len() {
            let Some(share) = self.shares[q].as_mut() else {
                continue;
            };
            if share.refresh_at > now {
                continue;
            }
            if share.refresh(&self.queues[q], &self.id, heartbeat).await {
                for unit in self.units.iter_mut().filter(|u| u.queue == q) {
                    unit.deadline = unit.deadline.min(Instant::now());
                }
            }
        }
    }

    /// One pass over every unit served whose deadline has come.
    async fn promote_due(&mut self, config: &PromoterConfig, metrics: &PromoterMetrics) {
        let now = Instant::now();
        for u in 0..self.units.len() {
            if self.units[u].deadline > now || !self.serves(&self.units[u]) {
                continue;
            }
            let queue = &self.queues[self.units[u].queue];
            let part = queue.partition(self.units[u].part);
            let unit = &mut self.units[u];
            let result = promote_partition(part, config.batch).await;
            // `next_in` counts from here: the deadline does not wait for the metrics.
            let returned = Instant::now();
            match result {
                Ok(report) => {
                    unit.outage.reset();
                    metrics.record(queue.name(), Ok(&report));
                    if report.promoted > 0 || report.expired > 0 {
                        debug!(
                            queue = queue.name(),
                            partition = unit.part,
                            promoted = report.promoted,
                            expired = report.expired,
                            max_lag_ms = report.max_lag_ms,
                            "promoted"
                        );
                    }
                    if report.data_lost {
                        error!(
                            queue = queue.name(),
                            partition = unit.part,
                            "redis lost this queue's data (restarted without persistence, \
                             flushed, or failed over to a replica that had not caught up): \
                             jobs scheduled before now are gone; carrying on with new ones"
                        );
                    }
                    if report.expired > 0 {
                        info!(
                            queue = queue.name(),
                            partition = unit.part,
                            jobs = report.expired,
                            "leases expired: jobs returned to ready"
                        );
                    }
                    let sleep = report
                        .next_in
                        .map_or(config.heartbeat, |d| d.min(config.heartbeat));
                    unit.deadline = returned + sleep;
                    if unit.trim_at <= now {
                        unit.trim_at = now + config.heartbeat;
                        trim_partition(queue.partition(unit.part)).await;
                    }
                    if unit.cron_at <= now {
                        let horizon = crate::cron::horizon(config.heartbeat);
                        unit.cron_at = match queue.partition(unit.part).materialize(horizon).await {
                            Ok(m) => {
                                if m.created > 0 {
                                    debug!(
                                        queue = queue.name(),
                                        partition = unit.part,
                                        created = m.created,
                                        "created recurring schedules' occurrences"
                                    );
                                }
                                Instant::now()
                                    + m.next_in
                                        .map_or(config.heartbeat, |d| d.min(config.heartbeat))
                            }
                            Err(e) => {
                                warn!(queue = queue.name(), partition = unit.part, error = %e, "cannot create recurring schedules' occurrences; trying at the next heartbeat");
                                Instant::now() + config.heartbeat
                            }
                        };
                        unit.deadline = unit.deadline.min(unit.cron_at);
                    }
                }
                Err(e) => {
                    metrics.record(queue.name(), Err(e.to_string()));
                    let delay = unit.outage.next_delay();
                    warn!(queue = queue.name(), partition = unit.part, error = %e, retry_in = ?delay, "promotion failed");
                    unit.deadline = Instant::now() + delay;
                }
            }
        }
    }
}
