//! Reading a queue without changing it: one job ([`Queue::get`]), a page of jobs in one state
//! ([`Queue::list`]), the size of each state ([`Queue::counts`]) and a summary with the
//! queue's event totals ([`Queue::stats`]). Every read of more than one key of a partition is
//! one `MULTI` transaction, so it sees one consistent state; every range has a limit. A
//! partitioned queue is read partition by partition (all at once) and shown as one queue:
//! counts and totals are sums, a page is merged in order. Such a summary is consistent per
//! partition, not across partitions.

use std::time::{Duration, SystemTime};

use redis::Value;

use crate::envelope::{self, Envelope};
use crate::error::{is_moved_transaction, is_transient, Error, Result};
use crate::keys::Keys;
use crate::queue::{Partition, Queue};
use crate::time::from_unix_ms;
use crate::vocab::Event;
use crate::vocab::JobState;

/// Most jobs [`Queue::list`] returns in one call.
pub const MAX_LIST: usize = 10_000;

/// Most edges [`Queue::due_counts`] takes.
pub const MAX_EDGES: usize = 1000;

/// Where a page of [`Queue::list_page`] starts: how many jobs of each partition the pages
/// before it showed. Its text form (`Display`, [`PageCursor::parse`]) is one number per
/// partition, dot-separated, for a URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageCursor {
    offsets: Vec<u64>,
}

impl PageCursor {
    /// The first page.
    pub fn start() -> PageCursor {
        PageCursor::default()
    }

    /// A cursor from its text form; `None` when it is not one.
    pub fn parse(text: &str) -> Option<PageCursor> {
        let offsets = text
            .split('.')
            .map(|n| n.parse::<u64>().ok())
            .collect::<Option<Vec<u64>>>()?;
        (!offsets.is_empty() && offsets.len() <= usize::from(u16::MAX))
            .then_some(PageCursor { offsets })
    }
}

impl std::fmt::Display for PageCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.offsets.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

/// One page of jobs ([`Queue::list_page`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Page {
    /// The jobs, in the state's order.
    pub jobs: Vec<JobInfo>,
    /// Where the next page starts; `None` when this one is the last.
    pub next: Option<PageCursor>,
}

/// The last error recorded for a job (written by the scripts as JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct ErrorRecord {
    /// Why: `failed`, `retry_requested`, `lease_expired`, `attempts_exhausted`, `permanent`,
    /// `undecodable`.
    pub reason: String,
    /// The handler's error message, or a description.
    pub message: String,
    /// When it was recorded, unix ms (server clock).
    pub at: u64,
    /// The attempt it ended.
    pub attempt: u32,
}

/// Everything known about one job.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobInfo {
    /// The queue holding the job.
    pub queue: String,
    /// The job's id.
    pub id: String,
    /// Its state.
    pub state: JobState,
    /// When it is due (scheduled jobs).
    pub due_at: Option<SystemTime>,
    /// When its current lease ends (running jobs).
    pub lease_until: Option<SystemTime>,
    /// When it died (dead jobs).
    pub died_at: Option<SystemTime>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Its own attempt limit, if the producer set one.
    pub max_attempts: Option<u32>,
    /// Its kind.
    pub kind: Option<String>,
    /// When it was created (producer clock).
    pub created_at: Option<SystemTime>,
    /// The last error recorded for it.
    pub last_error: Option<ErrorRecord>,
    /// Its data, MessagePack; decode it with [`JobInfo::data_as`].
    pub data: Option<Vec<u8>>,
    /// Why the stored envelope could not be read, if it could not (kind, creation time, data
    /// and attempt limit are then empty; a worker sends such a job to the dead set).
    pub decode_error: Option<String>,
    /// When its time runs out ([`crate::NewJob::expires_at`], [`crate::NewJob::max_lateness`]).
    pub expires_at: Option<SystemTime>,
    /// Its cancellation was asked while it runs ([`crate::Queue::cancel`]).
    pub cancel_requested: bool,
    /// The id of the compensating job it schedules if it dies after it ran
    /// ([`crate::NewJob::compensate_with`]), while that is still to come.
    pub compensation: Option<String>,
    /// Its own handler timeout ([`crate::NewJob::timeout`]).
    pub timeout: Option<std::time::Duration>,
    /// Its priority ([`crate::NewJob::priority`]; 0 by default).
    pub priority: i8,
    /// When it completed (completed jobs, kept by the queue's retention).
    pub completed_at: Option<SystemTime>,
    /// How long its last attempt ran, claim to ack (completed jobs).
    pub run_time: Option<Duration>,
    /// Its result, MessagePack ([`crate::Outcome::DoneWith`]); decode it with
    /// [`JobInfo::result_as`].
    pub result: Option<Vec<u8>>,
    /// Why a result was not kept (it was over the payload limit).
    pub result_note: Option<String>,
    /// Its limit key ([`crate::NewJob::limit_key`]).
    pub limit_key: Option<String>,
    /// While it waits because its limit did not let it start: `rate` or `concurrency`, and
    /// until when at the latest.
    pub limited: Option<(String, SystemTime)>,
}

