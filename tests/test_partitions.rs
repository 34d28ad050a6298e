//! Partitioned queues: one logical queue over K hash slots. They behave as one queue for
//! producers, inspection, operators and workers; a job's partition follows from its id. Runs
//! against one server, and against a cluster under `PUNCTUAL_TEST_CLUSTER=1`.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use punctual::{
    Cancelled, Error, JobState, Namespace, NewJob, Outcome, Purge, QueueConfig, Rescheduled, When,
    WorkerConfig,
};
use support::cli::*;
use support::{eventually, spawn_worker, RedisServer};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(30);

/// Creating, opening and refusing: the count is stored with the queue and checked.
#[tokio::test]
async fn the_partition_count_is_stored_and_checked() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("mail", 8).await.unwrap();
    assert_eq!(queue.partitions(), 8);
    // Opened without a count, or with the same one: 8 partitions.
    assert_eq!(ns.queue("mail").await.unwrap().partitions(), 8);
    assert_eq!(ns.create_queue("mail", 8).await.unwrap().partitions(), 8);
    let other = punctual::Queue::connect(&redis.url(), "mail")
        .await
        .unwrap();
    assert_eq!(other.partitions(), 8);
    // Another count is refused, and so is a count for a queue that already has one partition.
    let err = ns.create_queue("mail", 4).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::PartitionsMismatch {
                found: 8,
                asked: 4,
                ..
            }
        ),
        "{err:?}"
    );
    ns.queue("plain").await.unwrap();
    let err = ns.create_queue("plain", 2).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::PartitionsMismatch {
                found: 1,
                asked: 2,
                ..
            }
        ),
        "{err:?}"
    );
    for bad in [0, 1025] {
        let err = ns.create_queue("x", bad).await.unwrap_err();
        assert!(err.is_input(), "{err:?}");
    }
    // The CLI: create, the same again, a mismatch, and `stats --json` shows the count.
    let out = ok(&redis, &["queue", "create", "cli", "--partitions", "4"]);
    assert!(out.contains("4 partition"), "{out}");
    ok(&redis, &["queue", "create", "cli", "--partitions", "4"]);
    fails(
        &run(
            &redis,
            &["queue", "create", "cli", "--partitions", "3"],
            None,
        ),
        1,
        "exists with 4 partition(s), not 3",
    );
    fails(
        &run(
            &redis,
            &["queue", "create", "cli", "--partitions", "0"],
            None,
        ),
        2,
        "partitions",
    );
    let stats = json(&ok(&redis, &["stats", "cli", "mail", "plain", "--json"]));
    let partitions: Vec<u64> = stats
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["partitions"].as_u64().unwrap())
        .collect();
    assert_eq!(partitions, [4, 8, 1]);
}

