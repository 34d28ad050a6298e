//! `punctual promote`: the promoter as a process, with a Prometheus endpoint and, with
//! `--web-addr`, the dashboard and the HTTP API (`web/`).
//!
//! The promoter holds no jobs, so SIGTERM or SIGINT stops it at once and loses nothing; any
//! number of replicas may run. With `--metrics-addr` it answers `GET /metrics` (Prometheus
//! text format) and `GET /healthz`; `--web-addr` serves both too, beside the site.
//!
//! Two kinds of figures are served. Queue-wide ones are read from Redis at scrape time (job
//! counts per state, the oldest overdue job, and the event totals the scripts keep), so every
//! replica reports the same values: aggregate them with `max`, not `sum`. The promotion-lag
//! histogram is this process's own (the jobs it promoted), so replicas sum.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use punctual::metrics::PromoterMetrics;
use punctual::{Namespace, Promoter, PromoterConfig, Queue, QueueStats};
use tokio::sync::Mutex;

use crate::cli::PromoteArgs;
use crate::web;
use crate::work::metrics::{family, histogram};
use crate::{shutdown_on_signals, CmdResult, Ctx};

pub(crate) async fn promote(ctx: &Ctx, args: PromoteArgs) -> CmdResult {
    for name in &args.queues {
        punctual::keys::validate_name(name).map_err(|e| ctx.fail(e))?;
    }
    // Refused credentials flags are refused before anything starts.
    if let Some(addr) = args.web_addr {
        web::Auth::from_args(&args.site, addr)?;
    }
    let config = PromoterConfig::default()
        .set_batch(args.batch)
        .set_heartbeat(args.heartbeat);
    let ns = ctx.namespace().await?;
    ctx.check_server(&ns, &args.check).await?;
    let promoter = if args.queues.is_empty() {
        tracing::info!(prefix = ns.prefix(), "serving every queue of the namespace");
        Promoter::for_namespace(ns.clone(), config)
    } else {
        let mut queues = Vec::new();
        for name in &args.queues {
            queues.push(ns.queue(name).await.map_err(|e| ctx.fail(e))?);
        }
        Promoter::new(queues, config)
    }
    .map_err(|e| ctx.fail(e))?;

    let stop = shutdown_on_signals()?;
    let endpoint = Endpoint::new(ns.clone(), promoter.metrics(), false);
    if let Some(addr) = args.metrics_addr {
        web::serve_probes(addr, stop.clone(), endpoint.probes()).await?;
    }
    if let Some(addr) = args.web_addr {
        web::start_in_promoter(
            addr,
            &args.site,
            ns,
            promoter.metrics(),
            endpoint.probes(),
            stop.clone(),
        )
        .await?;
        tracing::info!("dashboard and API at http://{addr}/");
    }
    promoter
        .run(stop.cancelled_owned())
        .await
        .map_err(|e| ctx.fail(e))
}

/// What `/metrics` and `/healthz` read.
pub(crate) struct Endpoint {
    ns: Namespace,
    metrics: PromoterMetrics,
    /// Every queue of the namespace (`punctual web`), not only those this process promotes.
    all_queues: bool,
    /// Queue handles opened for scrapes, kept so a scrape does not reopen them.
    queues: Mutex<HashMap<String, Queue>>,
}

impl Endpoint {
    pub(crate) fn new(ns: Namespace, metrics: PromoterMetrics, all_queues: bool) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            ns,
            metrics,
            all_queues,
            queues: Mutex::new(HashMap::new()),
        })
    }

    /// `/metrics` and `/healthz` of this endpoint.
    pub(crate) fn probes(self: &Arc<Self>) -> web::Probes {
        let (a, b) = (self.clone(), self.clone());
        web::Probes {
            metrics: Arc::new(move || {
                let e = a.clone();
                Box::pin(async move { render(&e).await })
            }),
            health: Arc::new(move || {
                let e = b.clone();
                Box::pin(async move { health(&e).await })
            }),
        }
    }
}

/// Healthy when Redis answers and the latest promotion pass of every queue succeeded.
async fn health(endpoint: &Endpoint) -> Result<(), String> {
    endpoint
        .ns
        .ping()
        .await
        .map_err(|e| format!("redis does not answer: {e}"))?;
    let failing: Vec<String> = endpoint
        .metrics
        .snapshot()
        .into_iter()
        .filter_map(|(q, a)| a.last_error.map(|e| format!("{q}: {e}")))
        .collect();
    if failing.is_empty() {
        Ok(())
    } else {
        Err(failing.join("; "))
    }
}

