//! The event log: off by default (no key written), every change of a job written by its
//! script, in order for one job across a retry and a lease expiry, one entry per script call
//! however many jobs it moves, resumable from a position, on partitioned queues too, and
//! followed by `punctual watch`. Each test starts its own redis-server.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use punctual::{
    Change, EventStream, JobEvent, Namespace, NewJob, Outcome, Promoter, Queue, QueueConfig, Since,
    WorkerConfig,
};
use redis::AsyncCommands;
use support::{eventually, RedisServer};
use tokio_util::sync::CancellationToken;

/// The next event, or a failure after 20 s.
async fn next(events: &mut EventStream) -> JobEvent {
    tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("an event within 20 s")
        .expect("the stream goes on")
        .expect("no read error")
}

/// The changes of job `id` among the next `n` events.
async fn changes_of(events: &mut EventStream, id: &str, n: usize) -> Vec<(Change, Option<u32>)> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let e = next(events).await;
        if e.id == id {
            seen.push((e.change, e.attempt));
        }
    }
    seen
}

/// A queue without an event log writes no stream; with one, a job's life arrives in order
/// across a failed attempt and a lease that ran out, with attempts and reasons; a reader
/// resumes right after any position.
#[tokio::test]
async fn one_jobs_life_in_order_across_a_retry_and_a_lease_expiry() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "life").await.unwrap();
    queue
        .schedule(NewJob::new(&0u32).id("quiet"))
        .await
        .unwrap();
    Promoter::promote(&queue, 10).await.unwrap();
    let exists: bool = conn.exists("punctual:{life}:events").await.unwrap();
    assert!(!exists, "off by default: nothing written");
    assert_eq!(queue.event_log().await.unwrap(), None);
    queue.cancel("quiet").await.unwrap();

    queue.set_event_log(Some(1000)).await.unwrap();
    assert_eq!(queue.event_log().await.unwrap(), Some(1000));
    let mut events = queue.events(Since::Now).await.unwrap();
    queue.schedule(NewJob::new(&1u32).id("j")).await.unwrap();
    let stop = CancellationToken::new();
    support::spawn_promoter(&queue, Duration::from_millis(100), &stop);
    // Attempt 1 fails (retried at once); attempt 2 hangs and its worker vanishes (the task
    // is aborted, so its lease of 1 s runs out); attempt 3, on a new worker, succeeds.
    let runs = Arc::new(AtomicU32::new(0));
    let count = runs.clone();
    let first = support::spawn_worker(
        &queue,
        WorkerConfig::default().set_lease(Duration::from_secs(1)),
        &stop,
        move |job: punctual::Job<u32>, _ctx| {
            count.fetch_add(1, Ordering::SeqCst);
            async move {
                if job.attempt == 1 {
                    return Outcome::RetryAfter(Duration::ZERO, "try again".to_owned());
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Outcome::Done
            }
        },
    );
    eventually(Duration::from_secs(10), "attempt 2 started", || {
        let runs = runs.clone();
        async move { runs.load(Ordering::SeqCst) == 2 }
    })
    .await;
    first.abort();
    let _ = first.await;
    support::spawn_worker(
        &queue,
        WorkerConfig::default(),
        &stop,
        |_job: punctual::Job<u32>, _ctx| async { Outcome::Done },
    );
    let seen = changes_of(&mut events, "j", 9).await;
    stop.cancel();
    assert_eq!(
        seen,
        [
            (Change::Scheduled, None),
            (Change::Promoted, None),
            (Change::Claimed, Some(1)),
            (Change::Retried, Some(1)),
            (Change::Promoted, None),
            (Change::Claimed, Some(2)),
            (Change::LeaseExpired, Some(2)),
            (Change::Claimed, Some(3)),
            (Change::Completed, None),
        ]
    );

    // Resume after the retry: the same events from there on.
    let mut from_start = queue.events(Since::Start).await.unwrap();
    let after_retry = loop {
        let e = next(&mut from_start).await;
        if e.id == "j" && e.change == Change::Retried {
            assert_eq!(e.reason.as_deref(), Some("retry_requested"));
            break e.position;
        }
    };
    let mut resumed = queue.events(Since::After(after_retry)).await.unwrap();
    let rest = changes_of(&mut resumed, "j", 5).await;
    assert_eq!(
        rest.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [
            Change::Promoted,
            Change::Claimed,
            Change::LeaseExpired,
            Change::Claimed,
            Change::Completed
        ]
    );
    assert!(queue
        .events(Since::After("nonsense".to_owned()))
        .await
        .is_err());
}

/// Promoting 1,000 jobs is one log entry carrying 1,000 changes; positions inside an entry
/// resume at the next line; the log is bounded.
#[tokio::test]
async fn a_batch_is_one_entry_and_positions_resume_inside_it() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "batch").await.unwrap();
    queue.set_event_log(Some(100)).await.unwrap();
    let jobs = (0..1000u32).map(|i| NewJob::new(&i).id(format!("b{i:04}")));
    for r in queue.schedule_many(jobs).await.unwrap() {
        r.unwrap();
    }
    let before: u64 = redis::cmd("XLEN")
        .arg("punctual:{batch}:events")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        Promoter::promote(&queue, 1000).await.unwrap().promoted,
        1000
    );
    let after: u64 = redis::cmd("XLEN")
        .arg("punctual:{batch}:events")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(after - before, 1, "one XADD for the whole promotion");

    let mut events = queue.events(Since::Start).await.unwrap();
    let mut promoted = Vec::new();
    let mut position = None;
    while promoted.len() < 500 {
        let e = next(&mut events).await;
        if e.change == Change::Promoted {
            promoted.push(e.id.clone());
            position = Some(e.position);
        }
    }
    drop(events);
    let mut resumed = queue.events(Since::After(position.unwrap())).await.unwrap();
    let e = next(&mut resumed).await;
    assert_eq!((e.change, e.id.as_str()), (Change::Promoted, "b0500"));
    assert!(queue.set_event_log(Some(0)).await.is_err());
}

/// A partitioned queue logs in each partition and a reader merges them; `punctual watch
/// --json` prints one event per line and `queue set --events` turns the log on and off.
#[tokio::test]
async fn partitions_and_the_cli() {
    use support::cli::{ok, punctual};
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("parts", 4).await.unwrap();
    let out = ok(&redis, &["queue", "set", "parts", "--events", "5000"]);
    assert!(out.contains("5000"), "{out}");
    let mut events = queue.events(Since::Now).await.unwrap();
    let mut watch = punctual(&redis)
        .args(["watch", "parts", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Let `watch` start reading before the jobs come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    for id in &ids {
        queue
            .schedule(NewJob::new(&1u32).id(id.clone()))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let e = next(&mut events).await;
        assert_eq!(e.change, Change::Scheduled);
        assert_eq!(e.position.split(',').count(), 4);
        seen.push(e.id);
    }
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want);

    let stdout = watch.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .take(20)
            .map(|l| serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap())
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(Duration::from_secs(20), lines)
        .await
        .expect("watch printed 20 lines")
        .unwrap();
    support::cli::terminate(&watch);
    let status = support::cli::wait_exit(&mut watch, Duration::from_secs(10));
    assert!(status.success(), "watch exits 0 on SIGTERM: {status:?}");
    for line in &lines {
        assert_eq!(line["event"], "scheduled");
        assert_eq!(line["queue"], "parts");
        assert!(line["position"].is_string() && line["at"].is_string());
    }
    ok(&redis, &["queue", "set", "parts", "--events", "off"]);
    assert_eq!(queue.event_log().await.unwrap(), None);
}
