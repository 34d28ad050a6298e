//! The one error type of the library.
//!
//! Every variant names what failed and where (queue, job id, operation), so that a log line or a
//! CLI message is enough to act on without a debugger.

use std::time::Duration;

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in punctual.
///
/// Input errors (`Invalid*`, [`Error::DelayOverflow`], [`Error::InThePast`],
/// [`Error::PayloadTooLarge`], [`Error::Encode`]) are detected before anything is written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A queue name or key prefix that would not make a safe, single-slot Redis key.
    #[error("invalid queue name {name:?}: {reason}")]
    InvalidQueueName {
        /// The rejected name (cut to 64 characters).
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A caller-chosen job id that cannot be stored.
    #[error("invalid job id {id:?} for queue {queue:?}: {reason}")]
    InvalidJobId {
        /// The queue the job was meant for.
        queue: String,
        /// The rejected id (cut to 64 characters).
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A Redis URL that does not parse. The password, if any, is not repeated here.
    #[error("invalid redis url {url:?}: {source}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What the redis client said about it.
        #[source]
        source: redis::RedisError,
    },

    /// A Redis Cluster that cannot serve: not every slot is assigned and up (a node that has
    /// not joined a cluster yet, or a cluster with a failed shard). Nothing was read or written.
    #[error("redis cluster at {url} is not ready ({state}); nothing was read or written")]
    ClusterNotReady {
        /// The URL (password redacted).
        url: String,
        /// What `CLUSTER INFO` said: its `cluster_state` and slot counts.
        state: String,
    },

    /// A queue created with a partition count other than the one it exists with.
    #[error(
        "queue {queue:?} exists with {found} partition(s), not {asked}; \
         a queue's partition count is fixed when it is created"
    )]
    PartitionsMismatch {
        /// The queue.
        queue: String,
        /// Its partition count.
        found: u16,
        /// The count asked for.
        asked: u16,
    },

    /// Durability is on ([`crate::QueueConfig::set_durability`]) and fewer replicas than
    /// asked confirmed a write in time. The write is on the primary (it happened) but may be
    /// lost if the primary fails before its replicas catch up.
    #[error(
        "queue {queue:?}: {op} was written on the primary but only {confirmed} of {wanted} \
         replica(s) confirmed it within {timeout:?}; it may be lost in a failover"
    )]
    NotReplicated {
        /// The queue.
        queue: String,
        /// The operation.
        op: &'static str,
        /// Replicas that confirmed.
        confirmed: u32,
        /// Replicas asked for.
        wanted: u32,
        /// How long was waited.
        timeout: Duration,
    },

    /// A configuration value outside its allowed range.
    #[error("invalid configuration: {what} {reason}")]
    InvalidConfig {
        /// The setting, e.g. `"worker concurrency"`.
        what: &'static str,
        /// Why the value is refused.
        reason: String,
    },

    /// A delay too large to be a millisecond timestamp (more than [`crate::MAX_DELAY`]).
    #[error("delay of {delay:?} for queue {queue:?} is too large (at most {max:?})", max = crate::MAX_DELAY)]
    DelayOverflow {
        /// The queue the job was meant for.
        queue: String,
        /// The rejected delay.
        delay: Duration,
    },

    /// An absolute due time further in the past than the queue's tolerance allows.
    #[error(
        "job {id:?} on queue {queue:?}: due time {at_ms} ms is {late_ms} ms in the past \
         (tolerance {tolerance_ms} ms); use a relative delay to run it now"
    )]
    InThePast {
        /// The queue the job was meant for.
        queue: String,
        /// The job's id.
        id: String,
        /// The requested due time, unix milliseconds.
        at_ms: u64,
        /// How far before the Redis server's clock that time was.
        late_ms: u64,
        /// The tolerance in force ([`crate::QueueConfig::set_past_tolerance`]).
        tolerance_ms: u64,
    },

    /// A job payload larger than the queue accepts.
    #[error("payload of {size} bytes for queue {queue:?} exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The queue the job was meant for.
        queue: String,
        /// Encoded size of the payload.
        size: usize,
        /// [`crate::QueueConfig::set_max_payload_bytes`].
        limit: usize,
    },

    /// The job data could not be encoded as MessagePack.
    #[error("cannot encode job data for queue {queue:?}: {source}")]
    Encode {
        /// The queue the job was meant for.
        queue: String,
        /// What the encoder said.
        #[source]
        source: rmp_serde::encode::Error,
    },

    /// Stored job data that cannot be decoded into the requested type.
    #[error("cannot decode job {id:?} on queue {queue:?}: {reason}")]
    Decode {
        /// The queue holding the job.
        queue: String,
        /// The job's id.
        id: String,
        /// What the decoder said.
        reason: String,
    },

    /// Redis refused, failed or could not be reached.
    #[error("redis error on queue {queue:?} during {op}: {source}")]
    Redis {
        /// The queue being worked on.
        queue: String,
        /// The operation, e.g. `"schedule"` or `"claim"`.
        op: &'static str,
        /// What the redis client said.
        #[source]
        source: redis::RedisError,
    },

    /// Redis reached `maxmemory` (policy `noeviction`) and refused a write. Every script
    /// writes all or nothing, so nothing of the refused call was stored. Jobs that finish free
    /// memory; scheduling works again once there is room.
    #[error(
        "redis is out of memory on queue {queue:?} during {op}: nothing was written \
         (maxmemory reached with policy noeviction; raise maxmemory or let workers drain \
         the queue): {source}"
    )]
    OutOfMemory {
        /// The queue being worked on.
        queue: String,
        /// The operation, e.g. `"schedule"`.
        op: &'static str,
        /// What Redis said.
        #[source]
        source: redis::RedisError,
    },

    /// The Redis user may not run a command or touch a key or channel that punctual needs
    /// (an ACL too narrow for the queue's prefix). README.md, "Access control", has the ACL.
    #[error(
        "redis refused {op} on queue {queue:?}: the user lacks a permission punctual needs \
         (see README.md, \"Access control\"): {source}"
    )]
    PermissionDenied {
        /// The queue being worked on.
        queue: String,
        /// The operation that was refused.
        op: &'static str,
        /// What Redis said: the command or key refused.
        #[source]
        source: redis::RedisError,
    },

    /// Redis refused the user name and password of the URL (or asked for ones it was not
    /// given).
    #[error("redis refused the credentials for queue {queue:?} during {op}: {source}")]
    AuthenticationFailed {
        /// The queue being worked on (`*` for a namespace).
        queue: String,
        /// The operation, usually `"connect"`.
        op: &'static str,
        /// What Redis said.
        #[source]
        source: redis::RedisError,
    },

    /// Redis answered something a punctual script never returns: the keys were changed by hand,
    /// or another program shares the prefix.
    #[error("unexpected reply on queue {queue:?} during {op}: {detail}")]
    UnexpectedReply {
        /// The queue being worked on.
        queue: String,
        /// The operation.
        op: &'static str,
        /// What was wrong with the reply.
        detail: String,
    },

    /// The queue's keys were written by an incompatible version of punctual.
    #[error(
        "queue {queue:?} has storage format {found:?}, this punctual writes format {expected}"
    )]
    IncompatibleFormat {
        /// The queue.
        queue: String,
        /// The format version found in Redis.
        found: String,
        /// The format version this build reads and writes.
        expected: u32,
    },
}

