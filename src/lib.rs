//! # punctual: on-time delayed jobs on Redis
//!
//! punctual runs work later, on time: send a reminder at 09:00 tomorrow, retry a webhook with
//! exponential backoff. Jobs wait in a Redis sorted set scored by their due time; a promoter
//! moves due jobs to a ready list with one Lua script; workers take them under a lease.
//!
//! ```no_run
//! use std::time::Duration;
//! use punctual::{Job, NewJob, Outcome, Promoter, PromoterConfig, Queue, Worker, WorkerConfig};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Reminder { text: String }
//!
//! # async fn demo() -> punctual::Result<()> {
//! let queue = Queue::connect("redis://127.0.0.1:6379/", "reminders").await?;
//!
//! // Producer: due in 90 s by the Redis server's clock.
//! let job = queue
//!     .schedule(NewJob::new(&Reminder { text: "stand up".into() }).delay(Duration::from_secs(90)))
//!     .await?;
//! println!("scheduled {}", job.id);
//!
//! // The scheduler loop (run one or many, in-process or as a sidecar).
//! let stop = tokio_util::sync::CancellationToken::new();
//! let promoter = Promoter::new([queue.clone()], PromoterConfig::default())?;
//! tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
//!
//! // A worker with a typed handler.
//! let worker = Worker::new(queue.clone(), WorkerConfig::default())?;
//! worker
//!     .run(
//!         |job: Job<Reminder>, _ctx| async move {
//!             println!("reminder: {}", job.data.text);
//!             Outcome::Done
//!         },
//!         stop.cancelled_owned(),
//!     )
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! ## A job's life
//!
//! Each state is one Redis key, and each move between states is one Lua script in `lua/`
//! (atomic, with every key passed in `KEYS`):
//!
//! | state | key (queue `q`) | entered by |
//! |---|---|---|
//! | scheduled | `punctual:{q}:scheduled` ZSET, score = due ms | `schedule.lua` (also replacing or debouncing a waiting job), `retry.lua`, `reschedule.lua`, `revive.lua` |
//! | ready | `punctual:{q}:ready` LIST; in a queue that uses priorities, `punctual:{q}:ranked` ZSET, score = rank | `promote.lua` (due, or lease expired) |
//! | running | `punctual:{q}:running` ZSET, score = lease deadline | `claim.lua`, `extend.lua` |
//! | completed | `punctual:{q}:completed` ZSET, score = time it completed (only with a [`Retention`]) | `ack.lua` |
//! | dead | `punctual:{q}:dead` ZSET, score = time of death | `bury.lua`; a job whose time ran out (`promote.lua`, `claim.lua`, `retry.lua`) or that was cancelled while it ran |
//! | gone | (data deleted) | `ack.lua` (without a retention, or trimming one), `cancel.lua`, `purge.lua`; an expired job that asked to be dropped |
//!
//! The job itself (a versioned MessagePack envelope) is stored once, in the `jobs` hash under
//! its id. `docs/layout.md` has the full layout, including the side hashes for attempts,
//! leases and errors.
//!
//! ## Guarantees
//!
//! In short below; `docs/guarantees.md` has each one with its limits (persistence, failover,
//! what is not guaranteed) and the chaos test's figures.
//!
//! - **Exactly-once promotion.** `promote.lua` takes due ids and removes them in one atomic
//!   step; any number of promoters can run.
//! - **At-least-once execution.** A claimed job is held under a lease. If its worker dies, the
//!   lease ends and the job returns to `ready`, counted as an attempt. A job is only deleted by
//!   the ack of the worker holding its current lease (checked by a fencing token).
//! - **Never early, one clock.** What is due is decided inside the scripts by Redis `TIME`;
//!   relative delays are resolved by the server, so application hosts' clock skew does not
//!   matter. Jobs due in the same millisecond are promoted in id order, which for generated ids
//!   is scheduling order.
//! - **Recurring schedules, exactly once.** Each fire time's job is created by a
//!   compare-and-set on the schedule's state, so any number of promoters create it once.
//! - **On time.** The promoter sleeps exactly until the next due time (the script returns it)
//!   and is woken by a PUBLISH when an earlier job is scheduled; it does not poll.
//!
//! ## Scaling out
//!
//! [`Namespace::connect`] takes one server, any node of a Redis Cluster (detected), a seed list
//! (`redis://h1:7000,h2:7001`) or `redis+sentinel://h1:26379,h2:26379/NAME`. A queue created
//! with [`Namespace::create_queue`] and K partitions spreads its jobs over K hash slots;
//! [`QueueConfig::set_durability`] acknowledges writes only once replicas have them.
//!
//! ## Layout of the crate
//!
//! Every public type has one path: the crate root. The modules, one concern each:
//!
//! - `config`: [`QueueConfig`] and [`TlsConfig`], their defaults and their validation.
//! - `conn`: how a namespace reaches Redis: one server or a Redis Cluster (seed lists,
//!   detection, routing by slot), and connections of their own for blocking waits.
//! - `namespace`: one Redis and prefix holding many queues; the registry of queue names.
//! - `open`: creating, opening, finding and removing queues (the queue's record, partitions).
//! - `queue`: the [`Queue`] handle and its partitions: scheduling, cancelling (a running job
//!   too), rescheduling, pausing (producer side).
//! - `new_job`: what a producer sends ([`NewJob`], [`When`], its conflict mode
//!   [`OnConflict`], expiry [`OnExpiry`] and timeout) and how it is checked and encoded.
//! - `inspect`: reading without changing: one job, pages of a state ([`Queue::list_page`]),
//!   counts, stats, due-time counts ([`Queue::due_counts`]).
//! - `retention`: how long finished jobs are kept ([`Retention`]; completed jobs and their
//!   results). `priority`: the queue's priority aging step. `events`: the event log and
//!   [`Queue::events`] that follows it ([`JobEvent`], [`Change`]).
//! - `dead`: the dead set: retry (`revive.lua`) and purge (`purge.lua`).
//! - `limits`: rate and concurrency limits per key ([`Limit`], [`Queue::set_limit`]), checked
//!   by `claim.lua`; `ack.lua` hands a freed slot on.
//! - `cron`: recurring schedules ([`Schedule`], [`ScheduleInfo`], [`Misfire`]): fire times in
//!   a time zone (pure), and the promoter's pass that creates each occurrence once
//!   (`schedule.lua` with a guard; `cron.lua` for add, edit, pause, resume, remove).
//! - `promoter`: the scheduler loop (scheduled → ready, expired leases → ready), for a list
//!   of queues or every queue of a namespace, one unit per partition; `share`: how promoters
//!   split a partitioned queue's partitions; `wake`: where wake-ups are heard (pub/sub, or
//!   sharded pub/sub on a cluster).
//! - [`metrics`]: what a promoter measures (promotion lag histogram, per-queue counts).
//! - `worker`: claiming, running handlers, heartbeats, reporting, shutdown; `worker/policy.rs`
//!   is "where does a failed job go" as one pure function, `worker/acks.rs` batches acks,
//!   `worker/idle.rs` is the blocking idle wait, `worker/config.rs` its settings,
//!   `worker/lanes.rs` which of several queues a worker asks first (weighted or strict).
//! - `server`: what punctual needs from Redis, and a check of it.
//! - `job`: what a handler gets and returns ([`Job`], [`Context`], [`Outcome`]).
//! - `backoff`: retry policies ([`Exponential`] with full jitter, [`Fixed`], custom).
//! - [`keys`]: the one place key names are made, with the layout table.
//! - `ops`: one typed binding per script in `lua/` (its KEYS, ARGV and reply, checked against
//!   the script's header), and the EVALSHA / NOSCRIPT calling convention.
//! - `vocab`: the words named once: [`JobState`], [`Event`] (the counters the scripts keep)
//!   and [`Reason`] (error reasons).
//! - `reconnect`: waiting out a Redis outage; `send_again`, the one resend helper.
//! - `envelope`: the stored form of a job. `id`: job ids. `time`: milliseconds conversions.
//! - `error`: the one [`Error`] type ([`Error::is_input`], [`Error::is_connection_error`]).
#![forbid(unsafe_code)]

