//! What a producer sends: a [`NewJob`] (data, due time, id, limits), [`When`] it is due, and
//! how it is checked and encoded before anything is sent ([`Prepared`]). What came of it is a
//! [`Scheduled`].

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::backoff::BackoffSpec;
use crate::envelope::{self, Envelope, ENVELOPE_VERSION};
use crate::error::{clip, Error, Result};
use crate::queue::Queue;
use crate::time::{delay_ms, delay_ms_up, unix_ms, unix_ms_up};
use crate::vocab::ScheduleOutcome;

/// Longest caller-chosen job id, in bytes.
pub const MAX_ID_LEN: usize = 256;
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
    pub(crate) fn to_args(self, queue: &str, id: &str) -> Result<(&'static str, u64)> {
        match self {
            // Rounded up: a job is never due before the instant asked for.
            When::In(d) => {
                delay_ms_up(d)
                    .map(|ms| ("in", ms))
                    .ok_or_else(|| Error::DelayOverflow {
                        queue: queue.to_owned(),
                        delay: d,
                    })
            }
            When::At(t) => unix_ms_up(t)
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

/// What happens when a job is scheduled with an id that already exists: decided atomically
/// by `schedule.lua`, and reported as a [`ScheduleOutcome`].
///
/// The modes other than [`OnConflict::Reject`] act on a job that is still *waiting*
/// (scheduled, or ready and not yet claimed). A running job is never touched (the outcome is
/// [`ScheduleOutcome::Running`]; schedule a follow-up under an id of its own if one is
/// wanted). A job that finished (dead, or acknowledged within the dedup window) counts as
/// absent in these modes: a new job is created, and a dead one is deleted first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnConflict {
    /// Nothing changes; the outcome is [`ScheduleOutcome::Rejected`]. The default: it makes
    /// sending a schedule call again always safe.
    #[default]
    Reject,
    /// The new data and due time replace the waiting job's ([`ScheduleOutcome::Replaced`]).
    Replace,
    /// The waiting job gets the new data and the new due time (typically "now + delay"), but
    /// never a due time later than `max_wait` after the job was first scheduled, so that a
    /// stream of events cannot postpone it forever ([`ScheduleOutcome::Debounced`]).
    Debounce {
        /// The cap, counted from the first scheduling; `None`: no cap.
        max_wait: Option<Duration>,
    },
    /// Whichever due time is earlier wins, with its data ([`ScheduleOutcome::Replaced`] or
    /// [`ScheduleOutcome::Kept`]).
    KeepEarliest,
    /// Whichever due time is later wins, with its data.
    KeepLatest,
}

impl OnConflict {
    /// The mode named `s` (`reject`, `replace`, `debounce` without a cap, `keep_earliest`,
    /// `keep_latest`; `-` and `_` alike).
    pub fn parse(s: &str) -> Option<OnConflict> {
        Some(match s.replace('-', "_").as_str() {
            "reject" => OnConflict::Reject,
            "replace" => OnConflict::Replace,
            "debounce" => OnConflict::Debounce { max_wait: None },
            "keep_earliest" => OnConflict::KeepEarliest,
            "keep_latest" => OnConflict::KeepLatest,
            _ => return None,
        })
    }

    /// Its name in `schedule.lua`'s options.
    pub fn as_str(self) -> &'static str {
        match self {
            OnConflict::Reject => "reject",
            OnConflict::Replace => "replace",
            OnConflict::Debounce { .. } => "debounce",
            OnConflict::KeepEarliest => "keep_earliest",
            OnConflict::KeepLatest => "keep_latest",
        }
    }
}

/// What becomes of a job whose time ran out ([`NewJob::expires_at`], [`NewJob::max_lateness`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnExpiry {
    /// The dead set, with reason `expired` (visible, and can be retried by hand).
    #[default]
    Dead,
    /// Deleted.
    Drop,
}

/// Lowest [`NewJob::priority`].
pub const MIN_PRIORITY: i8 = -9;
/// Highest [`NewJob::priority`].
pub const MAX_PRIORITY: i8 = 9;
/// Default for [`Queue::set_priority_step`]: how long a job of one priority level lower may
/// wait behind later jobs before it goes first.
pub const DEFAULT_PRIORITY_STEP: Duration = Duration::from_secs(60);