impl Error {
    /// The error for `source`, raised by Redis during `op` on `queue`: refusals that need an
    /// operator (memory, permissions, credentials) get their own variants.
    pub(crate) fn from_redis(queue: &str, op: &'static str, source: redis::RedisError) -> Error {
        let queue = queue.to_owned();
        let source = first_server_error(source);
        let code = source.code().unwrap_or("");
        let detail = source.detail().unwrap_or("");
        if code == "OOM" {
            Error::OutOfMemory { queue, op, source }
        } else if code == "NOPERM"
            // Refusals inside a script come back as ERR with this wording.
            || detail.starts_with("The user executing the script can't")
        {
            Error::PermissionDenied { queue, op, source }
        } else if matches!(code, "WRONGPASS" | "NOAUTH")
            || source.kind() == redis::ErrorKind::AuthenticationFailed
        {
            Error::AuthenticationFailed { queue, op, source }
        } else {
            Error::Redis { queue, op, source }
        }
    }

    /// True for bad input: the caller's job, id, time, name, URL or setting was refused
    /// before anything was sent, and sending it again unchanged fails the same way. The CLI
    /// exits with status 2 for these, 1 for the rest.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidQueueName { .. }
                | Error::InvalidJobId { .. }
                | Error::InvalidUrl { .. }
                | Error::InvalidConfig { .. }
                | Error::DelayOverflow { .. }
                | Error::InThePast { .. }
                | Error::PayloadTooLarge { .. }
                | Error::Encode { .. }
        )
    }

    /// The same error again, for each job of a batch that one Redis failure hit. Errors that
    /// hold no Redis error (never made for a batch) become [`Error::UnexpectedReply`] with
    /// their message.
    pub(crate) fn clone_for_job(&self) -> Error {
        match self {
            Error::Redis { queue, op, source } => Error::Redis {
                queue: queue.clone(),
                op,
                source: source.clone(),
            },
            Error::OutOfMemory { queue, op, source } => Error::OutOfMemory {
                queue: queue.clone(),
                op,
                source: source.clone(),
            },
            Error::PermissionDenied { queue, op, source } => Error::PermissionDenied {
                queue: queue.clone(),
                op,
                source: source.clone(),
            },
            Error::AuthenticationFailed { queue, op, source } => Error::AuthenticationFailed {
                queue: queue.clone(),
                op,
                source: source.clone(),
            },
            Error::NotReplicated {
                queue,
                op,
                confirmed,
                wanted,
                timeout,
            } => Error::NotReplicated {
                queue: queue.clone(),
                op,
                confirmed: *confirmed,
                wanted: *wanted,
                timeout: *timeout,
            },
            other => Error::UnexpectedReply {
                queue: String::new(),
                op: "copy",
                detail: other.to_string(),
            },
        }
    }

    /// True when the error came from Redis being unreachable, timing out, dropping the
    /// connection, or still loading its data after a restart: a condition that may pass,
    /// unlike bad input.
    pub fn is_connection_error(&self) -> bool {
        match self {
            Error::Redis { source, .. } => is_transient(source) || source.is_unrecoverable_error(),
            _ => false,
        }
    }
}

