//! The producer and inspection side: connect to a queue, schedule jobs, look them up, cancel and
//! reschedule them. Every write here is one Lua script (`schedule.lua`, `cancel.lua`,
//! `reschedule.lua`); reads are one `MULTI` transaction, so they see one consistent state.

use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use redis::aio::ConnectionManager;
use redis::Value;
use serde::Serialize;

use crate::backoff::BackoffSpec;
use crate::envelope::{self, Envelope, ENVELOPE_VERSION};
use crate::error::{clip, is_transient, Error, Result};
use crate::keys::{Keys, DEFAULT_PREFIX};
use crate::namespace::Namespace;
use crate::ops::{self, schedule::Written};
use crate::reconnect::ReconnectBackoff;
use crate::time::{delay_ms, from_unix_ms, unix_ms};

/// The storage format this build reads and writes, kept in `p:{q}:meta` field `format`.
pub const STORAGE_FORMAT: u32 = 1;

/// Default for [`QueueConfig::set_max_payload_bytes`]: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Default for [`QueueConfig::set_past_tolerance`]: 60 s.
pub const DEFAULT_PAST_TOLERANCE: Duration = Duration::from_secs(60);
/// Default for [`QueueConfig::set_response_timeout`]: 5 s.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`QueueConfig::set_dedup_window`]: 60 s.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(60);
/// Default for [`QueueConfig::set_connect_timeout`]: 2 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest caller-chosen job id, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Jobs per `schedule.lua` call in [`Queue::schedule_many`]: keeps each script short (Redis
/// runs one script at a time) and its `ARGV` far below Lua's limits.
const SCHEDULE_BATCH: usize = 256;
/// Script calls per pipeline round trip in [`Queue::schedule_many`].
const PIPELINE_CALLS: usize = 32;
/// Pipelines in flight at once in [`Queue::schedule_many`].
const ROUNDS_IN_FLIGHT: usize = 2;
/// Times one pipeline is sent while the connection fails, before the error is returned.
const SEND_TRIES: u32 = 3;

/// Settings of a queue handle. Every setting has a documented default.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    prefix: String,
    max_payload_bytes: usize,
    past_tolerance: Option<Duration>,
    response_timeout: Duration,
    connect_timeout: Duration,
    dedup_window: Duration,
    tls: Option<TlsConfig>,
}

/// Certificates for `rediss://` URLs beyond the system's trust store: a private CA, and a
/// client certificate for servers that require one (`tls-auth-clients yes`, Redis' default).
/// PEM bytes, as read from the files.
#[derive(Clone, Default)]
pub struct TlsConfig {
    root_certificate: Option<Vec<u8>>,
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a private key.
        f.debug_struct("TlsConfig")
            .field("root_certificate", &self.root_certificate.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

impl TlsConfig {
    /// Trust this CA (PEM) for the server's certificate, instead of the system's roots.
    pub fn set_root_certificate(mut self, pem: Vec<u8>) -> Self {
        self.root_certificate = Some(pem);
        self
    }

    /// Present this certificate and private key (both PEM) to the server.
    pub fn set_client_certificate(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.client = Some((cert_pem, key_pem));
        self
    }

    pub(crate) fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self.client.clone().map(|(client_cert, client_key)| {
                redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }
            }),
            root_cert: self.root_certificate.clone(),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            prefix: DEFAULT_PREFIX.to_owned(),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            past_tolerance: Some(DEFAULT_PAST_TOLERANCE),
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            dedup_window: DEFAULT_DEDUP_WINDOW,
            tls: None,
        }
    }
}

