//! Priorities, kept through the delay: due jobs are taken highest priority first, then in due
//! order, then id order; priority never makes a job run early; a lower priority is not starved
//! (the aging step); priority survives a retry and a lease expiry (bull#1505 lost it at
//! promotion); ranked ready jobs are counted, listed, cancelled and rescheduled like the rest.
//! Each test starts its own redis-server.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use punctual::{
    Error, JobState, Namespace, NewJob, Outcome, Promoter, Queue, QueueConfig, WorkerConfig,
};
use redis::AsyncCommands;
use support::{eventually, server_ms_at, RedisServer};
use tokio_util::sync::CancellationToken;

/// Runs a worker of concurrency 1 on `queue` that records the ids it runs, in order.
fn record_order(
    queue: &Queue,
    stop: &CancellationToken,
    config: WorkerConfig,
) -> Arc<Mutex<Vec<String>>> {
    let order: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = order.clone();
    support::spawn_worker(
        queue,
        config.set_concurrency(1),
        stop,
        move |job: punctual::Job<u32>, _ctx| {
            seen.lock().unwrap().push(job.id);
            async { Outcome::Done }
        },
    );
    order
}

async fn wait_count(order: &Arc<Mutex<Vec<String>>>, n: usize) {
    eventually(Duration::from_secs(20), &format!("{n} jobs ran"), || {
        let order = order.clone();
        async move { order.lock().unwrap().len() >= n }
    })
    .await;
}

/// Jobs due at once run by priority, highest first; within a priority in id order (they are
/// due in the same millisecond), on a queue of one partition and within one partition of a
/// partitioned queue.
#[tokio::test]
async fn due_jobs_run_highest_priority_first() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    for (name, partitions) in [("single", 1), ("split", 4)] {
        let queue = ns.create_queue(name, partitions).await.unwrap();
        let priorities = [0i8, 5, -2, 9, 0, 5, -2, 9, 3, 0, 0, 9, -9, 1];
        let jobs = priorities.iter().enumerate().map(|(i, &p)| {
            NewJob::new(&(i as u32))
                .id(format!("j{i:02}{{k}}"))
                .priority(p)
        });
        for r in queue.schedule_many(jobs).await.unwrap() {
            r.unwrap();
        }
        assert_eq!(Promoter::promote(&queue, 100).await.unwrap().promoted, 14);
        assert_eq!(queue.counts().await.unwrap().ready, 14);
        let listed: Vec<String> = queue
            .list(JobState::Ready, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        let mut expected: Vec<(i8, String)> = priorities
            .iter()
            .enumerate()
            .map(|(i, &p)| (-p, format!("j{i:02}{{k}}")))
            .collect();
        expected.sort();
        let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
        assert_eq!(
            listed, expected,
            "{name}: ls ready shows the order workers take"
        );
        let info = queue.get("j03{k}").await.unwrap().unwrap();
        assert_eq!(info.priority, 9);
        let stop = CancellationToken::new();
        let order = record_order(&queue, &stop, WorkerConfig::default());
        wait_count(&order, 14).await;
        stop.cancel();
        assert_eq!(*order.lock().unwrap(), expected, "{name}: run order");
        assert_eq!(
            queue.counts().await.unwrap().ready,
            0,
            "{name}: the marker is not a job"
        );
    }
}

