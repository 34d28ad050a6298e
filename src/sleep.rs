//! The promoter's sleep until a job is due, to within tens of microseconds.
//!
//! tokio's timer counts whole milliseconds: it rounds a deadline up to its next tick, and the
//! kernel's poll timeout is rounded up to a millisecond again, so a job due at 09:00:00.000 was
//! promoted up to 2 ms late (1 ms on average), which was most of its lateness (BENCHMARKS.md,
//! W3). So tokio's timer sleeps until [`FINE_SLEEP`] before the deadline, and the rest is
//! slept on a one-shot kernel timer (Linux `timerfd`) that tokio's reactor waits on like a
//! socket: it fires on the high-resolution clock, without the 50 µs of timer slack that a
//! thread's `nanosleep` gets, and wakes the task with no thread in between. (It replaced a
//! `nanosleep` on a blocking-pool thread, which ended 110–280 µs after the deadline: the slack,
//! waking the pool thread, and waking the task from it.) Where there is no `timerfd` (not
//! Linux), or it cannot be had, the rest is slept that older way.

use std::time::Duration;

use tokio::time::Instant;

/// The last stretch of a sleep that is not left to tokio's millisecond timer.
const FINE_SLEEP: Duration = Duration::from_millis(2);

/// Sleeps until `deadline`, never returning before it. Dropping the future (a wake message
/// came first) ends the sleep and frees its timer.
pub(crate) async fn sleep_until(deadline: Instant) {
    if let Some(coarse) = deadline.checked_sub(FINE_SLEEP) {
        if Instant::now() < coarse {
            tokio::time::sleep_until(coarse).await;
        }
    }
    let rest = deadline.saturating_duration_since(Instant::now());
    if rest.is_zero() {
        return;
    }
    #[cfg(target_os = "linux")]
    if kernel_timer::sleep(rest).await.is_ok() {
        return;
    }
    let rest = deadline.saturating_duration_since(Instant::now());
    if !rest.is_zero() {
        // The thread cannot fail but by panicking in `sleep`; either way the sleep is over.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}

#[cfg(target_os = "linux")]
mod kernel_timer {
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use std::time::Duration;

    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
    use tokio::io::unix::AsyncFd;

    /// A `TimerFd` as tokio's reactor takes it (by its raw descriptor).
    struct Timer(TimerFd);

    impl AsRawFd for Timer {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }

    /// Sleeps `d` (not zero: a zero one-shot time disarms a timerfd) on a new monotonic
    /// timerfd, closed when this returns or is dropped. An error means the sleep may not be
    /// over.
    pub(super) async fn sleep(d: Duration) -> std::io::Result<()> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        timer.set(
            Expiration::OneShot(TimeSpec::from_duration(d)),
            TimerSetTimeFlags::empty(),
        )?;
        // `AsyncFd::new` is deprecated since tokio 1.54 because it cannot know that an
        // arbitrary `T` keeps its descriptor open while registered; `Timer` owns its
        // descriptor, and `AsyncFd` deregisters it before dropping `Timer`, so this use is
        // sound. Its replacement, `register`, is `unsafe` (this crate forbids `unsafe`) and
        // absent from the tokio 1.x releases that Cargo.toml admits.
        #[allow(deprecated)]
        let timer = AsyncFd::new(Timer(timer))?;
        loop {
            let mut ready = timer.readable().await?;
            // The read takes the expiry count; `WouldBlock` (EAGAIN: woken before it fired)
            // clears the readiness and waits again.
            if let Ok(done) = ready.try_io(|t| t.get_ref().0.wait().map_err(std::io::Error::from)) {
                return done;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sleep never ends before its deadline, whether the deadline lies inside the fine
    /// stretch, just past it, or beyond it (how fine it is, is W3's figure in benches/load).
    /// The upper bound only catches a sleep that hangs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_precise_sleep_is_never_early() {
        for i in 0..120u64 {
            let wait = Duration::from_micros(150 + 41 * i);
            let deadline = Instant::now() + wait;
            sleep_until(deadline).await;
            let now = Instant::now();
            assert!(
                now >= deadline,
                "a sleep of {wait:?} ended {:?} early",
                deadline - now
            );
            assert!(
                now - deadline < Duration::from_secs(2),
                "a sleep of {wait:?} ended {:?} late",
                now - deadline
            );
        }
        // A deadline already past returns at once.
        let past = Instant::now() - Duration::from_millis(5);
        tokio::time::timeout(Duration::from_secs(2), sleep_until(past))
            .await
            .expect("a past deadline does not sleep");
    }

    /// The kernel timer is what sleeps here (not the fallback), it ends after its time, and
    /// a dropped sleep leaves no descriptor open: after 200 sleeps cut short, this process
    /// holds no more timerfds than another test's sleep could have open at that moment.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_kernel_timer_sleeps_and_closes_its_descriptor() {
        let start = Instant::now();
        kernel_timer::sleep(Duration::from_micros(700))
            .await
            .expect("a timerfd on Linux");
        assert!(start.elapsed() >= Duration::from_micros(700));
        for _ in 0..200 {
            let cut = tokio::time::timeout(
                Duration::from_micros(100),
                kernel_timer::sleep(Duration::from_secs(60)),
            )
            .await;
            assert!(cut.is_err(), "a 60 s sleep ended at once");
        }
        let timerfds = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().contains("timerfd"))
            .count();
        assert!(
            timerfds < 10,
            "{timerfds} timerfds open after 200 dropped sleeps"
        );
    }
}