impl QueueConfig {
    /// The key namespace (default [`DEFAULT_PREFIX`], `"punctual"`): keys are `prefix:{queue}:…`.
    pub fn set_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The largest encoded job data accepted (default [`DEFAULT_MAX_PAYLOAD_BYTES`]).
    pub fn set_max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload_bytes = limit;
        self
    }

    /// How far in the past (by the Redis server's clock) an absolute due time may be before
    /// scheduling it is refused with [`Error::InThePast`] (default [`DEFAULT_PAST_TOLERANCE`]).
    /// A time inside the tolerance is due at once. `None` accepts any past time. Relative
    /// delays are never in the past.
    pub fn set_past_tolerance(mut self, tolerance: Option<Duration>) -> Self {
        self.past_tolerance = tolerance;
        self
    }

    /// How long to wait for any one Redis reply (default [`DEFAULT_RESPONSE_TIMEOUT`]).
    pub fn set_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long to wait for a connection to Redis (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn set_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the id of an acknowledged job stays taken (default [`DEFAULT_DEDUP_WINDOW`]).
    /// Within it, scheduling the id again creates nothing (`created: false`), so a schedule
    /// call sent again after its reply was lost cannot run a job that already finished a
    /// second time. Costs about 100 bytes of Redis memory per job finished in the window;
    /// zero turns it off. It is applied by the worker's acknowledgements, so set it where
    /// workers run.
    pub fn set_dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window;
        self
    }

    /// Certificates for a `rediss://` URL (default: none; the system's roots verify the
    /// server). A `redis://` URL ignores them.
    pub fn set_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The TLS certificates in force, if any were set.
    pub fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    /// The dedup window in force.
    pub fn dedup_window(&self) -> Duration {
        self.dedup_window
    }

    /// The key namespace.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The response timeout in force.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// The connection timeout in force.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    fn tolerance_ms(&self) -> i64 {
        self.past_tolerance
            .map(|t| delay_ms(t).unwrap_or(i64::MAX as u64) as i64)
            .unwrap_or(-1)
    }
}

/// When a job is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// This long after the Redis server receives the request (resolved by the server's clock).
    In(Duration),
    /// At this wall-clock time.
    At(SystemTime),
}

impl When {
    /// Due at once.
    pub const NOW: When = When::In(Duration::ZERO);

    /// `("in" | "at", milliseconds)` for the scripts, validated.
    fn to_args(self, queue: &str, id: &str) -> Result<(&'static str, u64)> {
        match self {
            When::In(d) => delay_ms(d)
                .map(|ms| ("in", ms))
                .ok_or_else(|| Error::DelayOverflow {
                    queue: queue.to_owned(),
                    delay: d,
                }),
            When::At(t) => unix_ms(t)
                .map(|ms| ("at", ms))
                .ok_or_else(|| Error::DelayOverflow {
                    queue: queue.to_owned(),
                    delay: t.duration_since(SystemTime::now()).unwrap_or(Duration::MAX),
                }),
        }
        .map_err(|e| {
            tracing::debug!(queue, id, error = %e, "refused due time");
            e
        })
    }
}

/// A job to schedule: its data and options. Build it with [`NewJob::new`] and the setters.
#[derive(Debug)]
pub struct NewJob {
    id: Option<String>,
    kind: String,
    data: std::result::Result<Vec<u8>, rmp_serde::encode::Error>,
    when: When,
    max_attempts: Option<u32>,
    backoff: Option<BackoffSpec>,
}

impl NewJob {
    /// A job carrying `data` (encoded now as MessagePack with named fields), due at once, with a
    /// generated id and the kind set to the type's name. An encoding failure is reported by
    /// [`Queue::schedule`] as [`Error::Encode`].
    pub fn new<T: Serialize + ?Sized>(data: &T) -> Self {
        let type_name = std::any::type_name::<T>();
        let kind = type_name
            .rsplit("::")
            .next()
            .unwrap_or(type_name)
            .to_owned();
        NewJob {
            id: None,
            kind,
            data: envelope::encode_data(data),
            when: When::NOW,
            max_attempts: None,
            backoff: None,
        }
    }

    /// A job whose data is already MessagePack (for tools that translate from JSON).
    pub fn from_msgpack(kind: impl Into<String>, data: Vec<u8>) -> Self {
        NewJob {
            id: None,
            kind: kind.into(),
            data: Ok(data),
            when: When::NOW,
            max_attempts: None,
            backoff: None,
        }
    }

    /// Due `delay` from now (by the Redis server's clock).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.when = When::In(delay);
        self
    }

    /// Due at `at`.
    pub fn at(mut self, at: SystemTime) -> Self {
        self.when = When::At(at);
        self
    }

    /// Due as `when` says.
    pub fn when(mut self, when: When) -> Self {
        self.when = when;
        self
    }

    /// Use this id instead of a generated one. Scheduling an id that exists (in any state,
    /// including dead) creates nothing and reports [`Scheduled::created`] `== false`; so does
    /// an id whose job was acknowledged within the dedup window
    /// ([`QueueConfig::set_dedup_window`], 60 s by default). After that, or once the job is
    /// cancelled or purged, the id may be used again.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The job's kind, a label shown by inspection tools (default: the data type's name).
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Give up after this many attempts (default: the worker's
    /// [`crate::WorkerConfig::set_max_attempts`]).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Retry with this policy instead of the worker's.
    pub fn backoff(mut self, backoff: impl Into<BackoffSpec>) -> Self {
        self.backoff = Some(backoff.into());
        self
    }
}

