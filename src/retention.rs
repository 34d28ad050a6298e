//! How long a queue keeps finished jobs: [`Retention`], and the queue's settings for completed
//! jobs ([`Queue::set_completed_retention`]) and dead jobs ([`Queue::set_dead_retention`]).
//!
//! Both are enforced by the promoter too: `trim.lua`, once a heartbeat for every partition it
//! serves, deletes at most [`TRIM_LIMIT`] jobs of each set per call beyond the bounds, counted
//! in `dead_trimmed` and `completed_trimmed` and logged, so the bounds hold on an idle queue.
//!
//! The setting lives in each partition's `meta` (`keep_completed` = `"AGE_MS,COUNT"`), so
//! every process agrees: `claim.lua` reads it with the flags it already reads, hands it to the
//! worker, and the worker's `ack.lua` call keeps the jobs (in `completed`, with their
//! completion records in `results`) and trims what is beyond the bounds, at most 100 jobs per
//! call, counted in `completed_trimmed`. Without a setting `ack.lua` deletes completed jobs
//! as it always did, at the same cost.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::queue::Queue;
use crate::time::delay_ms;

/// Most jobs of each set one `trim.lua` call deletes (the promoter calls again at once while
/// a call reaches it).
pub const TRIM_LIMIT: usize = 1000;

/// Most jobs a retention may keep per partition.
pub const MAX_KEPT: u64 = 10_000_000;

/// Keep finished jobs at most `max_age` and at most `max_count` of them (per partition),
/// dropping the oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    max_age: Duration,
    max_count: u64,
}

impl Retention {
    /// A retention of `max_age` and `max_count` jobs.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an age under 1 ms or over 100 years, or a count of 0 or
    /// over [`MAX_KEPT`].
    pub fn new(max_age: Duration, max_count: u64) -> Result<Self> {
        let invalid = |reason: &str| {
            Err(Error::InvalidConfig {
                what: "retention",
                reason: reason.to_owned(),
            })
        };
        if max_age < Duration::from_millis(1) || delay_ms(max_age).is_none() {
            return invalid("the age must be between 1 ms and 100 years");
        }
        if max_count == 0 || max_count > MAX_KEPT {
            return invalid("the count must be between 1 and 10,000,000");
        }
        Ok(Retention { max_age, max_count })
    }

    /// The longest a job is kept.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The most jobs kept.
    pub fn max_count(&self) -> u64 {
        self.max_count
    }

    /// Its form in `meta`: `"AGE_MS,COUNT"`.
    fn to_field(self) -> String {
        format!(
            "{},{}",
            delay_ms(self.max_age).unwrap_or(u64::MAX),
            self.max_count
        )
    }

    /// Reads the `meta` form; `None` for anything else.
    fn from_field(text: &str) -> Option<Self> {
        let (age, count) = text.split_once(',')?;
        Retention::new(
            Duration::from_millis(age.parse().ok()?),
            count.parse().ok()?,
        )
        .ok()
    }
}

impl Queue {
    /// Keeps completed jobs (with their results, [`crate::Outcome::DoneWith`]) for `retention`,
    /// or, with `None`, deletes them on completion (the default). Every partition gets the
    /// setting; jobs claimed from then on follow it. Kept jobs are reported by
    /// [`Queue::get`] and [`Queue::list`] in state [`crate::JobState::Completed`]; an id stays
    /// taken while its job is kept.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn set_completed_retention(&self, retention: Option<Retention>) -> Result<()> {
        self.set_retention("keep_completed", retention).await
    }

    /// Deletes dead jobs beyond `retention` (by age and count, oldest first), or, with `None`,
    /// keeps them until they are retried or purged (the default). The promoter enforces it in
    /// bounded steps, every deletion counted in `dead_trimmed`
    /// (`punctual_dead_trimmed_total`) and logged.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn set_dead_retention(&self, retention: Option<Retention>) -> Result<()> {
        self.set_retention("keep_dead", retention).await
    }

    /// The queue's dead-set retention (read from its first partition).
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn dead_retention(&self) -> Result<Option<Retention>> {
        self.retention("keep_dead").await
    }

    async fn set_retention(&self, field: &'static str, retention: Option<Retention>) -> Result<()> {
        self.set_setting(field, retention.map(|r| r.to_field()))
            .await?;
        tracing::info!(queue = %self.name(), field, ?retention, "retention set");
        Ok(())
    }

    /// The queue's completed-job retention (read from its first partition).
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn completed_retention(&self) -> Result<Option<Retention>> {
        self.retention("keep_completed").await
    }

    async fn retention(&self, field: &'static str) -> Result<Option<Retention>> {
        let text = self.setting(field).await?;
        Ok(text.as_deref().and_then(Retention::from_field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retentions_are_checked_and_round_trip() {
        let r = Retention::new(Duration::from_secs(86_400), 10_000).unwrap();
        assert_eq!(r.to_field(), "86400000,10000");
        assert_eq!(Retention::from_field("86400000,10000"), Some(r));
        assert!(Retention::new(Duration::ZERO, 1).is_err());
        assert!(Retention::new(Duration::from_secs(1), 0).is_err());
        assert!(Retention::new(Duration::from_secs(1), MAX_KEPT + 1).is_err());
        assert_eq!(Retention::from_field("x,1"), None);
    }
}
