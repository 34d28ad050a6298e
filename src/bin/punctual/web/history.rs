//! What the dashboard charts over time: every [`INTERVAL`] a background task reads each
//! queue's stats (one atomic read per partition, no job read) and keeps the last hour of
//! samples in memory: event totals (throughput is their difference), the oldest overdue
//! job, and, in a promoter, the promotion lags of the interval. Nothing is written to Redis;
//! a restart starts the charts afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use punctual::metrics::LagHistogram;
use punctual::{Event, Totals};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::Site;
use crate::input::format_time;

/// How often queues are sampled.
pub(crate) const INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept per queue: one hour.
const KEEP: usize = 720;
/// Throughput is averaged over about this long.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// One queue at one time.
#[derive(Debug, Clone)]
struct Sample {
    at: SystemTime,
    totals: Totals,
    oldest_overdue_ms: u64,
    scheduled: u64,
    ready: u64,
    running: u64,
    dead: u64,
    /// This promoter's lag histogram so far (`promote --web-addr` only).
    lag: Option<LagHistogram>,
}

/// The samples of every queue.
#[derive(Debug, Default)]
pub(crate) struct History {
    queues: Mutex<HashMap<String, VecDeque<Sample>>>,
}

/// Events per second between two samples.
fn rates(older: &Sample, newer: &Sample) -> serde_json::Map<String, Value> {
    let secs = newer
        .at
        .duration_since(older.at)
        .unwrap_or_default()
        .as_secs_f64()
        .max(0.001);
    [
        Event::Scheduled,
        Event::Promoted,
        Event::Completed,
        Event::Retried,
        Event::Dead,
    ]
    .into_iter()
    .map(|e| {
        let n = newer.totals.get(e).saturating_sub(older.totals.get(e));
        (
            e.as_str().to_owned(),
            json!((n as f64 / secs * 10.0).round() / 10.0),
        )
    })
    .collect()
}

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Sample>>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, queue: &str, sample: Sample) {
        let mut queues = self.lock();
        let samples = queues.entry(queue.to_owned()).or_default();
        if samples.len() == KEEP {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Events per second over about the last minute; `None` before two samples.
    pub(crate) fn throughput(&self, queue: &str) -> Option<Value> {
        let queues = self.lock();
        let samples = queues.get(queue)?;
        let newest = samples.back()?;
        let oldest = samples
            .iter()
            .find(|s| newest.at.duration_since(s.at).unwrap_or_default() <= RATE_WINDOW)
            .filter(|s| s.at < newest.at)?;
        Some(Value::Object(rates(oldest, newest)))
    }

    /// Every sample of `queue`, oldest first, each with the rates since the one before and
    /// the promotion lags of its interval.
    pub(crate) fn samples(&self, queue: &str) -> Vec<Value> {
        let queues = self.lock();
        let Some(samples) = queues.get(queue) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(samples.len());
        let mut previous: Option<&Sample> = None;
        for s in samples {
            let lag = match (previous.and_then(|p| p.lag.as_ref()), &s.lag) {
                (Some(before), Some(now)) => {
                    let interval = now.since(before);
                    let q = |x: f64| interval.quantile_ms(x).filter(|&ms| ms != u64::MAX);
                    json!({"count": interval.count(), "p50_ms": q(0.5), "p99_ms": q(0.99)})
                }
                _ => Value::Null,
            };
            out.push(json!({
                "at": format_time(s.at),
                "oldest_overdue_ms": s.oldest_overdue_ms,
                "scheduled": s.scheduled,
                "ready": s.ready,
                "running": s.running,
                "dead": s.dead,
                "rates": previous.map(|p| Value::Object(rates(p, s))),
                "lag": lag,
            }));
            previous = Some(s);
        }
        out
    }

    /// Forgets queues that no longer exist.
    fn retain(&self, names: &[String]) {
        self.lock().retain(|name, _| names.contains(name));
    }
}

/// Samples every queue each [`INTERVAL`] until `stop`.
pub(crate) async fn run(site: Arc<Site>, stop: CancellationToken) {
    loop {
        sample(&site).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
    }
}

async fn sample(site: &Site) {
    let names = match site.ns.queue_names().await {
        Ok(names) => names,
        Err(e) => {
            tracing::debug!(error = %e, "history: cannot list queues");
            return;
        }
    };
    let lags = site.promoter.as_ref().map(|m| m.snapshot());
    for name in &names {
        let Ok(queue) = site.existing(name).await else {
            continue;
        };
        let Ok(stats) = queue.stats().await else {
            continue;
        };
        site.history.add(
            name,
            Sample {
                at: stats.server_time,
                totals: stats.totals,
                oldest_overdue_ms: stats
                    .oldest_overdue
                    .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64),
                scheduled: stats.counts.scheduled,
                ready: stats.counts.ready,
                running: stats.counts.running,
                dead: stats.counts.dead,
                lag: lags
                    .as_ref()
                    .map(|l| l.get(name).map(|a| a.lag).unwrap_or_default()),
            },
        );
    }
    site.history.retain(&names);
    // A removed queue's handle goes too: made again, it may have another partition count.
    site.queues
        .lock()
        .await
        .retain(|name, _| names.contains(name));
}
