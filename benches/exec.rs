//! Throughput of the `punctual` binary's workers for other languages (BENCHMARKS.md):
//! `work --exec true` (a process per job) and `work --pipe` with the shipped Python handler
//! (`examples/pipe_handler.py`, long-lived processes), both at `--concurrency 32`.
//!
//! ```text
//! cargo bench --bench exec [-- --runs N --jobs-exec N --jobs-pipe N]
//! ```
//!
//! Each run starts a fresh redis-server (tests/support), a `punctual promote` and the worker;
//! waits for one warm-up job (the handlers are up); then schedules the jobs due now with
//! `schedule_many` and times from the first schedule call until `completed` counts them all.
//! Prints each run and the median with the spread.

#[path = "../tests/support/mod.rs"]
mod support;

// The load benchmark's statistics; only `median` is used here.
#[allow(dead_code)]
#[path = "load/stats.rs"]
mod stats;
// The small benches' flags.
#[path = "load/flags.rs"]
mod flags;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use punctual::{NewJob, Queue};
use redis::AsyncCommands;
use stats::median;
use support::RedisServer;

const CONCURRENCY: &str = "32";

struct Args {
    runs: usize,
    jobs_exec: usize,
    jobs_pipe: usize,
}

fn parse_args() -> Args {
    let flags = flags::numbers(&["--runs", "--jobs-exec", "--jobs-pipe"]);
    let get = |name, default| flags.get(name).copied().unwrap_or(default) as usize;
    Args {
        runs: get("--runs", 3),
        jobs_exec: get("--jobs-exec", 3_000),
        jobs_pipe: get("--jobs-pipe", 20_000),
    }
}

fn punctual(redis: &RedisServer, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_punctual"))
        .env("PUNCTUAL_REDIS_URL", redis.url())
        .env_remove("RUST_LOG")
        .args(["-q"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start punctual")
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

async fn completed(conn: &mut support::TestConn) -> usize {
    conn.hget::<_, _, Option<usize>>("punctual:{bench}:stats", "completed")
        .await
        .expect("read stats")
        .unwrap_or(0)
}

/// One run: jobs per second through `punctual work MODE COMMAND`.
async fn run(mode: &str, command: &str, jobs: usize) -> f64 {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "bench")
        .await
        .expect("connect");
    let mut conn = redis.conn().await;
    let promoter = punctual(&redis, &["promote", "bench"]);
    let worker = punctual(
        &redis,
        &["work", "bench", mode, command, "--concurrency", CONCURRENCY],
    );
    let data = serde_json::json!({"to": "ada@example.com", "text": "stand up"});
    queue
        .schedule(NewJob::new(&data))
        .await
        .expect("warm-up job");
    let warm = Instant::now();
    while completed(&mut conn).await < 1 {
        assert!(warm.elapsed() < Duration::from_secs(30), "no warm-up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let batch: Vec<NewJob> = (0..jobs).map(|_| NewJob::new(&data)).collect();
    let started = Instant::now();
    queue.schedule_many(batch).await.expect("schedule");
    while completed(&mut conn).await < jobs + 1 {
        assert!(started.elapsed() < Duration::from_secs(600), "too slow");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    stop(worker);
    stop(promoter);
    rate
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let handler = format!(
        "python3 {}/examples/pipe_handler.py 2>/dev/null",
        env!("CARGO_MANIFEST_DIR")
    );
    println!(
        "punctual work, --concurrency {CONCURRENCY}, jobs due at once, {} runs",
        args.runs
    );
    for (name, mode, command, jobs) in [
        ("--exec true", "--exec", "true", args.jobs_exec),
        (
            "--pipe examples/pipe_handler.py",
            "--pipe",
            handler.as_str(),
            args.jobs_pipe,
        ),
    ] {
        let mut rates = Vec::new();
        for i in 1..=args.runs {
            let rate = run(mode, command, jobs).await;
            println!("  {name:<34} run {i}: {jobs} jobs, {rate:>8.0} jobs/s");
            rates.push(rate);
        }
        let (lo, hi) = rates
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        println!(
            "{name:<36} median {:>8.0} jobs/s (runs {lo:.0}–{hi:.0})",
            median(&rates)
        );
    }
}
