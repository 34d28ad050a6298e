//! What a producer sends: a [`NewJob`] (data, due time, id, limits), [`When`] it is due, and
//! how it is checked and encoded before anything is sent ([`Prepared`]). What came of it is a
//! [`Scheduled`].

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::backoff::BackoffSpec;
use crate::envelope::{self, Envelope, ENVELOPE_VERSION};
use crate::error::{clip, Error, Result};
use crate::queue::Queue;
use crate::time::{delay_ms, unix_ms};

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
    partition_key: Option<String>,
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
            partition_key: None,
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
            partition_key: None,
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

impl Queue {
    /// Validates a job and encodes its envelope.
    pub(crate) fn prepare(&self, job: NewJob) -> Result<Prepared> {
        let queue = &self.name().to_owned();
        let generated = job.id.is_none();
        let id = match (job.id, job.partition_key) {
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
