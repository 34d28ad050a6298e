//! What recurring schedules cost (BENCHMARKS.md, "Recurring schedules"): adding N schedules,
//! one promoter creating their N occurrences when they all fall due in the same minute, and
//! an idle promoter heartbeat with N schedules against one with none.
//!
//! ```text
//! cargo bench --bench cron [-- --runs N --schedules N]
//! ```
//!
//! Each run starts a fresh redis-server (tests/support) and one queue. The schedules fire
//! every hour from two minutes after they are added; a promoter with a 60 s heartbeat (so a
//! 120 s horizon) then creates every first occurrence in its first pass, timed until the
//! `scheduled` total counts them all. Idle: after that, a promoter with a 1 s heartbeat runs
//! for 5 s with every schedule an hour from its next fire time, and Redis counts the commands
//! it runs and their CPU time (`INFO commandstats`), against the same on a queue with no
//! schedules. Prints each run and the
//! median with the spread.

#[path = "../tests/support/mod.rs"]
mod support;

// The load benchmark's statistics; only `median` is used here.
#[allow(dead_code)]
#[path = "load/stats.rs"]
mod stats;
// The small benches' flags.
#[path = "load/flags.rs"]
mod flags;

use std::time::{Duration, Instant, UNIX_EPOCH};

use futures_util::StreamExt;
use punctual::{Event, Namespace, NewJob, Promoter, PromoterConfig, Queue, QueueConfig, Schedule};
use stats::median;
use support::{server_ms, RedisServer};
use tokio_util::sync::CancellationToken;

struct Args {
    runs: usize,
    schedules: usize,
}

fn parse_args() -> Args {
    let flags = flags::numbers(&["--runs", "--schedules"]);
    let get = |name, default| flags.get(name).copied().unwrap_or(default) as usize;
    Args {
        runs: get("--runs", 3),
        schedules: get("--schedules", 10_000),
    }
}

/// Commands Redis has run so far and the CPU time it spent in them (µs), from `INFO
/// commandstats` (which leaves out the server's own idle work), not counting `INFO` itself.
async fn served(redis: &RedisServer) -> (u64, f64) {
    let stats = redis.info("commandstats").await;
    let mut calls = 0;
    let mut usec = 0.0;
    for line in stats.lines().filter(|l| l.starts_with("cmdstat_")) {
        if line.starts_with("cmdstat_info:") {
            continue;
        }
        for field in line.split([':', ',']) {
            if let Some(v) = field.strip_prefix("calls=") {
                calls += v.parse::<u64>().unwrap_or(0);
            }
            if let Some(v) = field.strip_prefix("usec=") {
                usec += v.parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    (calls, usec)
}

/// Commands and Redis CPU (µs) per heartbeat of a promoter of `queue` with a 1 s heartbeat,
/// over 5 s.
async fn idle_heartbeat(redis: &RedisServer, queue: &Queue) -> (f64, f64) {
    let stop = CancellationToken::new();
    let config = PromoterConfig::default().set_heartbeat(Duration::from_secs(1));
    let promoter = Promoter::new([queue.clone()], config).expect("promoter");
    let task = tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    // Its first passes (start-up, subscribe) are not idle ones.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (c0, cpu0) = served(redis).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (c1, cpu1) = served(redis).await;
    stop.cancel();
    task.await.expect("promoter task").expect("promoter");
    ((c1 - c0) as f64 / 5.0, (cpu1 - cpu0) / 5.0)
}

struct Run {
    add_rate: f64,
    create_rate: f64,
    idle_commands: f64,
    idle_cpu_us: f64,
    empty_commands: f64,
    empty_cpu_us: f64,
}

async fn run(n: usize) -> Run {
    let redis = RedisServer::start_standalone();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .expect("connect");
    let queue = ns.queue("cron").await.expect("queue");
    let empty = ns.queue("empty").await.expect("queue");
    let mut conn = redis.conn().await;
    let start = UNIX_EPOCH + Duration::from_millis(server_ms(&mut conn).await + 120_000);

    let t = Instant::now();
    let adds = futures_util::stream::iter(0..n).map(|i| {
        let queue = queue.clone();
        async move {
            let job = NewJob::new(&serde_json::json!({ "user": i })).kind("reminder");
            let schedule = Schedule::every(format!("reminder-{i}"), Duration::from_secs(3600), job)
                .start(start);
            queue.upsert_schedule(schedule).await.expect("upsert")
        }
    });
    let added = adds
        .buffer_unordered(64)
        .filter(|&added| async move { added })
        .count()
        .await;
    assert_eq!(added, n);
    let add_rate = n as f64 / t.elapsed().as_secs_f64();

    let stop = CancellationToken::new();
    let config = PromoterConfig::default().set_heartbeat(Duration::from_secs(60));
    let promoter = Promoter::new([queue.clone()], config).expect("promoter");
    let t = Instant::now();
    let task = tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    loop {
        let created = queue
            .stats()
            .await
            .expect("stats")
            .totals
            .get(Event::Scheduled);
        if created as usize >= n {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "creation stalled at {created}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let create_rate = n as f64 / t.elapsed().as_secs_f64();
    stop.cancel();
    task.await.expect("promoter task").expect("promoter");

    let (idle_commands, idle_cpu_us) = idle_heartbeat(&redis, &queue).await;
    let (empty_commands, empty_cpu_us) = idle_heartbeat(&redis, &empty).await;
    Run {
        add_rate,
        create_rate,
        idle_commands,
        idle_cpu_us,
        empty_commands,
        empty_cpu_us,
    }
}

fn summary(name: &str, unit: &str, values: &[f64]) {
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    println!(
        "{name:<52} median {:>9.1} {unit} (runs {lo:.1}–{hi:.1})",
        median(values)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    println!(
        "recurring schedules: {} schedules (every 1 h), one queue, {} runs",
        args.schedules, args.runs
    );
    let mut runs = Vec::new();
    for i in 1..=args.runs {
        let r = run(args.schedules).await;
        println!(
            "  run {i}: add {:.0}/s, create {:.0} occurrences/s, idle heartbeat {:.1} commands \
             {:.0} µs CPU (no schedules: {:.1} commands {:.0} µs)",
            r.add_rate,
            r.create_rate,
            r.idle_commands,
            r.idle_cpu_us,
            r.empty_commands,
            r.empty_cpu_us
        );
        runs.push(r);
    }
    let col = |f: fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    summary(
        "add schedules (upsert_schedule, 64 in flight)",
        "/s",
        &col(|r| r.add_rate),
    );
    summary(
        "create first occurrences (one promoter)",
        "/s",
        &col(|r| r.create_rate),
    );
    summary(
        "idle heartbeat, with the schedules: commands",
        "",
        &col(|r| r.idle_commands),
    );
    summary(
        "idle heartbeat, with the schedules: Redis CPU",
        "µs",
        &col(|r| r.idle_cpu_us),
    );
    summary(
        "idle heartbeat, no schedules: commands",
        "",
        &col(|r| r.empty_commands),
    );
    summary(
        "idle heartbeat, no schedules: Redis CPU",
        "µs",
        &col(|r| r.empty_cpu_us),
    );
}