/// Priority never makes a job run before its due time: a priority 9 job due in 1.5 s runs
/// after a priority 0 job due now, and not before its due time (server clock). An idle worker
/// (idle wait one minute) wakes at once when a ranked job is promoted.
#[tokio::test]
async fn priority_never_runs_a_job_early() {
    let redis = RedisServer::start();
    let url = redis.url();
    let queue = Queue::connect(&url, "early").await.unwrap();
    let stop = CancellationToken::new();
    support::spawn_promoter(&queue, Duration::from_millis(200), &stop);
    let ran: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let seen = ran.clone();
    let at = url.clone();
    support::spawn_worker(
        &queue,
        WorkerConfig::default().set_idle_wait(Duration::from_secs(60)),
        &stop,
        move |job: punctual::Job<u32>, _ctx| {
            let (seen, at) = (seen.clone(), at.clone());
            async move {
                let now = server_ms_at(&at).await;
                seen.lock().unwrap().push((job.id.clone(), now));
                Outcome::Done
            }
        },
    );
    // The worker finds nothing and blocks.
    eventually(Duration::from_secs(10), "the worker blocks", || {
        let redis = &redis;
        async move { redis.blocked_clients().await >= 1 }
    })
    .await;
    let high = queue
        .schedule(
            NewJob::new(&1u32)
                .id("high")
                .priority(9)
                .delay(Duration::from_millis(1500)),
        )
        .await
        .unwrap();
    let low = queue
        .schedule(NewJob::new(&2u32).id("low").priority(-9))
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "both ran", || {
        let ran = ran.clone();
        async move { ran.lock().unwrap().len() == 2 }
    })
    .await;
    stop.cancel();
    let ran = ran.lock().unwrap().clone();
    assert_eq!(ran[0].0, "low", "{ran:?}");
    let low_due = punctual_ms(low.due_at.unwrap());
    assert!(ran[0].1 < low_due + 1000, "the low job waited: {ran:?}");
    let due = punctual_ms(high.due_at.unwrap());
    assert!(
        ran[1].1 >= due,
        "the high job ran {} ms early",
        due - ran[1].1
    );
}