impl JobInfo {
    /// The job's result decoded as `T`.
    ///
    /// # Errors
    /// [`Error::Decode`] when there is no result or it does not decode as `T`.
    pub fn result_as<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        let Some(bytes) = &self.result else {
            return Err(Error::Decode {
                queue: self.queue.clone(),
                id: self.id.clone(),
                reason: "the job has no result".to_owned(),
            });
        };
        crate::envelope::decode_data(bytes).map_err(|reason| Error::Decode {
            queue: self.queue.clone(),
            id: self.id.clone(),
            reason,
        })
    }

    /// The job's data decoded as `T`.
    ///
    /// # Errors
    /// [`Error::Decode`] when there is no data or it does not decode as `T`.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        let bytes = self.data.as_deref().ok_or_else(|| Error::Decode {
            queue: self.queue.clone(),
            id: self.id.clone(),
            reason: "the job has no data (unknown job)".into(),
        })?;
        envelope::decode_data(bytes).map_err(|reason| Error::Decode {
            queue: self.queue.clone(),
            id: self.id.clone(),
            reason,
        })
    }
}

/// How many jobs are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// In `scheduled`.
    pub scheduled: u64,
    /// In `ready`.
    pub ready: u64,
    /// In `running`.
    pub running: u64,
    /// In `dead`.
    pub dead: u64,
    /// In `completed` (kept by the queue's retention).
    pub completed: u64,
}

/// Totals of events on a queue since it was created, kept by the scripts in `p:{q}:stats`
/// (see [`crate::keys`] and [`Event`]). Shared by every process; a counter that never
/// happened is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    counts: [u64; Event::ALL.len()],
}

impl Totals {
    /// How many times `event` happened.
    pub fn get(&self, event: Event) -> u64 {
        self.counts[Totals::slot(event)]
    }

    /// Every event with its total, in [`Event::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Event, u64)> + '_ {
        Event::ALL.into_iter().map(|e| (e, self.get(e)))
    }

    fn slot(event: Event) -> usize {
        Event::ALL.iter().position(|&e| e == event).unwrap_or(0)
    }

    /// Adds `other`'s totals to these (partitions of one queue).
    pub(crate) fn add(&mut self, other: &Totals) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
    }

    /// Totals from the fields of the `stats` hash; unknown fields are ignored.
    pub(crate) fn from_fields(fields: impl IntoIterator<Item = (String, u64)>) -> Totals {
        let mut totals = Totals::default();
        for (field, value) in fields {
            if let Some(event) = Event::parse(&field) {
                totals.counts[Totals::slot(event)] = value;
            }
        }
        totals
    }
}

/// A summary of a queue, read atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Jobs in each state.
    pub counts: Counts,
    /// The due time of the earliest scheduled job.
    pub next_due: Option<SystemTime>,
    /// How long the earliest scheduled job has been due without being promoted (by the
    /// server's clock); `None` when nothing in `scheduled` is due. It grows when no promoter
    /// runs.
    pub oldest_overdue: Option<Duration>,
    /// Event totals.
    pub totals: Totals,
    /// The server's clock when this was read.
    pub server_time: SystemTime,
    /// How many partitions the queue has (1: not partitioned).
    pub partitions: u16,
    /// Whether the queue is paused ([`Queue::pause`]): workers claim nothing from it.
    pub paused: bool,
}

/// The replies that describe one job, in the order [`job_commands`] asks for them.
type JobReply = (
    Option<Vec<u8>>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<u32>,
    Option<String>,
    Option<String>,
    Option<f64>,
    Option<Vec<u8>>,
);

