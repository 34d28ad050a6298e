//! How a worker is set up: [`WorkerConfig`] and its documented defaults, validated by
//! [`WorkerConfig::validate`] when the worker is made.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::backoff::{Backoff, Exponential};
use crate::error::{Error, Result};
use crate::time::delay_ms;

/// Default for [`WorkerConfig::set_concurrency`].
pub const DEFAULT_CONCURRENCY: usize = 32;
/// Default for [`WorkerConfig::set_lease`].
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default for [`WorkerConfig::set_max_attempts`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Default for [`WorkerConfig::set_shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default for [`WorkerConfig::set_cancel_wait`].
pub const DEFAULT_CANCEL_WAIT: Duration = Duration::from_secs(5);
/// Default for [`WorkerConfig::set_idle_wait`].
pub const DEFAULT_IDLE_WAIT: Duration = Duration::from_secs(5);

/// Settings of a [`Worker`](crate::Worker).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub(super) concurrency: usize,
    pub(super) lease: Duration,
    pub(super) max_attempts: u32,
    pub(super) backoff: Arc<dyn Backoff>,
    pub(super) shutdown_grace: Duration,
    pub(super) cancel_wait: Duration,
    pub(super) idle_wait: Duration,
    pub(super) rng_seed: Option<u64>,
    pub(super) due_times: bool,
    pub(super) timeout: Option<Duration>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: DEFAULT_CONCURRENCY,
            lease: DEFAULT_LEASE,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: Arc::new(Exponential::default()),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            cancel_wait: DEFAULT_CANCEL_WAIT,
            timeout: None,
            idle_wait: DEFAULT_IDLE_WAIT,
            rng_seed: None,
            due_times: false,
        }
    }
}

impl WorkerConfig {
    /// Handlers running at once (default [`DEFAULT_CONCURRENCY`]).
    pub fn set_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// How long a claim holds a job before the promoter gives it to another worker (default
    /// [`DEFAULT_LEASE`]). The worker extends it every third of the lease while the handler
    /// runs, so it bounds how long a *crashed* worker's job waits, not how long a job may run.
    pub fn set_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Attempts before a failing job goes to the dead set, for jobs that do not set their own
    /// (default [`DEFAULT_MAX_ATTEMPTS`]).
    pub fn set_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The retry policy for jobs that do not carry their own (default: [`Exponential`]).
    pub fn set_backoff(mut self, policy: impl Backoff + 'static) -> Self {
        self.backoff = Arc::new(policy);
        self
    }

    /// After shutdown is requested, how long running handlers may take to finish before they
    /// are cancelled and their jobs handed back (default [`DEFAULT_SHUTDOWN_GRACE`]).
    pub fn set_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// When an attempt is cancelled (the shutdown grace ran out, or the lease was lost), how
    /// long its handler may take to clean up and return after [`Context::cancelled`](crate::Context::cancelled) fires
    /// before it is dropped (default [`DEFAULT_CANCEL_WAIT`]). A handler that owns something
    /// outside the process (a child process, a remote call) uses this time to end it.
    pub fn set_cancel_wait(mut self, wait: Duration) -> Self {
        self.cancel_wait = wait;
        self
    }

    /// Give each attempt at most `timeout` (default `None`: no limit); a job's own
    /// [`NewJob::timeout`](crate::NewJob::timeout) wins over it. When it runs out,
    /// [`Context::cancelled`](crate::Context::cancelled) fires (with
    /// [`CancelReason::TimedOut`](crate::CancelReason::TimedOut)), the handler gets the cancel
    /// wait to return and is then dropped, and the attempt fails with reason `timed_out`,
    /// retried like any failure. [`Context::deadline`](crate::Context::deadline) tells the
    /// handler when it runs out.
    pub fn set_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Longest single blocking wait for work; the worker re-checks after it (default
    /// [`DEFAULT_IDLE_WAIT`]).
    pub fn set_idle_wait(mut self, wait: Duration) -> Self {
        self.idle_wait = wait;
        self
    }

    /// Ask the queue to record when each job became due, so that handlers get
    /// [`Job::due_at`](crate::Job::due_at) and [`Context::start_lag`](crate::Context::start_lag)
    /// (default off). Once any worker of a queue asks, the promoter records due times for
    /// every job of it, at a small cost per job (about 0.4 µs of Redis CPU in `promote.lua`
    /// and `claim.lua`, BENCHMARKS.md); a queue whose workers never ask pays nothing.
    /// `punctual work --metrics-addr` turns it on for its start-lag histogram.
    pub fn set_due_times(mut self, on: bool) -> Self {
        self.due_times = on;
        self
    }

    /// Seed the jitter's random source, for reproducible retry times in tests.
    pub fn set_rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |what, reason: &str| {
            Err(Error::InvalidConfig {
                what,
                reason: reason.to_owned(),
            })
        };
        if self.concurrency == 0 {
            return invalid("worker concurrency", "must be at least 1");
        }
        if self.concurrency > Semaphore::MAX_PERMITS {
            return invalid("worker concurrency", "is too large");
        }
        if self.lease < Duration::from_millis(100) || delay_ms(self.lease).is_none() {
            return invalid("worker lease", "must be between 100 ms and 100 years");
        }
        if self
            .timeout
            .is_some_and(|t| t.is_zero() || delay_ms(t).is_none())
        {
            return invalid(
                "worker timeout",
                "must be more than zero and at most 100 years",
            );
        }
        if self.max_attempts == 0 {
            return invalid("worker max attempts", "must be at least 1");
        }
        if self.idle_wait < Duration::from_millis(10) || self.idle_wait > Duration::from_secs(3600)
        {
            return invalid("worker idle wait", "must be between 10 ms and 1 hour");
        }
        Ok(())
    }
}
