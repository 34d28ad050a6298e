//! Where a job goes after an attempt: one pure function, [`transition`], from what happened
//! (the handler's [`Outcome`], or the attempt never ran, or it was handed back) and the job's
//! attempt, limit and backoff to the move the worker reports. No Redis, no clock, no async:
//! the table in the tests below is the whole policy.
//!
//! | what happened | not the last attempt | the last attempt |
//! |---|---|---|
//! | `Done`, `DoneWith(result)` | ack (gone, or completed with the result) | the same |
//! | `Fail(msg)` | retry after the backoff, reason `failed` | dead, `attempts_exhausted` |
//! | `RetryAfter(d, msg)` | retry after `d`, reason `retry_requested` | dead, `attempts_exhausted` |
//! | `Kill(msg)` | dead, `permanent` | dead, `permanent` |
//! | `Snooze(d)` | back after `d`, attempt given back | the same |
//! | timed out (its `timeout` ran out) | retry after the backoff, reason `timed_out` | dead, `attempts_exhausted` |
//! | cancelled while it ran (`Queue::cancel`) | dead, `cancelled` | the same |
//! | handed back (shutdown) | back now, attempt given back | the same |
//! | undecodable | dead, `undecodable` | the same |
//! | earlier attempts all interrupted (`attempt > max`) | dead, `attempts_exhausted` | |

use std::time::Duration;

use crate::job::Outcome;
use crate::vocab::Reason;

/// What ended an attempt (or kept it from running).
#[derive(Debug)]
pub(crate) enum Ended {
    /// The handler returned this.
    Ran(Outcome),
    /// The attempt was cancelled at shutdown: hand the job back.
    HandedBack,
    /// The stored job could not be decoded (why).
    Undecodable(String),
    /// Claimed beyond its limit: every earlier attempt was interrupted (crashed workers).
    Exhausted,
    /// The attempt ran out of time (what the message says) and its handler was stopped.
    TimedOut(String),
    /// The job's cancellation was asked while it ran, and its handler was stopped.
    Cancelled,
}

/// The move a worker reports for a finished attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Done: `ack.lua` deletes the job or keeps it as completed, with this result if any
    /// (acks are batched, see `acks.rs`).
    Ack(Option<Vec<u8>>),
    /// Any other move, sent on its own.
    Report(Report),
}

/// A move other than the ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    /// Back to `scheduled` after `delay` (`retry.lua`). `counts` false gives the attempt back
    /// (snooze, hand-back); then there is no error record.
    Retry {
        delay: Duration,
        counts: bool,
        error: Option<(Reason, String)>,
    },
    /// To the dead set (`bury.lua`).
    Bury(Reason, String),
}

