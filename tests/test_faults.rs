//! Redis faults: a reply lost after the script ran (every script is safe to send again), Redis
//! paused longer than the response timeout, Redis restarted empty, Redis unreachable (no busy
//! loop), and `maxmemory` reached (a typed error, nothing half-written).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use punctual::{
    Cancelled, Error, Fixed, Job, JobState, NewJob, Outcome, Promoter, PromoterConfig, Purge,
    Queue, QueueConfig, Rescheduled, When, WorkerConfig,
};
use redis::AsyncCommands;
use support::proxy::Proxy;
use support::{eventually, run_jobs, spawn_promoter, spawn_worker, RedisServer};
use tokio_util::sync::CancellationToken;

fn sha(script: &str) -> String {
    redis::Script::new(script).get_hash().to_owned()
}

/// Loads every script, so that a call whose reply is lost did run (and was not refused with
/// NOSCRIPT).
async fn load_scripts(conn: &mut support::TestConn) {
    for entry in std::fs::read_dir("lua").unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(source)
            .query_async(conn)
            .await
            .unwrap();
    }
}

macro_rules! script_sha {
    ($name:literal) => {
        sha(include_str!(concat!("../lua/", $name, ".lua")))
    };
}

/// Runs of each job id, with their attempt numbers, as handlers saw them.
type Runs = Arc<Mutex<HashMap<String, Vec<u32>>>>;

fn runs_of(runs: &Runs, id: &str) -> Vec<u32> {
    runs.lock().unwrap().get(id).cloned().unwrap_or_default()
}

const LIMIT: Duration = Duration::from_secs(20);

