//! The worker: claims ready jobs under a lease, runs the handler, and reports the outcome.
//!
//! | step | script | move |
//! |---|---|---|
//! | claim | `claim.lua` | ready → running (lease deadline, fencing token, attempt + 1) |
//! | heartbeat | `extend.lua` | running → running (deadline pushed out) |
//! | success | `ack.lua` | running → gone (batched by one task per worker, `worker/acks.rs`) |
//! | failure, retry, snooze, hand-back | `retry.lua` | running → scheduled |
//! | last failure, kill, undecodable | `bury.lua` | running → dead |
//!
//! Every report carries the fencing token the claim minted, and the script refuses it when the
//! token is no longer the job's: a worker whose lease ran out (and whose job the promoter gave
//! to someone else) cannot complete, fail or extend that job.
//!
//! An idle worker waits in Redis with `BLMOVE ready ready LEFT LEFT`, on a connection of its
//! own: the command blocks until `ready` has an element, then puts the element straight back
//! where it was (no reordering, nothing taken), and the worker claims with `claim.lua`. So no
//! command is sent while nothing is ready, apart from one wake every [`DEFAULT_IDLE_WAIT`].
//! A claim that brings fewer jobs than it asked for found the ready lists empty, so the worker
//! goes to the idle wait after it too, not to a claim that would come back empty.
//!
//! A worker may serve several queues ([`Worker::weighted`], [`Worker::strict`]): one
//! concurrency limit, one claim loop that asks the queues in the order `lanes.rs` decides,
//! one idle wait over all of them, and every report sent to the queue its job came from.

mod acks;
mod config;
mod idle;
mod lanes;
mod policy;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use crate::backoff::Rng;
use crate::envelope::{self, Envelope};
use crate::error::{Error, Result};
use crate::job::{CancelReason, Context, Job, Outcome};
use crate::ops::extend::Extended;
use crate::queue::Queue;
use crate::reconnect::{send_again, ReconnectBackoff};
use crate::time::{delay_ms, delay_ms_up, from_unix_ms};

use self::acks::{Ack, Acks};
pub use self::config::{
    WorkerConfig, DEFAULT_CANCEL_WAIT, DEFAULT_CONCURRENCY, DEFAULT_IDLE_WAIT, DEFAULT_LEASE,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_SHUTDOWN_GRACE,
};
use self::idle::{ReadyWaiter, Watch};
use self::lanes::Lanes;
pub use self::lanes::{Share, MAX_WEIGHT};
use self::policy::{Ended, Report, Transition};
use crate::envelope::Completion;

/// Most jobs taken by one `claim.lua` call.
const MAX_CLAIM_BATCH: usize = 100;
/// Times a report (ack, retry, bury) is tried while Redis is unreachable, before the job is left
/// to its lease (it then runs again: at-least-once).
const REPORT_TRIES: u32 = 6;

/// Runs a handler over the jobs of one queue, or of several sharing one concurrency limit
/// ([`Worker::weighted`], [`Worker::strict`]). See the module docs for the protocol.
#[derive(Debug)]
pub struct Worker {
    queues: Vec<Queue>,
    share: Share,
    config: WorkerConfig,
}

/// A job as claimed, with what the worker needs to time it.
#[derive(Debug)]
struct Claimed {
    job: crate::ops::claim::ClaimedJob,
    /// The queue it was claimed from (its index among the worker's queues) and the
    /// partition, where every report about it goes.
    lane: usize,
    part: u16,
    /// The queue's completed-job retention as the claim read it, for the ack.
    keep: Arc<str>,
    /// How late the job already was when it was claimed (server clock), and when the claim's
    /// reply arrived here: together they give the start lag without comparing two clocks.
    late_at_claim: Option<Duration>,
    claimed_at: tokio::time::Instant,
    /// The server's clock at the claim (ms).
    claim_ms: u64,
    /// When the job was made (unix ms, its producer's clock), once its envelope is decoded;
    /// `None` before that, or when the envelope does not say.
    created_ms: Option<u64>,
}

