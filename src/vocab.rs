//! The words of punctual, each named once: the events the scripts count ([`Event`]) and the
//! reasons an error record gives ([`Reason`]). The library, the CLI, the sidecar's metrics
//! and the docs all go through these lists (a test checks the docs name every one), so a new
//! word is added in one place.

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
    /// Done, and kept for the queue's retention in `completed`, with its result
    /// ([`crate::Queue::set_completed_retention`]); without a retention a completed job is
    /// deleted.
    Completed,
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
            JobState::Completed => "completed",
            JobState::Dead => "dead",
        }
    }

    /// Every state, in the order a job moves through them.
    pub const ALL: [JobState; 5] = [
        JobState::Scheduled,
        JobState::Ready,
        JobState::Running,
        JobState::Completed,
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

/// An event counted by the scripts in a queue's `stats` hash, in the same atomic step as the
/// change it counts: exact, and shared by every process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Event {
    /// A job was created (`schedule.lua`).
    Scheduled,
    /// A due job moved scheduled → ready (`promote.lua`).
    Promoted,
    /// A lease ran out and its job went back to ready (`promote.lua`).
    LeaseExpired,
    /// A job's time ran out before it ran (its `expires_at` or `max_lateness`): dead with
    /// reason `expired`, or deleted when it asked to be dropped (`promote.lua`, `claim.lua`,
    /// `retry.lua`).
    Expired,
    /// A failed attempt was sent back to wait out a backoff (`retry.lua`; snoozes and
    /// hand-backs are not counted).
    Retried,
    /// A job moved to the dead set (`bury.lua`).
    Dead,
    /// A dead job was deleted by the queue's dead-set retention (`trim.lua`).
    DeadTrimmed,
    /// A job that died after it ran had its compensating job scheduled
    /// ([`crate::NewJob::compensate_with`]; `bury.lua`, `retry.lua`, `promote.lua`,
    /// `claim.lua`, in the step that made it dead).
    Compensated,
    /// A job was acknowledged as done (`ack.lua`).
    Completed,
    /// A completed job kept by the retention was deleted for its age or count (`ack.lua`,
    /// `trim.lua`).
    CompletedTrimmed,
    /// A job was cancelled (`cancel.lua`).
    Cancelled,
    /// A dead job was sent back to scheduled (`revive.lua`).
    Revived,
    /// A dead job was deleted (`purge.lua`).
    Purged,
    /// A job whose limit key's rule did not let it start went back to wait, no attempt used
    /// (`claim.lua`; per key in `limit_stats`, see [`crate::Queue::limits`]).
    Deferred,
}

impl Event {
    /// Every event, in the order they are shown.
    pub const ALL: [Event; 14] = [
        Event::Scheduled,
        Event::Promoted,
        Event::LeaseExpired,
        Event::Expired,
        Event::Retried,
        Event::Dead,
        Event::DeadTrimmed,
        Event::Compensated,
        Event::Completed,
        Event::CompletedTrimmed,
        Event::Cancelled,
        Event::Revived,
        Event::Purged,
        Event::Deferred,
    ];

    /// Its field in the `stats` hash, also its name in `punctual stats --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Scheduled => "scheduled",
            Event::Promoted => "promoted",
            Event::LeaseExpired => "lease_expired",
            Event::Expired => "expired",
            Event::Retried => "retried",
            Event::Dead => "dead",
            Event::DeadTrimmed => "dead_trimmed",
            Event::Compensated => "compensated",
            Event::Completed => "completed",
            Event::CompletedTrimmed => "completed_trimmed",
            Event::Cancelled => "cancelled",
            Event::Revived => "revived",
            Event::Purged => "purged",
            Event::Deferred => "deferred",
        }
    }

    /// The event named `s` in the `stats` hash.
    pub fn parse(s: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Its Prometheus counter, as the sidecar serves it.
    pub fn metric(self) -> &'static str {
        match self {
            Event::Scheduled => "punctual_scheduled_total",
            Event::Promoted => "punctual_promoted_total",
            Event::LeaseExpired => "punctual_expired_leases_total",
            Event::Expired => "punctual_expired_total",
            Event::Retried => "punctual_retried_total",
            Event::Dead => "punctual_dead_total",
            Event::DeadTrimmed => "punctual_dead_trimmed_total",
            Event::Compensated => "punctual_compensated_total",
            Event::Completed => "punctual_completed_total",
            Event::CompletedTrimmed => "punctual_completed_trimmed_total",
            Event::Cancelled => "punctual_cancelled_total",
            Event::Revived => "punctual_revived_total",
            Event::Purged => "punctual_purged_total",
            Event::Deferred => "punctual_deferred_total",
        }
    }

    /// One line on what it counts (the metric's help text).
    pub fn describe(self) -> &'static str {
        match self {
            Event::Scheduled => "Jobs scheduled (queue-wide, from redis).",
            Event::Promoted => "Jobs promoted to ready (queue-wide, from redis).",
            Event::LeaseExpired => "Leases that ran out; the job went back to ready (queue-wide).",
            Event::Expired => "Jobs whose time ran out before they ran (queue-wide).",
            Event::Retried => "Failed attempts sent back to wait out a backoff (queue-wide).",
            Event::Dead => "Jobs moved to the dead set (queue-wide, from redis).",
            Event::DeadTrimmed => {
                "Dead jobs deleted by the retention, for age or count (queue-wide)."
            }
            Event::Compensated => {
                "Compensating jobs scheduled for jobs that died after they ran (queue-wide)."
            }
            Event::Completed => "Jobs acknowledged as done (queue-wide, from redis).",
            Event::CompletedTrimmed => {
                "Completed jobs deleted by the retention, for age or count (queue-wide)."
            }
            Event::Cancelled => "Jobs cancelled (queue-wide, from redis).",
            Event::Revived => "Dead jobs sent back to scheduled (queue-wide, from redis).",
            Event::Purged => "Dead jobs deleted (queue-wide, from redis).",
            Event::Deferred => "Jobs a limit rule sent back to wait, no attempt used (queue-wide).",
        }
    }
}