/// The producer and operator scripts: the reply of each is lost after it ran, and the call
/// made again gives the answer a single call would have given, with nothing done twice.
#[tokio::test]
async fn producer_and_operator_scripts_are_safe_to_send_again() {
    let redis = RedisServer::start_standalone();
    let proxy = Proxy::start(redis.port()).await;
    let queue = Queue::connect(&proxy.url(), "resend").await.unwrap();
    let mut conn = redis.conn().await;
    load_scripts(&mut conn).await;
    let scheduled = "punctual:{resend}:scheduled";

    // schedule, generated id: sent again by the library itself; one job, reported created.
    proxy.drop_reply_to(&script_sha!("schedule"));
    let job = queue
        .schedule(NewJob::new(&1).delay(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(proxy.dropped(), 1);
    assert!(job.created);
    let ids: Vec<String> = conn.zrange(scheduled, 0, -1).await.unwrap();
    assert_eq!(ids, std::slice::from_ref(&job.id));

    // schedule, caller's id: one job, whatever `created` says.
    proxy.drop_reply_to(&script_sha!("schedule"));
    queue
        .schedule(NewJob::new(&2).id("mine").delay(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(proxy.dropped(), 2);
    assert_eq!(conn.zcard::<_, u64>(scheduled).await.unwrap(), 2);

    // cancel: the lost call removed it; the second finds nothing.
    proxy.drop_reply_to(&script_sha!("cancel"));
    let err = queue.cancel("mine").await.unwrap_err();
    assert!(err.is_connection_error(), "{err}");
    assert_eq!(queue.cancel("mine").await.unwrap(), Cancelled::NotFound);
    assert!(queue.get("mine").await.unwrap().is_none());

    // reschedule: the second call moves it again, to its own time; still one entry.
    proxy.drop_reply_to(&script_sha!("reschedule"));
    let err = queue
        .reschedule(&job.id, When::In(Duration::from_secs(30)))
        .await
        .unwrap_err();
    assert!(err.is_connection_error(), "{err}");
    let again = queue
        .reschedule(&job.id, When::In(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(matches!(
        again,
        Rescheduled::Moved {
            from: JobState::Scheduled,
            ..
        }
    ));
    assert_eq!(conn.zcard::<_, u64>(scheduled).await.unwrap(), 1);

    // revive and purge need dead jobs: two jobs killed by a worker.
    let stop = CancellationToken::new();
    let promoter = spawn_promoter(&queue, Duration::from_secs(1), &stop);
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default(),
        &stop,
        |_job: Job<u32>, _ctx| async { Outcome::kill("built to die") },
    );
    for id in ["d1", "d2"] {
        queue.schedule(NewJob::new(&3).id(id)).await.unwrap();
    }
    eventually(LIMIT, "two dead jobs", || async {
        queue.counts().await.unwrap().dead == 2
    })
    .await;
    stop.cancel();
    promoter.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();

    // revive: the lost call revived d1; the second revives nothing more.
    proxy.drop_reply_to(&script_sha!("revive"));
    let err = queue.retry_dead(&["d1".to_owned()]).await.unwrap_err();
    assert!(err.is_connection_error(), "{err}");
    assert!(queue
        .retry_dead(&["d1".to_owned()])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        queue
            .get("d1")
            .await
            .unwrap()
            .expect("the job exists")
            .state,
        JobState::Scheduled
    );

    // purge: the lost call purged d2; the second purges nothing.
    proxy.drop_reply_to(&script_sha!("purge"));
    let err = queue
        .purge_dead(Purge::Ids(&["d2".to_owned()]))
        .await
        .unwrap_err();
    assert!(err.is_connection_error(), "{err}");
    assert_eq!(
        queue
            .purge_dead(Purge::Ids(&["d2".to_owned()]))
            .await
            .unwrap(),
        0
    );
    assert!(queue.get("d2").await.unwrap().is_none());
    assert_eq!(proxy.dropped(), 6);

    let stats = queue.stats().await.unwrap().totals;
    assert_eq!(
        (
            stats.get(punctual::Event::Cancelled),
            stats.get(punctual::Event::Revived),
            stats.get(punctual::Event::Purged)
        ),
        (1, 1, 1)
    );
}

/// The worker and promoter scripts: each loses its reply once, after it ran. No job is lost
/// and none runs more often than the lost reply forces: a lost claim costs one lease (the job
/// runs once, as attempt 2); a lost ack, retry, bury, extend or promote costs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_promoter_scripts_are_safe_to_send_again() {
    support::init_tracing();
    let redis = RedisServer::start_standalone();
    let proxy = Proxy::start(redis.port()).await;
    let queue = Queue::connect(&proxy.url(), "resend").await.unwrap();
    load_scripts(&mut redis.conn().await).await;
    let stop = CancellationToken::new();
    let promoter = spawn_promoter(&queue, Duration::from_secs(1), &stop);
    let runs: Runs = Arc::default();
    let seen = runs.clone();
    let config = WorkerConfig::default()
        .set_lease(Duration::from_secs(1))
        .set_backoff(Fixed::new(Duration::from_millis(50)).unwrap());
    let worker = spawn_worker(&queue, config, &stop, move |job: Job<String>, _ctx| {
        seen.lock()
            .unwrap()
            .entry(job.id.clone())
            .or_default()
            .push(job.attempt);
        async move {
            match (job.data.as_str(), job.attempt) {
                ("fail once", 1) => Outcome::fail("built to fail once"),
                ("kill", _) => Outcome::kill("built to die"),
                ("slow", _) => {
                    // Longer than the lease: only heartbeats keep it.
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    Outcome::Done
                }
                _ => Outcome::Done,
            }
        }
    });

    let cases = [
        ("promote", "ok", vec![1]),
        ("claim", "ok", vec![2]),
        ("ack", "ok", vec![1]),
        ("retry", "fail once", vec![1, 2]),
        ("bury", "kill", vec![1]),
        ("extend", "slow", vec![1]),
    ];
    for (n, (script, data, expected)) in cases.into_iter().enumerate() {
        let sha = sha(&std::fs::read_to_string(format!("lua/{script}.lua")).unwrap());
        proxy.drop_reply_to(&sha);
        let id = format!("lost-{script}");
        queue
            .schedule(NewJob::new(&data).id(&id).max_attempts(3))
            .await
            .unwrap();
        // The job's end: gone, or (for "kill") dead.
        eventually(LIMIT, &format!("{id} to end"), || async {
            // Ok(None): gone; Ok(Some(Dead)): dead; Err: Redis did not answer this time.
            let state = queue.get(&id).await.map(|j| j.map(|j| j.state));
            let ended = matches!(state, Ok(None | Some(JobState::Dead)));
            ended && !runs_of(&runs, &id).is_empty()
        })
        .await;
        assert_eq!(
            proxy.dropped() as usize,
            n + 1,
            "{script}: no reply was lost"
        );
        assert_eq!(
            runs_of(&runs, &id),
            expected,
            "{script}: runs (attempt numbers)"
        );
    }
    // Nothing left behind, and the killed job died once.
    let counts = queue.counts().await.unwrap();
    assert_eq!(
        (counts.scheduled, counts.ready, counts.running, counts.dead),
        (0, 0, 0, 1)
    );
    let totals = queue.stats().await.unwrap().totals;
    assert_eq!(totals.get(punctual::Event::Dead), 1);
    assert_eq!(totals.get(punctual::Event::Completed), 5);
    stop.cancel();
    promoter.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
}

/// `DEBUG SLEEP` and `CLIENT PAUSE` hold every reply for 2 s, far past a 300 ms response
/// timeout. Calls made meanwhile fail with a connection error (or succeed once sent again);
/// a job due during the pause runs once, after it; promoter and worker carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_longer_than_the_response_timeout() {
    support::init_tracing();
    let redis = RedisServer::start_standalone();
    let config = QueueConfig::default().set_response_timeout(Duration::from_millis(300));
    let queue = Queue::connect_with(&redis.url(), "paused", config)
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let promoter = spawn_promoter(&queue, Duration::from_secs(1), &stop);
    let runs: Runs = Arc::default();
    let seen = runs.clone();
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default().set_lease(Duration::from_secs(2)),
        &stop,
        move |job: Job<u32>, _ctx| {
            seen.lock()
                .unwrap()
                .entry(job.id.clone())
                .or_default()
                .push(job.attempt);
            async { Outcome::Done }
        },
    );

    for (pause, args) in [("DEBUG", ["SLEEP", "2"]), ("CLIENT", ["PAUSE", "2000"])] {
        let before = format!("{pause}-before");
        let during = format!("{pause}-during");
        queue
            .schedule(
                NewJob::new(&1)
                    .id(&before)
                    .delay(Duration::from_millis(500)),
            )
            .await
            .unwrap();
        let mut admin = redis.conn().await;
        let paused = tokio::spawn(async move {
            redis::cmd(pause)
                .arg(&args)
                .query_async::<()>(&mut admin)
                .await
                .unwrap();
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // During the pause: a timeout (all three sendings), or success if the pause ended.
        match queue.schedule(NewJob::new(&2).id(&during)).await {
            Ok(_) => {}
            Err(e) => assert!(e.is_connection_error(), "{e}"),
        }
        paused.await.unwrap();
        // The same id again, until Redis answers: the job exists once, whether or not the
        // first call landed.
        loop {
            match queue.schedule(NewJob::new(&2).id(&during)).await {
                Ok(_) => break,
                Err(e) => assert!(e.is_connection_error(), "{e}"),
            }
        }
        for id in [&before, &during] {
            eventually(LIMIT, &format!("{id} to run"), || async {
                !runs_of(&runs, id).is_empty() && queue.get(id).await.is_ok_and(|j| j.is_none())
            })
            .await;
        }
        assert_eq!(runs_of(&runs, &before), [1], "{pause}");
    }
    // A job whose claim reply timed out runs after its lease as attempt 2: allowed, and it
    // must still run exactly once.
    for id in ["DEBUG-during", "CLIENT-during"] {
        let attempts = runs_of(&runs, id);
        assert_eq!(attempts.len(), 1, "{id}: {attempts:?}");
    }
    assert!(!promoter.is_finished() && !worker.is_finished());
    stop.cancel();
    promoter.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
}

/// Redis restarts with no data (persistence off): the promoter reports the loss once, the
/// worker waits the outage out, and new jobs run as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_is_reported_and_survived() {
    support::init_tracing();
    let mut redis = RedisServer::start_standalone();
    let queue = Queue::connect(&redis.url(), "amnesia").await.unwrap();
    let stop = CancellationToken::new();
    let promoter = Promoter::new(
        [queue.clone()],
        PromoterConfig::default().set_heartbeat(Duration::from_millis(500)),
    )
    .unwrap();
    let metrics = promoter.metrics();
    let promoter = tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default(),
        &stop,
        move |job: Job<u32>, _| {
            tx.send(job.id).unwrap();
            async { Outcome::Done }
        },
    );

    let first = queue.schedule(NewJob::new(&1)).await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), first.id);
    // Due in an hour: lost with the data.
    let lost = queue
        .schedule(NewJob::new(&2).delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(metrics.snapshot()["amnesia"].data_losses, 0);

    redis.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart();

    eventually(LIMIT, "the promoter to report the data loss", || async {
        metrics.snapshot()["amnesia"].data_losses == 1
    })
    .await;
    assert!(queue.get(&lost.id).await.unwrap().is_none());
    let after = queue.schedule(NewJob::new(&3)).await.unwrap();
    let ran = tokio::time::timeout(LIMIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ran, after.id);
    // Reported once: the pass that found the loss wrote the queue's metadata again.
    assert!(!Promoter::promote(&queue, 10).await.unwrap().data_lost);
    assert_eq!(metrics.snapshot()["amnesia"].data_losses, 1);
    stop.cancel();
    promoter.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
}

/// While Redis accepts connections and drops them at once, promoter and worker try again with
/// a capped backoff (logged with `retry_in`), not in a loop: 5 s of outage cost a few dozen
/// connection attempts at most. When Redis is back, jobs run again.
#[tokio::test]
async fn no_busy_loop_while_redis_is_down() {
    let logs = support::capture_logs();
    let redis = RedisServer::start_standalone();
    let proxy = Proxy::start(redis.port()).await;
    let queue = Queue::connect(&proxy.url(), "down").await.unwrap();
    let mut running = run_jobs::<u32>(&queue, WorkerConfig::default());
    let job = queue.schedule(NewJob::new(&1)).await.unwrap();
    assert_eq!(running.next().await.id, job.id);

    proxy.set_down(true);
    let before = proxy.accepted();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let attempts = proxy.accepted() - before;
    println!("connection attempts in 5 s of outage: {attempts}");
    assert!(
        attempts < 60,
        "{attempts} connection attempts in 5 s: a busy loop"
    );
    let text = logs.text();
    assert!(
        text.contains("cannot claim jobs") && text.contains("promotion failed"),
        "the outage is not in the logs:\n{text}"
    );
    assert!(text.contains("retry_in"), "no backoff in the logs:\n{text}");

    proxy.set_down(false);
    let job = loop {
        match queue.schedule(NewJob::new(&2)).await {
            Ok(job) => break job,
            Err(e) => assert!(e.is_connection_error(), "{e}"),
        }
    };
    assert_eq!(running.next().await.id, job.id);
    running.stop().await;
}

/// With `maxmemory` reached and policy `noeviction`, schedule fails with
/// [`Error::OutOfMemory`] and writes nothing, not even part of a batch; workers still drain
/// the queue (acks free memory), and then scheduling works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxmemory_refuses_schedule_with_a_typed_error_and_writes_nothing() {
    let redis = RedisServer::start_standalone();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "full").await.unwrap();
    support::limit_memory(&mut conn, 2 * 1024 * 1024).await;

    let payload = vec![7u8; 64 * 1024];
    let mut stored = 0;
    let err = loop {
        let batch: Vec<NewJob> = (0..4)
            .map(|i| NewJob::new(&payload).id(format!("big-{stored}-{i}")))
            .collect();
        match queue.schedule_many(batch).await {
            Ok(results) => {
                assert!(results.iter().all(|r| r.as_ref().is_ok_and(|s| s.created)));
                stored += 4;
                assert!(stored < 1000, "maxmemory never refused a write");
            }
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, Error::OutOfMemory { op: "schedule", .. }),
        "{err:?}"
    );
    assert!(!err.is_connection_error());
    assert!(err.to_string().contains("out of memory"), "{err}");
    let jobs: u64 = conn.hlen("punctual:{full}:jobs").await.unwrap();
    let waiting: u64 = conn.zcard("punctual:{full}:scheduled").await.unwrap();
    assert_eq!(
        (jobs, waiting),
        (stored, stored),
        "a refused batch left something behind"
    );

    // Workers still drain (promote, claim and ack remove before they add), and memory comes
    // back.
    let stop = CancellationToken::new();
    let promoter = spawn_promoter(&queue, Duration::from_secs(1), &stop);
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default(),
        &stop,
        |_: Job<Vec<u8>>, _| async { Outcome::Done },
    );
    eventually(LIMIT, "the full queue to drain", || async {
        queue
            .counts()
            .await
            .is_ok_and(|c| c.scheduled + c.ready + c.running == 0)
    })
    .await;
    assert_eq!(
        support::total(&queue, punctual::Event::Completed).await,
        stored
    );
    let job = queue.schedule(NewJob::new(&payload)).await.unwrap();
    assert!(job.created);
    stop.cancel();
    promoter.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
}

/// A schedule call that arrives after its job already ran (a resend whose first sending
/// landed) makes nothing: the id stays taken for the dedup window after the ack. With the
/// window off, the id is free again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_stays_taken_for_the_dedup_window_after_its_ack() {
    let redis = RedisServer::start_standalone();
    for (window, again) in [(Duration::from_secs(60), false), (Duration::ZERO, true)] {
        let name = format!("dedup-{}", window.as_secs());
        let config = QueueConfig::default().set_dedup_window(window);
        let queue = Queue::connect_with(&redis.url(), &name, config)
            .await
            .unwrap();
        let mut running = run_jobs::<u32>(&queue, WorkerConfig::default());
        assert!(
            queue
                .schedule(NewJob::new(&1).id("once"))
                .await
                .unwrap()
                .created
        );
        assert_eq!(running.next().await.id, "once");
        eventually(LIMIT, "the ack", || async {
            support::total(&queue, punctual::Event::Completed).await == 1
        })
        .await;
        let late = queue.schedule(NewJob::new(&1).id("once")).await.unwrap();
        assert_eq!(late.created, again, "window {window:?}");
        if again {
            assert_eq!(running.next().await.id, "once");
        }
        running.stop().await;
    }
}