/// What every job task shares.
struct Shared<H> {
    /// The queues served, in the order they were named.
    queues: Vec<Queue>,
    config: WorkerConfig,
    handler: H,
    /// Where succeeded jobs send their acks, batched.
    acks: Acks,
    rng: Mutex<Rng>,
    /// Fires when shutdown is requested: handlers may look at it.
    stopping: CancellationToken,
    /// Fires when the grace period is over: running handlers are cancelled, jobs handed back.
    abort: CancellationToken,
}

impl Worker {
    /// A worker for `queue`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero concurrency or attempt limit, or a lease or idle
    /// wait out of range.
    pub fn new(queue: Queue, config: WorkerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Worker {
            queues: vec![queue],
            share: Share::Strict,
            config,
        })
    }

    /// A worker for several queues at once, sharing one concurrency limit: while every queue
    /// has jobs, each gets a share of the jobs claimed in proportion to its weight
    /// (`[(critical, 6), (default, 3), (low, 1)]`: 60 %, 30 %, 10 %); a queue with nothing
    /// ready leaves its share to the others, and banks no credit for later. An idle worker
    /// blocks on every queue's `ready` at once (no polling). Handlers learn a job's queue from
    /// [`Context::queue`]. The order is stride scheduling (see `src/worker/lanes.rs`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for no queue, a queue named twice, a weight of 0 or over
    /// [`MAX_WEIGHT`], and whatever [`Worker::new`] refuses.
    pub fn weighted(
        queues: impl IntoIterator<Item = (Queue, u32)>,
        config: WorkerConfig,
    ) -> Result<Self> {
        let (queues, weights): (Vec<Queue>, Vec<u32>) = queues.into_iter().unzip();
        if let Some(w) = weights.iter().find(|&&w| w == 0 || w > MAX_WEIGHT) {
            return Err(Error::InvalidConfig {
                what: "queue weight",
                reason: format!("{w} is not within 1..={MAX_WEIGHT}"),
            });
        }
        Self::serving(queues, Share::Weighted(weights), config)
    }

    /// A worker for several queues in strict order: a job of a later queue is claimed only
    /// while every earlier queue has nothing ready (a flood in the first queue starves the
    /// others; [`Worker::weighted`] does not).
    ///
    /// # Errors
    /// As [`Worker::weighted`].
    pub fn strict(queues: impl IntoIterator<Item = Queue>, config: WorkerConfig) -> Result<Self> {
        Self::serving(queues.into_iter().collect(), Share::Strict, config)
    }

    fn serving(queues: Vec<Queue>, share: Share, config: WorkerConfig) -> Result<Self> {
        config.validate()?;
        if queues.is_empty() {
            return Err(Error::InvalidConfig {
                what: "worker queues",
                reason: "a worker serves at least one queue".to_owned(),
            });
        }
        for (i, q) in queues.iter().enumerate() {
            if queues[..i].iter().any(|p| same_queue(p, q)) {
                return Err(Error::InvalidConfig {
                    what: "worker queues",
                    reason: format!("queue `{}` is named twice", q.name()),
                });
            }
        }
        Ok(Worker {
            queues,
            share,
            config,
        })
    }

    /// Runs `handler` on the queue's jobs until `shutdown` completes. Then it stops claiming,
    /// lets running handlers finish within the grace period, hands back the jobs of those
    /// that do not (without using an attempt), sends the acks still queued, and returns. A job
    /// is never lost: whatever is not reported stays in `running` until its lease ends and the
    /// promoter returns it.
    ///
    /// Redis outages are waited out (capped backoff, logged), not returned as errors.
    ///
    /// # Errors
    /// None at present; the `Result` leaves room for fatal conditions.
    pub async fn run<T, H, Fut>(self, handler: H, shutdown: impl Future<Output = ()>) -> Result<()>
    where
        T: DeserializeOwned + Send + 'static,
        H: Fn(Job<T>, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let names: Vec<&str> = self.queues.iter().map(Queue::name).collect();
        let span = tracing::info_span!("worker", queue = %names.join(","));
        self.run_inner(handler, shutdown).instrument(span).await
    }

    async fn run_inner<T, H, Fut>(
        self,
        handler: H,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()>
    where
        T: DeserializeOwned + Send + 'static,
        H: Fn(Job<T>, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let rng = match self.config.rng_seed {
            Some(seed) => Rng::seeded(seed),
            None => Rng::from_entropy(),
        };
        let concurrency = self.config.concurrency;
        let grace = self.config.shutdown_grace;
        let (acks, ack_task) = Acks::start(self.queues.clone(), REPORT_TRIES);
        let mut lanes = Lanes::new(self.queues.len(), &self.share);
        let shared = Arc::new(Shared {
            acks,
            queues: self.queues,
            config: self.config,
            handler,
            rng: Mutex::new(rng),
            stopping: CancellationToken::new(),
            abort: CancellationToken::new(),
        });
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut tasks = JoinSet::new();
        let mut waiter = ReadyWaiter::new(&shared.queues, shared.config.idle_wait);
        let mut outage = ReconnectBackoff::new();
        // Per queue, where its claims stand: the partition a claim starts from (moved on by
        // one every claim: fair to each), and what each partition's idle wait blocks on (the
        // gate of a paused one, not its ready list, which may hold jobs it must not take).
        let mut stands: Vec<Stand> = shared.queues.iter().map(Stand::new).collect();
        tokio::pin!(shutdown);
        info!(
            concurrency,
            queues = shared.queues.len(),
            partitions = shared
                .queues
                .iter()
                .map(|q| usize::from(q.partitions()))
                .sum::<usize>(),
            "worker started"
        );

        loop {
            let permit = tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    log_task_end(done);
                    continue;
                }
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break, // the semaphore is never closed
                },
            };
            let want = (1 + slots.available_permits()).min(MAX_CLAIM_BATCH);
            match claim_lanes(
                &shared.queues,
                &mut lanes,
                want,
                &shared.config,
                &mut stands,
            )
            .await
            {
                Ok(jobs) if jobs.is_empty() => {
                    drop(permit);
                    outage.reset();
                    if idle(&mut waiter, &stands, shutdown.as_mut()).await {
                        break;
                    }
                }
                Ok(jobs) => {
                    outage.reset();
                    // Fewer jobs than asked for: the ready lists are empty now, and a claim
                    // at once would most likely come back empty. The idle wait instead costs
                    // nothing until a job is ready, and returns at once if one already is.
                    let drained = jobs.len() < want;
                    let mut permit = Some(permit);
                    for job in jobs {
                        let slot = match permit.take() {
                            Some(p) => p,
                            // Only this loop takes permits, so the ones counted above are free.
                            None => match slots.clone().acquire_owned().await {
                                Ok(p) => p,
                                Err(_) => break,
                            },
                        };
                        let shared = shared.clone();
                        let span =
                            tracing::info_span!("job", id = %job.job.id, attempt = job.job.attempt);
                        tasks.spawn(
                            async move {
                                run_job(&shared, job).await;
                                drop(slot);
                            }
                            .instrument(span),
                        );
                    }
                    if drained {
                        // Let the jobs just spawned start (the last one waits in this thread's
                        // next-task slot) before the idle wait is armed, not after.
                        tokio::task::yield_now().await;
                        if idle(&mut waiter, &stands, shutdown.as_mut()).await {
                            break;
                        }
                    }
                }
                Err(e) => {
                    drop(permit);
                    let delay = outage.next_delay();
                    warn!(error = %e, retry_in = ?delay, "cannot claim jobs; redis unavailable?");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }

        // Reap tasks that already finished, so the count below is of running jobs only.
        while let Some(done) = tasks.try_join_next() {
            log_task_end(done);
        }
        info!(
            running = tasks.len(),
            ?grace,
            "worker stopping: no new jobs are taken"
        );
        shared.stopping.cancel();
        let drained = tokio::time::timeout(grace, async {
            while let Some(done) = tasks.join_next().await {
                log_task_end(done);
            }
        })
        .await;
        if drained.is_err() {
            warn!(
                running = tasks.len(),
                "grace period over: cancelling handlers and handing their jobs back"
            );
            shared.abort.cancel();
            while let Some(done) = tasks.join_next().await {
                log_task_end(done);
            }
        }
        // Every job task has ended, so this is the last reference and with it goes the last
        // ack sender: the batching task sends what is queued and ends.
        match Arc::try_unwrap(shared) {
            Ok(shared) => {
                drop(shared);
                ack_task.close().await;
            }
            Err(_) => warn!("job state still shared at shutdown; not waiting for queued acks"),
        }
        info!("worker stopped");
        Ok(())
    }
}

