//! How fast the dashboard's reads are with a million jobs in a queue (BENCHMARKS.md, "The
//! dashboard and the HTTP API"): each route the pages call, timed over HTTP against `punctual
//! web` with 1,000 jobs in the queue and again with `--jobs` (default 1,000,000).
//!
//! ```text
//! cargo bench --bench web [-- --jobs N --partitions P --runs R]
//! ```
//!
//! A fresh redis-server (tests/support) holds one queue whose jobs fall due evenly over the
//! next 30 days. Each route is requested `--runs` times (default 30) one after the other;
//! the table gives min / median / max in milliseconds, client-side, for both sizes. The
//! deep page starts at the middle of the queue.

#[path = "../tests/support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "load/stats.rs"]
mod stats;
// The small benches' flags.
#[path = "load/flags.rs"]
mod flags;

use std::time::{Duration, Instant};

use punctual::{Namespace, NewJob, QueueConfig};
use stats::median;
use support::web::{http, Site};
use support::RedisServer;

struct Args {
    jobs: u64,
    partitions: u16,
    runs: usize,
}

fn parse_args() -> Args {
    let flags = flags::numbers(&["--jobs", "--partitions", "--runs"]);
    let get = |name, default| flags.get(name).copied().unwrap_or(default);
    Args {
        jobs: get("--jobs", 1_000_000),
        partitions: u16::try_from(get("--partitions", 1)).expect("--partitions fits 16 bits"),
        runs: get("--runs", 30) as usize,
    }
}

const SPAN: Duration = Duration::from_secs(30 * 86_400);

/// Schedules jobs `from..to` of the queue, due evenly over [`SPAN`].
async fn fill(queue: &punctual::Queue, from: u64, to: u64, total: u64) {
    let mut i = from;
    while i < to {
        let end = (i + 10_000).min(to);
        let jobs: Vec<NewJob> = (i..end)
            .map(|n| {
                NewJob::new(&serde_json::json!({"to": format!("user{n}@example.com")}))
                    .id(format!("job-{n:08}"))
                    .delay(Duration::from_secs(60) + SPAN.mul_f64(n as f64 / total as f64))
            })
            .collect();
        queue.schedule_many(jobs).await.expect("schedule");
        i = end;
    }
}

/// (route label, path) of every read the dashboard makes for a queue page and a job page.
fn routes(args: &Args, jobs: u64) -> Vec<(&'static str, String)> {
    let middle = jobs / 2 / u64::from(args.partitions);
    let cursor: Vec<String> = (0..args.partitions).map(|_| middle.to_string()).collect();
    vec![
        ("overview: GET /queues", "/queues".to_owned()),
        ("queue summary", "/queues/big".to_owned()),
        (
            "first page of 50",
            "/queues/big/jobs?state=scheduled&limit=50".to_owned(),
        ),
        (
            "page of 50 at the middle",
            format!(
                "/queues/big/jobs?state=scheduled&limit=50&cursor={}",
                cursor.join(".")
            ),
        ),
        (
            "due chart, next hour",
            "/queues/big/timeline?span=1h&buckets=12".to_owned(),
        ),
        (
            "due chart, 30 days",
            "/queues/big/timeline?span=30d&buckets=30".to_owned(),
        ),
        ("one job", format!("/queues/big/jobs/job-{:08}", jobs / 3)),
        ("lateness history", "/queues/big/history".to_owned()),
    ]
}

async fn time_routes(site: &Site, args: &Args, jobs: u64) -> Vec<(&'static str, f64, f64, f64)> {
    let client = http();
    let mut out = Vec::new();
    for (label, path) in routes(args, jobs) {
        let mut ms = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let start = Instant::now();
            let response = client.get(site.api(&path)).send().await.expect("request");
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            response.bytes().await.expect("body");
            ms.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        out.push((label, ms[0], median(&ms), ms[ms.len() - 1]));
    }
    out
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let redis = RedisServer::start_standalone();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("big", args.partitions).await.unwrap();
    let small = 1_000.min(args.jobs);
    fill(&queue, 0, small, args.jobs).await;
    let site = Site::web(&redis, &[], &[]).await;
    let before = time_routes(&site, &args, small).await;

    let start = Instant::now();
    fill(&queue, small, args.jobs, args.jobs).await;
    let filled = start.elapsed();
    let memory = redis.info("memory").await;
    let used: u64 = memory
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let after = time_routes(&site, &args, args.jobs).await;

    println!(
        "queue of {} partition(s); {} jobs scheduled in {:.1} s; Redis uses {} MB",
        args.partitions,
        args.jobs,
        filled.as_secs_f64(),
        used / 1_000_000
    );
    println!(
        "{:<28} {:>24} {:>24}",
        "route (ms: min / median / max)",
        format!("{small} jobs"),
        format!("{} jobs", args.jobs)
    );
    for ((label, a0, a1, a2), (_, b0, b1, b2)) in before.iter().zip(&after) {
        println!(
            "{label:<28} {:>24} {:>24}",
            format!("{a0:.2} / {a1:.2} / {a2:.2}"),
            format!("{b0:.2} / {b1:.2} / {b2:.2}")
        );
    }
}