/// Sends a read (a pipeline) to `part` again, up to 4 tries, when its connection failed or a
/// cluster refused it because the slot moved: a read is safe to repeat, and after a failover
/// the first one can meet the old owner.
///
/// The cluster client follows `MOVED` and rebuilds its slot map for a single command, not for
/// a transaction: one refused that way was sent again to the old owner as long as nothing
/// else on the connection met a `MOVED`, and a map rebuilt while a failover was still
/// spreading could stay stale (CI saw `stats` fail three times in 300 ms after one). So after
/// such a refusal a single-key read (`EXISTS` of the partition's `meta`) goes first: its
/// `MOVED` makes the client learn the slot's owner.
async fn read_again<T: redis::FromRedisValue>(
    part: &Partition<'_>,
    pipe: &redis::Pipeline,
) -> redis::RedisResult<T> {
    let retry = |e: &redis::RedisError| is_transient(e) || is_moved_transaction(e);
    let send = || async move {
        let sent = pipe.query_async(&mut part.conn()).await;
        if sent.as_ref().is_err_and(is_moved_transaction) {
            let _: redis::RedisResult<bool> = redis::cmd("EXISTS")
                .arg(&part.keys().meta)
                .query_async(&mut part.conn())
                .await;
        }
        sent
    };
    crate::reconnect::send_again("read", 4, retry, send).await.0
}

/// How many commands [`job_commands`] adds per job.
const JOB_COMMANDS: usize = 9;

/// What `get` reads of a job's `opts` entry (docs/layout.md, "Job options").
#[derive(Debug, Default, serde::Deserialize)]
struct Steering {
    deadline: Option<f64>,
    cancel: Option<f64>,
    undo: Option<Undo>,
    lk: Option<String>,
    limited: Option<String>,
    limited_until: Option<f64>,
}

/// The compensating job an `opts` entry names (only its id is read).
#[derive(Debug, Default, serde::Deserialize)]
struct Undo {
    id: String,
}

/// Adds the commands that read everything about job `id` to `pipe`.
fn job_commands(pipe: &mut redis::Pipeline, k: &Keys, id: &str) {
    pipe.hget(&k.jobs, id)
        .zscore(&k.scheduled, id)
        .zscore(&k.running, id)
        .zscore(&k.dead, id)
        .hget(&k.attempts, id)
        .hget(&k.errors, id)
        .hget(&k.opts, id)
        .zscore(&k.completed, id)
        .hget(&k.results, id);
}