mod backoff;
mod config;
mod conn;
mod cron;
mod dead;
mod envelope;
mod error;
mod events;
mod id;
mod inspect;
mod job;
pub mod keys;
mod limits;
pub mod metrics;
mod namespace;
mod new_job;
mod open;
mod ops;
mod priority;
mod promoter;
mod queue;
mod reconnect;
mod retention;
mod server;
mod share;
mod sleep;
mod time;
mod vocab;
mod wake;
mod worker;

pub use backoff::{Backoff, BackoffSpec, Exponential, Fixed, Rng, DEFAULT_BASE, DEFAULT_CAP};
pub use config::{
    Durability, QueueConfig, TlsConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DEDUP_WINDOW,
    DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_PAST_TOLERANCE, DEFAULT_RESPONSE_TIMEOUT, STORAGE_FORMAT,
};
pub use cron::{
    occurrence_id, Misfire, Schedule, ScheduleInfo, Timing, MIN_HORIZON, MIN_INTERVAL,
    MISFIRE_ALL_LIMIT,
};
pub use dead::Purge;
pub use error::{redact_url, Error, Result};
pub use events::{Change, EventStream, JobEvent, Since, MAX_EVENT_LOG, MAX_EVENT_SCAN};
pub use inspect::{
    Counts, ErrorRecord, JobInfo, Page, PageCursor, QueueStats, Totals, MAX_EDGES, MAX_LIST,
};
pub use job::{CancelReason, Context, Job, Outcome};
pub use limits::{check_limit, Limit, MAX_LIMIT_KEY};
pub use namespace::{Namespace, MAX_REGISTERED_QUEUES};
pub use new_job::{
    compensation_id, NewJob, OnConflict, OnExpiry, Scheduled, When, DEFAULT_PRIORITY_STEP,
    MAX_ID_LEN, MAX_PRIORITY, MIN_PRIORITY,
};
pub use open::Removed;
pub use priority::MAX_PRIORITY_STEP;
pub use promoter::{
    PromoteReport, Promoter, PromoterConfig, DEFAULT_BATCH, DEFAULT_HEARTBEAT, MAX_BATCH,
};
pub use queue::{Cancelled, Queue, Rescheduled, Waited};
pub use retention::{Retention, MAX_KEPT, TRIM_LIMIT};
pub use server::{ServerInfo, ServerProblem, MIN_REDIS_VERSION};
pub use time::MAX_DELAY;
pub use vocab::{Event, JobState, Reason, ScheduleOutcome};
pub use worker::{
    Share, Worker, WorkerConfig, DEFAULT_CANCEL_WAIT, DEFAULT_CONCURRENCY, DEFAULT_IDLE_WAIT,
    DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS, DEFAULT_SHUTDOWN_GRACE, MAX_WEIGHT,
};

