//! What a `work` process measures, served as Prometheus text by `--metrics-addr`.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `punctual_worker_jobs_total` | counter | queue, outcome | attempts ended, by [`outcome_label`] |
//! | `punctual_worker_start_lag_seconds` | histogram | queue | handler start minus due time |
//! | `punctual_worker_run_seconds` | histogram | queue | how long attempts ran |
//! | `punctual_worker_commands_killed_total` | counter | queue, reason | process groups ended by the worker, by [`KillReason`] |
//! | `punctual_worker_running` | gauge | queue | attempts running now |
//! | `punctual_worker_concurrency` | gauge | queue | the most that may run at once |
//!
//! The figures are this process's own: replicas sum. The histograms use the promoter's
//! buckets ([`punctual::metrics::LAG_BUCKETS_MS`], 1 ms to 60 s).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use punctual::metrics::LagHistogram;
use punctual::{CancelReason, Outcome};

/// Why the worker ended a command's (or a `--pipe` handler's) process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum KillReason {
    /// The attempt ran longer than its timeout (`--timeout`, or the job's own).
    Timeout,
    /// The job's cancellation was asked (`punctual cancel` of a running job).
    Cancelled,
    /// The shutdown grace period ran out.
    Shutdown,
    /// The worker lost the job's lease.
    LeaseLost,
    /// The command exited, but processes it started were still running.
    Leftover,
    /// A `--pipe` handler broke the protocol (an over-long line) or could not be written to.
    Protocol,
}

impl KillReason {
    /// Every reason, so that each has a series from the first scrape on.
    pub(crate) const ALL: [KillReason; 6] = [
        KillReason::Timeout,
        KillReason::Cancelled,
        KillReason::Shutdown,
        KillReason::LeaseLost,
        KillReason::Leftover,
        KillReason::Protocol,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            KillReason::Timeout => "timeout",
            KillReason::Cancelled => "cancelled",
            KillReason::Shutdown => "shutdown",
            KillReason::LeaseLost => "lease_lost",
            KillReason::Leftover => "leftover",
            KillReason::Protocol => "protocol",
        }
    }
}

/// Outcome labels, in the order they are served.
const OUTCOMES: [&str; 6] = ["done", "failed", "retry", "snooze", "dead", "cancelled"];

/// The `outcome` label of an attempt: what the handler returned, `failed` when it ran out of
/// time (reported as a `timed_out` failure), or `cancelled` when it was cut short otherwise
/// (shutdown hand-back, lost lease, or the job's cancellation was asked).
pub(crate) fn outcome_label(outcome: &Outcome, cancelled: Option<CancelReason>) -> &'static str {
    match cancelled {
        Some(CancelReason::TimedOut) => return "failed",
        Some(_) => return "cancelled",
        None => {}
    }
    match outcome {
        Outcome::Done | Outcome::DoneWith(_) => "done",
        Outcome::Fail(_) => "failed",
        Outcome::RetryAfter(..) => "retry",
        Outcome::Snooze(_) => "snooze",
        _ => "dead",
    }
}

/// A worker's figures; cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerMetrics {
    inner: Arc<Mutex<Figures>>,
}

#[derive(Debug, Default)]
struct Figures {
    outcomes: BTreeMap<&'static str, u64>,
    killed: BTreeMap<KillReason, u64>,
    start_lag: LagHistogram,
    run_time: LagHistogram,
    running: u64,
}

/// Counts an attempt as running until dropped.
#[derive(Debug)]
pub(crate) struct Running(WorkerMetrics);

impl Drop for Running {
    fn drop(&mut self) {
        let mut f = self.0.lock();
        f.running = f.running.saturating_sub(1);
    }
}

impl WorkerMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Figures> {
        // Plain counters: a panic elsewhere cannot leave them inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An attempt starts, `start_lag` after its due time.
    pub(crate) fn start(&self, start_lag: Option<Duration>) -> Running {
        let mut f = self.lock();
        f.running += 1;
        if let Some(lag) = start_lag {
            f.start_lag.record(millis(lag));
        }
        Running(self.clone())
    }

    /// An attempt ended with `label` after running for `took`.
    pub(crate) fn finish(&self, label: &'static str, took: Duration) {
        let mut f = self.lock();
        *f.outcomes.entry(label).or_default() += 1;
        f.run_time.record(millis(took));
    }

