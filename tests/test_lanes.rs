//! One worker, several queues: weighted shares, strict order, one shared concurrency limit,
//! and an idle wait that blocks on every queue at once. Each test starts its own redis-server.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use punctual::{Error, NewJob, Outcome, Promoter, Queue, Worker, WorkerConfig};
use support::{eventually, RedisServer};
use tokio_util::sync::CancellationToken;

/// Puts `n` due jobs into `queue`'s ready list (scheduled due now, then promoted).
async fn fill(queue: &Queue, n: usize) {
    let jobs = (0..n).map(|i| NewJob::new(&(i as u64)));
    for result in queue.schedule_many(jobs).await.unwrap() {
        result.unwrap();
    }
    while Promoter::promote(queue, 5000).await.unwrap().promoted > 0 {}
}

/// Runs `worker` until it has started `n` jobs, then stops it; how many of those `n` came from
/// each queue.
async fn shares(worker: Worker, n: usize, limit: Duration) -> HashMap<String, usize> {
    let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let started = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let (seen, halt) = (counts.clone(), stop.clone());
    let task = tokio::spawn(worker.run(
        move |_job: punctual::Job<u64>, ctx| {
            // Count the first n starts; stop the worker at the next.
            if started.fetch_add(1, Ordering::SeqCst) < n {
                *seen
                    .lock()
                    .unwrap()
                    .entry(ctx.queue().to_owned())
                    .or_default() += 1;
            } else {
                halt.cancel();
            }
            async { Outcome::Done }
        },
        stop.clone().cancelled_owned(),
    ));
    tokio::time::timeout(limit, task)
        .await
        .unwrap_or_else(|_| panic!("{n} jobs ran within {limit:?}"))
        .unwrap()
        .unwrap();
    let counts = counts.lock().unwrap().clone();
    counts
}

/// Three queues full of jobs, weights 6/3/1: over the first 10,000 jobs the worker runs, each
/// queue's share is within 10 % of its weight's (60 %, 30 %, 10 %).
#[tokio::test]
async fn weighted_shares_follow_the_weights() {
    let redis = RedisServer::start();
    let url = redis.url();
    let names = ["critical", "default", "low"];
    let mut queues = Vec::new();
    for name in names {
        let queue = Queue::connect(&url, name).await.unwrap();
        fill(&queue, 10_000).await;
        queues.push(queue);
    }
    let weights = [6u32, 3, 1];
    let worker = Worker::weighted(
        queues.iter().cloned().zip(weights),
        WorkerConfig::default().set_concurrency(8),
    )
    .unwrap();
    let counts = shares(worker, 10_000, Duration::from_secs(120)).await;
    let total: usize = counts.values().sum();
    assert_eq!(total, 10_000, "{counts:?}");
    for (name, weight) in names.iter().zip(weights) {
        let share = counts.get(*name).copied().unwrap_or(0) as f64 / total as f64;
        let want = f64::from(weight) / 10.0;
        assert!(
            (share - want).abs() <= want * 0.10,
            "queue {name}: share {share:.4}, weight's share {want} (counts {counts:?})"
        );
    }
}

/// A queue with nothing ready leaves its share to the others: with `low` empty, `critical`
/// and `default` split 2:1 between them, and the worker never waits while any has work.
#[tokio::test]
async fn an_empty_queue_leaves_its_share_to_the_others() {
    let redis = RedisServer::start();
    let url = redis.url();
    let critical = Queue::connect(&url, "critical").await.unwrap();
    let default = Queue::connect(&url, "default").await.unwrap();
    let low = Queue::connect(&url, "low").await.unwrap();
    fill(&critical, 2000).await;
    fill(&default, 2000).await;
    let worker = Worker::weighted(
        [(critical, 6), (default, 3), (low, 1)],
        WorkerConfig::default().set_concurrency(4),
    )
    .unwrap();
    let counts = shares(worker, 1500, Duration::from_secs(60)).await;
    let critical_share = counts.get("critical").copied().unwrap_or(0) as f64 / 1500.0;
    assert!(
        (critical_share - 2.0 / 3.0).abs() < 0.05,
        "critical should have 2/3 of the jobs while low is empty: {counts:?}"
    );
    assert_eq!(counts.get("low"), None);
}