/// The idle wait: until a list the stands watch has an element, or the idle wait ends. True
/// when `shutdown` came first.
async fn idle(
    waiter: &mut ReadyWaiter,
    stands: &[Stand],
    shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> bool {
    let watch: Vec<Watch> = stands
        .iter()
        .flat_map(|s| s.watch.iter().copied())
        .collect();
    tokio::select! {
        () = shutdown => true,
        () = waiter.wait(&watch) => false,
    }
}

fn log_task_end(done: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        // Job tasks catch handler panics themselves; this is a bug in punctual.
        error!(error = %e, "job task ended abnormally");
    }
}

/// Whether two handles name the same queue (same prefix and name).
fn same_queue(a: &Queue, b: &Queue) -> bool {
    a.name() == b.name() && a.namespace().prefix() == b.namespace().prefix()
}

/// Where one queue's claims stand.
#[derive(Debug)]
struct Stand {
    /// The partition the next claim starts from.
    cursor: u16,
    /// Per partition, what its idle wait blocks on, as its last claim found it: `gate`
    /// while paused, `bell` when the queue uses priorities, else `ready`.
    watch: Vec<Watch>,
}

impl Stand {
    fn new(queue: &Queue) -> Self {
        Stand {
            cursor: 0,
            watch: vec![Watch::Ready; usize::from(queue.partitions())],
        }
    }
}

