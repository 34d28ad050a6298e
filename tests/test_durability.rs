//! Durability through `WAIT`: with a replica that lags, SIGKILL of the primary and promotion
//! of the replica lose acknowledged jobs, unless durability is on; then a write is
//! acknowledged only once the replica has it, a write it does not confirm in time is a typed
//! error, and no acknowledged job is lost. Real servers: a primary and a replica.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use punctual::{Durability, Error, NewJob, Queue, QueueConfig};
use support::RedisServer;

/// Makes `replica` stop reading its replication stream for `secs` (a lagging replica).
fn lag(replica: &RedisServer, secs: f64) -> std::thread::JoinHandle<()> {
    let client = replica.client();
    std::thread::spawn(move || {
        let mut conn = client.get_connection().unwrap();
        let _: () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(secs)
            .query(&mut conn)
            .unwrap();
    })
}

/// Promotes `replica` (REPLICAOF NO ONE) and returns the ids of the jobs it holds.
async fn promote_and_read(replica: &RedisServer, queue: &str) -> HashSet<String> {
    let mut conn = replica.conn().await;
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut conn)
        .await
        .unwrap();
    redis::cmd("HKEYS")
        .arg(format!("punctual:{{{queue}}}:jobs"))
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Schedules one job per call for `length` (ids `p-0`, `p-1`, …); the ids acknowledged, and
/// how many calls ended in `NotReplicated`.
async fn produce(queue: &Queue, length: Duration) -> (Vec<String>, u32) {
    let mut acked = Vec::new();
    let mut not_replicated = 0;
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < length {
        let id = format!("p-{n}");
        n += 1;
        match queue
            .schedule(NewJob::new(&n).id(&id).delay(Duration::from_secs(3600)))
            .await
        {
            Ok(_) => acked.push(id),
            Err(Error::NotReplicated {
                confirmed, wanted, ..
            }) => {
                assert!(confirmed < wanted);
                not_replicated += 1;
            }
            // The primary is gone: nothing more is acknowledged.
            Err(e) if e.is_connection_error() => break,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    (acked, not_replicated)
}

/// Without durability, jobs acknowledged while the replica lags are lost when the primary is
/// killed and the replica promoted (the problem as a user met it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_durability_a_failover_loses_acknowledged_jobs() {
    let mut primary = RedisServer::start_standalone();
    let replica = RedisServer::start_replica_of(&primary);
    let queue = Queue::connect(&primary.url(), "loose").await.unwrap();
    let sleeper = lag(&replica, 2.0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (acked, _) = produce(&queue, Duration::from_millis(500)).await;
    primary.kill();
    sleeper.join().unwrap();
    let held = promote_and_read(&replica, "loose").await;
    let lost = acked.iter().filter(|id| !held.contains(*id)).count();
    println!(
        "without durability: acknowledged {}, lost {lost}",
        acked.len()
    );
    assert!(acked.len() >= 50, "too few jobs to tell: {}", acked.len());
    assert!(
        lost > 0,
        "the lagging replica had every job: the test did not make it lag"
    );
}

/// With durability (1 replica, 200 ms): while the replica lags, schedule calls fail with
/// `NotReplicated` instead of acknowledging; after it catches up they succeed; the primary is
/// SIGKILLed while jobs flow, and the promoted replica holds every acknowledged job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_durability_no_acknowledged_job_is_lost_in_a_failover() {
    let mut primary = RedisServer::start_standalone();
    let replica = RedisServer::start_replica_of(&primary);
    let config = QueueConfig::default().set_durability(Some(Durability {
        replicas: 1,
        timeout: Duration::from_millis(200),
    }));
    let queue = Queue::connect_with(&primary.url(), "safe", config)
        .await
        .unwrap();
    let producer = {
        let queue = queue.clone();
        tokio::spawn(async move { produce(&queue, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The replica lags for a second, then catches up; then the primary dies mid-flow.
    let sleeper = lag(&replica, 1.0);
    tokio::task::block_in_place(|| sleeper.join().unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    primary.kill();
    let (acked, not_replicated) = producer.await.unwrap();
    let held = promote_and_read(&replica, "safe").await;
    let lost: Vec<&String> = acked.iter().filter(|id| !held.contains(*id)).collect();
    println!(
        "with durability: acknowledged {}, not replicated {not_replicated}, lost {}",
        acked.len(),
        lost.len()
    );
    assert!(acked.len() >= 50, "too few jobs to tell: {}", acked.len());
    assert!(not_replicated > 0, "the lag never refused a write");
    assert!(lost.is_empty(), "acknowledged jobs lost: {lost:?}");
}

/// A durability setting that cannot be met (2 replicas, there is 1) fails every schedule with
/// the typed error naming both counts; a bad setting is refused
/// before connecting.
#[tokio::test]
async fn durability_that_cannot_be_met_is_a_typed_error() {
    let primary = RedisServer::start_standalone();
    let _replica = RedisServer::start_replica_of(&primary);
    let config = QueueConfig::default().set_durability(Some(Durability {
        replicas: 2,
        timeout: Duration::from_millis(50),
    }));
    let queue = Queue::connect_with(&primary.url(), "strict", config)
        .await
        .unwrap();
    let err = queue.schedule(NewJob::new(&1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotReplicated {
                confirmed: 1,
                wanted: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("1 of 2 replica(s)"), "{err}");
    let bad = QueueConfig::default().set_durability(Some(Durability {
        replicas: 0,
        timeout: Duration::from_secs(1),
    }));
    let err = Queue::connect_with(&primary.url(), "x", bad)
        .await
        .unwrap_err();
    assert!(err.is_input(), "{err:?}");
}
