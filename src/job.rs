//! What a handler receives and returns: [`Job`], [`Context`] and [`Outcome`].

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

/// A job handed to a handler, with its data decoded as `T`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Job<T> {
    /// The job's id.
    pub id: String,
    /// The job's kind label.
    pub kind: String,
    /// The job's data.
    pub data: T,
    /// This attempt's number; the first run is 1. A run cut short by a crashed worker counts.
    pub attempt: u32,
    /// The attempt after which a failure sends the job to the dead set.
    pub max_attempts: u32,
    /// When the job was created (producer clock).
    pub created_at: SystemTime,
    /// When this attempt became due (Redis server clock): the scheduled time, the retry time
    /// after a failure, or the moment a crashed worker's lease ran out. `None` unless due times
    /// are recorded for the queue ([`crate::WorkerConfig::set_due_times`]; they cost a little
    /// per job, so they are off until a worker asks), and for an id written into `ready` by
    /// hand.
    pub due_at: Option<SystemTime>,
}

impl<T> Job<T> {
    /// True when a failure of this attempt is final.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

/// Why an attempt was cancelled ([`Context::cancelled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// The worker's shutdown grace period ran out: the job is handed back.
    Shutdown,
    /// The worker lost the job's lease: another worker may run it now.
    LeaseLost,
    /// The attempt's timeout ran out: it fails with reason `timed_out` and is retried.
    TimedOut,
    /// The job's cancellation was asked (`Queue::cancel`): it ends dead, reason `cancelled`.
    Cancelled,
}

/// The handler's view of the worker running it.
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) queue: String,
    pub(crate) shutdown: CancellationToken,
    pub(crate) cancel: CancellationToken,
    /// Why `cancel` fired, set just before the worker fires it (unset: the shutdown grace
    /// ran out, which fires it through its parent token).
    pub(crate) reason: std::sync::Arc<std::sync::OnceLock<CancelReason>>,
    pub(crate) deadline: Option<std::time::Instant>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) start_lag: Option<Duration>,
}

impl Context {
    /// The queue the job came from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// True once the worker was asked to stop. A long handler may return
    /// [`Outcome::Snooze`] to hand its job back early; otherwise it is given the worker's grace
    /// period to finish, then cancelled and the job handed back without using an attempt.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Completes when the worker is asked to stop.
    pub async fn shutdown_requested(&self) {
        self.shutdown.cancelled().await;
    }

    /// Completes when this attempt is cancelled ([`Context::cancel_reason`] says why): the
    /// shutdown grace period ran out, the worker lost the job's lease (another worker may run
    /// it now), the attempt's timeout ran out, or the job's cancellation was asked. The
    /// handler then has [`crate::WorkerConfig::set_cancel_wait`] to stop what it started and
    /// return; its outcome is not reported (a hand-back at shutdown, nothing after a lost
    /// lease, a `timed_out` failure, a move to the dead set with reason `cancelled`). A
    /// handler that owns nothing outside its own future can ignore this: it is dropped.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// True once [`Context::cancelled`] has fired.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Why the attempt was cancelled; `None` while it is not.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        if !self.cancel.is_cancelled() {
            return None;
        }
        Some(self.reason.get().copied().unwrap_or(CancelReason::Shutdown))
    }

    /// When this attempt's timeout runs out ([`crate::WorkerConfig::set_timeout`],
    /// [`crate::NewJob::timeout`]); `None` without one.
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.deadline
    }

    /// This attempt's timeout: the job's own, else the worker's; `None` without one.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// How late the handler started: its start minus [`Job::due_at`], measured on the Redis
    /// server's clock up to the claim and on this process's monotonic clock after it, so host
    /// clock skew does not enter. `None` when the due time is unknown (see [`Job::due_at`]).
    pub fn start_lag(&self) -> Option<Duration> {
        self.start_lag
    }
}

/// What became of an attempt. A handler that panics counts as [`Outcome::Fail`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// It worked: the job is deleted (or kept as completed, by the queue's retention).
    Done,
    /// It worked, with this result (MessagePack; [`Outcome::done_with`] encodes a value): kept
    /// with the completed job when the queue keeps completed jobs
    /// ([`crate::Queue::set_completed_retention`]), otherwise dropped like the job. At most
    /// the queue's payload limit; a larger result is not kept (the job still completes).
    DoneWith(Vec<u8>),
    /// It failed: retry after the backoff policy's delay, or go to the dead set if this was
    /// the last attempt. The message is kept as the job's last error.
    Fail(String),
    /// It failed, and the handler knows when to try again (e.g. a `Retry-After` header). Uses
    /// an attempt like [`Outcome::Fail`].
    RetryAfter(Duration, String),
    /// It failed and must not be retried: straight to the dead set.
    Kill(String),
    /// Not now: come back after this delay without using an attempt.
    Snooze(Duration),
}

impl Outcome {
    /// [`Outcome::DoneWith`] with `value` encoded as MessagePack (named fields), read back with
    /// [`crate::JobInfo::result_as`]. A value that cannot be encoded fails the attempt instead.
    pub fn done_with<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        match rmp_serde::to_vec_named(value) {
            Ok(bytes) => Outcome::DoneWith(bytes),
            Err(e) => Outcome::Fail(format!("cannot encode the result: {e}")),
        }
    }

    /// [`Outcome::Fail`] with `error`'s message.
    pub fn fail(error: impl std::fmt::Display) -> Self {
        Outcome::Fail(error.to_string())
    }

    /// [`Outcome::Kill`] with `error`'s message.
    pub fn kill(error: impl std::fmt::Display) -> Self {
        Outcome::Kill(error.to_string())
    }
}

impl<E: std::fmt::Display> From<Result<(), E>> for Outcome {
    /// `Ok` is [`Outcome::Done`], `Err` is [`Outcome::Fail`] with the error's message.
    fn from(result: Result<(), E>) -> Self {
        match result {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::fail(e),
        }
    }
}
