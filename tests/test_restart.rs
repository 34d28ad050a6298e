//! Redis restarted in the middle of a run: promoter and worker reconnect by themselves and every
//! job still runs. The server persists with `appendonly yes` / `appendfsync always`, so what it
//! acknowledged survives a SIGKILL.

mod support;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use punctual::{Job, NewJob, Outcome, Promoter, PromoterConfig, Queue, WorkerConfig};
use redis::AsyncCommands;
use support::{eventually, spawn_worker, RedisServer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// 2,000 jobs due over 3 s; Redis is SIGKILLed and restarted after the first second. Every job
/// runs at least once, and at the end the queue holds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoter_and_worker_survive_a_redis_restart() {
    support::init_tracing();
    let mut redis = RedisServer::start_with(true);
    let queue = Queue::connect(&redis.url(), "restart").await.unwrap();
    let start = SystemTime::now() + Duration::from_millis(200);
    let ids: HashSet<String> = queue
        .schedule_many((0..2000u64).map(|i| {
            NewJob::new(&i)
                .id(format!("job-{i}"))
                .at(start + Duration::from_millis(i * 3 / 2))
        }))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().id)
        .collect();

    let stop = CancellationToken::new();
    let promoter = Promoter::new(
        [queue.clone()],
        PromoterConfig::default().set_heartbeat(Duration::from_secs(1)),
    )
    .unwrap();
    let promoter = tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    // A short lease, so that a job whose ack was lost with the connection comes back soon.
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default().set_lease(Duration::from_secs(2)),
        &stop,
        move |job: Job<u64>, _ctx| {
            let tx = tx.clone();
            async move {
                tx.send(job.id).unwrap();
                Outcome::Done
            }
        },
    );

    let mut seen = HashSet::new();
    while seen.len() < 500 {
        seen.insert(rx.recv().await.unwrap());
    }
    redis.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.restart();

    while seen.len() < ids.len() {
        let id = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "stalled after the restart at {} of {} jobs",
                    seen.len(),
                    ids.len()
                )
            })
            .unwrap();
        seen.insert(id);
    }
    assert_eq!(seen, ids);
    eventually(
        Duration::from_secs(20),
        "queue empty after the restart",
        || {
            let queue = queue.clone();
            async move {
                queue
                    .counts()
                    .await
                    .map(|c| c == Default::default())
                    .unwrap_or(false)
            }
        },
    )
    .await;
    let mut conn = redis.conn().await;
    let jobs: usize = conn.hlen("punctual:{restart}:jobs").await.unwrap();
    assert_eq!(jobs, 0, "no job data left behind");
    stop.cancel();
    promoter.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
}