/// Why a job's last attempt failed, as its error record says (`reason` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The handler failed; retried after the backoff.
    Failed,
    /// The handler failed and asked for a retry at a time of its choosing.
    RetryRequested,
    /// The worker stopped renewing its lease (crashed, stalled, cut off); written by
    /// `promote.lua`.
    LeaseExpired,
    /// The last allowed attempt failed (or every attempt was interrupted): dead.
    AttemptsExhausted,
    /// The handler failed it for good: dead at once.
    Permanent,
    /// The stored job could not be decoded: dead at once.
    Undecodable,
    /// Its time ran out (`expires_at`, `max_lateness`) before it ran, or a retry would land
    /// past it: dead without running.
    Expired,
    /// The attempt ran longer than its timeout; retried like a failure.
    TimedOut,
    /// Cancelled while it ran (`Queue::cancel`): its handler was stopped, dead.
    Cancelled,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 9] = [
        Reason::Failed,
        Reason::RetryRequested,
        Reason::LeaseExpired,
        Reason::AttemptsExhausted,
        Reason::Permanent,
        Reason::Undecodable,
        Reason::Expired,
        Reason::TimedOut,
        Reason::Cancelled,
    ];

    /// The word in the error record.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Failed => "failed",
            Reason::RetryRequested => "retry_requested",
            Reason::LeaseExpired => "lease_expired",
            Reason::AttemptsExhausted => "attempts_exhausted",
            Reason::Permanent => "permanent",
            Reason::Undecodable => "undecodable",
            Reason::Expired => "expired",
            Reason::TimedOut => "timed_out",
            Reason::Cancelled => "cancelled",
        }
    }

    /// The reason named `s` in an error record.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What scheduling a job did, as `schedule.lua` reports it. Which of these a call can give
/// depends on its conflict mode ([`crate::OnConflict`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScheduleOutcome {
    /// A new job was written.
    Created,
    /// A job with this id was waiting and got the new data and due time (`replace`, or a
    /// `keep_*` mode whose new due time won).
    Replaced,
    /// A job with this id was waiting and got the new data and the new due time, capped by
    /// its `max_wait` (`debounce`).
    Debounced,
    /// A job with this id was waiting and its due time won (`keep_*`): nothing changed.
    Kept,
    /// A job with this id exists (or, in mode `reject`, finished within the dedup window):
    /// nothing changed.
    Rejected,
    /// A job with this id is running: it is never touched, nothing changed.
    Running,
}

impl ScheduleOutcome {
    /// Every outcome.
    pub const ALL: [ScheduleOutcome; 6] = [
        ScheduleOutcome::Created,
        ScheduleOutcome::Replaced,
        ScheduleOutcome::Debounced,
        ScheduleOutcome::Kept,
        ScheduleOutcome::Rejected,
        ScheduleOutcome::Running,
    ];

    /// Its name, as `punctual schedule --json` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleOutcome::Created => "created",
            ScheduleOutcome::Replaced => "replaced",
            ScheduleOutcome::Debounced => "debounced",
            ScheduleOutcome::Kept => "kept",
            ScheduleOutcome::Rejected => "rejected",
            ScheduleOutcome::Running => "running",
        }
    }

    /// True when the call wrote the job's data ([`ScheduleOutcome::Created`],
    /// [`ScheduleOutcome::Replaced`], [`ScheduleOutcome::Debounced`]).
    pub fn wrote(self) -> bool {
        matches!(
            self,
            ScheduleOutcome::Created | ScheduleOutcome::Replaced | ScheduleOutcome::Debounced
        )
    }
}

impl std::fmt::Display for ScheduleOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in Event::ALL {
            assert_eq!(Event::parse(e.as_str()), Some(e));
        }
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Event::parse("nope"), None);
    }

    /// The docs name every event, metric and reason: a new word cannot be left out of them.
    #[test]
    fn the_docs_name_every_word() {
        let readme = include_str!("../README.md");
        let layout = include_str!("../docs/layout.md");
        let promote = include_str!("../lua/promote.lua");
        for e in Event::ALL {
            assert!(readme.contains(e.metric()), "README lacks {}", e.metric());
            assert!(
                layout.contains(&format!("`{}`", e.as_str())),
                "docs/layout.md lacks {e}"
            );
        }
        for r in Reason::ALL {
            assert!(
                layout.contains(&format!("`{}`", r.as_str())),
                "docs/layout.md lacks {r}"
            );
        }
        assert!(promote.contains(Reason::LeaseExpired.as_str()));
    }
}