/// Strict order: every job of the first queue runs before any of the second.
#[tokio::test]
async fn strict_order_drains_the_first_queue_first() {
    let redis = RedisServer::start();
    let url = redis.url();
    let first = Queue::connect(&url, "first").await.unwrap();
    let second = Queue::connect(&url, "second").await.unwrap();
    fill(&first, 300).await;
    fill(&second, 300).await;
    let order: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = CancellationToken::new();
    let worker = Worker::strict(
        [first.clone(), second.clone()],
        WorkerConfig::default().set_concurrency(1),
    )
    .unwrap();
    let seen = order.clone();
    let task = tokio::spawn(worker.run(
        move |_job: punctual::Job<u64>, ctx| {
            seen.lock().unwrap().push(ctx.queue().to_owned());
            async { Outcome::Done }
        },
        stop.clone().cancelled_owned(),
    ));
    eventually(Duration::from_secs(30), "600 jobs ran", || {
        let order = order.clone();
        async move { order.lock().unwrap().len() == 600 }
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let order = order.lock().unwrap();
    let first_second = order.iter().position(|q| q == "second").unwrap();
    assert_eq!(
        first_second, 300,
        "a job of `second` ran before `first` was empty"
    );
}

/// The queues share one concurrency limit, and an idle worker blocks on every queue at once:
/// with an idle wait of a minute, a job that becomes ready in any of its queues starts at
/// once, and never more than `concurrency` handlers run together.
#[tokio::test]
async fn one_limit_and_one_idle_wait_for_all_queues() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = Queue::connect(&url, "a").await.unwrap();
    let b = Queue::connect(&url, "b").await.unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = CancellationToken::new();
    support::spawn_promoter(&a, Duration::from_secs(1), &stop);
    support::spawn_promoter(&b, Duration::from_secs(1), &stop);
    let worker = Worker::weighted(
        [(a.clone(), 1), (b.clone(), 1)],
        WorkerConfig::default()
            .set_concurrency(3)
            .set_idle_wait(Duration::from_secs(60)),
    )
    .unwrap();
    let (now, peak, finished) = (running.clone(), most.clone(), done.clone());
    let task = tokio::spawn(worker.run(
        move |job: punctual::Job<u64>, ctx| {
            let (now, peak, finished) = (now.clone(), peak.clone(), finished.clone());
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                if job.data == 1 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                now.fetch_sub(1, Ordering::SeqCst);
                finished.lock().unwrap().push(ctx.queue().to_owned());
                Outcome::Done
            }
        },
        stop.clone().cancelled_owned(),
    ));
    // Let the worker find both queues empty and block.
    eventually(
        Duration::from_secs(10),
        "the worker blocks on both queues",
        || {
            let redis = &redis;
            async move { redis.blocked_clients().await >= 2 }
        },
    )
    .await;
    // A job in the second queue starts long before the idle wait would end.
    b.schedule(NewJob::new(&0u64)).await.unwrap();
    eventually(Duration::from_secs(10), "the job of b ran", || {
        let done = done.clone();
        async move { done.lock().unwrap().iter().any(|q| q == "b") }
    })
    .await;
    // Then many slow jobs in both: never more than 3 at once.
    for queue in [&a, &b] {
        let jobs = (0..20).map(|_| NewJob::new(&1u64));
        for r in queue.schedule_many(jobs).await.unwrap() {
            r.unwrap();
        }
    }
    eventually(Duration::from_secs(30), "41 jobs ran", || {
        let done = done.clone();
        async move { done.lock().unwrap().len() == 41 }
    })
    .await;
    assert!(most.load(Ordering::SeqCst) <= 3, "more than 3 ran at once");
    assert_eq!(
        most.load(Ordering::SeqCst),
        3,
        "the limit was shared, not per queue"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// Bad worker set-ups are refused with a clear error: no queue, a queue named twice, a weight
/// of 0 or over the limit.
#[tokio::test]
async fn bad_queue_lists_are_refused() {
    let redis = RedisServer::start();
    let a = Queue::connect(&redis.url(), "a").await.unwrap();
    let config = WorkerConfig::default();
    let refused = |r: punctual::Result<Worker>| match r {
        Err(Error::InvalidConfig { reason, .. }) => reason,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    assert!(refused(Worker::strict([], config.clone())).contains("at least one"));
    assert!(refused(Worker::strict([a.clone(), a.clone()], config.clone())).contains("twice"));
    assert!(refused(Worker::weighted([(a.clone(), 0)], config.clone())).contains("1..=1000"));
    assert!(refused(Worker::weighted([(a, 1001)], config)).contains("1..=1000"));
}
