//! The producer and inspection side: connect to a queue, schedule jobs, look them up, cancel and
//! reschedule them. Every write here is one Lua script (`schedule.lua`, `cancel.lua`,
//! `reschedule.lua`); reads are one `MULTI` transaction, so they see one consistent state.

use futures_util::StreamExt;
use std::sync::Arc;
use std::time::SystemTime;

use redis::Value;

use crate::config::QueueConfig;
use crate::conn::Conn;
use crate::error::{is_transient, Error, Result};
use crate::keys::Keys;
use crate::namespace::Namespace;
use crate::new_job::{NewJob, Prepared, Scheduled, When};
use crate::ops::{self, schedule::Written};
use crate::reconnect::send_again;
use crate::time::from_unix_ms;
use crate::vocab::{JobState, ScheduleOutcome};

/// Jobs per `schedule.lua` call in [`Queue::schedule_many`]: keeps each script short (Redis
/// runs one script at a time) and its `ARGV` far below Lua's limits.
const SCHEDULE_BATCH: usize = 256;
/// Script calls per pipeline round trip in [`Queue::schedule_many`].
const PIPELINE_CALLS: usize = 32;
/// Pipelines in flight at once in [`Queue::schedule_many`].
const ROUNDS_IN_FLIGHT: usize = 2;
/// Times one pipeline is sent while the connection fails, before the error is returned.
const SEND_TRIES: u32 = 3;

/// What [`Queue::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cancelled {
    /// The job was removed from this state and its data deleted.
    Removed(JobState),
    /// The job is running and its cancellation is asked; it had not ended when the wait ran
    /// out (or there was no wait). Its worker stops it at its next lease extension.
    Requested,
    /// The job was running and its worker stopped it: it is in the dead set with reason
    /// `cancelled`.
    Stopped,
    /// The job was running and ended on its own (completed, or failed for good) before its
    /// worker saw the request: nothing was cancelled.
    Finished,
    /// There is no such job.
    NotFound,
}

/// How a job [`Queue::wait`] waited for ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Waited {
    /// It completed: its record, with its result, when the queue keeps completed jobs
    /// ([`Queue::set_completed_retention`]); `None` without a retention (it was deleted).
    Completed(Option<Box<crate::JobInfo>>),
    /// It is in the dead set (failed for good, expired, or cancelled while it ran): its
    /// record's last error says why.
    Dead(Box<crate::JobInfo>),
    /// It was deleted before it completed: cancelled while it waited, or expired and dropped.
    Deleted,
    /// It ended and was deleted, and how is unknown (the notification was missed: a
    /// connection dropped). Without a retention a completed job looks like this too.
    Gone,
    /// There was no such job when the wait began (never scheduled, or ended and deleted).
    NotFound,
    /// It had not ended when the timeout ran out: where it is now.
    Pending(Box<crate::JobInfo>),
}

/// What [`Queue::reschedule`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rescheduled {
    /// The job moved from this state to scheduled, due at the given time (server clock). A job
    /// taken from the dead set starts again with zero attempts.
    Moved {
        /// The state it was in.
        from: JobState,
        /// Its new due time.
        due_at: SystemTime,
    },
    /// The job is running; nothing changed.
    Running,
    /// There is no such job.
    NotFound,
}

/// A handle on one queue: cheap to clone, safe to share between tasks. Handles made from one
/// [`Namespace`] share its connection.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    ns: Namespace,
    name: String,
    /// The queue's own keys: for one partition, all of them; for several, only `meta`
    /// (the queue's record) is used.
    root: Keys,
    /// The keys of each partition (one entry, `root`, for a queue of one partition).
    parts: Vec<Keys>,
}

/// One partition of a queue: a full set of keys under one hash tag, reached through the
/// queue's connection. Every script call goes to exactly one partition; the bindings in
/// `ops` take one.
#[derive(Clone, Copy)]
pub(crate) struct Partition<'a> {
    queue: &'a Queue,
    index: u16,
}

