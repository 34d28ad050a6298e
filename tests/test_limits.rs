//! Rate and concurrency limits per key: checked where jobs are claimed, a job that may not
//! start waits (no attempt used, deferred once for a rate, handed a freed slot at once for a
//! concurrency), other keys flow, and `punctual limit` / `--limit-key`. Runs against one
//! server, and against a cluster under `PUNCTUAL_TEST_CLUSTER=1`.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use punctual::{
    Event, JobState, Limit, Namespace, NewJob, Outcome, Queue, QueueConfig, WorkerConfig,
};
use support::cli::*;
use support::{all_keys, eventually, spawn_promoter, spawn_worker, total, RedisServer};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(30);

/// (key, start instant, attempt, due time, start time) of every job a worker ran, in start
/// order.
type Starts = Arc<Mutex<Vec<(String, Instant, u32, SystemTime, SystemTime)>>>;

/// A worker (concurrency 16) whose handler records each start and then sleeps `work`, and,
/// once the worker has asked for due times, a promoter: a job promoted before that has none
/// (`Job::due_at`), so the promoter must not win the race to the queue's first jobs.
async fn run_jobs(
    redis: &RedisServer,
    queue: &Queue,
    work: Duration,
    stop: &CancellationToken,
) -> (Starts, Vec<tokio::task::JoinHandle<punctual::Result<()>>>) {
    let starts: Starts = Arc::default();
    let seen = starts.clone();
    let worker = spawn_worker(
        queue,
        WorkerConfig::default()
            .set_concurrency(16)
            .set_due_times(true),
        stop,
        move |job: punctual::Job<String>, _| {
            let due = job.due_at.expect("due times are recorded");
            seen.lock().unwrap().push((
                job.data.clone(),
                Instant::now(),
                job.attempt,
                due,
                SystemTime::now(),
            ));
            async move {
                tokio::time::sleep(work).await;
                Outcome::Done
            }
        },
    );
    let conn = redis.conn().await;
    let meta = format!("punctual:{{{}}}:meta", queue.name());
    eventually(LIMIT, "the worker asked for due times", || {
        let (mut conn, meta) = (conn.clone(), meta.clone());
        async move {
            let due: Option<String> = redis::cmd("HGET")
                .arg(&meta)
                .arg("due")
                .query_async(&mut conn)
                .await
                .unwrap();
            due.is_some()
        }
    })
    .await;
    let promoter = spawn_promoter(queue, Duration::from_secs(1), stop);
    (starts, vec![promoter, worker])
}

/// Schedules `n` jobs due now whose data is their key ("free" for none).
async fn schedule(queue: &Queue, key: Option<&str>, n: usize) {
    let jobs = (0..n).map(|_| {
        let job = NewJob::new(&key.unwrap_or("free"));
        match key {
            Some(key) => job.limit_key(key),
            None => job,
        }
    });
    for scheduled in queue.schedule_many(jobs).await.unwrap() {
        scheduled.unwrap();
    }
}

