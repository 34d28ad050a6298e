//! Capped exponential backoff for loops that wait out a Redis outage, so that a down server
//! costs a few log lines a minute, not a busy loop.

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
}
