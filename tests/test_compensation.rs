//! Compensating jobs: a job that dies after it ran has its compensating job scheduled by the
//! same script that moves it to the dead set, so it exists even when the worker is killed
//! right after; a retry refused for the expiry compensates too; a job whose time ran out
//! before it ran does not; partitioned queues keep the pair in one partition. Each test starts
//! its own redis-server.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use punctual::{
    compensation_id, Event, JobState, Namespace, NewJob, Outcome, Promoter, Queue, QueueConfig,
    WorkerConfig,
};
use serde_json::{json, Value};
use support::cli::{ok, out_dir, spawn_promote, spawn_work, stop_all};
use support::{eventually, total, RedisServer};
use tokio_util::sync::CancellationToken;

/// A worker whose `charge` jobs fail for good (or, with `retry`, ask to retry in 10 s), and
/// whose `refund` jobs record their id and data.
fn spawn_charging_worker(
    queue: &Queue,
    stop: &CancellationToken,
    retry: bool,
) -> Arc<Mutex<Vec<(String, Value)>>> {
    let refunds: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let seen = refunds.clone();
    support::spawn_worker(
        queue,
        WorkerConfig::default(),
        stop,
        move |job: punctual::Job<Value>, _ctx| {
            let seen = seen.clone();
            async move {
                match job.kind.as_str() {
                    "refund" => {
                        seen.lock().unwrap().push((job.id, job.data));
                        Outcome::Done
                    }
                    _ if retry => {
                        Outcome::RetryAfter(Duration::from_secs(10), "gateway busy".to_owned())
                    }
                    _ => Outcome::Kill("card declined".to_owned()),
                }
            }
        },
    );
    refunds
}

fn charge(id: &str) -> NewJob {
    NewJob::new(&json!({"amount": 5}))
        .kind("charge")
        .id(id)
        .compensate_with(NewJob::new(&json!({"refund": 5})).kind("refund"))
}

async fn wait_refunds(refunds: &Arc<Mutex<Vec<(String, Value)>>>, n: usize) {
    eventually(Duration::from_secs(15), &format!("{n} refunds ran"), || {
        let refunds = refunds.clone();
        async move { refunds.lock().unwrap().len() >= n }
    })
    .await;
}

/// A job that fails for good is dead with its error, and its compensating job runs with its
/// own kind and data under the id `{id}:undo`, counted once; until the death, `get` names it.
/// The same holds in a partitioned queue, where the pair shares a partition.
#[tokio::test]
async fn a_job_that_dies_schedules_its_compensation() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    for (name, partitions, id) in [("pay", 1, "order-7"), ("split", 4, "order-8{customer-4}")] {
        let queue = ns.create_queue(name, partitions).await.unwrap();
        let undo = compensation_id(id).unwrap();
        queue
            .schedule(charge(id).delay(Duration::from_secs(3600)))
            .await
            .unwrap();
        let info = queue.get(id).await.unwrap().unwrap();
        assert_eq!(info.compensation.as_deref(), Some(undo.as_str()));
        queue
            .reschedule(id, punctual::When::In(Duration::ZERO))
            .await
            .unwrap();
        let stop = CancellationToken::new();
        support::spawn_promoter(&queue, Duration::from_millis(200), &stop);
        let refunds = spawn_charging_worker(&queue, &stop, false);
        wait_refunds(&refunds, 1).await;
        stop.cancel();
        let refunds = refunds.lock().unwrap().clone();
        assert_eq!(refunds, [(undo.clone(), json!({"refund": 5}))], "{name}");
        let dead = queue.get(id).await.unwrap().unwrap();
        assert_eq!(dead.state, JobState::Dead);
        assert_eq!(dead.last_error.unwrap().reason, "permanent");
        assert_eq!(dead.compensation, None, "{name}: compensated once");
        assert_eq!(total(&queue, Event::Compensated).await, 1, "{name}");
    }
}