fn punctual_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A low priority job is not starved by a flood of high priority ones: with an aging step of
/// 50 ms, a priority -9 job goes before every priority 9 job that became due more than
/// 18 × 50 ms after it, while priority 9 jobs keep arriving five times faster than the worker
/// takes them (so without aging it would never run).
#[tokio::test]
async fn a_flood_of_high_priority_jobs_does_not_starve_a_low_one() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "flood").await.unwrap();
    queue
        .set_priority_step(Some(Duration::from_millis(50)))
        .await
        .unwrap();
    assert_eq!(
        queue.priority_step().await.unwrap(),
        Duration::from_millis(50)
    );
    let stop = CancellationToken::new();
    support::spawn_promoter(&queue, Duration::from_millis(200), &stop);
    // The job data of each job run, in order (the low job's is 0).
    let ran: Arc<Mutex<Vec<u32>>> = Arc::default();
    let seen = ran.clone();
    support::spawn_worker(
        &queue,
        WorkerConfig::default().set_concurrency(1),
        &stop,
        move |job: punctual::Job<u32>, _ctx| {
            seen.lock().unwrap().push(job.data);
            async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Outcome::Done
            }
        },
    );
    // The flood: 20 priority 9 jobs every 20 ms (1,000/s; the worker takes at most ~200/s),
    // numbered from 1. `since` is the first number scheduled 1.5 s after the low job was.
    let since = Arc::new(Mutex::new(None::<u32>));
    let low_at = Arc::new(Mutex::new(None::<std::time::Instant>));
    let flood = {
        let (queue, stop, since, low_at) =
            (queue.clone(), stop.clone(), since.clone(), low_at.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.is_cancelled() {
                let later = low_at
                    .lock()
                    .unwrap()
                    .is_some_and(|t| t.elapsed() >= Duration::from_millis(1500));
                if later && since.lock().unwrap().is_none() {
                    *since.lock().unwrap() = Some(n + 1);
                }
                let jobs = (0..20).map(|_| {
                    n += 1;
                    NewJob::new(&n).priority(9)
                });
                queue.schedule_many(jobs).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    queue
        .schedule(NewJob::new(&0u32).id("low").priority(-9))
        .await
        .unwrap();
    *low_at.lock().unwrap() = Some(std::time::Instant::now());
    eventually(Duration::from_secs(30), "the low job ran", || {
        let ran = ran.clone();
        async move { ran.lock().unwrap().contains(&0) }
    })
    .await;
    let backlog = queue.counts().await.unwrap();
    stop.cancel();
    flood.await.unwrap();
    assert!(
        backlog.ready + backlog.scheduled > 100,
        "the flood was still waiting when the low job ran: {backlog:?}"
    );
    let since = since
        .lock()
        .unwrap()
        .expect("the flood went on 1.5 s past the low job");
    let ran = ran.lock().unwrap();
    let at = ran.iter().position(|&n| n == 0).unwrap();
    let overtaken: Vec<u32> = ran[..at].iter().copied().filter(|&n| n >= since).collect();
    assert!(
        overtaken.is_empty(),
        "jobs due 1.5 s after the low one ran before it: {:?}",
        &overtaken[..overtaken.len().min(10)]
    );
    assert!(at > 20, "it went ahead of jobs that came before it: {at}");
}

/// Priority is kept through a retry and a lease expiry: each time the job is ready again it
/// is ranked by its priority (its rank is when it became due minus 9 steps).
#[tokio::test]
async fn priority_survives_retry_and_lease_expiry() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "kept").await.unwrap();
    let step = 60_000.0;
    let rank = |c: &mut support::TestConn| {
        let mut c = c.clone();
        async move {
            c.zscore::<_, _, Option<f64>>("punctual:{kept}:ranked", "x")
                .await
                .unwrap()
        }
    };
    queue
        .schedule(NewJob::new(&1u32).id("x").priority(9))
        .await
        .unwrap();
    Promoter::promote(&queue, 10).await.unwrap();
    let first = rank(&mut conn).await.expect("ranked when promoted");
    let info = queue.get("x").await.unwrap().unwrap();
    assert_eq!(info.state, JobState::Ready);
    assert!(first <= support::server_ms(&mut conn).await as f64 - 9.0 * step + 1.0);

    // A failed attempt: retried in 50 ms, then promoted: ranked again with its priority.
    let stop = CancellationToken::new();
    let attempts = Arc::new(Mutex::new(0));
    let count = attempts.clone();
    support::spawn_worker(
        &queue,
        WorkerConfig::default().set_lease(Duration::from_secs(1)),
        &stop,
        move |job: punctual::Job<u32>, _ctx| {
            *count.lock().unwrap() += 1;
            async move {
                match job.attempt {
                    1 => Outcome::RetryAfter(Duration::from_millis(50), "again".to_owned()),
                    // The second attempt hangs past its lease (the worker is stopped below).
                    _ => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Outcome::Done
                    }
                }
            }
        },
    );
    eventually(Duration::from_secs(10), "retried and scheduled", || {
        let queue = queue.clone();
        async move { queue.get("x").await.unwrap().map(|j| j.state) == Some(JobState::Scheduled) }
    })
    .await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    Promoter::promote(&queue, 10).await.unwrap();
    let second = rank(&mut conn).await.expect("ranked again after the retry");
    assert!(second > first, "a later due time: {first} then {second}");
    let due_again = support::server_ms(&mut conn).await as f64;
    assert!(second <= due_again - 9.0 * step + 1.0);

    // A lease that runs out: the job is ready again, ranked by its priority from the lease's
    // end. (Claimed by hand here, as a worker that then vanished.)
    let _: () = conn.del("punctual:{kept}:ranked").await.unwrap();
    let _: () = conn
        .zadd("punctual:{kept}:running", "x", due_again as u64 - 10)
        .await
        .unwrap();
    Promoter::promote(&queue, 10).await.unwrap();
    let third = rank(&mut conn)
        .await
        .expect("ranked after the lease ran out");
    assert_eq!(third, due_again - 10.0 - 9.0 * step);
}

