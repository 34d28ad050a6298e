//! Redis Sentinel: punctual reaches the primary through three sentinels, follows a failover
//! (the primary SIGKILLed while jobs flow, its replica promoted), sweeps overdue jobs at once
//! after it, and with durability on loses no acknowledged job. Real servers: a primary, a
//! replica and three `redis-server --sentinel`.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use punctual::{
    Durability, Error, Job, Namespace, NewJob, Outcome, Promoter, PromoterConfig, QueueConfig,
    WorkerConfig,
};
use support::{eventually, spawn_worker, SentinelSetup};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_through_sentinel_is_followed_and_loses_no_acknowledged_job() {
    let mut setup = SentinelSetup::start();
    let first = setup.primary.port();
    let config = QueueConfig::default().set_durability(Some(Durability {
        replicas: 1,
        timeout: Duration::from_millis(500),
    }));
    let ns = Namespace::connect(&setup.url(), config).await.unwrap();
    let info = ns.server_info().await.unwrap();
    assert_eq!(info.role, "master");
    let queue = ns.queue("sentinel").await.unwrap();

    let stop = CancellationToken::new();
    let promoter = Promoter::new(
        [queue.clone()],
        PromoterConfig::default().set_heartbeat(Duration::from_millis(500)),
    )
    .unwrap();
    let promoter = tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    let runs = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let worker = {
        let runs = runs.clone();
        spawn_worker(
            &queue,
            WorkerConfig::default().set_lease(Duration::from_secs(3)),
            &stop,
            move |job: Job<u32>, _| {
                *runs.lock().unwrap().entry(job.id).or_default() += 1;
                async { Outcome::Done }
            },
        )
    };

    // The producer: one job per call, sent again under the same id until acknowledged, for 8 s.
    let producer = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut refused = 0u32;
            let started = Instant::now();
            let mut n = 0u32;
            while started.elapsed() < Duration::from_secs(8) {
                let id = format!("s-{n}");
                let job = NewJob::new(&n)
                    .id(&id)
                    .delay(Duration::from_millis(u64::from(n % 300)));
                match queue.schedule(job).await {
                    Ok(_) => {
                        acked.push(id);
                        n += 1;
                    }
                    Err(Error::NotReplicated { .. }) | Err(Error::Redis { .. }) => {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("unexpected: {e}"),
                }
            }
            (acked, refused)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    setup.primary.kill();
    let killed = Instant::now();
    // The sentinels promote the replica; the old primary comes back (empty) and they make it
    // a replica of the new one, so writes can be confirmed again.
    eventually(
        Duration::from_secs(30),
        "the sentinels name a new primary",
        || async { setup.primary_port().is_some_and(|p| p != first) },
    )
    .await;
    println!("failover after {:?}", killed.elapsed());
    tokio::task::block_in_place(|| setup.primary.restart());

    let (acked, refused) = producer.await.unwrap();
    println!(
        "acknowledged {}, refused while failing over {refused}",
        acked.len()
    );
    assert!(acked.len() >= 100, "too few jobs: {}", acked.len());
    assert!(refused > 0, "no call met the failover");
    eventually(
        Duration::from_secs(60),
        "every acknowledged job ran",
        || async {
            let runs = runs.lock().unwrap();
            acked.iter().all(|id| runs.contains_key(id))
        },
    )
    .await;
    stop.cancel();
    promoter.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
    println!(
        "first {first}, replica {}, named now {:?}",
        setup.replica.port(),
        setup.primary_port()
    );
    let twice = runs.lock().unwrap().values().filter(|&&n| n > 1).count();
    println!("ran more than once: {twice}");
}

/// A malformed sentinel URL is a typed input error naming the expected form; nothing connects.
#[tokio::test]
async fn a_bad_sentinel_url_is_an_input_error() {
    for url in [
        "redis+sentinel://127.0.0.1:1",
        "redis+sentinel://127.0.0.1/name",
        "redis+sentinel:///name",
    ] {
        let err = Namespace::connect(url, QueueConfig::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err:?}");
        assert!(err.to_string().contains("redis+sentinel://"), "{err}");
    }
}

/// A graceful failover (`SENTINEL FAILOVER`) leaves the old primary up, as a read-only
/// replica. The client's open connection to it is dropped by the sentinels (`CLIENT KILL`) or
/// answered READONLY (per command, inside a schedule pipeline); either way the client asks the
/// sentinels again and the next write lands on the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_primary_that_stays_up_is_left_for_the_new_one() {
    let setup = SentinelSetup::start();
    let first = setup.primary.port();
    let queue = punctual::Queue::connect(&setup.url(), "graceful")
        .await
        .unwrap();
    queue.schedule(NewJob::new(&0).id("before")).await.unwrap();
    let (_, sentinel_port, _) = &setup.sentinels[0];
    let conn = redis::Client::open(format!("redis://127.0.0.1:{sentinel_port}/"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // Sentinels need to have seen the replica before they can fail over to it.
    eventually(Duration::from_secs(30), "the failover starts", || {
        let mut conn = conn.clone();
        async move {
            redis::cmd("SENTINEL")
                .arg("FAILOVER")
                .arg(SentinelSetup::SERVICE)
                .query_async::<()>(&mut conn)
                .await
                .is_ok()
        }
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "the sentinels name the replica",
        || async { setup.primary_port().is_some_and(|p| p != first) },
    )
    .await;
    // Until the sentinels have demoted it, the old primary still takes writes (which the
    // resync then drops: Sentinel's own window, which durability closes, see above).
    eventually(
        Duration::from_secs(30),
        "the old primary is a replica",
        || async {
            // The sentinels kill the old primary's clients while they demote it: a
            // connection that breaks here just means "not yet".
            let client = setup.primary.client();
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            redis::cmd("INFO")
                .arg("replication")
                .query_async::<String>(&mut conn)
                .await
                .is_ok_and(|info| info.contains("role:slave"))
        },
    )
    .await;
    let started = Instant::now();
    let mut refused = 0;
    loop {
        match queue.schedule(NewJob::new(&1).id("after")).await {
            Ok(_) => break,
            Err(e) => {
                refused += 1;
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "still refused after 30 s: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    println!("refused {refused} time(s) before reaching the new primary");
    assert!(queue.get("before").await.unwrap().is_some());
    assert!(queue.get("after").await.unwrap().is_some());
    let mut direct = setup.replica.conn().await;
    let on_new: bool = redis::cmd("HEXISTS")
        .arg("punctual:{graceful}:jobs")
        .arg("after")
        .query_async(&mut direct)
        .await
        .unwrap();
    assert!(on_new, "the job was not written on the new primary");
}
