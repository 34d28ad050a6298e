//! # punctual: on-time delayed jobs on Redis
//!
//! (Guide written below in the crate docs.)
#![forbid(unsafe_code)]

pub mod backoff;
mod envelope;
mod error;
mod id;
mod job;
pub mod keys;
pub mod promoter;
pub mod queue;
mod reconnect;
mod scripts;
mod time;
pub mod worker;

pub use backoff::{Backoff, BackoffSpec, Exponential, Fixed, Rng};
pub use error::{redact_url, Error, Result};
pub use job::{Context, Job, Outcome};
pub use promoter::{PromoteReport, Promoter, PromoterConfig};
pub use queue::{
    Cancelled, Counts, ErrorRecord, JobInfo, JobState, NewJob, Queue, QueueConfig, Rescheduled,
    Scheduled, When,
};
pub use time::MAX_DELAY;
pub use worker::{Worker, WorkerConfig, DEFAULT_MAX_ATTEMPTS};