/// Claims up to `n` ready jobs from the worker's queues, asking them in the order `lanes`
/// gives and going on to the next while fewer than `n` came back. A queue that fails is left
/// for the next claim when others gave jobs.
async fn claim_lanes(
    queues: &[Queue],
    lanes: &mut Lanes,
    n: usize,
    config: &WorkerConfig,
    stands: &mut [Stand],
) -> Result<Vec<Claimed>> {
    let mut claimed = Vec::new();
    let mut given = vec![None; queues.len()];
    let mut failure = None;
    for lane in lanes.order() {
        let (Some(queue), Some(stand)) = (queues.get(lane), stands.get_mut(lane)) else {
            continue;
        };
        match claim(queue, lane, n - claimed.len(), config, stand).await {
            Ok(jobs) => {
                given[lane] = Some(jobs.len());
                claimed.extend(jobs);
            }
            Err(e) => failure = Some(e),
        }
        if claimed.len() >= n {
            break;
        }
    }
    lanes.served(&given);
    match failure {
        Some(e) if claimed.is_empty() => Err(e),
        Some(e) => {
            warn!(error = %e, "a queue could not be claimed from; trying it again next time");
            Ok(claimed)
        }
        None => Ok(claimed),
    }
}

/// Claims up to `n` ready jobs of `queue` (the worker's queue number `lane`): one `claim.lua`
/// call per partition, starting at the stand's cursor (moved on by one for the next claim)
/// and going on while fewer than `n` came back. A partition that fails is left for the next
/// claim when others gave jobs. Records, per partition, what its idle wait should block on.
async fn claim(
    queue: &Queue,
    lane: usize,
    n: usize,
    config: &WorkerConfig,
    stand: &mut Stand,
) -> Result<Vec<Claimed>> {
    let lease_ms = delay_ms(config.lease).unwrap_or(u64::MAX);
    let k = queue.partitions();
    let start = stand.cursor;
    stand.cursor = (start + 1) % k;
    let watch = &mut stand.watch;
    let mut claimed = Vec::new();
    let mut failure = None;
    for step in 0..k {
        let part = queue.partition((start + step) % k);
        let claim =
            match crate::ops::claim::call(&part, n - claimed.len(), lease_ms, config.due_times)
                .await
            {
                Ok(claim) => claim,
                Err(e) => {
                    failure = Some(e);
                    continue;
                }
            };
        let index = usize::from(part.index());
        let now_watch = match (claim.paused, claim.ranked) {
            (true, _) => Watch::Gate,
            (false, true) => Watch::Bell,
            (false, false) => Watch::Ready,
        };
        if let Some(slot) = watch.get_mut(index) {
            if (*slot == Watch::Gate) != claim.paused {
                info!(
                    partition = part.index(),
                    paused = claim.paused,
                    "queue pause state seen"
                );
            }
            *slot = now_watch;
        }
        let claimed_at = tokio::time::Instant::now();
        let keep: Arc<str> = Arc::from(claim.keep.as_str());
        claimed.extend(claim.jobs.into_iter().map(|job| {
            Claimed {
                late_at_claim: job
                    .due_ms
                    .map(|due| Duration::from_millis(claim.now_ms.saturating_sub(due))),
                claimed_at,
                claim_ms: claim.now_ms,
                created_ms: None,
                lane,
                part: part.index(),
                keep: keep.clone(),
                job,
            }
        }));
        if claimed.len() >= n {
            break;
        }
    }
    match failure {
        Some(e) if claimed.is_empty() => Err(e),
        Some(e) => {
            warn!(error = %e, "a partition could not be claimed from; trying it again next time");
            Ok(claimed)
        }
        None => Ok(claimed),
    }
}