/// A pipeline or transaction that failed carries one server error per failed command, and
/// reads as a list of them; the first is what went wrong (the others are the same refusal:
/// `NOAUTH`, `OOM`, ...), so it becomes the error, classified and printed on one line.
fn first_server_error(source: redis::RedisError) -> redis::RedisError {
    if source.code().is_some() || source.kind() != redis::ErrorKind::Extension {
        return source;
    }
    match source.clone().into_server_errors() {
        Some(errors) => match errors.first() {
            Some((_, first)) => redis::RedisError::from(first.clone()),
            None => source,
        },
        None => source,
    }
}

/// A failure after which the same call may succeed: the connection dropped or timed out, or
/// the server is loading its data (`LOADING`, after a restart) or failing over.
pub(crate) fn is_transient(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
            )
        )
}

/// A transaction the cluster refused because its slot moved (`MOVED` or `ASK` for its
/// commands, during a failover or a resharding): none of it ran, so reading again is safe.
pub(crate) fn is_moved_transaction(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.kind() == ErrorKind::Server(ServerErrorKind::ExecAbort)
        && e.clone().into_server_errors().is_some_and(|items| {
            !items.is_empty()
                && items.iter().all(|(_, s)| {
                    matches!(
                        s.kind(),
                        Some(ServerErrorKind::Moved | ServerErrorKind::Ask)
                    )
                })
        })
}

/// Cuts user-supplied text for inclusion in an error message.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_owned(),
    }
}

/// Replaces the password of a Redis URL with `***`, so URLs can go into errors and logs.
pub fn redact_url(url: &str) -> String {
    // A cluster's seed list: each entry may carry credentials.
    if url.contains(',') {
        return url.split(',').map(redact_url).collect::<Vec<_>>().join(",");
    }
    // scheme://[user][:password]@host...
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else if user.is_empty() {
                String::new()
            } else {
                // A lone userinfo is the password in redis URLs (`redis://secret@host`).
                "***".to_owned()
            };
            format!("{}://{}@{}", &url[..scheme_end], masked, &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("redis://app:s3cret@db:6379/1"),
            "redis://app:***@db:6379/1"
        );
        assert_eq!(redact_url("rediss://:s3cret@db"), "rediss://:***@db");
        assert_eq!(redact_url("redis://s3cret@db"), "redis://***@db");
        assert_eq!(redact_url("not a url"), "not a url");
        // A cluster's seed list: every entry's password.
        assert_eq!(
            redact_url("redis://u:pw@h1:7000,redis://u:pw@h2:7001/,h3:7002"),
            "redis://u:***@h1:7000,redis://u:***@h2:7001/,h3:7002"
        );
    }

    /// Found by the chaos soak: right after a restart Redis answers LOADING while it reads its
    /// append-only file. That passes, so callers wait and try again instead of giving up.
    #[test]
    fn loading_is_transient_and_refusals_are_typed() {
        use redis::{ErrorKind, RedisError, ServerErrorKind};
        let loading =
            RedisError::from((ErrorKind::Server(ServerErrorKind::BusyLoading), "loading"));
        let err = Error::from_redis("q", "ack", loading);
        assert!(err.is_connection_error(), "{err:?}");
        let noperm = RedisError::from((ErrorKind::Server(ServerErrorKind::NoPerm), "no"));
        let err = Error::from_redis("q", "claim", noperm);
        assert!(matches!(err, Error::PermissionDenied { .. }) && !err.is_connection_error());
    }

    #[test]
    fn clip_cuts_long_text() {
        assert_eq!(clip("short"), "short");
        let long = "x".repeat(100);
        assert_eq!(clip(&long).len(), 67);
    }
}
