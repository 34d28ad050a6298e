//! `punctual promote`: the promoter as a process, with a Prometheus endpoint.
//!
//! The promoter holds no jobs, so SIGTERM or SIGINT stops it at once and loses nothing; any
//! number of replicas may run. With `--metrics-addr` it answers plain HTTP/1.1 `GET /metrics`
//! (Prometheus text format) and `GET /healthz` on a small built-in server: two fixed routes do
//! not earn a web framework.
//!
//! Two kinds of figures are served. Queue-wide ones are read from Redis at scrape time (job
//! counts per state, the oldest overdue job, and the event totals the scripts keep), so every
//! replica reports the same values: aggregate them with `max`, not `sum`. The promotion-lag
//! histogram is this process's own (the jobs it promoted), so replicas sum.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use punctual::metrics::PromoterMetrics;
use punctual::{Namespace, Promoter, PromoterConfig, Queue, QueueStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::cli::PromoteArgs;
use crate::{shutdown_on_signals, CmdResult, Ctx, Failure};

/// Largest HTTP request head read; anything longer is refused.
const MAX_REQUEST: usize = 8192;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn promote(ctx: &Ctx, args: PromoteArgs) -> CmdResult {
    for name in &args.queues {
        punctual::keys::validate_name(name).map_err(|e| ctx.fail(e))?;
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
    if let Some(addr) = args.metrics_addr {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::Runtime(format!("cannot listen on {addr}: {e}")))?;
        let local = listener.local_addr().unwrap_or(addr);
        tracing::info!("metrics at http://{local}/metrics, health at http://{local}/healthz");
        let endpoint = Arc::new(Endpoint {
            ns,
            metrics: promoter.metrics(),
            queues: Mutex::new(HashMap::new()),
        });
        tokio::spawn(serve(listener, endpoint, stop.clone()));
    }
    promoter
        .run(stop.cancelled_owned())
        .await
        .map_err(|e| ctx.fail(e))
}

/// What the HTTP endpoint reads.
struct Endpoint {
    ns: Namespace,
    metrics: PromoterMetrics,
    /// Queue handles opened for scrapes, kept so a scrape does not reopen them.
    queues: Mutex<HashMap<String, Queue>>,
}

async fn serve(listener: TcpListener, endpoint: Arc<Endpoint>, stop: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &endpoint).await {
                tracing::debug!(%peer, error = %e, "metrics request failed");
            }
        });
    }
}

/// Reads one request and answers it; the connection is closed after.
async fn answer(mut stream: TcpStream, endpoint: &Endpoint) -> std::io::Result<()> {
    let mut head = Vec::new();
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let request = String::from_utf8_lossy(&head);
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(endpoint).await,
        ),
        ("GET", "/healthz") => match health(endpoint).await {
            Ok(()) => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_owned()),
            Err(why) => (
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                format!("unhealthy: {why}\n"),
            ),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /healthz\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
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
    let mut up = 1;
    for name in activity.keys() {
        match queue_stats(endpoint, name).await {
            Ok(s) => stats.push(s),
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

    type Total = fn(&punctual::Totals) -> u64;
    let totals: [(&str, &str, Total); 6] = [
        (
            "punctual_scheduled_total",
            "Jobs scheduled (queue-wide, from redis).",
            |t| t.scheduled,
        ),
        (
            "punctual_promoted_total",
            "Jobs promoted to ready (queue-wide, from redis).",
            |t| t.promoted,
        ),
        (
            "punctual_retried_total",
            "Failed attempts sent back to wait out a backoff (queue-wide).",
            |t| t.retried,
        ),
        (
            "punctual_dead_total",
            "Jobs moved to the dead set (queue-wide, from redis).",
            |t| t.dead,
        ),
        (
            "punctual_expired_leases_total",
            "Leases that ran out; the job went back to ready (queue-wide).",
            |t| t.expired,
        ),
        (
            "punctual_completed_total",
            "Jobs acknowledged as done (queue-wide, from redis).",
            |t| t.completed,
        ),
    ];
    for (name, help, get) in totals {
        family(&mut out, name, "counter", help);
        for s in &stats {
            let _ = writeln!(out, "{name}{{queue=\"{}\"}} {}", s.queue, get(&s.totals));
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
        for (bound, count) in a.lag.cumulative() {
            let le = bound.map_or_else(|| "+Inf".to_owned(), |ms| (ms as f64 / 1000.0).to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{queue=\"{queue}\",le=\"{le}\"}} {count}"
            );
        }
        let sum = a.lag.sum_ms() as f64 / 1000.0;
        let _ = writeln!(out, "{name}_sum{{queue=\"{queue}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{queue=\"{queue}\"}} {}", a.lag.count());
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

/// The `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

async fn queue_stats(endpoint: &Endpoint, name: &str) -> punctual::Result<QueueStats> {
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
    queue.stats().await
}
