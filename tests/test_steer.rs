//! Steering a queue after its jobs are scheduled: pausing and resuming. Runs against one
//! server, and against a cluster under `PUNCTUAL_TEST_CLUSTER=1`.

mod support;

use std::time::{Duration, Instant};

use punctual::{
    Job, Namespace, NewJob, Outcome, Promoter, PromoterConfig, QueueConfig, WorkerConfig,
};
use support::cli::*;
use support::{eventually, spawn_worker, RedisServer};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);

/// While a queue is paused its jobs are still promoted but none is claimed, and the idle
/// worker sends no commands (though `ready` holds jobs); `resume` wakes it at once, far
/// sooner than its 5 s idle wait. The CLI pauses, shows and resumes the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_is_promoted_but_not_claimed_and_resumes_at_once() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("paused", 2).await.unwrap();
    let (stop_promoter, stop_worker) = (CancellationToken::new(), CancellationToken::new());
    let promoter = Promoter::new(
        [queue.clone()],
        PromoterConfig::default().set_heartbeat(Duration::from_secs(1)),
    )
    .unwrap();
    let promoter = tokio::spawn(promoter.run(stop_promoter.clone().cancelled_owned()));
    let (tx, mut ran) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default(),
        &stop_worker,
        move |job: Job<u32>, _| {
            let _ = tx.send(job.data);
            async { Outcome::Done }
        },
    );
    queue.schedule(NewJob::new(&0)).await.unwrap();
    assert_eq!(ran.recv().await, Some(0));

    assert!(queue.pause().await.unwrap());
    assert!(
        !queue.pause().await.unwrap(),
        "pausing twice changes nothing"
    );
    assert!(queue.is_paused().await.unwrap());
    queue
        .schedule_many((1..=50u32).map(|i| NewJob::new(&i)))
        .await
        .unwrap();
    eventually(LIMIT, "50 jobs promoted while paused", || async {
        queue.counts().await.unwrap().ready == 50
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::from_secs(1), ran.recv())
            .await
            .is_err(),
        "a job ran while the queue was paused"
    );
    let stats = queue.stats().await.unwrap();
    assert!(stats.paused);
    assert_eq!((stats.counts.ready, stats.counts.running), (50, 0));
    // The worker waits out the pause without polling, though `ready` is not empty (the
    // promoter, which has its own heartbeat, is stopped so that only the worker counts).
    stop_promoter.cancel();
    promoter.await.unwrap().unwrap();
    let sent = redis.commands_during(Duration::from_secs(3)).await;
    println!("paused, 2 partitions, 50 jobs ready: the worker sent {sent} commands in 3 s");
    assert!(sent <= 2, "{sent} commands in 3 s while paused");

    let resumed = Instant::now();
    assert!(queue.resume().await.unwrap());
    for _ in 0..50 {
        tokio::time::timeout(LIMIT, ran.recv())
            .await
            .unwrap()
            .unwrap();
    }
    let took = resumed.elapsed();
    println!("resume to 50 jobs run: {took:?}");
    assert!(took < Duration::from_secs(2), "resumed after {took:?}");
    assert!(
        !queue.resume().await.unwrap(),
        "resuming twice changes nothing"
    );
    stop_worker.cancel();
    worker.await.unwrap().unwrap();

    // The CLI: pause, see it in stats and show, resume.
    let out = ok(&redis, &["pause", "paused"]);
    assert!(out.contains("paused queue"), "{out}");
    let out = ok(&redis, &["pause", "paused"]);
    assert!(out.contains("already paused"), "{out}");
    let stats = json(&ok(&redis, &["stats", "paused", "--json"]));
    assert_eq!(stats[0]["paused"], true, "{stats}");
    let table = ok(&redis, &["stats", "paused"]);
    assert!(table.contains("paused (paused)"), "{table}");
    let id = queue
        .schedule(NewJob::new(&99).delay(Duration::from_secs(60)))
        .await
        .unwrap()
        .id;
    let shown = json(&ok(&redis, &["show", "paused", &id, "--json"]));
    assert_eq!(shown["queue_paused"], true, "{shown}");
    let out = ok(&redis, &["resume", "paused"]);
    assert!(out.contains("resumed queue"), "{out}");
    assert!(!queue.is_paused().await.unwrap());
    fails(&run(&redis, &["pause", "nosuchqueue"], None), 1, "no queue");
}