/// A retry that would land past the job's expiry ends it (dead, reason `expired`) and, since
/// it ran, compensates. A job whose time ran out before it ever ran does not.
#[tokio::test]
async fn an_expired_retry_compensates_but_an_unrun_job_does_not() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "late").await.unwrap();
    let soon = SystemTime::now() + Duration::from_secs(3);
    queue
        .schedule(charge("ran").expires_at(soon))
        .await
        .unwrap();
    // Due at once, expires 200 ms later: promoted only after that, so it never runs.
    queue
        .schedule(
            charge("never")
                .delay(Duration::from_millis(100))
                .expires_at(SystemTime::now() + Duration::from_millis(300)),
        )
        .await
        .unwrap();
    // "ran" runs, asks a retry in 10 s: past its expiry, so it dies expired and compensates.
    Promoter::promote(&queue, 10).await.unwrap();
    let stop = CancellationToken::new();
    let refunds = spawn_charging_worker(&queue, &stop, true);
    wait_refunds(&refunds, 0).await;
    eventually(Duration::from_secs(10), "ran is dead", || {
        let queue = queue.clone();
        async move { queue.get("ran").await.unwrap().map(|j| j.state) == Some(JobState::Dead) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    support::spawn_promoter(&queue, Duration::from_millis(200), &stop);
    wait_refunds(&refunds, 1).await;
    eventually(Duration::from_secs(10), "never is dead, expired", || {
        let queue = queue.clone();
        async move { queue.get("never").await.unwrap().map(|j| j.state) == Some(JobState::Dead) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let ran = queue.get("ran").await.unwrap().unwrap();
    assert_eq!(ran.last_error.unwrap().reason, "expired");
    let never = queue.get("never").await.unwrap().unwrap();
    assert_eq!(never.last_error.unwrap().reason, "expired");
    let refunds = refunds.lock().unwrap().clone();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0].0, "{ran}:undo");
    assert!(queue.get("{never}:undo").await.unwrap().is_none());
    assert_eq!(total(&queue, Event::Compensated).await, 1);
}

/// `punctual work` running a command that fails on its only attempt is SIGKILLed the moment
/// the job is dead: the compensating job is already there, and another worker runs it.
#[tokio::test]
async fn the_compensation_exists_when_the_worker_is_killed_right_after() {
    let redis = RedisServer::start();
    let dir = out_dir("compensation");
    ok(
        &redis,
        &[
            "schedule",
            "cli",
            "--in",
            "0s",
            "--id",
            "o1",
            "--kind",
            "charge",
            "--max-attempts",
            "1",
            "--compensate-kind",
            "refund",
            "--compensate-data",
            "{\"refund\": 5}",
        ],
    );
    let shown: Value = serde_json::from_str(&ok(&redis, &["show", "cli", "o1", "--json"])).unwrap();
    assert_eq!(shown["compensation"], "{o1}:undo");
    let mut promoter = spawn_promote(&redis, &["cli"]);
    let script =
        "if [ \"$PUNCTUAL_KIND\" = refund ]; then cat > \"$OUT/$PUNCTUAL_JOB_ID\"; else exit 3; fi";
    // A short lease: a compensation the killed worker had already claimed returns soon.
    let mut worker = spawn_work(&redis, "cli", script, &["--lease", "2s"], &dir);
    let queue = Queue::connect(&redis.url(), "cli").await.unwrap();
    // Kill the worker the moment the job is dead, before it can run the compensation: poll
    // tightly (this is what the test is about).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let state = queue.get("o1").await.unwrap().map(|j| j.state);
        if state == Some(JobState::Dead) {
            worker.kill().unwrap();
            let _ = worker.wait();
            break;
        }
        assert!(std::time::Instant::now() < deadline, "o1 did not die");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let undo = queue
        .get("{o1}:undo")
        .await
        .unwrap()
        .expect("the compensating job exists after the kill");
    assert_eq!(undo.kind.as_deref(), Some("refund"));
    let mut again = spawn_work(&redis, "cli", script, &["--lease", "2s"], &dir);
    let file = dir.join("{o1}:undo");
    eventually(
        Duration::from_secs(15),
        "the refund ran and was acked",
        || {
            let queue = queue.clone();
            async move { queue.get("{o1}:undo").await.unwrap().is_none() }
        },
    )
    .await;
    let data: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(data, json!({"refund": 5}));
    stop_all(&mut [&mut again, &mut promoter]);
}

/// Ids the compensating job's id can be made from, and the settings refused on it.
#[tokio::test]
async fn compensation_ids_and_refusals() {
    assert_eq!(compensation_id("a").as_deref(), Some("{a}:undo"));
    assert_eq!(compensation_id("a{t}b").as_deref(), Some("a{t}b:undo"));
    assert_eq!(compensation_id("a{}b"), None);
    assert_eq!(compensation_id("a}b"), None);
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "refuse").await.unwrap();
    let bad = NewJob::new(&1)
        .id("x")
        .compensate_with(NewJob::new(&2).id("mine"));
    assert!(matches!(
        queue.schedule(bad).await,
        Err(punctual::Error::InvalidConfig {
            what: "compensating job",
            ..
        })
    ));
    let bad = NewJob::new(&1).id("a}b").compensate_with(NewJob::new(&2));
    assert!(matches!(
        queue.schedule(bad).await,
        Err(punctual::Error::InvalidJobId { .. })
    ));
    assert!(queue.get("x").await.unwrap().is_none());
}