/// Ranked ready jobs are counted, listed and shown as ready, and cancel, reschedule and a
/// replacing schedule take them out of `ranked`; `queue rm` leaves no key behind; a priority
/// out of range is refused before anything is written.
#[tokio::test]
async fn ranked_jobs_are_steered_like_any_ready_job() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "steer").await.unwrap();
    for id in ["a", "b", "c"] {
        queue
            .schedule(NewJob::new(&1u32).id(id).priority(3))
            .await
            .unwrap();
    }
    Promoter::promote(&queue, 10).await.unwrap();
    assert_eq!(queue.counts().await.unwrap().ready, 3);
    assert_eq!(
        queue.get("a").await.unwrap().unwrap().state,
        JobState::Ready
    );
    assert_eq!(
        queue.cancel("a").await.unwrap(),
        punctual::Cancelled::Removed(JobState::Ready)
    );
    let rescheduled = queue
        .reschedule("b", punctual::When::In(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(
        matches!(rescheduled, punctual::Rescheduled::Moved { .. }),
        "{rescheduled:?}"
    );
    let replaced = queue
        .schedule(
            NewJob::new(&2u32)
                .id("c")
                .priority(3)
                .on_conflict(punctual::OnConflict::Replace)
                .delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert_eq!(replaced.outcome, punctual::ScheduleOutcome::Replaced);
    let ranked: u64 = conn.zcard("punctual:{steer}:ranked").await.unwrap();
    assert_eq!(ranked, 0, "every ranked job was taken out");
    let counts = queue.counts().await.unwrap();
    assert_eq!((counts.ready, counts.scheduled), (0, 2));

    let refused = queue
        .schedule(NewJob::new(&1u32).id("bad").priority(10))
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::InvalidConfig {
                what: "job priority",
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(queue.get("bad").await.unwrap().is_none());
    assert!(queue.set_priority_step(Some(Duration::ZERO)).await.is_err());

    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    // One ranked job waits; removing the queue deletes `ranked` and `bell` too.
    queue
        .schedule(NewJob::new(&1u32).id("d").priority(1))
        .await
        .unwrap();
    Promoter::promote(&queue, 10).await.unwrap();
    ns.remove_queue("steer", true).await.unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("punctual:{steer}:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The CLI: `schedule --priority`, an import line's `priority`, `show` and `ls` report it,
/// `queue set --priority-step` sets the aging step, and bad values exit 2 writing nothing.
#[tokio::test]
async fn the_cli_schedules_shows_and_sets_priorities() {
    use support::cli::{fails, ok, out_dir, run};
    let redis = RedisServer::start();
    ok(
        &redis,
        &[
            "schedule",
            "p",
            "--in",
            "0s",
            "--id",
            "low",
            "--priority",
            "-3",
        ],
    );
    ok(&redis, &["schedule", "p", "--in", "0s", "--id", "plain"]);
    let file = out_dir("priority-import").join("jobs.ndjson");
    std::fs::write(
        &file,
        "{\"id\": \"high\", \"in\": \"0s\", \"priority\": 7}\n",
    )
    .unwrap();
    ok(&redis, &["import", "p", file.to_str().unwrap()]);
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&redis, &["show", "p", "high", "--json"])).unwrap();
    assert_eq!(shown["priority"], 7);
    assert!(ok(&redis, &["show", "p", "low"]).contains("priority"));
    assert!(!ok(&redis, &["show", "p", "plain"]).contains("priority"));

    let queue = Queue::connect(&redis.url(), "p").await.unwrap();
    Promoter::promote(&queue, 10).await.unwrap();
    let listed = ok(&redis, &["ls", "p", "--state", "ready", "--json"]);
    let ids: Vec<String> = listed
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|v| match v {
            serde_json::Value::Array(items) => items,
            one => vec![one],
        })
        .filter_map(|j| j["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids, ["high", "plain", "low"], "{listed}");

    let out = ok(&redis, &["queue", "set", "p", "--priority-step", "2s"]);
    assert!(out.contains("2s per priority level"), "{out}");
    assert_eq!(queue.priority_step().await.unwrap(), Duration::from_secs(2));
    ok(&redis, &["queue", "set", "p", "--priority-step", "default"]);
    assert_eq!(
        queue.priority_step().await.unwrap(),
        punctual::DEFAULT_PRIORITY_STEP
    );
    for (args, needle) in [
        (
            vec![
                "schedule",
                "p",
                "--in",
                "0s",
                "--id",
                "x",
                "--priority",
                "10",
            ],
            "priority 10",
        ),
        (
            vec![
                "schedule",
                "p",
                "--in",
                "0s",
                "--id",
                "x",
                "--priority",
                "-10",
            ],
            "priority -10",
        ),
        (
            vec!["queue", "set", "p", "--priority-step", "0s"],
            "priority step",
        ),
        (
            vec!["queue", "set", "p", "--priority-step", "2d"],
            "priority step",
        ),
    ] {
        fails(&run(&redis, &args, None), 2, needle);
    }
    assert!(queue.get("x").await.unwrap().is_none());
}