/// The Prometheus text exposition of every served queue.
async fn render(endpoint: &Endpoint) -> String {
    let activity = endpoint.metrics.snapshot();
    let mut stats: Vec<QueueStats> = Vec::new();
    let mut deferrals: Vec<(String, Vec<(String, u64)>)> = Vec::new();
    let mut up = 1;
    let mut names: Vec<String> = activity.keys().cloned().collect();
    if endpoint.all_queues {
        match endpoint.ns.queue_names().await {
            Ok(all) => names = all,
            Err(e) => {
                up = 0;
                tracing::warn!(error = %e, "metrics: cannot list queues");
            }
        }
    }
    for name in &names {
        match queue_stats(endpoint, name).await {
            Ok((s, d)) => {
                stats.push(s);
                deferrals.push((name.clone(), d));
            }
            Err(e) => {
                up = 0;
                tracing::warn!(queue = %name, error = %e, "metrics: cannot read queue stats");
            }
        }
    }

    let mut out = String::new();
    family(
        &mut out,
        "punctual_up",
        "gauge",
        "1 when redis answered this scrape.",
    );
    let _ = writeln!(out, "punctual_up {up}");

    family(
        &mut out,
        "punctual_jobs",
        "gauge",
        "Jobs in each state (queue-wide, from redis).",
    );
    for s in &stats {
        for (state, n) in [
            ("scheduled", s.counts.scheduled),
            ("ready", s.counts.ready),
            ("running", s.counts.running),
            ("dead", s.counts.dead),
            ("completed", s.counts.completed),
        ] {
            let _ = writeln!(
                out,
                "punctual_jobs{{queue=\"{}\",state=\"{state}\"}} {n}",
                s.queue
            );
        }
    }

    family(
        &mut out,
        "punctual_paused",
        "gauge",
        "1 while the queue is paused (workers claim nothing from it).",
    );
    for s in &stats {
        let _ = writeln!(
            out,
            "punctual_paused{{queue=\"{}\"}} {}",
            s.queue,
            u8::from(s.paused)
        );
    }

    family(
        &mut out,
        "punctual_oldest_overdue_seconds",
        "gauge",
        "How long the earliest due job has waited in scheduled without being promoted.",
    );
    for s in &stats {
        let age = s.oldest_overdue.unwrap_or_default().as_secs_f64();
        let _ = writeln!(
            out,
            "punctual_oldest_overdue_seconds{{queue=\"{}\"}} {age}",
            s.queue
        );
    }

    // Every event the scripts count (punctual::Event), so none can be left out.
    for event in punctual::Event::ALL {
        let name = event.metric();
        family(&mut out, name, "counter", event.describe());
        for s in &stats {
            let _ = writeln!(
                out,
                "{name}{{queue=\"{}\"}} {}",
                s.queue,
                s.totals.get(event)
            );
        }
    }

    let name = "punctual_limit_deferred_total";
    family(
        &mut out,
        name,
        "counter",
        "Jobs a limit rule sent back to wait, per limit key (the 20 keys with most per queue).",
    );
    for (queue, keys) in &deferrals {
        for (key, n) in keys.iter().take(DEFERRAL_KEYS) {
            let key = key.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{queue=\"{queue}\",key=\"{key}\"}} {n}");
        }
    }

    let name = "punctual_promotion_lag_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Promotion time minus due time, for the jobs this process promoted.",
    );
    for (queue, a) in &activity {
        histogram(&mut out, name, &format!("queue=\"{queue}\""), &a.lag);
    }

    let name = "punctual_data_loss_detected_total";
    family(
        &mut out,
        name,
        "counter",
        "Times this process found that redis had lost the queue's data (alert on any).",
    );
    for (queue, a) in &activity {
        let _ = writeln!(out, "{name}{{queue=\"{queue}\"}} {}", a.data_losses);
    }
    out
}

/// Limit keys per queue in `punctual_limit_deferred_total`: the ones with most deferrals
/// (`punctual limit ls` lists them all).
const DEFERRAL_KEYS: usize = 20;

async fn queue_stats(
    endpoint: &Endpoint,
    name: &str,
) -> punctual::Result<(QueueStats, Vec<(String, u64)>)> {
    let queue = {
        let mut queues = endpoint.queues.lock().await;
        match queues.get(name) {
            Some(q) => q.clone(),
            None => {
                let q = endpoint.ns.queue(name).await?;
                queues.insert(name.to_owned(), q.clone());
                q
            }
        }
    };
    Ok((queue.stats().await?, queue.limit_deferrals().await?))
}