impl<'a> Partition<'a> {
    pub(crate) fn keys(&self) -> &'a Keys {
        &self.queue.inner.parts[usize::from(self.index)]
    }

    /// Its number, 0-based.
    pub(crate) fn index(&self) -> u16 {
        self.index
    }

    pub(crate) fn queue(&self) -> &'a Queue {
        self.queue
    }

    pub(crate) fn conn(&self) -> Conn {
        self.queue.conn()
    }

    pub(crate) fn redis_error(&self, op: &'static str, source: redis::RedisError) -> Error {
        self.queue.redis_error(op, source)
    }

    pub(crate) fn unexpected(&self, op: &'static str, detail: impl Into<String>) -> Error {
        self.queue.unexpected(op, detail)
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.inner.name)
            .field("prefix", &self.inner.ns.prefix())
            .field("url", &self.inner.ns.url())
            .finish()
    }
}

impl Queue {
    /// Connects to queue `name` on the Redis at `url`, with default settings.
    ///
    /// # Errors
    /// [`Error::InvalidQueueName`], [`Error::InvalidUrl`], [`Error::Redis`] (unreachable,
    /// refused credentials), [`Error::IncompatibleFormat`].
    pub async fn connect(url: &str, name: &str) -> Result<Queue> {
        Queue::connect_with(url, name, QueueConfig::default()).await
    }

    /// Connects to queue `name` on the Redis at `url` with `config`. To open many queues on
    /// one connection, use [`Namespace`].
    ///
    /// # Errors
    /// As [`Queue::connect`].
    pub async fn connect_with(url: &str, name: &str, config: QueueConfig) -> Result<Queue> {
        // Bad input is refused before any connection is tried.
        Keys::new(config.prefix(), name)?;
        Namespace::connect_for(url, config, name)
            .await?
            .queue(name)
            .await
    }

    /// A handle on another queue on the same Redis, sharing this one's connection and settings.
    ///
    /// # Errors
    /// As [`Namespace::queue`].
    pub async fn sibling(&self, name: &str) -> Result<Queue> {
        self.inner.ns.queue(name).await
    }

    /// A handle on `name` with `partitions` partitions (at least 1), made by the namespace
    /// side (`open.rs`), which checks the queue's record first.
    pub(crate) fn from_parts(ns: Namespace, name: &str, partitions: u16) -> Result<Queue> {
        let root = Keys::new(ns.prefix(), name)?;
        let parts = if partitions <= 1 {
            vec![root.clone()]
        } else {
            (0..partitions)
                .map(|i| Keys::partition(ns.prefix(), name, i, partitions))
                .collect::<Result<_>>()?
        };
        Ok(Queue {
            inner: Arc::new(Inner {
                ns,
                name: name.to_owned(),
                root,
                parts,
            }),
        })
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The Redis URL, password redacted.
    pub fn url(&self) -> &str {
        self.inner.ns.url()
    }

    /// The settings in force.
    pub fn config(&self) -> &QueueConfig {
        self.inner.ns.config()
    }

    /// The namespace (Redis and prefix) the queue belongs to.
    pub fn namespace(&self) -> &Namespace {
        &self.inner.ns
    }

    /// How many partitions the queue has (1: not partitioned).
    pub fn partitions(&self) -> u16 {
        self.inner.parts.len() as u16
    }

    /// The queue's own keys (its record, `meta`; every key when it has one partition).
    pub(crate) fn root_keys(&self) -> &Keys {
        &self.inner.root
    }

    /// Partition `index` (taken modulo the partition count).
    pub(crate) fn partition(&self, index: u16) -> Partition<'_> {
        Partition {
            queue: self,
            index: index % self.partitions(),
        }
    }