/// Where the job goes. `backoff(attempt)` is the policy's delay, asked only for a failure
/// that will be retried.
pub(crate) fn transition(
    ended: Ended,
    attempt: u32,
    max_attempts: u32,
    backoff: impl FnOnce(u32) -> Duration,
) -> Transition {
    let is_last = attempt >= max_attempts;
    Transition::Report(match ended {
        Ended::Ran(Outcome::Done) => return Transition::Ack(None),
        Ended::Ran(Outcome::DoneWith(result)) => return Transition::Ack(Some(result)),
        Ended::Ran(Outcome::Kill(message)) => Report::Bury(Reason::Permanent, message),
        Ended::Ran(Outcome::Fail(message) | Outcome::RetryAfter(_, message))
        | Ended::TimedOut(message)
            if is_last =>
        {
            Report::Bury(Reason::AttemptsExhausted, message)
        }
        Ended::TimedOut(message) => Report::Retry {
            delay: backoff(attempt),
            counts: true,
            error: Some((Reason::TimedOut, message)),
        },
        Ended::Cancelled => Report::Bury(
            Reason::Cancelled,
            "cancelled while it ran: its handler was stopped".to_owned(),
        ),
        Ended::Ran(Outcome::Fail(message)) => Report::Retry {
            delay: backoff(attempt),
            counts: true,
            error: Some((Reason::Failed, message)),
        },
        Ended::Ran(Outcome::RetryAfter(delay, message)) => Report::Retry {
            delay,
            counts: true,
            error: Some((Reason::RetryRequested, message)),
        },
        Ended::Ran(Outcome::Snooze(delay)) => Report::Retry {
            delay,
            counts: false,
            error: None,
        },
        Ended::HandedBack => Report::Retry {
            delay: Duration::ZERO,
            counts: false,
            error: None,
        },
        Ended::Undecodable(why) => Report::Bury(Reason::Undecodable, why),
        Ended::Exhausted => Report::Bury(
            Reason::AttemptsExhausted,
            format!(
                "attempt {attempt} of at most {max_attempts}: earlier attempts were interrupted"
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Duration = Duration::from_secs(7);

    fn go(ended: Ended, attempt: u32, max: u32) -> Transition {
        transition(ended, attempt, max, |n| {
            assert_eq!(n, attempt, "the backoff is asked for this attempt");
            BACKOFF
        })
    }

    fn retry(delay: Duration, counts: bool, error: Option<(Reason, &str)>) -> Transition {
        Transition::Report(Report::Retry {
            delay,
            counts,
            error: error.map(|(r, m)| (r, m.to_owned())),
        })
    }

    #[test]
    fn the_policy_table() {
        let s = Duration::from_secs;
        let msg = || "boom".to_owned();
        let table: Vec<(Ended, u32, u32, Transition)> = vec![
            (Ended::Ran(Outcome::Done), 1, 3, Transition::Ack(None)),
            (Ended::Ran(Outcome::Done), 3, 3, Transition::Ack(None)),
            (
                Ended::Ran(Outcome::DoneWith(vec![7])),
                3,
                3,
                Transition::Ack(Some(vec![7])),
            ),
            (
                Ended::Ran(Outcome::Fail(msg())),
                1,
                3,
                retry(BACKOFF, true, Some((Reason::Failed, "boom"))),
            ),
            (
                Ended::Ran(Outcome::Fail(msg())),
                3,
                3,
                Transition::Report(Report::Bury(Reason::AttemptsExhausted, msg())),
            ),
            (
                Ended::Ran(Outcome::RetryAfter(s(30), msg())),
                2,
                3,
                retry(s(30), true, Some((Reason::RetryRequested, "boom"))),
            ),
            (
                Ended::Ran(Outcome::RetryAfter(s(30), msg())),
                3,
                3,
                Transition::Report(Report::Bury(Reason::AttemptsExhausted, msg())),
            ),
            (
                Ended::Ran(Outcome::Kill(msg())),
                1,
                3,
                Transition::Report(Report::Bury(Reason::Permanent, msg())),
            ),
            (
                Ended::Ran(Outcome::Snooze(s(60))),
                3,
                3,
                retry(s(60), false, None),
            ),
            (Ended::HandedBack, 3, 3, retry(Duration::ZERO, false, None)),
            (
                Ended::TimedOut(msg()),
                1,
                3,
                retry(BACKOFF, true, Some((Reason::TimedOut, "boom"))),
            ),
            (
                Ended::TimedOut(msg()),
                3,
                3,
                Transition::Report(Report::Bury(Reason::AttemptsExhausted, msg())),
            ),
            (
                Ended::Cancelled,
                1,
                3,
                Transition::Report(Report::Bury(
                    Reason::Cancelled,
                    "cancelled while it ran: its handler was stopped".into(),
                )),
            ),
            (
                Ended::Undecodable("bad envelope".into()),
                1,
                3,
                Transition::Report(Report::Bury(Reason::Undecodable, "bad envelope".into())),
            ),
        ];
        for (ended, attempt, max, want) in table {
            let label = format!("{ended:?} at {attempt}/{max}");
            assert_eq!(go(ended, attempt, max), want, "{label}");
        }
    }

    #[test]
    fn interrupted_attempts_exhaust_the_job() {
        match go(Ended::Exhausted, 4, 3) {
            Transition::Report(Report::Bury(Reason::AttemptsExhausted, m)) => {
                assert!(m.contains("attempt 4 of at most 3"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_backoff_is_asked_only_for_a_retried_failure() {
        let asked = std::cell::Cell::new(0);
        let count = |_| {
            asked.set(asked.get() + 1);
            BACKOFF
        };
        transition(Ended::Ran(Outcome::Done), 1, 3, count);
        transition(Ended::Ran(Outcome::Fail(String::new())), 3, 3, count);
        transition(Ended::Ran(Outcome::Snooze(BACKOFF)), 1, 3, count);
        assert_eq!(asked.get(), 0);
        transition(Ended::Ran(Outcome::Fail(String::new())), 1, 3, count);
        assert_eq!(asked.get(), 1);
    }
}