/// What scheduling one job did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scheduled {
    /// The job's id (generated or the caller's).
    pub id: String,
    /// False when a job with this id already existed: nothing was written.
    pub created: bool,
}

/// The state a job is in; each state is one Redis key (see [`crate::keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobState {
    /// Waiting for its due time in `scheduled`.
    Scheduled,
    /// Due, waiting for a worker in `ready`.
    Ready,
    /// Held by a worker under a lease in `running`.
    Running,
    /// Out of attempts, failed permanently or undecodable, in `dead`.
    Dead,
}

impl JobState {
    /// The lower-case name used in logs and by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Ready => "ready",
            JobState::Running => "running",
            JobState::Dead => "dead",
        }
    }

    /// Every state, in the order a job moves through them.
    pub const ALL: [JobState; 4] = [
        JobState::Scheduled,
        JobState::Ready,
        JobState::Running,
        JobState::Dead,
    ];

    /// The state named `s` (as [`JobState::as_str`] writes it).
    pub fn parse(s: &str) -> Option<Self> {
        JobState::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Queue::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cancelled {
    /// The job was removed from this state and its data deleted.
    Removed(JobState),
    /// The job is running; nothing changed. It ends through its worker.
    Running,
    /// There is no such job.
    NotFound,
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
    keys: Keys,
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

    /// A handle made by [`Namespace::queue`], which checks the format.
    pub(crate) fn from_parts(ns: Namespace, name: &str, keys: Keys) -> Queue {
        Queue {
            inner: Arc::new(Inner {
                ns,
                name: name.to_owned(),
                keys,
            }),
        }
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

    pub(crate) fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub(crate) fn client(&self) -> &redis::Client {
        self.inner.ns.client()
    }

    /// A clone of the shared, auto-reconnecting connection.
    pub(crate) fn conn(&self) -> ConnectionManager {
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

    /// Sends prepared jobs: 256 per `schedule.lua` call, 32 calls per pipeline, and up to
    /// [`ROUNDS_IN_FLIGHT`] pipelines at once, so that Redis runs one while the next is built.
    async fn send(&self, prepared: &[Prepared]) -> Result<Vec<Result<Scheduled>>> {
        let keys = &self.inner.keys;
        let tolerance = self.config().tolerance_ms();
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
                    let jobs = batch
                        .iter()
                        .map(|j| (j.id.as_str(), j.mode, j.ms, j.envelope.as_slice()));
                    ops::schedule::command(keys, tolerance, jobs)
                })
                .collect();
            let mut conn = self.conn();
            async move {
                // A dropped connection or a timeout leaves it unknown whether the scripts ran;
                // sending them again is safe (an id that exists is not written twice).
                let mut backoff = ReconnectBackoff::new();
                let mut tries = 1;
                loop {
                    match ops::schedule::BINDING.pipeline(&mut conn, &calls).await {
                        Err(e) if is_transient(&e) && tries < SEND_TRIES => {
                            let delay = backoff.next_delay();
                            tracing::warn!(error = %e, retry_in = ?delay, "schedule: sending again");
                            tokio::time::sleep(delay).await;
                            tries += 1;
                        }
                        result => return (result, tries > 1),
                    }
                }
            }
        });
        let mut replies = futures_util::stream::iter(rounds).buffered(ROUNDS_IN_FLIGHT);
        let mut sent = prepared.chunks(ROUND);
        while let Some((replies, resent)) = replies.next().await {
            let Some(round) = sent.next() else {
                return Err(self.unexpected("schedule", "more replies than rounds"));
            };
            let replies = match replies {
                Ok(replies) => replies,
                Err(e) => {
                    // Every try failed: whether these jobs were written is unknown.
                    let e = self.redis_error("schedule", e);
                    results.extend(round.iter().map(|_| Err(e.clone_for_job())));
                    continue;
                }
            };
            for (batch, reply) in round.chunks(SCHEDULE_BATCH).zip(replies) {
                if let Value::ServerError(refused) = reply {
                    // This call wrote nothing (a script writes all or nothing): `OOM`, ...
                    let e = self.redis_error("schedule", refused.into());
                    results.extend(batch.iter().map(|_| Err(e.clone_for_job())));
                    continue;
                }
                let (now, created) = ops::schedule::parse(self, reply, batch.len())?;
                for (job, created) in batch.iter().zip(created) {
                    results.push(match created {
                        Written::New | Written::Exists => Ok(Scheduled {
                            id: job.id.clone(),
                            // A generated id is this call's alone: when the call was sent
                            // again, "exists" means the first sending created it.
                            created: created == Written::New || (resent && job.generated),
                        }),
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
        tracing::debug!(queue = %self.inner.name, jobs = results.len(), "scheduled");
        Ok(results)
    }

    /// Validates a job and encodes its envelope.
    fn prepare(&self, job: NewJob) -> Result<Prepared> {
        let queue = &self.inner.name;
        let generated = job.id.is_none();
        let id = match job.id {
            Some(id) => {
                validate_id(queue, &id)?;
                id
            }
            None => crate::id::new_id(),
        };
        let data = job.data.map_err(|source| Error::Encode {
            queue: queue.clone(),
            source,
        })?;
        let limit = self.config().max_payload_bytes;
        if data.len() > limit {
            return Err(Error::PayloadTooLarge {
                queue: queue.clone(),
                size: data.len(),
                limit,
            });
        }
        let (mode, ms) = job.when.to_args(queue, &id)?;
        if job.max_attempts == Some(0) {
            return Err(Error::InvalidConfig {
                what: "job max attempts",
                reason: "must be at least 1".to_owned(),
            });
        }
        let envelope = Envelope {
            version: ENVELOPE_VERSION,
            kind: job.kind,
            data,
            created_ms: unix_ms(SystemTime::now()).unwrap_or(0),
            max_attempts: job.max_attempts,
            backoff: job.backoff,
        }
        .encode()
        .map_err(|source| Error::Encode {
            queue: queue.clone(),
            source,
        })?;
        Ok(Prepared {
            id,
            generated,
            mode,
            ms,
            envelope,
        })
    }

    /// Cancels job `id` unless it is running: its data is deleted and it will not run.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn cancel(&self, id: &str) -> Result<Cancelled> {
        let outcome = match ops::cancel::call(self, id).await? {
            ops::cancel::Found::Unknown => Cancelled::NotFound,
            ops::cancel::Found::Running => Cancelled::Running,
            ops::cancel::Found::Removed(from) => Cancelled::Removed(from),
        };
        tracing::debug!(queue = %self.inner.name, job = id, ?outcome, "cancel");
        Ok(outcome)
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
        let outcome = match ops::reschedule::call(self, id, mode, ms, tolerance).await? {
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

/// A validated job, ready to send.
#[derive(Debug)]
struct Prepared {
    id: String,
    /// Made by [`crate::id::new_id`], not chosen by the caller.
    generated: bool,
    mode: &'static str,
    ms: u64,
    envelope: Vec<u8>,
}

/// Checks a caller-chosen id: 1 to [`MAX_ID_LEN`] bytes, no control characters. Ids are hash
/// fields and set members, never part of a key name, so any other text is safe.
fn validate_id(queue: &str, id: &str) -> Result<()> {
    let reject = |reason| {
        Err(Error::InvalidJobId {
            queue: queue.to_owned(),
            id: clip(id),
            reason,
        })
    };
    if id.is_empty() {
        return reject("it is empty");
    }
    if id.len() > MAX_ID_LEN {
        return reject("it is longer than 256 bytes");
    }
    if id.chars().any(char::is_control) {
        return reject("it contains control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(validate_id("q", "invoice-42").is_ok());
        assert!(validate_id("q", "emoji ✉ and spaces").is_ok());
        assert!(validate_id("q", "").is_err());
        assert!(validate_id("q", "a\nb").is_err());
        assert!(validate_id("q", &"x".repeat(257)).is_err());
    }

    #[test]
    fn kind_defaults_to_the_type_name() {
        #[derive(Serialize)]
        struct Reminder {
            text: String,
        }
        let job = NewJob::new(&Reminder { text: "hi".into() });
        assert_eq!(job.kind, "Reminder");
    }
}