/// Jobs of the rate-limited key in `a_rate_holds_while_another_key_runs_unlimited`: 60 by
/// default (6 s at 10/s); `PUNCTUAL_LIMIT_JOBS=2000` runs the full 200 s form.
fn rated_jobs() -> usize {
    std::env::var("PUNCTUAL_LIMIT_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n: &usize| n >= 12)
        .unwrap_or(60)
}

/// A rate of 10 per second on `smtp` holds within 10% over its jobs, and never more than 10
/// start in any second, while 2,000 jobs of a key without a rule (and of no key) run at
/// once beside them; each deferred job waits once, for its reserved slot, and uses no attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_holds_while_another_key_runs_unlimited() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.queue("rated").await.unwrap();
    queue
        .set_limit("smtp", Limit::rate(10, Duration::from_secs(1)))
        .await
        .unwrap();
    let rated = rated_jobs();
    let stop = CancellationToken::new();
    let t0 = Instant::now();
    schedule(&queue, Some("smtp"), rated).await;
    schedule(&queue, Some("bulk"), 2000).await;
    schedule(&queue, None, 10).await;
    let (starts, tasks) = run_jobs(&redis, &queue, Duration::ZERO, &stop).await;
    let all = rated + 2010;
    eventually(
        Duration::from_secs(rated as u64 / 5 + 30),
        "every job ran",
        || async { starts.lock().unwrap().len() >= all },
    )
    .await;
    stop.cancel();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts.len(), all, "a job ran twice");
    assert!(
        starts.iter().all(|s| s.2 == 1),
        "a deferral used an attempt"
    );
    // The rate holds where it is enforced, at the claim: the slots the jobs became due in
    // (Redis's clock) are never more than 10 in a second, and no job started before its slot
    // (this host runs the Redis, so the clocks agree to well under 5 ms).
    let mut slots: Vec<SystemTime> = starts
        .iter()
        .filter(|s| s.0 == "smtp")
        .map(|s| s.3)
        .collect();
    slots.sort_unstable();
    for w in slots.windows(11) {
        let span = w[10].duration_since(w[0]).unwrap();
        assert!(
            span >= Duration::from_millis(999),
            "11 slots within {span:?}"
        );
    }
    for s in starts.iter().filter(|s| s.0 == "smtp") {
        assert!(
            s.4 + Duration::from_millis(5) >= s.3,
            "started before its slot"
        );
    }
    // And as the handlers saw it, over the whole run (a worker busy with the other key's
    // 2,000 jobs may start one a little late, and the next on time).
    let smtp: Vec<Instant> = starts
        .iter()
        .filter(|s| s.0 == "smtp")
        .map(|s| s.1)
        .collect();
    let span = (*smtp.last().unwrap() - smtp[0]).as_secs_f64();
    let rate = (rated - 1) as f64 / span;
    println!("smtp: {rated} jobs, {rate:.3} starts/s over {span:.1} s");
    assert!(
        (9.0..=11.0).contains(&rate),
        "{rate:.2} starts/s, not 10 within 10%"
    );
    for other in ["bulk", "free"] {
        let latest = starts
            .iter()
            .filter(|s| s.0 == other)
            .map(|s| s.1 - t0)
            .max()
            .unwrap();
        assert!(
            latest < Duration::from_secs(10),
            "{other} waited {latest:?} behind smtp"
        );
    }
    // Each deferred smtp job waited once, for its reserved slot: no storm of deferrals.
    let deferred = total(&queue, Event::Deferred).await;
    assert_eq!(deferred, rated as u64 - 1, "deferrals");
    assert_eq!(
        queue.limit_deferrals().await.unwrap(),
        [("smtp".to_owned(), rated as u64 - 1)]
    );
}

/// A concurrency of 2 per customer (`customer:*`): never more than 2 of one customer run
/// at once, a slot freed by a success or a failure goes at once to the next waiting job (far
/// sooner than the 30 s lease), and one busy customer does not hold up another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_per_key_hands_on_freed_slots() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.queue("per-customer").await.unwrap();
    queue
        .set_limit("customer:*", Limit::concurrency(2))
        .await
        .unwrap();
    for customer in ["customer:1", "customer:2"] {
        for i in 0..6 {
            queue
                .schedule(
                    NewJob::new(&format!("{customer}/{i}"))
                        .limit_key(customer)
                        .max_attempts(2),
                )
                .await
                .unwrap();
        }
    }
    let stop = CancellationToken::new();
    let running: Arc<Mutex<HashMap<String, (u32, u32)>>> = Arc::default();
    let seen = running.clone();
    let promoter = spawn_promoter(&queue, Duration::from_secs(1), &stop);
    let t0 = Instant::now();
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default().set_concurrency(16),
        &stop,
        move |job: punctual::Job<String>, _| {
            let key = job.data.split('/').next().unwrap().to_owned();
            let seen = seen.clone();
            {
                let mut m = seen.lock().unwrap();
                let e = m.entry(key.clone()).or_default();
                e.0 += 1;
                e.1 = e.1.max(e.0);
            }
            // The first job of each customer fails once: a failure frees its slot too.
            let fail = job.data.ends_with("/0") && job.attempt == 1;
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                seen.lock().unwrap().get_mut(&key).unwrap().0 -= 1;
                if fail {
                    Outcome::RetryAfter(Duration::from_millis(10), "once".to_owned())
                } else {
                    Outcome::Done
                }
            }
        },
    );
    eventually(LIMIT, "every job completed", || async {
        total(&queue, Event::Completed).await == 12
    })
    .await;
    let took = t0.elapsed();
    stop.cancel();
    promoter.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
    let m = running.lock().unwrap().clone();
    for customer in ["customer:1", "customer:2"] {
        assert_eq!(
            m[customer].1, 2,
            "{customer} peaked at {} at once",
            m[customer].1
        );
    }
    // 7 runs of 300 ms per customer, 2 at a time, both customers at once: about 1.2 s.
    assert!(
        took < Duration::from_secs(5),
        "freed slots were not handed on: {took:?}"
    );
    assert!(total(&queue, Event::Deferred).await > 0);
}