/// Compiles the README's examples as doctests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Not part of the API: entry points for `benches/micro.rs`, which can reach public items only.
/// Only with the `bench-support` feature, which the crate's own dev-dependency on itself turns
/// on for its benches and tests.
#[cfg(feature = "bench-support")]
#[doc(hidden)]
pub mod bench_support {
    use crate::envelope::{Envelope, ENVELOPE_VERSION};

    /// Encodes an envelope around already-encoded `data`, as scheduling a job with a generated
    /// id does.
    pub fn encode_envelope(kind: &str, data: Vec<u8>) -> Vec<u8> {
        Envelope {
            version: ENVELOPE_VERSION,
            kind: kind.to_owned(),
            data,
            created_ms: None,
            max_attempts: None,
            backoff: None,
            timeout_ms: None,
            priority: None,
        }
        .encode()
        .unwrap_or_default()
    }

    /// Decodes an envelope as a worker does; the length of its data, or why it was refused.
    pub fn decode_envelope(bytes: &[u8]) -> Result<usize, String> {
        Envelope::decode(bytes).map(|e| e.data.len())
    }

    /// The promoter's sleep until a due time, for the raw W3 limit in benches/load: it must
    /// sleep no less precisely than punctual does.
    pub async fn sleep_until(deadline: tokio::time::Instant) {
        crate::sleep::sleep_until(deadline).await;
    }
}