impl Queue {
    /// Everything known about job `id`, read atomically; `None` when there is no such job
    /// (never scheduled, or finished or cancelled and deleted).
    ///
    /// # Errors
    /// [`Error::Redis`]. An unreadable envelope is not an error: see [`JobInfo::decode_error`].
    pub async fn get(&self, id: &str) -> Result<Option<JobInfo>> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let part = self.partition_of(id);
        job_commands(&mut pipe, part.keys(), id);
        let reply: JobReply = read_again(&part, &pipe)
            .await
            .map_err(|e| self.redis_error("get", e))?;
        Ok(self.job_info(id, reply))
    }

    /// Up to `limit` (at most [`MAX_LIST`]) jobs in `state`, oldest first: scheduled by due
    /// time, ready in the order workers take them, running by lease deadline, dead by time of
    /// death. A job that moves on between the listing and the read of its details is shown in
    /// its new state, or left out when it finished.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a limit above [`MAX_LIST`];
    /// [`Error::Redis`].
    pub async fn list(&self, state: JobState, limit: usize) -> Result<Vec<JobInfo>> {
        Ok(self
            .list_page(state, &PageCursor::start(), limit)
            .await?
            .jobs)
    }

    /// One page of the jobs in `state`, in [`Queue::list`]'s order, starting at `from`
    /// ([`PageCursor::start`], or the [`Page::next`] of the page before). Each page reads at
    /// most `limit` ids per partition, by rank, however deep it is and however many jobs the
    /// state holds: paging through a million jobs never loads them. Jobs that move between
    /// pages can be shown twice or skipped, as in any paging of a live set.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a limit above [`MAX_LIST`] or a cursor of another
    /// partition count; [`Error::Redis`].
    pub async fn list_page(
        &self,
        state: JobState,
        from: &PageCursor,
        limit: usize,
    ) -> Result<Page> {
        if limit > MAX_LIST {
            return Err(Error::InvalidConfig {
                what: "list limit",
                reason: format!("must be at most {MAX_LIST}"),
            });
        }
        let offsets: Vec<u64> = if from.offsets.is_empty() {
            vec![0; usize::from(self.partitions())]
        } else if from.offsets.len() == usize::from(self.partitions()) {
            from.offsets.clone()
        } else {
            return Err(Error::InvalidConfig {
                what: "page cursor",
                reason: format!(
                    "{from} is not a cursor of this queue ({} partitions)",
                    self.partitions()
                ),
            });
        };
        if limit == 0 {
            return Ok(Page {
                jobs: Vec::new(),
                next: None,
            });
        }
        let n = limit as isize;
        // Each partition's next `limit` ids from its offset, with their scores (ready: the
        // position, so partitions interleave).
        let pages = self.each_partition().map(|part| {
            let start = offsets[usize::from(part.index())];
            async move {
                let k = part.keys();
                let mut conn = part.conn();
                let first = start.min(isize::MAX as u64) as isize;
                let page: Vec<(String, f64)> = match state {
                    JobState::Ready => {
                        // Workers take `ready` first, then `ranked` (a queue that uses
                        // priorities) by rank: positions in that order.
                        let (length, listed): (isize, Vec<String>) = redis::pipe()
                            .llen(&k.ready)
                            .lrange(&k.ready, first, first + n - 1)
                            .query_async(&mut conn)
                            .await
                            .map_err(|e| self.redis_error("list", e))?;
                        let mut ids = listed;
                        if ids.len() < limit {
                            let from_ranked = (first + ids.len() as isize - length).max(0);
                            let more = n - ids.len() as isize;
                            let ranked: Vec<String> = redis::cmd("ZRANGE")
                                .arg(&k.ranked)
                                .arg(from_ranked)
                                .arg(from_ranked + more - 1)
                                .query_async(&mut conn)
                                .await
                                .map_err(|e| self.redis_error("list", e))?;
                            ids.extend(ranked);
                        }
                        ids.into_iter()
                            .enumerate()
                            .map(|(i, id)| (id, (first as f64) + i as f64))
                            .collect()
                    }
                    _ => {
                        let key = match state {
                            JobState::Scheduled => &k.scheduled,
                            JobState::Running => &k.running,
                            JobState::Completed => &k.completed,
                            _ => &k.dead,
                        };
                        redis::cmd("ZRANGE")
                            .arg(key)
                            .arg(first)
                            .arg(first + n - 1)
                            .arg("WITHSCORES")
                            .query_async(&mut conn)
                            .await
                            .map_err(|e| self.redis_error("list", e))?
                    }
                };
                Ok::<_, Error>((part.index(), page))
            }
        });
        let mut listed: Vec<(f64, u16, String)> = Vec::new();
        let mut fetched = vec![0u64; offsets.len()];
        for page in futures_util::future::join_all(pages).await {
            let (index, page) = page?;
            fetched[usize::from(index)] = page.len() as u64;
            listed.extend(page.into_iter().map(|(id, score)| (score, index, id)));
        }
        // By score (ready: by position), then id: the order a single partition gives, merged.
        listed.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.2.cmp(&b.2)));
        listed.truncate(limit);
        let mut taken = vec![0u64; offsets.len()];
        for (_, index, _) in &listed {
            taken[usize::from(*index)] += 1;
        }
        // More to come where a partition filled its page or had jobs left out of this one.
        let more = (0..offsets.len()).any(|p| fetched[p] == limit as u64 || taken[p] < fetched[p]);
        let next = more.then(|| PageCursor {
            offsets: offsets.iter().zip(&taken).map(|(o, t)| o + t).collect(),
        });
        if listed.is_empty() {
            return Ok(Page {
                jobs: Vec::new(),
                next,
            });
        }
        // Details: one pipeline per partition, then back in the merged order.
        let mut replies: Vec<Option<JobReply>> = listed.iter().map(|_| None).collect();
        for part in self.each_partition() {
            let mine: Vec<usize> = (0..listed.len())
                .filter(|&i| listed[i].1 == part.index())
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            for &i in &mine {
                job_commands(&mut pipe, part.keys(), &listed[i].2);
            }
            let values: Vec<Value> = pipe
                .query_async(&mut part.conn())
                .await
                .map_err(|e| self.redis_error("list", e))?;
            if values.len() != mine.len() * JOB_COMMANDS {
                return Err(self.unexpected("list", "reply length does not match"));
            }
            for (&i, parts) in mine.iter().zip(values.chunks(JOB_COMMANDS)) {
                let reply: JobReply = redis::from_redis_value(Value::Array(parts.to_vec()))
                    .map_err(|e| self.unexpected("list", e.to_string()))?;
                replies[i] = Some(reply);
            }
        }
        let mut jobs = Vec::with_capacity(listed.len());
        for ((_, _, id), reply) in listed.iter().zip(replies) {
            // A job that finished since the listing is left out.
            jobs.extend(reply.and_then(|reply| self.job_info(id, reply)));
        }
        Ok(Page { jobs, next })
    }

    /// How many scheduled jobs fall due between consecutive `edges` (ascending): the first
    /// count is of jobs due before `edges[0]` (overdue, when it is now), the last of jobs due
    /// at or after the last edge; so `edges.len() + 1` counts. One `ZCOUNT` per edge and
    /// partition, O(log n) each: a due-time chart of a queue of millions reads no job.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for more than [`MAX_EDGES`] edges or edges out of order;
    /// [`Error::Redis`].
    pub async fn due_counts(&self, edges: &[SystemTime]) -> Result<Vec<u64>> {
        let ms: Vec<u64> = edges
            .iter()
            .map(|&t| crate::time::unix_ms(t).unwrap_or(u64::MAX))
            .collect();
        if ms.len() > MAX_EDGES || ms.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::InvalidConfig {
                what: "due-time edges",
                reason: format!("must be at most {MAX_EDGES}, in ascending order"),
            });
        }
        let mut bounds: Vec<(String, String)> = Vec::with_capacity(ms.len() + 1);
        let mut low = "-inf".to_owned();
        for edge in &ms {
            bounds.push((low, format!("({edge}")));
            low = edge.to_string();
        }
        bounds.push((low, "+inf".to_owned()));
        let reads = self.each_partition().map(|part| {
            let bounds = &bounds;
            async move {
                let mut pipe = redis::pipe();
                for (low, high) in bounds {
                    pipe.zcount(&part.keys().scheduled, low, high);
                }
                let counts: Vec<u64> = read_again(&part, &pipe)
                    .await
                    .map_err(|e| self.redis_error("due counts", e))?;
                Ok::<_, Error>(counts)
            }
        });
        let mut total = vec![0u64; bounds.len()];
        for counts in futures_util::future::join_all(reads).await {
            for (sum, n) in total.iter_mut().zip(counts?) {
                *sum += n;
            }
        }
        Ok(total)
    }

    /// Builds a [`JobInfo`] from the replies of [`job_commands`]; `None` when the job does
    /// not exist (it has no stored envelope).
    fn job_info(&self, id: &str, reply: JobReply) -> Option<JobInfo> {
        let (body, due, lease, died, attempts, error, steering, completed, record) = reply;
        let body = body?;
        let at = |score: Option<f64>| score.map(|s| from_unix_ms(s.max(0.0) as u64));
        let state = if due.is_some() {
            JobState::Scheduled
        } else if lease.is_some() {
            JobState::Running
        } else if died.is_some() {
            JobState::Dead
        } else if completed.is_some() {
            JobState::Completed
        } else {
            JobState::Ready
        };
        let mut info = JobInfo {
            queue: self.name().to_owned(),
            id: id.to_owned(),
            state,
            due_at: None,
            lease_until: None,
            died_at: None,
            attempts: 0,
            max_attempts: None,
            kind: None,
            created_at: None,
            last_error: None,
            data: None,
            decode_error: None,
            expires_at: None,
            cancel_requested: false,
            compensation: None,
            timeout: None,
            priority: 0,
            completed_at: at(completed),
            run_time: None,
            result: None,
            result_note: None,
            limit_key: None,
            limited: None,
        };
        if let Some(record) = record
            .as_deref()
            .and_then(crate::envelope::Completion::decode)
        {
            info.run_time = Some(Duration::from_millis(record.run_ms));
            info.result = record.result;
            info.result_note = record.note;
        }
        let steering: Steering = steering
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default();
        info.expires_at = at(steering.deadline);
        info.cancel_requested = steering.cancel.is_some();
        info.compensation = steering.undo.map(|u| u.id);
        info.limit_key = steering.lk;
        if state == JobState::Scheduled {
            info.limited = steering.limited.zip(at(steering.limited_until));
        }
        info.due_at = at(due);
        info.lease_until = at(lease);
        info.died_at = at(died);
        info.attempts = attempts.unwrap_or(0);
        info.last_error = error.and_then(|json| serde_json::from_str(&json).ok());
        match Envelope::decode(&body) {
            Ok(envelope) => {
                info.max_attempts = envelope.max_attempts;
                info.timeout = envelope.timeout_ms.map(std::time::Duration::from_millis);
                info.priority = envelope.priority.unwrap_or(0);
                info.created_at = Some(from_unix_ms(envelope.created_ms(&info.id).unwrap_or(0)));
                info.kind = Some(envelope.kind);
                info.data = Some(envelope.data);
            }
            Err(reason) => info.decode_error = Some(reason),
        }
        Some(info)
    }

    /// How many jobs are in each state, read atomically.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn counts(&self) -> Result<Counts> {
        Ok(self.stats().await?.counts)
    }

    /// Counts, the next due time, the oldest overdue job's age and the event totals, read in
    /// one transaction.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn stats(&self) -> Result<QueueStats> {
        type Reply = (
            u64,
            u64,
            u64,
            Option<u64>,
            u64,
            u64,
            u64,
            Vec<(String, f64)>,
            Vec<(String, u64)>,
            (u64, u64),
            Option<String>,
        );
        let reads = self.each_partition().map(|part| async move {
            let k = part.keys();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .zcard(&k.scheduled)
                .llen(&k.ready)
                .zcard(&k.ranked)
                // The marker `promote.lua` leaves at the end of `ready` when a queue starts
                // using priorities (not a job): O(1), only the last element is looked at.
                .cmd("LPOS")
                .arg(&k.ready)
                .arg(&k.bell)
                .arg("RANK")
                .arg(-1)
                .arg("MAXLEN")
                .arg(1)
                .zcard(&k.running)
                .zcard(&k.dead)
                .zcard(&k.completed)
                .zrange_withscores(&k.scheduled, 0, 0)
                .hgetall(&k.stats)
                .cmd("TIME")
                .hget(&k.meta, "paused");
            let reply: Reply = read_again(&part, &pipe)
                .await
                .map_err(|e| self.redis_error("stats", e))?;
            Ok::<_, Error>(reply)
        });
        let mut counts = Counts::default();
        let mut totals = Totals::default();
        let mut next_due_ms: Option<u64> = None;
        let mut now_ms = 0;
        let mut paused = false;
        for reply in futures_util::future::join_all(reads).await {
            let (
                scheduled,
                ready,
                ranked,
                marker,
                running,
                dead,
                completed,
                head,
                fields,
                (secs, micros),
                pause,
            ) = reply?;
            counts.completed += completed;
            paused |= pause.is_some();
            counts.scheduled += scheduled;
            counts.ready += ready - u64::from(marker.is_some()).min(ready) + ranked;
            counts.running += running;
            counts.dead += dead;
            totals.add(&Totals::from_fields(fields));
            if let Some((_, score)) = head.first() {
                let due = score.max(0.0) as u64;
                next_due_ms = Some(next_due_ms.map_or(due, |d| d.min(due)));
            }
            now_ms = now_ms.max(secs.saturating_mul(1000).saturating_add(micros / 1000));
        }
        Ok(QueueStats {
            queue: self.name().to_owned(),
            counts,
            next_due: next_due_ms.map(from_unix_ms),
            oldest_overdue: next_due_ms
                .filter(|&due| due <= now_ms)
                .map(|due| Duration::from_millis(now_ms - due)),
            totals,
            server_time: from_unix_ms(now_ms),
            partitions: self.partitions(),
            paused,
        })
    }

    /// How many jobs the queue holds in every state (the entries of each partition's `jobs`).
    pub(crate) async fn job_count(&self) -> Result<(u64, u64)> {
        let (mut jobs, mut schedules) = (0, 0);
        for part in self.each_partition() {
            let (j, s): (u64, u64) = redis::pipe()
                .hlen(&part.keys().jobs)
                .hlen(&part.keys().cron)
                .query_async(&mut part.conn())
                .await
                .map_err(|e| self.redis_error("count", e))?;
            jobs += j;
            schedules += s;
        }
        Ok((jobs, schedules))
    }
}