/// A job to schedule: its data and options. Build it with [`NewJob::new`] and the setters.
#[derive(Debug)]
pub struct NewJob {
    id: Option<String>,
    partition_key: Option<String>,
    kind: String,
    data: std::result::Result<Vec<u8>, rmp_serde::encode::Error>,
    when: When,
    max_attempts: Option<u32>,
    backoff: Option<BackoffSpec>,
    on_conflict: OnConflict,
    expires_at: Option<SystemTime>,
    max_lateness: Option<Duration>,
    on_expiry: OnExpiry,
    timeout: Option<Duration>,
    priority: i8,
    compensation: Option<Box<NewJob>>,
    limit_key: Option<String>,
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
            partition_key: None,
            kind,
            data: envelope::encode_data(data),
            when: When::NOW,
            max_attempts: None,
            backoff: None,
            on_conflict: OnConflict::Reject,
            expires_at: None,
            max_lateness: None,
            on_expiry: OnExpiry::Dead,
            timeout: None,
            priority: 0,
            compensation: None,
            limit_key: None,
        }
    }

    /// A job whose data is already MessagePack (for tools that translate from JSON).
    pub fn from_msgpack(kind: impl Into<String>, data: Vec<u8>) -> Self {
        NewJob {
            id: None,
            partition_key: None,
            kind: kind.into(),
            data: Ok(data),
            when: When::NOW,
            max_attempts: None,
            backoff: None,
            on_conflict: OnConflict::Reject,
            expires_at: None,
            max_lateness: None,
            on_expiry: OnExpiry::Dead,
            timeout: None,
            priority: 0,
            compensation: None,
            limit_key: None,
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
    /// ([`QueueConfig::set_dedup_window`](crate::QueueConfig::set_dedup_window), 60 s by default). After that, or once the job is
    /// cancelled or purged, the id may be used again.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// On a partitioned queue, put this job in the partition of `key`, with every other job
    /// given the same key (jobs that must share state, such as a rate limit, share a
    /// partition). The key becomes the hash tag of the generated id: the id is
    /// `<generated>{key}`, so that lookups by id find the partition without a scan. With
    /// your own id ([`NewJob::id`]), put the key in braces in the id instead; giving both is
    /// refused unless the id already carries `{key}`. No effect on a queue of one partition
    /// beyond the id's form.
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Refuses, in a recurring schedule's job, what each occurrence takes from its schedule:
    /// an id, a partition key, a due time, an absolute expiry; and a compensation.
    pub(crate) fn check_template(&self) -> Result<()> {
        if self.id.is_some()
            || self.partition_key.is_some()
            || self.when != When::NOW
            || self.expires_at.is_some()
            || self.compensation.is_some()
        {
            return Err(Error::InvalidConfig {
                what: "recurring schedule's job",
                reason: "each occurrence takes its id and due time from its schedule: give the \
                         job no id, partition key, due time or expiry time (max_lateness is \
                         fine), and no compensation"
                    .to_owned(),
            });
        }
        Ok(())
    }

    /// Its kind (see [`NewJob::kind`]).
    pub(crate) fn kind_name(&self) -> &str {
        &self.kind
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

    /// What happens when a job with this id exists (default [`OnConflict::Reject`]).
    pub fn on_conflict(mut self, mode: OnConflict) -> Self {
        self.on_conflict = mode;
        self
    }

    /// Do not run the job after `at`: if it is not claimed by then (its promotion or claim
    /// comes later, or a retry would land later), it goes to the dead set with reason
    /// `expired` (or is deleted, see [`NewJob::on_expiry`]). Must be after the due time.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Do not run the job more than `lateness` after its due time (as [`NewJob::expires_at`],
    /// counted from the due time; a reschedule moves it along). With both, the earlier wins.
    pub fn max_lateness(mut self, lateness: Duration) -> Self {
        self.max_lateness = Some(lateness);
        self
    }

    /// What becomes of the job when its time runs out (default [`OnExpiry::Dead`]).
    pub fn on_expiry(mut self, what: OnExpiry) -> Self {
        self.on_expiry = what;
        self
    }

    /// Run this job before due jobs of lower priority (default 0; from [`MIN_PRIORITY`] to
    /// [`MAX_PRIORITY`], higher first). Priority orders jobs that are *due*: it never makes a
    /// job run before its due time. Among due jobs a worker takes the one with the lowest
    /// `became due - priority × step` first, `step` being the queue's aging step
    /// ([`Queue::set_priority_step`], [`DEFAULT_PRIORITY_STEP`]): a job of priority 5 goes
    /// before jobs of priority 0 that became due up to 5 steps before it, and a job of lower
    /// priority waits at most one step per level behind jobs that became due after it, so a
    /// flood of high priority jobs cannot starve it. Within one priority, due order (then id
    /// order) holds. A queue's first job with a priority switches it to ranked ready jobs
    /// (a ZSET; see docs/layout.md): a queue that never uses priorities pays nothing.
    pub fn priority(mut self, priority: i8) -> Self {
        self.priority = priority;
        self
    }

    /// Start this job only as the queue's limit rule for `key` allows ([`crate::Queue::set_limit`]:
    /// at most N starts per period and/or C running at once, per key): a job that may not
    /// start yet goes back to wait until the rule lets it, with no attempt used, while other
    /// keys' jobs flow. 1 to 200 bytes, no tab or newline (`customer:42`, `smtp`). Jobs that
    /// share a key should share a partition ([`NewJob::partition_key`]) on a partitioned
    /// queue: each partition keeps its own count.
    pub fn limit_key(mut self, key: impl Into<String>) -> Self {
        self.limit_key = Some(key.into());
        self
    }

    /// When this job dies after it ran (its last attempt failed, it failed for good, could not
    /// be decoded, was cancelled while it ran, or a retry would pass its expiry), schedule
    /// `job`, due at once, **in the same step** that moves this one to the dead set: a crash
    /// right after cannot lose it. The compensating job goes to the same queue and partition
    /// with the id [`compensation_id`]`(this job's id)`, its own kind, data, attempts,
    /// backoff, timeout and priority; a handler tells it by its kind. A job compensates once:
    /// when its compensating job's id is taken (a dead retry that died again while the
    /// first compensation is kept), nothing more is scheduled. A job whose time ran out
    /// before it ever ran, or that asked to be dropped, does not compensate.
    ///
    /// `job` takes its id and due time from this one: setting its id, partition key,
    /// conflict mode, expiry or its own compensation is refused when scheduling.
    pub fn compensate_with(mut self, job: NewJob) -> Self {
        self.compensation = Some(Box::new(job));
        self
    }

    /// Give each attempt of this job at most `timeout` (instead of the worker's
    /// [`crate::WorkerConfig::set_timeout`]): then the handler is cancelled and the attempt
    /// fails with reason `timed_out`, retried like any failure.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// What scheduling one job did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scheduled {
    /// The job's id (generated or the caller's).
    pub id: String,
    /// True when a new job was written ([`ScheduleOutcome::Created`]).
    pub created: bool,
    /// What happened, by the call's conflict mode.
    pub outcome: ScheduleOutcome,
    /// The job's due time now, when it waits in `scheduled`; `None` when it is ready,
    /// running, dead or finished.
    pub due_at: Option<SystemTime>,
}

impl Queue {
    /// Validates a job and encodes its envelope.
    pub(crate) fn prepare(&self, mut job: NewJob) -> Result<Prepared> {
        let queue = &self.name().to_owned();
        let options = options(&job)?;
        let generated = job.id.is_none();
        let id = match (job.id.take(), job.partition_key.take()) {
            (Some(id), key) => {
                validate_id(queue, &id)?;
                if let Some(key) = key {
                    if !id.contains(&format!("{{{key}}}")) || key.contains(['{', '}']) {
                        return Err(Error::InvalidJobId {
                            queue: queue.clone(),
                            id: clip(&id),
                            reason: "with your own id, put the partition key in the id as {key}",
                        });
                    }
                }
                id
            }
            (None, Some(key)) => {
                let id = format!("{}{{{key}}}", crate::id::new_id());
                if key.is_empty() || key.contains(['{', '}']) {
                    return Err(Error::InvalidJobId {
                        queue: queue.clone(),
                        id: clip(&id),
                        reason: "a partition key must be non-empty and without braces",
                    });
                }
                validate_id(queue, &id)?;
                id
            }
            (None, None) => crate::id::new_id(),
        };
        let (mode, ms) = job.when.to_args(queue, &id)?;
        let mut options = options;
        if let Some(undo) = job.compensation.take() {
            let (key, value) = self.compensation(&id, *undo)?;
            options.insert(key.into(), value);
        }
        // "" when every option is the default, so a plain job costs nothing more.
        let options = match options.is_empty() {
            true => String::new(),
            false => serde_json::Value::Object(options).to_string(),
        };
        let envelope = self.envelope(job, generated)?;
        Ok(Prepared {
            id,
            generated,
            mode,
            ms,
            envelope,
            options,
        })
    }

    /// The option that names the compensating job `undo` of job `id`: `"undo": {"id", "e"}`,
    /// its envelope in hex, which `cjson` and Lua read without a MessagePack decoder.
    fn compensation(&self, id: &str, undo: NewJob) -> Result<(&'static str, serde_json::Value)> {
        let refuse = |reason: &str| Error::InvalidConfig {
            what: "compensating job",
            reason: reason.to_owned(),
        };
        if undo.id.is_some()
            || undo.partition_key.is_some()
            || undo.expires_at.is_some()
            || undo.max_lateness.is_some()
            || undo.on_conflict != OnConflict::Reject
            || undo.compensation.is_some()
        {
            return Err(refuse(
                "it takes its id and due time from the job it compensates: give it no id, \
                 partition key, conflict mode, expiry or compensation of its own",
            ));
        }
        let undo_id = compensation_id(id).ok_or_else(|| Error::InvalidJobId {
            queue: self.name().to_owned(),
            id: clip(id),
            reason: "a job with a compensating job needs an id with a {tag}, or one without braces",
        })?;
        let envelope = self.envelope(undo, false)?;
        let hex = crate::envelope::hex(&envelope);
        Ok(("undo", serde_json::json!({"id": undo_id, "e": hex})))
    }

    /// The occurrence template of a recurring schedule (src/cron.rs): its envelope, its
    /// options object ("" for none), and its conflict mode (`Some` when occurrences share
    /// the schedule's id). Refuses what each occurrence takes from its schedule: an id, a
    /// partition key, a due time, an absolute expiry; and a compensation.
    pub(crate) fn prepare_template(
        &self,
        job: NewJob,
    ) -> Result<(Vec<u8>, String, Option<OnConflict>)> {
        job.check_template()?;
        let shared = (job.on_conflict != OnConflict::Reject).then_some(job.on_conflict);
        let options = options(&job)?;
        let options = match options.is_empty() {
            true => String::new(),
            false => serde_json::Value::Object(options).to_string(),
        };
        let envelope = self.envelope(job, false)?;
        Ok((envelope, options, shared))
    }

    /// Checks a job's data and settings and encodes its envelope. `generated`: the job's id is
    /// a generated one, which carries the creation time, so the envelope leaves it out.
    fn envelope(&self, job: NewJob, generated: bool) -> Result<Vec<u8>> {
        let queue = &self.name().to_owned();
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
        if job.max_attempts == Some(0) {
            return Err(Error::InvalidConfig {
                what: "job max attempts",
                reason: "must be at least 1".to_owned(),
            });
        }
        let timeout_ms = match job.timeout {
            None => None,
            Some(t) if t.is_zero() => {
                return Err(Error::InvalidConfig {
                    what: "job timeout",
                    reason: "must be more than zero".to_owned(),
                })
            }
            Some(t) => Some(delay_ms(t).ok_or_else(|| Error::InvalidConfig {
                what: "job timeout",
                reason: "must be at most 100 years".to_owned(),
            })?),
        };
        let priority = (job.priority != 0).then_some(job.priority);
        let envelope = Envelope {
            version: ENVELOPE_VERSION,
            kind: job.kind,
            data,
            created_ms: match generated {
                true => None,
                false => Some(unix_ms(SystemTime::now()).unwrap_or(0)),
            },
            max_attempts: job.max_attempts,
            backoff: job.backoff,
            timeout_ms,
            priority,
        }
        .encode()
        .map_err(|source| Error::Encode {
            queue: queue.clone(),
            source,
        })?;
        Ok(envelope)
    }
}

/// The id of the compensating job of job `id` ([`NewJob::compensate_with`]): `id:undo` for an
/// id with a hash tag (`order-7{customer-4}:undo`), `{id}:undo` for one without braces, so
/// that it lies in the same partition; `None` for an id with braces but no tag.
pub fn compensation_id(id: &str) -> Option<String> {
    let tagged = id
        .find('{')
        .and_then(|open| id[open + 1..].find('}').filter(|&close| close > 0));
    match tagged {
        Some(_) => Some(format!("{id}:undo")),
        None if !id.contains(['{', '}']) => Some(format!("{{{id}}}:undo")),
        None => None,
    }
}

/// The job's options object for `schedule.lua` (empty when every option is the default),
/// checked.
fn options(job: &NewJob) -> Result<serde_json::Map<String, serde_json::Value>> {
    let invalid = |what, reason: &str| Error::InvalidConfig {
        what,
        reason: reason.to_owned(),
    };
    let mut o = serde_json::Map::new();
    if job.on_conflict != OnConflict::Reject {
        o.insert("on_conflict".into(), job.on_conflict.as_str().into());
    }
    if let OnConflict::Debounce {
        max_wait: Some(wait),
    } = job.on_conflict
    {
        let ms = delay_ms(wait)
            .ok_or_else(|| invalid("debounce max wait", "must be at most 100 years"))?;
        o.insert("max_wait".into(), ms.into());
    }
    if let Some(at) = job.expires_at {
        let ms = unix_ms(at).ok_or_else(|| invalid("job expiry", "must be a time after 1970"))?;
        // The due time by this host's clock: a job that would expire before it is due is a
        // mistake, not a job.
        let due = match job.when {
            When::At(t) => t,
            When::In(d) => SystemTime::now()
                .checked_add(d)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        };
        if at <= due {
            return Err(invalid(
                "job expiry",
                "expires_at must be after the job's due time",
            ));
        }
        o.insert("expires_at".into(), ms.into());
    }
    if let Some(lateness) = job.max_lateness {
        let ms = delay_ms(lateness)
            .ok_or_else(|| invalid("job max lateness", "must be at most 100 years"))?;
        o.insert("max_lateness".into(), ms.into());
    }
    if job.on_expiry == OnExpiry::Drop {
        if job.expires_at.is_none() && job.max_lateness.is_none() {
            return Err(invalid(
                "job expiry",
                "on_expiry drop needs expires_at or max_lateness",
            ));
        }
        o.insert("on_expiry".into(), "drop".into());
    }
    if !(MIN_PRIORITY..=MAX_PRIORITY).contains(&job.priority) {
        return Err(invalid(
            "job priority",
            "must be from -9 (lowest) to 9 (highest); 0 is the default",
        ));
    }
    if job.priority != 0 {
        o.insert("priority".into(), job.priority.into());
    }
    if let Some(key) = &job.limit_key {
        if key.is_empty() || key.len() > 200 || key.contains(['\t', '\n']) {
            return Err(invalid(
                "job limit key",
                "must be 1 to 200 bytes without tab or newline",
            ));
        }
        o.insert("lk".into(), key.as_str().into());
    }
    Ok(o)
}

/// A validated job, ready to send.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) id: String,
    /// Made by [`crate::id::new_id`], not chosen by the caller.
    pub(crate) generated: bool,
    pub(crate) mode: &'static str,
    pub(crate) ms: u64,
    pub(crate) envelope: Vec<u8>,
    /// `schedule.lua`'s options object, `""` for none.
    pub(crate) options: String,
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