    /// A process group was ended for `reason`.
    pub(crate) fn killed(&self, reason: KillReason) {
        *self.lock().killed.entry(reason).or_default() += 1;
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self, queue: &str, concurrency: usize) -> String {
        let f = self.lock();
        let mut out = String::new();
        let q = format!("queue=\"{queue}\"");
        family(
            &mut out,
            "punctual_worker_jobs_total",
            "counter",
            "Attempts this worker ended, by outcome.",
        );
        for label in OUTCOMES {
            let n = f.outcomes.get(label).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "punctual_worker_jobs_total{{{q},outcome=\"{label}\"}} {n}"
            );
        }
        for (name, help, h) in [
            (
                "punctual_worker_start_lag_seconds",
                "Handler start minus the job's due time.",
                &f.start_lag,
            ),
            (
                "punctual_worker_run_seconds",
                "How long attempts ran.",
                &f.run_time,
            ),
        ] {
            family(&mut out, name, "histogram", help);
            histogram(&mut out, name, &q, h);
        }
        family(
            &mut out,
            "punctual_worker_commands_killed_total",
            "counter",
            "Process groups of commands this worker ended, by reason.",
        );
        for reason in KillReason::ALL {
            let n = f.killed.get(&reason).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "punctual_worker_commands_killed_total{{{q},reason=\"{}\"}} {n}",
                reason.label()
            );
        }
        family(
            &mut out,
            "punctual_worker_running",
            "gauge",
            "Attempts running now.",
        );
        let _ = writeln!(out, "punctual_worker_running{{{q}}} {}", f.running);
        family(
            &mut out,
            "punctual_worker_concurrency",
            "gauge",
            "The most attempts this worker runs at once.",
        );
        let _ = writeln!(out, "punctual_worker_concurrency{{{q}}} {concurrency}");
        out
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The `# HELP` and `# TYPE` lines of a metric family.
pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The series of a histogram in seconds, from one kept in milliseconds; `labels` are the
/// series' labels. The family's header is the caller's ([`family`]).
pub(crate) fn histogram(out: &mut String, name: &str, labels: &str, h: &LagHistogram) {
    for (bound, count) in h.cumulative() {
        let le = bound.map_or_else(|| "+Inf".to_owned(), |ms| (ms as f64 / 1000.0).to_string());
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_ms() as f64 / 1000.0);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_render_as_prometheus_text() {
        let m = WorkerMetrics::default();
        let running = m.start(Some(Duration::from_millis(3)));
        m.finish("done", Duration::from_millis(40));
        m.killed(KillReason::Timeout);
        let text = m.render("mail", 8);
        assert!(
            text.contains("punctual_worker_running{queue=\"mail\"} 1"),
            "{text}"
        );
        drop(running);
        let text = m.render("mail", 8);
        for line in [
            "punctual_worker_running{queue=\"mail\"} 0",
            "punctual_worker_jobs_total{queue=\"mail\",outcome=\"done\"} 1",
            "punctual_worker_jobs_total{queue=\"mail\",outcome=\"failed\"} 0",
            "punctual_worker_start_lag_seconds_bucket{queue=\"mail\",le=\"0.005\"} 1",
            "punctual_worker_start_lag_seconds_bucket{queue=\"mail\",le=\"0.002\"} 0",
            "punctual_worker_run_seconds_sum{queue=\"mail\"} 0.04",
            "punctual_worker_run_seconds_count{queue=\"mail\"} 1",
            "punctual_worker_commands_killed_total{queue=\"mail\",reason=\"timeout\"} 1",
            "punctual_worker_commands_killed_total{queue=\"mail\",reason=\"lease_lost\"} 0",
            "punctual_worker_concurrency{queue=\"mail\"} 8",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }

    #[test]
    fn outcomes_have_labels() {
        assert_eq!(outcome_label(&Outcome::Done, None), "done");
        for reason in [
            CancelReason::Shutdown,
            CancelReason::LeaseLost,
            CancelReason::Cancelled,
        ] {
            assert_eq!(outcome_label(&Outcome::Done, Some(reason)), "cancelled");
        }
        assert_eq!(
            outcome_label(&Outcome::Done, Some(CancelReason::TimedOut)),
            "failed"
        );
        assert_eq!(outcome_label(&Outcome::Kill("x".into()), None), "dead");
        assert_eq!(
            outcome_label(&Outcome::Snooze(Duration::ZERO), None),
            "snooze"
        );
    }
}