impl<H> Shared<H> {
    /// The queue `claimed` came from.
    fn queue(&self, claimed: &Claimed) -> &Queue {
        // Claims only make lanes that index `queues`.
        &self.queues[claimed.lane.min(self.queues.len() - 1)]
    }
}

/// Runs one claimed job to its outcome and reports it.
async fn run_job<T, H, Fut>(shared: &Shared<H>, mut claimed: Claimed)
where
    T: DeserializeOwned + Send + 'static,
    H: Fn(Job<T>, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let decoded = Envelope::decode(&claimed.job.envelope).and_then(|envelope| {
        let data = envelope::decode_data::<T>(&envelope.data)?;
        Ok((envelope, data))
    });
    let (envelope, data) = match decoded {
        Ok((envelope, data)) => {
            claimed.created_ms = envelope.created_ms(&claimed.job.id);
            (envelope, data)
        }
        Err(reason) => {
            warn!(%reason, "undecodable job: moving it to the dead set");
            let max = shared.config.max_attempts;
            finish(shared, claimed, Ended::Undecodable(reason), max, None).await;
            return;
        }
    };
    let max_attempts = envelope
        .max_attempts
        .unwrap_or(shared.config.max_attempts)
        .max(1);
    if claimed.job.attempt > max_attempts {
        // Its earlier attempts all ended in lost leases (crashed workers); the last one counted.
        finish(shared, claimed, Ended::Exhausted, max_attempts, None).await;
        return;
    }

    let job = Job {
        id: claimed.job.id.clone(),
        kind: envelope.kind.clone(),
        data,
        attempt: claimed.job.attempt,
        max_attempts,
        created_at: from_unix_ms(claimed.created_ms.unwrap_or(0)),
        due_at: claimed.job.due_ms.map(from_unix_ms),
    };
    // Fires when this attempt is cancelled: by the end of the grace period (a child of
    // `abort`), a lost lease, the timeout, or a cancellation asked (cancelled below).
    let cancel = shared.abort.child_token();
    let reason = Arc::new(std::sync::OnceLock::new());
    let timeout = envelope
        .timeout_ms
        .map(Duration::from_millis)
        .or(shared.config.timeout);
    let started = tokio::time::Instant::now();
    let deadline = timeout.and_then(|t| started.checked_add(t));
    let queue = shared.queue(&claimed);
    let ctx = Context {
        queue: queue.name().to_owned(),
        shutdown: shared.stopping.clone(),
        cancel: cancel.clone(),
        reason: reason.clone(),
        deadline: deadline.map(tokio::time::Instant::into_std),
        timeout,
        start_lag: claimed
            .late_at_claim
            .map(|late| late + claimed.claimed_at.elapsed()),
    };
    // Stops the attempt for `why`: the handler hears it through its context, gets the cancel
    // wait to return, and is dropped.
    let stop = |why: CancelReason| {
        let _ = reason.set(why);
        cancel.cancel();
    };
    let mut handle = tokio::spawn((shared.handler)(job, ctx));
    let beat = shared.config.lease / 3;
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let cancel_wait = shared.config.cancel_wait;
    let out_of_time = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(out_of_time);
    let outcome = loop {
        tokio::select! {
            joined = &mut handle => break joined,
            _ = heartbeat.tick() => match extend(shared, &claimed).await {
                Extended::Held => {}
                Extended::Lost => {
                    // Someone else may run the job now: stop this attempt. Its report would
                    // be refused, so there is nothing to send.
                    stop(CancelReason::LeaseLost);
                    end_cancelled(handle, cancel_wait).await;
                    warn!("lease lost: the handler was cancelled; the job runs again when it is claimed");
                    return;
                }
                Extended::CancelAsked => {
                    stop(CancelReason::Cancelled);
                    end_cancelled(handle, cancel_wait).await;
                    info!("the job's cancellation was asked: its handler was stopped");
                    finish(shared, claimed, Ended::Cancelled, max_attempts, None).await;
                    return;
                }
            },
            () = &mut out_of_time => {
                stop(CancelReason::TimedOut);
                let returned = end_cancelled(handle, cancel_wait).await;
                let limit = timeout.unwrap_or_default();
                warn!(?limit, "the attempt timed out: its handler was stopped");
                // A handler that stopped what it started says how in its failure.
                let message = match returned {
                    Some(Outcome::Fail(m) | Outcome::Kill(m) | Outcome::RetryAfter(_, m)) => m,
                    _ => format!(
                        "timed out after {}: the handler was stopped",
                        humantime::format_duration(limit)
                    ),
                };
                let backoff = envelope.backoff.as_ref();
                finish(shared, claimed, Ended::TimedOut(message), max_attempts, backoff).await;
                return;
            }
            () = cancel.cancelled() => {
                end_cancelled(handle, cancel_wait).await;
                info!("handler cancelled at shutdown: handing the job back");
                finish(shared, claimed, Ended::HandedBack, max_attempts, None).await;
                return;
            }
        }
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            Outcome::Fail(format!("handler panicked: {message}"))
        }
        Err(e) => Outcome::Fail(format!("handler task failed: {e}")),
    };

    let backoff = envelope.backoff.as_ref();
    finish(shared, claimed, Ended::Ran(outcome), max_attempts, backoff).await;
}

