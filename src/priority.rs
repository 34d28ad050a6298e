//! Priorities: the queue's aging step. A job's own priority is [`crate::NewJob::priority`]
//! (stored in its envelope); `promote.lua` ranks a due job at `became due - priority × step`
//! and `claim.lua` takes the lowest rank first (docs/layout.md, "Priorities").

use std::time::Duration;

use crate::error::{Error, Result};
use crate::new_job::DEFAULT_PRIORITY_STEP;
use crate::queue::Queue;
use crate::time::delay_ms;

/// Longest aging step [`Queue::set_priority_step`] takes.
pub const MAX_PRIORITY_STEP: Duration = Duration::from_secs(24 * 3600);

impl Queue {
    /// How long one priority level is worth (default [`DEFAULT_PRIORITY_STEP`]): a job goes
    /// before due jobs of a lower priority that became due up to this long per level before
    /// it, and a job of a lower priority waits at most this long per level behind jobs that
    /// became due after it (so it is never starved). `None` restores the default. Applies to
    /// jobs promoted from then on.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a step under 1 ms or over [`MAX_PRIORITY_STEP`];
    /// [`Error::Redis`].
    pub async fn set_priority_step(&self, step: Option<Duration>) -> Result<()> {
        let value = match step {
            None => None,
            Some(step) => match delay_ms(step) {
                Some(ms) if ms >= 1 && step <= MAX_PRIORITY_STEP => Some(ms.to_string()),
                _ => {
                    return Err(Error::InvalidConfig {
                        what: "priority step",
                        reason: "must be from 1ms to 24h".to_owned(),
                    })
                }
            },
        };
        self.set_setting("prio_step", value).await?;
        tracing::info!(queue = %self.name(), ?step, "priority step set");
        Ok(())
    }

    /// The queue's aging step (read from its first partition).
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn priority_step(&self) -> Result<Duration> {
        let text = self.setting("prio_step").await?;
        Ok(text
            .and_then(|t| t.parse::<u64>().ok())
            .map_or(DEFAULT_PRIORITY_STEP, Duration::from_millis))
    }
}
