//! Waiting out a Redis outage: capped exponential backoff for loops, so that a down server
//! costs a few log lines a minute, not a busy loop; and [`send_again`], the one "send, and
//! send again while Redis is away" helper (reports, acks, schedule pipelines).

use std::future::Future;
use std::time::Duration;

const FIRST: Duration = Duration::from_millis(100);
const CAP: Duration = Duration::from_secs(5);

/// The delay before the next reconnection attempt: 100 ms doubling to 5 s, reset on success.
#[derive(Debug, Clone)]
pub(crate) struct ReconnectBackoff {
    next: Duration,
}

impl ReconnectBackoff {
    pub(crate) fn new() -> Self {
        ReconnectBackoff { next: FIRST }
    }

    /// The delay to wait now; the one after it is twice as long, up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(CAP);
        delay
    }

    /// Redis answered: start from the shortest delay again.
    pub(crate) fn reset(&mut self) {
        self.next = FIRST;
    }
}

/// Calls `send` until it succeeds, fails for a reason `passes` does not accept (Redis
/// refused: sending again would not help), or `tries` calls were made, waiting out a
/// [`ReconnectBackoff`] between calls (each wait logged, naming `what`). Every caller's call
/// is safe to send again: each script gives the same end state when its first sending ran
/// but its reply was lost. Returns the last result and how many calls were made (more than
/// one: an earlier sending may have been applied).
pub(crate) async fn send_again<T, E, F, Fut>(
    what: &str,
    tries: u32,
    passes: impl Fn(&E) -> bool,
    mut send: F,
) -> (Result<T, E>, u32)
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = ReconnectBackoff::new();
    let mut made = 0;
    loop {
        made += 1;
        match send().await {
            Err(e) if passes(&e) && made < tries => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "{what}: redis unavailable; sending again");
                tokio::time::sleep(delay).await;
            }
            result => return (result, made),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = ReconnectBackoff::new();
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn sends_again_only_while_the_failure_may_pass() {
        let calls = std::cell::Cell::new(0);
        let (result, made) = send_again(
            "test",
            3,
            |e: &&str| *e == "away",
            || {
                calls.set(calls.get() + 1);
                async { Err::<(), _>("away") }
            },
        )
        .await;
        assert_eq!((result, made, calls.get()), (Err("away"), 3, 3));
        let (result, made) = send_again(
            "test",
            3,
            |e: &&str| *e == "away",
            || async { Err::<(), _>("refused") },
        )
        .await;
        assert_eq!((result, made), (Err("refused"), 1));
        let mut answers = vec![Ok(7), Err("away")];
        let (result, made) = send_again(
            "test",
            3,
            |e: &&str| *e == "away",
            || {
                let next = answers.pop().unwrap_or(Err("none"));
                async move { next }
            },
        )
        .await;
        assert_eq!((result, made), (Ok(7), 2));
    }
}