/// Reports where the job goes after `ended` ([`policy::transition`]): acks are batched,
/// the rest sent as they come. `spec` is the job's own backoff, if it has one.
async fn finish<H>(
    shared: &Shared<H>,
    claimed: Claimed,
    ended: Ended,
    max_attempts: u32,
    spec: Option<&crate::backoff::BackoffSpec>,
) {
    let backoff = |attempt| {
        let mut rng = shared.rng.lock().unwrap_or_else(|p| p.into_inner());
        match spec {
            Some(spec) => spec.delay(attempt, &mut rng),
            None => shared.config.backoff.delay(attempt, &mut rng),
        }
    };
    match policy::transition(ended, claimed.job.attempt, max_attempts, backoff) {
        Transition::Ack(result) => {
            let record = match claimed.keep.is_empty() {
                true => Vec::new(),
                false => completion_record(shared, &claimed, result),
            };
            let window = shared.queue(&claimed).config().dedup_window();
            let resendable = resend_possible(&claimed, window);
            shared
                .acks
                .send(Ack {
                    id: claimed.job.id,
                    token: claimed.job.token,
                    lane: claimed.lane,
                    part: claimed.part,
                    keep: claimed.keep,
                    record,
                    resendable,
                })
                .await
        }
        Transition::Report(next) => report(shared, &claimed, next).await,
    }
}

/// How much later than a job's making its ack must come for no schedule call of it to be
/// still on its way, beyond the dedup window itself: room for the producer's clock to be
/// behind the server's.
const CLOCK_MARGIN: Duration = Duration::from_secs(60);

/// Whether a schedule call of `claimed`'s job could still arrive after its ack, so that its id
/// must stay taken for the dedup `window` (ack.lua's `done` record): true unless the job was
/// made more than the window and [`CLOCK_MARGIN`] before now, or when its making time is
/// unknown. `schedule` sends a call again only within seconds of the first sending, so a
/// call that late is not a resend (docs/guarantees.md, "Dedup").
fn resend_possible(claimed: &Claimed, window: Duration) -> bool {
    let Some(created) = claimed.created_ms else {
        return true;
    };
    let elapsed = u64::try_from(claimed.claimed_at.elapsed().as_millis()).unwrap_or(u64::MAX);
    let now = claimed.claim_ms.saturating_add(elapsed);
    let horizon = u64::try_from((window + CLOCK_MARGIN).as_millis()).unwrap_or(u64::MAX);
    now < created.saturating_add(horizon)
}