/// `punctual limit set|ls|rm`, `schedule --limit-key`, an import line's `limit_key`, and
/// `show` saying that a job waits on its limit; bad input refused with nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli() {
    let redis = RedisServer::start();
    for (args, needle) in [
        (vec!["limit", "set", "q", "smtp"], "--rate"),
        (
            vec!["limit", "set", "q", "smtp", "--rate", "0/1s"],
            "invalid rate",
        ),
        (
            vec!["limit", "set", "q", "smtp", "--rate", "5"],
            "invalid rate",
        ),
        (
            vec!["limit", "set", "q", "smtp", "--concurrency", "0"],
            "--concurrency",
        ),
        (
            vec!["limit", "set", "q", "cust*", "--concurrency", "1"],
            "limit key",
        ),
        (
            vec!["schedule", "q", "--in", "0s", "--limit-key", ""],
            "limit key",
        ),
    ] {
        fails(&run(&redis, &args, None), 2, needle);
    }
    let keys = all_keys(&redis).await;
    assert!(keys.is_empty(), "bad input wrote {keys:?}");

    assert_eq!(
        ok(
            &redis,
            &[
                "limit",
                "set",
                "q",
                "smtp",
                "--rate",
                "1/1h",
                "--concurrency",
                "3"
            ]
        )
        .trim(),
        "limit \"smtp\": rate 1/1h, concurrency 3"
    );
    let first = ok(
        &redis,
        &["schedule", "q", "--in", "0s", "--limit-key", "smtp"],
    );
    let line = r#"{"in": "0s", "limit_key": "smtp", "id": "second"}"#;
    let out = run(&redis, &["import", "q", "-"], Some(line));
    assert!(out.status.success(), "{}", stderr(&out));
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let _promote = spawn_promote(&redis, &["q", "--heartbeat", "1s", "--metrics-addr", &addr]);
    let dir = out_dir("limits_cli");
    let _work = spawn_work(&redis, "q", "true", &[], &dir);
    eventually(LIMIT, "the first job ran and the second waits", || async {
        let second = json(&ok(&redis, &["show", "q", "second", "--json"]));
        second["limited"]["by"] == "rate"
    })
    .await;
    let shown = ok(&redis, &["show", "q", "second"]);
    assert!(
        shown.contains("limit key") && shown.contains("on its rate limit"),
        "{shown}"
    );
    let queue = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap()
        .queue("q")
        .await
        .unwrap();
    assert!(
        queue.get(first.trim()).await.unwrap().is_none(),
        "the first job ran"
    );
    assert_eq!(
        queue.get("second").await.unwrap().unwrap().state,
        JobState::Scheduled
    );
    let ls = json(&ok(&redis, &["limit", "ls", "q", "--json"]));
    assert_eq!(ls["rules"][0]["key"], "smtp");
    assert_eq!(ls["rules"][0]["rate"], 1);
    assert_eq!(ls["rules"][0]["per"], "1h");
    assert_eq!(ls["rules"][0]["concurrency"], 3);
    assert_eq!(ls["deferred"]["smtp"], 1);
    assert!(ok(&redis, &["stats", "q", "--json"]).contains("\"deferred\":1"));
    let metrics = http_get(port, "/metrics");
    assert!(
        metrics.contains("punctual_limit_deferred_total{queue=\"q\",key=\"smtp\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("punctual_deferred_total{queue=\"q\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        ok(&redis, &["limit", "rm", "q", "smtp"]).trim(),
        "removed limit \"smtp\""
    );
    fails(
        &run(&redis, &["limit", "rm", "q", "smtp"], None),
        1,
        "no limit \"smtp\"",
    );
}