/// Jobs spread over the partitions; `get`, `cancel`, `reschedule` find a job from its id;
/// jobs that share a partition key share a partition; `stats`, `ls`, dead retry and purge
/// see the queue as one.
#[tokio::test]
async fn a_partitioned_queue_looks_like_one_queue() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("spread", 4).await.unwrap();
    let ids: Vec<String> = queue
        .schedule_many(
            (0..400u32).map(|i| NewJob::new(&i).delay(Duration::from_secs(3600 + u64::from(i)))),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().id)
        .collect();
    // Every partition got a fair share, in its own keys.
    let mut per_part = Vec::new();
    for p in 0..4 {
        let n: u64 = redis::cmd("ZCARD")
            .arg(format!(
                "punctual:{{{}}}:scheduled",
                punctual::keys::partition_tag("spread", p, 4)
            ))
            .query_async(&mut conn)
            .await
            .unwrap();
        per_part.push(n);
    }
    assert_eq!(per_part.iter().sum::<u64>(), 400);
    assert!(
        per_part.iter().all(|&n| n >= 60),
        "unbalanced: {per_part:?}"
    );
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.counts.scheduled, stats.partitions), (400, 4));
    assert_eq!(stats.totals.get(punctual::Event::Scheduled), 400);

    // A page is merged in due order across partitions.
    let page = queue.list(JobState::Scheduled, 10).await.unwrap();
    let page_ids: Vec<&str> = page.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(
        page_ids,
        ids[..10].iter().map(String::as_str).collect::<Vec<_>>()
    );

    // By id: get, reschedule, cancel.
    let info = queue.get(&ids[7]).await.unwrap().unwrap();
    assert_eq!(info.data_as::<u32>().unwrap(), 7);
    let moved = queue
        .reschedule(&ids[7], When::In(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(
        matches!(
            moved,
            Rescheduled::Moved {
                from: JobState::Scheduled,
                ..
            }
        ),
        "{moved:?}"
    );
    assert_eq!(
        queue.cancel(&ids[8]).await.unwrap(),
        Cancelled::Removed(JobState::Scheduled)
    );
    assert!(queue.get(&ids[8]).await.unwrap().is_none());

    // A partition key puts jobs together, generated ids or the caller's.
    let a = queue
        .schedule(
            NewJob::new(&1)
                .partition_key("customer-4")
                .delay(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let b = queue
        .schedule(
            NewJob::new(&2)
                .id("order-2{customer-4}")
                .partition_key("customer-4")
                .delay(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert!(a.id.ends_with("{customer-4}"), "{}", a.id);
    assert_eq!(
        punctual::keys::partition_of(&a.id, 4),
        punctual::keys::partition_of(&b.id, 4)
    );
    let bad = queue
        .schedule(NewJob::new(&3).id("order-3").partition_key("customer-4"))
        .await
        .unwrap_err();
    assert!(matches!(bad, Error::InvalidJobId { .. }), "{bad:?}");
    let part = punctual::keys::partition_of(&a.id, 4);
    let together: u64 = redis::cmd("HLEN")
        .arg(format!(
            "punctual:{{{}}}:jobs",
            punctual::keys::partition_tag("spread", part, 4)
        ))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(together >= 2);
    assert!(queue.get(&b.id).await.unwrap().is_some());

    // Dead jobs in several partitions: retried and purged as one set.
    let doomed = ns.create_queue("doomed", 4).await.unwrap();
    let dead_ids: Vec<String> = doomed
        .schedule_many((0..40u32).map(|i| NewJob::new(&i).max_attempts(1)))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().id)
        .collect();
    let stop = CancellationToken::new();
    let promoter =
        punctual::Promoter::new([doomed.clone()], punctual::PromoterConfig::default()).unwrap();
    tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    let worker = spawn_worker(
        &doomed,
        WorkerConfig::default(),
        &stop,
        |_job: punctual::Job<u32>, _| async { Outcome::kill("no") },
    );
    eventually(LIMIT, "40 dead", || async {
        doomed.counts().await.unwrap().dead == 40
    })
    .await;
    stop.cancel();
    worker.await.unwrap().unwrap();
    let dead_page = doomed.list(JobState::Dead, 100).await.unwrap();
    assert_eq!(dead_page.len(), 40);
    let revived = doomed.retry_dead(&dead_ids[..10]).await.unwrap();
    assert_eq!(revived.len(), 10);
    assert_eq!(doomed.counts().await.unwrap().dead, 30);
    assert_eq!(doomed.purge_dead(Purge::All).await.unwrap(), 30);
    assert_eq!(doomed.retry_all_dead().await.unwrap(), 0);

    // Removal takes every partition and the record.
    assert!(matches!(
        ns.remove_queue("doomed", false).await.unwrap(),
        punctual::Removed::Refused {
            jobs: 10,
            schedules: 0
        }
    ));
    assert!(matches!(
        ns.remove_queue("doomed", true).await.unwrap(),
        punctual::Removed::Removed { jobs: 10 }
    ));
    assert!(ns.existing_queue("doomed").await.unwrap().is_none());
}

/// Workers take jobs from every partition, each exactly once, and a promoter serves every
/// partition: 2,000 jobs over 8 partitions, due within 300 ms, all run once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_partition_is_promoted_and_worked() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("work", 8).await.unwrap();
    let stop = CancellationToken::new();
    for _ in 0..2 {
        let promoter = punctual::Promoter::new(
            [queue.clone()],
            punctual::PromoterConfig::default().set_heartbeat(Duration::from_millis(300)),
        )
        .unwrap();
        tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(HashMap::<u32, u32>::new()));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let seen = seen.clone();
        workers.push(spawn_worker(
            &queue,
            WorkerConfig::default(),
            &stop,
            move |job: punctual::Job<u32>, _| {
                *seen.lock().unwrap().entry(job.data).or_default() += 1;
                async { Outcome::Done }
            },
        ));
    }
    queue
        .schedule_many(
            (0..2000u32).map(|i| NewJob::new(&i).delay(Duration::from_millis(u64::from(i % 300)))),
        )
        .await
        .unwrap();
    eventually(LIMIT, "2000 jobs completed", || async {
        support::total(&queue, punctual::Event::Completed).await == 2000
    })
    .await;
    stop.cancel();
    for worker in workers {
        worker.await.unwrap().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2000);
    assert!(seen.values().all(|&n| n == 1), "a job ran twice");
}

/// Two promoters split a queue's 4 partitions between them (each promotes jobs, neither all
/// of them); when one stops (as a killed one would: it says nothing), the other takes its
/// partitions within one heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoters_split_the_partitions_and_take_over_a_dead_ones_within_a_heartbeat() {
    const HEARTBEAT: Duration = Duration::from_secs(1);
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("shared", 4).await.unwrap();
    let config = punctual::PromoterConfig::default().set_heartbeat(HEARTBEAT);
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let a = punctual::Promoter::new([ns.queue("shared").await.unwrap()], config.clone()).unwrap();
    let b = punctual::Promoter::new([ns.queue("shared").await.unwrap()], config).unwrap();
    let (metrics_a, metrics_b) = (a.metrics(), b.metrics());
    let a = tokio::spawn(a.run(stop_a.clone().cancelled_owned()));
    let b = tokio::spawn(b.run(stop_b.clone().cancelled_owned()));
    // Both alive in the shared set, and a view refresh (a third of a heartbeat) after that.
    let mut conn = redis.conn().await;
    eventually(LIMIT, "two promoters alive", || {
        let mut conn = conn.clone();
        async move {
            let n: u64 = redis::cmd("ZCARD")
                .arg("punctual:{shared}:promoters")
                .query_async(&mut conn)
                .await
                .unwrap();
            n == 2
        }
    })
    .await;
    tokio::time::sleep(HEARTBEAT / 2).await;
    let promoted = |m: &punctual::metrics::PromoterMetrics| {
        m.snapshot().get("shared").map_or(0, |a| a.promoted)
    };
    queue
        .schedule_many((0..400u32).map(|i| NewJob::new(&i).delay(Duration::from_millis(50))))
        .await
        .unwrap();
    eventually(LIMIT, "400 promoted", || async {
        queue.counts().await.unwrap().ready == 400
    })
    .await;
    // A promoter records its metrics after its call returns, so Redis can show the jobs ready
    // a moment before the counters do.
    eventually(LIMIT, "the promoters to count 400", || async {
        promoted(&metrics_a) + promoted(&metrics_b) >= 400
    })
    .await;
    let (by_a, by_b) = (promoted(&metrics_a), promoted(&metrics_b));
    println!("split: a promoted {by_a}, b {by_b}");
    assert_eq!(by_a + by_b, 400);
    assert!(
        by_a > 0 && by_b > 0,
        "one promoter did everything: {by_a} / {by_b}"
    );

    // A stops without a word; jobs due 100 ms later in every partition are promoted by b
    // within a heartbeat of their due time.
    stop_a.cancel();
    a.await.unwrap().unwrap();
    let due = support::server_ms(&mut conn).await + 100;
    queue
        .schedule_many(
            (0..400u32)
                .map(|i| NewJob::new(&i).at(std::time::UNIX_EPOCH + Duration::from_millis(due))),
        )
        .await
        .unwrap();
    eventually(LIMIT, "800 ready", || async {
        queue.counts().await.unwrap().ready == 800
    })
    .await;
    let late = support::server_ms(&mut conn).await.saturating_sub(due);
    println!("after the stop: every job promoted within {late} ms of its due time");
    assert!(
        late <= HEARTBEAT.as_millis() as u64 + 300,
        "partitions unserved for {late} ms"
    );
    eventually(LIMIT, "b to count its 400", || async {
        promoted(&metrics_b) >= by_b + 400
    })
    .await;
    assert_eq!(promoted(&metrics_b), by_b + 400);
    assert_eq!(promoted(&metrics_a), by_a, "a promoted after it stopped");
    stop_b.cancel();
    b.await.unwrap().unwrap();
}

/// An idle partitioned queue costs no polling: with nothing due for an hour, a promoter and a
/// worker on 4 partitions send what their heartbeats and idle waits call for (commands inside
/// scripts included), not a busy loop: under 200 commands in 6 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partitioned_queue_is_not_polled() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("quiet", 4).await.unwrap();
    queue
        .schedule_many((0..100u32).map(|i| NewJob::new(&i).delay(Duration::from_secs(3600))))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let promoter =
        punctual::Promoter::new([queue.clone()], punctual::PromoterConfig::default()).unwrap();
    tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default(),
        &stop,
        |_job: punctual::Job<u32>, _| async { Outcome::Done },
    );
    eventually(LIMIT, "the worker blocked on every partition", || async {
        redis.blocked_clients().await == 4
    })
    .await;
    // Idle cost, by design: every 5 s the worker's blocking wait on each partition times out
    // and it calls claim.lua there (about 17 commands inside Redis each), and each promoter
    // heartbeat is about 12; so at most about 170 in 6 s when two cycles fall in the window.
    // A busy loop would be thousands.
    let sent = redis.commands_during(Duration::from_secs(6)).await;
    println!("idle, 4 partitions: {sent} commands in 6 s");
    assert!(sent < 200, "{sent} commands in 6 s while idle");
    stop.cancel();
    worker.await.unwrap().unwrap();
}