/// The record kept with a completed job: its run time and result (a result over the queue's
/// payload limit is not kept, and the record says so).
fn completion_record<H>(shared: &Shared<H>, claimed: &Claimed, result: Option<Vec<u8>>) -> Vec<u8> {
    let limit = shared.queue(claimed).config().max_payload_bytes;
    let run_ms = u64::try_from(claimed.claimed_at.elapsed().as_millis()).unwrap_or(u64::MAX);
    let record = match result {
        Some(result) if result.len() > limit => {
            warn!(
                size = result.len(),
                limit, "the job's result is over the payload limit: not kept"
            );
            Completion {
                run_ms,
                result: None,
                note: Some(format!(
                    "a result of {} bytes was not kept: the limit is {limit}",
                    result.len()
                )),
            }
        }
        result => Completion {
            run_ms,
            result,
            note: None,
        },
    };
    record.encode()
}

/// Gives a cancelled handler `wait` to return (it was told through [`Context::cancelled`]),
/// then drops it. What it returned, if it did.
async fn end_cancelled(
    mut handle: tokio::task::JoinHandle<Outcome>,
    wait: Duration,
) -> Option<Outcome> {
    match tokio::time::timeout(wait, &mut handle).await {
        Ok(returned) => returned.ok(),
        Err(_) => {
            handle.abort();
            let _ = handle.await;
            None
        }
    }
}

/// Sends `report`, trying again while Redis is unreachable. If it cannot be sent, the job stays
/// in `running` and returns when its lease ends: never lost, possibly run again.
async fn report<H>(shared: &Shared<H>, claimed: &Claimed, report: Report) {
    let (result, sent) = send_again("report", REPORT_TRIES, Error::is_connection_error, || {
        send_report(shared.queue(claimed), claimed, &report)
    })
    .await;
    match result {
        Ok(true) => debug!(?report, "reported"),
        Ok(false) if sent > 1 => debug!(
            ?report,
            "report not applied when sent again: applied the first time, or the lease is gone"
        ),
        Ok(false) => warn!(
            ?report,
            "report refused: the job's lease is gone (it ran out and the job went back to ready, or redis lost its data)"
        ),
        Err(e) => error!(error = %e, "giving up on reporting; the job returns when its lease ends"),
    }
}

/// One report script call; `Ok(false)` when the lease is no longer this worker's.
async fn send_report(queue: &Queue, claimed: &Claimed, report: &Report) -> Result<bool> {
    let (id, token) = (claimed.job.id.as_str(), claimed.job.token.as_str());
    let queue = &queue.partition(claimed.part);
    match report {
        Report::Retry {
            delay,
            counts,
            error,
        } => {
            // Rounded up: a retry or snooze never comes back before the delay asked for.
            let delay = delay_ms_up(*delay).unwrap_or(crate::MAX_DELAY.as_millis() as u64);
            let error = error.as_ref().map(|(r, m)| (*r, m.as_str()));
            crate::ops::retry::call(queue, id, token, delay, *counts, error).await
        }
        Report::Bury(reason, message) => {
            crate::ops::bury::call(queue, id, token, *reason, message).await
        }
    }
}

/// Pushes the job's lease out by one lease length, and hears whether its cancellation was
/// asked. A failure to reach Redis counts as held: the next heartbeat tries again.
async fn extend<H>(shared: &Shared<H>, claimed: &Claimed) -> Extended {
    let lease_ms = delay_ms(shared.config.lease).unwrap_or(u64::MAX);
    let (id, token) = (claimed.job.id.as_str(), claimed.job.token.as_str());
    let part = shared.queue(claimed).partition(claimed.part);
    match crate::ops::extend::call(&part, id, token, lease_ms).await {
        Ok(Extended::Lost) => {
            warn!("lease lost while the handler runs: its outcome will be refused");
            Extended::Lost
        }
        Ok(extended) => {
            debug!(?extended, "lease extended");
            extended
        }
        Err(e) => {
            warn!(error = %e, "cannot extend the lease; will try at the next heartbeat");
            Extended::Held
        }
    }
}