    /// The partition that holds (or will hold) job `id`: [`crate::keys::partition_of`].
    pub(crate) fn partition_of(&self, id: &str) -> Partition<'_> {
        self.partition(crate::keys::partition_of(id, self.partitions()))
    }

    /// `ids` grouped by partition (partitions without ids left out), each group in the
    /// order given.
    pub(crate) fn by_partition(&self, ids: &[String]) -> Vec<(Partition<'_>, Vec<String>)> {
        let mut groups: Vec<Vec<String>> = vec![Vec::new(); usize::from(self.partitions())];
        for id in ids {
            groups[usize::from(self.partition_of(id).index())].push(id.clone());
        }
        groups
            .into_iter()
            .enumerate()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(i, ids)| (self.partition(i as u16), ids))
            .collect()
    }

    /// Every partition, in order.
    pub(crate) fn each_partition(&self) -> impl Iterator<Item = Partition<'_>> {
        (0..self.partitions()).map(|i| self.partition(i))
    }

    /// A clone of the namespace's shared connection.
    pub(crate) fn conn(&self) -> Conn {
        self.inner.ns.conn()
    }

    pub(crate) fn redis_error(&self, op: &'static str, source: redis::RedisError) -> Error {
        Error::from_redis(&self.inner.name, op, source)
    }

    pub(crate) fn unexpected(&self, op: &'static str, detail: impl Into<String>) -> Error {
        Error::UnexpectedReply {
            queue: self.inner.name.clone(),
            op,
            detail: detail.into(),
        }
    }

    /// Schedules one job. Returns its id, and whether it was created (false: a job with the
    /// caller's id already existed, and nothing was written).
    ///
    /// # Errors
    /// [`Error::InvalidJobId`], [`Error::DelayOverflow`], [`Error::PayloadTooLarge`],
    /// [`Error::Encode`], [`Error::InvalidConfig`] (a max attempts of 0) and
    /// [`Error::InThePast`] (nothing written);
    /// [`Error::OutOfMemory`] (nothing written); [`Error::Redis`] when Redis fails.
    ///
    /// A call whose connection drops or times out is sent again (3 tries in all, with a
    /// short backoff): that is safe, because an id that exists is never written twice. When
    /// every try fails the job may or may not have been written: schedule again with the same
    /// id to find out. For a caller-chosen id, a call that had to be sent again may report
    /// `created: false` for the job its own first sending created.
    pub async fn schedule(&self, job: NewJob) -> Result<Scheduled> {
        let mut results = self.schedule_many(std::iter::once(job)).await?;
        match results.pop() {
            Some(result) => result,
            None => Err(self.unexpected("schedule", "no result for the job")),
        }
    }

    /// Schedules many jobs, each with its own time, in few round trips (256 jobs per script
    /// call, 32 calls per pipeline). Every job is validated before anything is sent, so a bad
    /// job fails the whole call and writes nothing. The result has one entry per job, in order;
    /// an entry is an error only for [`Error::InThePast`].
    ///
    /// # Errors
    /// As [`Queue::schedule`].
    pub async fn schedule_many(
        &self,
        jobs: impl IntoIterator<Item = NewJob>,
    ) -> Result<Vec<Result<Scheduled>>> {
        let prepared = jobs
            .into_iter()
            .map(|job| self.prepare(job))
            .collect::<Result<Vec<_>>>()?;
        let mut results = self.send(&prepared).await?;
        // All or an error: a job Redis refused (or may not have received) fails the call.
        if let Some(i) = results
            .iter()
            .position(|r| matches!(r, Err(e) if !matches!(e, Error::InThePast { .. })))
        {
            // The entry at `i` is an error: `?` returns it.
            results.swap_remove(i)?;
        }
        Ok(results)
    }

    /// Schedules many jobs like [`Queue::schedule_many`], but a job that fails validation does
    /// not stop the others: it gets its error in its entry and nothing is written for it,
    /// while the valid jobs are sent. For bulk imports where one bad record must not hold
    /// up the rest.
    ///
    /// Redis failures are per job too, so a caller knows exactly what was written: a job in
    /// a script call that Redis refused ([`Error::OutOfMemory`], ...) has that error and
    /// nothing written for it; a job whose call was lost with the connection (after 3 tries)
    /// has [`Error::Redis`] and may or may not have been written (send the same id again to
    /// find out, idempotently).
    ///
    /// # Errors
    /// [`Error::UnexpectedReply`] only: a reply no script of punctual sends.
    pub async fn schedule_each(
        &self,
        jobs: impl IntoIterator<Item = NewJob>,
    ) -> Result<Vec<Result<Scheduled>>> {
        let mut valid = Vec::new();
        // One slot per job, in order: its validation error, or `None` for a job being sent.
        let mut slots: Vec<Option<Error>> = Vec::new();
        for job in jobs {
            match self.prepare(job) {
                Ok(prepared) => {
                    valid.push(prepared);
                    slots.push(None);
                }
                Err(e) => slots.push(Some(e)),
            }
        }
        let mut sent = self.send(&valid).await?.into_iter();
        slots
            .into_iter()
            .map(|slot| match slot {
                Some(e) => Ok(Err(e)),
                None => sent
                    .next()
                    .ok_or_else(|| self.unexpected("schedule", "missing result")),
            })
            .collect()
    }

    /// Sends prepared jobs, each to its partition (all partitions at once); one result per
    /// job, in order.
    async fn send(&self, prepared: &[Prepared]) -> Result<Vec<Result<Scheduled>>> {
        if self.partitions() == 1 {
            let all: Vec<&Prepared> = prepared.iter().collect();
            return self.send_to(self.partition(0), &all).await;
        }
        // Jobs by partition, remembering where each came from.
        let mut groups: Vec<(Vec<usize>, Vec<&Prepared>)> =
            vec![(Vec::new(), Vec::new()); usize::from(self.partitions())];
        for (i, job) in prepared.iter().enumerate() {
            let part = usize::from(self.partition_of(&job.id).index());
            groups[part].0.push(i);
            groups[part].1.push(job);
        }
        let sends = groups
            .iter()
            .enumerate()
            .map(|(part, (_, jobs))| async move {
                if jobs.is_empty() {
                    return Ok(Vec::new());
                }
                self.send_to(self.partition(part as u16), jobs).await
            });
        let replies = futures_util::future::join_all(sends).await;
        let mut results: Vec<Option<Result<Scheduled>>> = prepared.iter().map(|_| None).collect();
        for ((positions, _), replies) in groups.into_iter().zip(replies) {
            for (i, result) in positions.into_iter().zip(replies?) {
                results[i] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| self.unexpected("schedule", "missing result")))
            .collect()
    }

    /// Sends prepared jobs to one partition: 256 per `schedule.lua` call, 32 calls per pipeline, and up to
    /// [`ROUNDS_IN_FLIGHT`] pipelines at once, so that Redis runs one while the next is built.
    async fn send_to(
        &self,
        part: Partition<'_>,
        prepared: &[&Prepared],
    ) -> Result<Vec<Result<Scheduled>>> {
        let keys = part.keys();
        let tolerance = self.config().tolerance_ms();
        let wait = self.config().durability();
        let mut results = Vec::with_capacity(prepared.len());
        // Rounds are made from their index, not from a borrowed chunk: a closure over a
        // reference argument would make `schedule`'s future one that `tokio::spawn` refuses.
        // Replies come back in order and are matched to their rounds below.
        const ROUND: usize = SCHEDULE_BATCH * PIPELINE_CALLS;
        let rounds = (0..prepared.len().div_ceil(ROUND)).map(|i| {
            let round = &prepared[i * ROUND..prepared.len().min((i + 1) * ROUND)];
            let calls: Vec<redis::Cmd> = round
                .chunks(SCHEDULE_BATCH)
                .map(|batch| {
                    let jobs = batch.iter().map(|j| {
                        (
                            j.id.as_str(),
                            j.mode,
                            j.ms,
                            j.envelope.as_slice(),
                            j.options.as_str(),
                        )
                    });
                    ops::schedule::command(keys, tolerance, jobs)
                })
                .collect();
            let conn = self.conn();
            async move {
                // A dropped connection or a timeout leaves it unknown whether the scripts ran;
                // sending them again is safe (an id that exists is not written twice).
                let calls = &calls;
                let (result, sent) = send_again("schedule", SEND_TRIES, is_transient, || {
                    let mut conn = conn.clone();
                    async move {
                        ops::schedule::BINDING
                            .pipeline(&mut conn, calls, wait)
                            .await
                    }
                })
                .await;
                (result, sent > 1)
            }
        });
        let mut replies = futures_util::stream::iter(rounds).buffered(ROUNDS_IN_FLIGHT);
        let mut sent = prepared.chunks(ROUND);
        while let Some((replies, resent)) = replies.next().await {
            let Some(round) = sent.next() else {
                return Err(self.unexpected("schedule", "more replies than rounds"));
            };
            let (replies, confirmed) = match replies {
                Ok(replies) => replies,
                Err(e) => {
                    // Every try failed: whether these jobs were written is unknown.
                    let e = self.redis_error("schedule", e);
                    results.extend(round.iter().map(|_| Err(e.clone_for_job())));
                    continue;
                }
            };
            // Durability on and too few replicas confirmed: the round is written on the
            // primary but not acknowledged.
            if let Err(e) = ops::check_replicated(&part, "schedule", wait, confirmed) {
                results.extend(round.iter().map(|_| Err(e.clone_for_job())));
                continue;
            }
            for (batch, reply) in round.chunks(SCHEDULE_BATCH).zip(replies) {
                if let Value::ServerError(refused) = reply {
                    // This call wrote nothing (a script writes all or nothing): `OOM`, ...
                    let e = self.redis_error("schedule", refused.into());
                    results.extend(batch.iter().map(|_| Err(e.clone_for_job())));
                    continue;
                }
                let (now, written) =
                    ops::schedule::parse(&part, reply, batch.iter().map(|j| (j.mode, j.ms)))?;
                for (job, (written, due)) in batch.iter().zip(written) {
                    results.push(match written {
                        Written::Outcome(outcome) => {
                            // A generated id is this call's alone: when the call was sent
                            // again, "rejected" means the first sending created it.
                            let outcome = if resent
                                && job.generated
                                && outcome == ScheduleOutcome::Rejected
                            {
                                ScheduleOutcome::Created
                            } else {
                                outcome
                            };
                            Ok(Scheduled {
                                id: job.id.clone(),
                                created: outcome == ScheduleOutcome::Created,
                                outcome,
                                due_at: due.map(from_unix_ms),
                            })
                        }
                        Written::Past => Err(Error::InThePast {
                            queue: self.inner.name.clone(),
                            id: job.id.clone(),
                            at_ms: job.ms,
                            late_ms: now.saturating_sub(job.ms),
                            tolerance_ms: tolerance.max(0) as u64,
                        }),
                    });
                }
            }
        }
        tracing::debug!(queue = %self.inner.name, partition = part.index(), jobs = results.len(), "scheduled");
        Ok(results)
    }

    /// Cancels job `id`. A waiting or dead job is deleted at once and never runs. A running
    /// job's cancellation is asked and this returns [`Cancelled::Requested`] without waiting:
    /// its worker sees the request at its next lease extension (every third of the lease),
    /// cancels the handler ([`crate::Context::cancelled`], [`crate::CancelReason::Cancelled`];
    /// `punctual work` ends the command's process group) and moves the job to the dead set
    /// with reason `cancelled`. [`Queue::cancel_and_wait`] also waits for that.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn cancel(&self, id: &str) -> Result<Cancelled> {
        self.cancel_and_wait(id, std::time::Duration::ZERO).await
    }

    /// Cancels job `id` like [`Queue::cancel`], and for a running job waits up to `wait` for it
    /// to end: [`Cancelled::Stopped`] when its worker stopped it, [`Cancelled::Finished`] when
    /// it ended on its own first, [`Cancelled::Requested`] when it still runs. The wait hears
    /// the end on the queue's `ended` channel (no polling), then reads the job once.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn cancel_and_wait(&self, id: &str, wait: std::time::Duration) -> Result<Cancelled> {
        let part = self.partition_of(id);
        // Listen before asking, so that an end right after the request is heard.
        let mut listener = None;
        if !wait.is_zero() {
            match self.listen_for_ends(&part).await {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot listen for the job's end; reading it after the wait")
                }
            }
        }
        let outcome = match ops::cancel::call(&part, id).await? {
            ops::cancel::Found::Unknown => Cancelled::NotFound,
            ops::cancel::Found::Removed(from) => Cancelled::Removed(from),
            ops::cancel::Found::Running if wait.is_zero() => Cancelled::Requested,
            ops::cancel::Found::Running => self.await_end(id, listener, wait).await?,
        };
        tracing::debug!(queue = %self.inner.name, job = id, ?outcome, "cancel");
        Ok(outcome)
    }

    /// Waits up to `timeout` for job `id` to end: it completes, dies (for good, expired, or
    /// cancelled while it ran) or is deleted. A job that ended before the call is reported at
    /// once when the queue still holds it (dead, or completed and kept). No polling: the wait
    /// marks the job (`wait.lua`), the script that ends it tells the queue's `ended` channel,
    /// and the job is read once.
    ///
    /// # Errors
    /// [`Error::Redis`], also when the subscription cannot be made.
    pub async fn wait(&self, id: &str, timeout: std::time::Duration) -> Result<Waited> {
        let part = self.partition_of(id);
        let deadline = tokio::time::Instant::now() + timeout;
        // Listen before marking, so that an end right after it is heard.
        let mut listener = self.listen_for_ends(&part).await?;
        match ops::wait::call(&part, id).await? {
            ops::wait::Found::Unknown => return Ok(Waited::NotFound),
            ops::wait::Found::Ended => return self.ended(id, None).await,
            ops::wait::Found::Waiting => {}
        }
        loop {
            match hear_end(&mut listener, id, deadline).await {
                EndHeard::Told(word) => return self.ended(id, Some(&word)).await,
                EndHeard::TimedOut => return self.ended(id, None).await,
                // A message may be missed. Read once; if the job still waits, listen again.
                EndHeard::Gap => {
                    let now = self.ended(id, None).await?;
                    if !matches!(now, Waited::Pending(_)) {
                        return Ok(now);
                    }
                    listener = self.listen_for_ends(&part).await?;
                }
            }
        }
    }

    /// A subscription to the `ended` channel of `part` (the `tell` snippet).
    async fn listen_for_ends(&self, part: &Partition<'_>) -> Result<crate::wake::Listener> {
        let channel = part.keys().ended.clone();
        crate::wake::Listener::open(self.namespace().backend(), vec![channel], None)
            .await
            .map_err(|e| self.redis_error("wait", e))
    }

    /// Reads where job `id` is after its wait; `word` is what its end was told as, if heard.
    async fn ended(&self, id: &str, word: Option<&str>) -> Result<Waited> {
        Ok(match self.get(id).await? {
            Some(job) if job.state == JobState::Completed => Waited::Completed(Some(Box::new(job))),
            Some(job) if job.state == JobState::Dead => Waited::Dead(Box::new(job)),
            Some(job) => Waited::Pending(Box::new(job)),
            None => match word {
                Some("completed") => Waited::Completed(None),
                Some(_) => Waited::Deleted,
                None => Waited::Gone,
            },
        })
    }

    /// Waits up to `wait` for running job `id`, whose cancellation was asked, to end.
    async fn await_end(
        &self,
        id: &str,
        listener: Option<crate::wake::Listener>,
        wait: std::time::Duration,
    ) -> Result<Cancelled> {
        let deadline = tokio::time::Instant::now() + wait;
        if let Some(mut listener) = listener {
            // A timeout or a gap (a message may be missed) leaves it to the read below.
            if let EndHeard::Told(word) = hear_end(&mut listener, id, deadline).await {
                return Ok(match word.as_str() {
                    "stopped" => Cancelled::Stopped,
                    _ => Cancelled::Finished,
                });
            }
        } else {
            tokio::time::sleep_until(deadline).await;
        }
        // Nothing heard: one read says where the job is.
        Ok(match self.get(id).await? {
            Some(job) if job.state == JobState::Running => Cancelled::Requested,
            Some(job)
                if job.state == JobState::Dead
                    && job
                        .last_error
                        .as_ref()
                        .is_some_and(|e| e.reason == "cancelled") =>
            {
                Cancelled::Stopped
            }
            _ => Cancelled::Finished,
        })
    }

    /// Pauses the queue (every partition): from the moment this returns, workers claim
    /// nothing from it; jobs already running finish, and promotion goes on, so nothing is
    /// late to promote when the queue resumes. Workers waiting out a pause send no commands:
    /// they block until [`Queue::resume`] wakes them. Returns false when it was already paused.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn pause(&self) -> Result<bool> {
        self.set_paused(true).await
    }

    /// Resumes a paused queue: workers waiting out the pause wake at once. Returns false when
    /// it was not paused.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn resume(&self) -> Result<bool> {
        self.set_paused(false).await
    }

    /// Whether the queue is paused (read from its first partition: [`Queue::pause`] sets
    /// every partition).
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn is_paused(&self) -> Result<bool> {
        Ok(self.setting("paused").await?.is_some())
    }

    /// A queue setting, `field` of its first partition's `meta` (every partition is set
    /// alike).
    pub(crate) async fn setting(&self, field: &'static str) -> Result<Option<String>> {
        let part = self.partition(0);
        redis::cmd("HGET")
            .arg(&part.keys().meta)
            .arg(field)
            .query_async(&mut part.conn())
            .await
            .map_err(|e| self.redis_error("look up", e))
    }

    /// Sets (`Some`) or clears (`None`) a queue setting, `field` of every partition's `meta`.
    pub(crate) async fn set_setting(
        &self,
        field: &'static str,
        value: Option<String>,
    ) -> Result<()> {
        for part in self.each_partition() {
            let cmd = match &value {
                Some(value) => {
                    let mut cmd = redis::cmd("HSET");
                    cmd.arg(&part.keys().meta).arg(field).arg(value);
                    cmd
                }
                None => {
                    let mut cmd = redis::cmd("HDEL");
                    cmd.arg(&part.keys().meta).arg(field);
                    cmd
                }
            };
            let _: i64 = cmd
                .query_async(&mut part.conn())
                .await
                .map_err(|e| part.redis_error("set a queue setting", e))?;
        }
        Ok(())
    }

    async fn set_paused(&self, pause: bool) -> Result<bool> {
        let mut changed = false;
        for part in self.each_partition() {
            changed |= ops::pause::call(&part, pause).await?;
        }
        tracing::info!(queue = %self.inner.name, paused = pause, changed, "pause state set");
        Ok(changed)
    }

    /// Moves job `id` to `when`: a scheduled job gets a new due time, a ready job goes back to
    /// waiting, a dead job comes back with its attempts reset. A running job is left alone.
    ///
    /// # Errors
    /// [`Error::DelayOverflow`], [`Error::InThePast`] (nothing changed), [`Error::Redis`].
    pub async fn reschedule(&self, id: &str, when: When) -> Result<Rescheduled> {
        let queue = &self.inner.name;
        let (mode, ms) = when.to_args(queue, id)?;
        let tolerance = self.config().tolerance_ms();
        let outcome =
            match ops::reschedule::call(&self.partition_of(id), id, mode, ms, tolerance).await? {
                ops::reschedule::Moved::Past(now) => {
                    return Err(Error::InThePast {
                        queue: queue.clone(),
                        id: id.to_owned(),
                        at_ms: ms,
                        late_ms: now.saturating_sub(ms),
                        tolerance_ms: tolerance.max(0) as u64,
                    })
                }
                ops::reschedule::Moved::Running => Rescheduled::Running,
                ops::reschedule::Moved::Unknown => Rescheduled::NotFound,
                ops::reschedule::Moved::From(from, due) => Rescheduled::Moved {
                    from,
                    due_at: from_unix_ms(due),
                },
            };
        tracing::debug!(queue = %queue, job = id, ?outcome, "reschedule");
        Ok(outcome)
    }
}

/// What listening on an `ended` channel for one job gave.
enum EndHeard {
    /// Its end was told, as this word (`completed`, `dead`, `expired`, `cancelled`, `stopped`).
    Told(String),
    /// The deadline came first.
    TimedOut,
    /// The subscription dropped: a message may be missed.
    Gap,
}

/// Listens on `listener` until job `id`'s end is told (messages are a word, then ids one per
/// line: the `tell` snippet), the deadline comes, or the subscription drops.
async fn hear_end(
    listener: &mut crate::wake::Listener,
    id: &str,
    deadline: tokio::time::Instant,
) -> EndHeard {
    loop {
        match tokio::time::timeout_at(deadline, listener.next()).await {
            Err(_) => return EndHeard::TimedOut,
            Ok(crate::wake::Heard::Wake(_, message)) => {
                let mut lines = message.split('\n');
                let word = lines.next().unwrap_or_default().to_owned();
                if lines.any(|line| line == id) {
                    return EndHeard::Told(word);
                }
            }
            Ok(_) => return EndHeard::Gap,
        }
    }
}
