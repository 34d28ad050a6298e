//! The worker: outcomes and where they send a job, retry timing under a seeded policy, leases
//! and fencing, undecodable payloads, panics, and graceful shutdown. Each test starts its own
//! redis-server.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use punctual::{
    Backoff, Exponential, Fixed, Job, JobState, NewJob, Outcome, Promoter, Queue, Rng, Worker,
    WorkerConfig,
};
use redis::AsyncCommands;
use support::{eventually, server_ms, server_ms_at, spawn_worker, RedisServer};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// Runs a promoter for `queue` until `stop` fires.
fn spawn_promoter(queue: &Queue, stop: &CancellationToken) {
    support::spawn_promoter(queue, Duration::from_millis(200), stop);
}

/// Waits for job `id` to be in `state`, or gone (`None`: acked, or cancelled).
async fn wait_state(queue: &Queue, id: &str, state: Option<JobState>) {
    eventually(
        Duration::from_secs(10),
        &format!("job {id} {state:?}"),
        || {
            let queue = queue.clone();
            let id = id.to_owned();
            async move { queue.get(&id).await.unwrap().map(|j| j.state) == state }
        },
    )
    .await;
}

/// A failed attempt is rescheduled at exactly server-now + the policy's delay, with the jitter
/// drawn from the seeded random source in order.
#[tokio::test]
async fn retry_times_follow_the_seeded_policy() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "retry").await.unwrap();
    let policy = Exponential::new(Duration::from_secs(10), Duration::from_secs(3600)).unwrap();
    let seed = 1234;

    let stop = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let url = redis.url();
    spawn_worker(
        &queue,
        WorkerConfig::default()
            .set_backoff(policy)
            .set_rng_seed(seed)
            .set_concurrency(1),
        &stop,
        move |job: Job<u32>, _ctx| {
            let tx = tx.clone();
            let url = url.clone();
            async move {
                tx.send((job.attempt, server_ms_at(&url).await)).unwrap();
                Outcome::Fail(format!("attempt {} failed", job.attempt))
            }
        },
    );

    let id = queue.schedule(NewJob::new(&1)).await.unwrap().id;
    Promoter::promote(&queue, 10).await.unwrap();
    let mut expected = Rng::seeded(seed);
    for attempt in 1..=3 {
        let (seen, lower) = rx.recv().await.unwrap();
        assert_eq!(seen, attempt);
        wait_state(&queue, &id, Some(JobState::Scheduled)).await;
        let upper = server_ms(&mut conn).await;
        let score: f64 = conn
            .zscore("punctual:{retry}:scheduled", &id)
            .await
            .unwrap();
        let delay = policy.delay(attempt, &mut expected).as_millis() as u64;
        let at = score as u64 - delay;
        assert!(
            (lower..=upper).contains(&at),
            "attempt {attempt}: due {score} - delay {delay} = {at} not in [{lower}, {upper}]"
        );
        let info = queue.get(&id).await.unwrap().expect("the job exists");
        let error = info.last_error.unwrap();
        assert_eq!(error.reason, "failed");
        assert_eq!(error.message, format!("attempt {attempt} failed"));
        assert_eq!(error.attempt, attempt);
        // Skip the wait: make it due now and promote.
        let _: () = conn
            .zadd("punctual:{retry}:scheduled", &id, 0)
            .await
            .unwrap();
        Promoter::promote(&queue, 10).await.unwrap();
    }
    stop.cancel();
}

/// After its last attempt a failing job is in the dead set with its error, attempt count and
/// time of death; the handler ran exactly max_attempts times.
#[tokio::test]
async fn dead_after_max_attempts_with_the_error_kept() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "dead").await.unwrap();
    let stop = CancellationToken::new();
    spawn_promoter(&queue, &stop);
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    spawn_worker(
        &queue,
        WorkerConfig::default().set_backoff(Fixed::new(Duration::from_millis(20)).unwrap()),
        &stop,
        move |job: Job<String>, _ctx| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Outcome::Fail(format!("{} failed on attempt {}", job.data, job.attempt)) }
        },
    );

    let id = queue
        .schedule(NewJob::new("webhook").max_attempts(3))
        .await
        .unwrap()
        .id;
    wait_state(&queue, &id, Some(JobState::Dead)).await;
    let info = queue.get(&id).await.unwrap().expect("the job exists");
    assert_eq!(info.attempts, 3);
    assert!(info.died_at.is_some());
    let error = info.last_error.clone().unwrap();
    assert_eq!(error.reason, "attempts_exhausted");
    assert_eq!(error.message, "webhook failed on attempt 3");
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(
        info.data_as::<String>().unwrap(),
        "webhook",
        "dead jobs keep their data"
    );
    stop.cancel();
}

/// Snooze brings the job back without using an attempt; RetryAfter uses one and waits the
/// given delay; Kill goes straight to the dead set.
#[tokio::test]
async fn snooze_retry_after_and_kill() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "outcomes").await.unwrap();
    let stop = CancellationToken::new();
    spawn_promoter(&queue, &stop);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    spawn_worker(
        &queue,
        WorkerConfig::default().set_max_attempts(2),
        &stop,
        move |job: Job<String>, _ctx| {
            let tx = tx.clone();
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                tx.send((job.data.clone(), job.attempt)).unwrap();
                match job.data.as_str() {
                    "snoozer" if n < 3 => Outcome::Snooze(Duration::from_millis(30)),
                    "patient" if job.attempt == 1 => {
                        Outcome::RetryAfter(Duration::from_millis(50), "busy".into())
                    }
                    "doomed" => Outcome::Kill("bad address".into()),
                    _ => Outcome::Done,
                }
            }
        },
    );

    let snoozer = queue.schedule(NewJob::new("snoozer")).await.unwrap().id;
    let mut attempts = Vec::new();
    for _ in 0..4 {
        attempts.push(rx.recv().await.unwrap().1);
    }
    assert_eq!(attempts, [1, 1, 1, 1], "snoozes use no attempt");
    wait_state(&queue, &snoozer, None).await;

    let patient = queue.schedule(NewJob::new("patient")).await.unwrap().id;
    assert_eq!(rx.recv().await.unwrap(), ("patient".into(), 1));
    assert_eq!(rx.recv().await.unwrap(), ("patient".into(), 2));
    wait_state(&queue, &patient, None).await;

    let doomed = queue.schedule(NewJob::new("doomed")).await.unwrap().id;
    assert_eq!(rx.recv().await.unwrap(), ("doomed".into(), 1));
    wait_state(&queue, &doomed, Some(JobState::Dead)).await;
    let error = queue
        .get(&doomed)
        .await
        .unwrap()
        .expect("the job exists")
        .last_error
        .unwrap();
    assert_eq!(error.reason, "permanent");
    assert_eq!(error.message, "bad address");
    stop.cancel();
}

/// A panicking handler counts as a failed attempt (its message becomes the job's last error);
/// the worker keeps running and the retry succeeds.
#[tokio::test]
async fn a_panicking_handler_is_a_failure_not_a_crash() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "panics").await.unwrap();
    let stop = CancellationToken::new();
    spawn_promoter(&queue, &stop);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let inspector = queue.clone();
    spawn_worker(
        &queue,
        WorkerConfig::default().set_backoff(Fixed::new(Duration::from_millis(10)).unwrap()),
        &stop,
        move |job: Job<u32>, _ctx| {
            let tx = tx.clone();
            let inspector = inspector.clone();
            async move {
                if job.attempt == 1 {
                    panic!("handler bug on attempt 1");
                }
                let info = inspector
                    .get(&job.id)
                    .await
                    .unwrap()
                    .expect("the job exists");
                tx.send((job.attempt, info.last_error)).unwrap();
                Outcome::Done
            }
        },
    );
    let id = queue.schedule(NewJob::new(&7)).await.unwrap().id;
    let (attempt, error) = rx.recv().await.unwrap();
    assert_eq!(attempt, 2);
    let error = error.expect("attempt 1 left an error record");
    assert_eq!(error.reason, "failed");
    assert_eq!(error.attempt, 1);
    assert!(
        error.message.contains("handler bug on attempt 1"),
        "{error:?}"
    );
    wait_state(&queue, &id, None).await;
    stop.cancel();
}

/// A worker that vanishes without acking: its lease ends, the promoter returns the job, another
/// worker runs it again, and the interrupted attempt is counted.
#[tokio::test]
async fn a_vanished_workers_job_runs_again_after_its_lease() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "lease").await.unwrap();
    let stop = CancellationToken::new();
    spawn_promoter(&queue, &stop);
    let config = WorkerConfig::default().set_lease(Duration::from_millis(600));

    let started = Arc::new(Notify::new());
    let signal = started.clone();
    let doomed = Worker::new(queue.clone(), config.clone()).unwrap();
    let doomed = tokio::spawn(doomed.run(
        move |_job: Job<u32>, _ctx| {
            signal.notify_one();
            std::future::pending::<Outcome>()
        },
        std::future::pending(),
    ));
    let id = queue.schedule(NewJob::new(&1)).await.unwrap().id;
    started.notified().await;
    assert_eq!(
        queue.get(&id).await.unwrap().expect("the job exists").state,
        JobState::Running
    );
    doomed.abort(); // the process is gone: no heartbeat, no ack
    let _ = doomed.await;

    let (tx, mut rx) = mpsc::unbounded_channel();
    spawn_worker(&queue, config, &stop, move |job: Job<u32>, _ctx| {
        let tx = tx.clone();
        async move {
            tx.send(job.attempt).unwrap();
            Outcome::Done
        }
    });
    let attempt = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the job runs again after its lease")
        .unwrap();
    assert_eq!(attempt, 2, "the interrupted attempt counts");
    wait_state(&queue, &id, None).await;
    stop.cancel();
}

/// A long handler keeps its lease alive by heartbeat: it is not handed to anyone else.
#[tokio::test]
async fn heartbeats_keep_a_long_job_leased() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "long").await.unwrap();
    let stop = CancellationToken::new();
    spawn_promoter(&queue, &stop);
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    spawn_worker(
        &queue,
        WorkerConfig::default().set_lease(Duration::from_millis(300)),
        &stop,
        move |_job: Job<u32>, _ctx| {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(1500)).await; // 5 leases long
                Outcome::Done
            }
        },
    );
    let id = queue.schedule(NewJob::new(&1)).await.unwrap().id;
    wait_state(&queue, &id, None).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "ran once: the lease never lapsed"
    );
    stop.cancel();
}

/// A worker whose lease ran out cannot complete the job another worker now holds: its ack is
/// refused by the fencing token, and the job stays with the new holder.
#[tokio::test]
async fn a_stale_workers_ack_is_refused() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "fence").await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let releases: Arc<[Notify; 2]> = Arc::new([Notify::new(), Notify::new()]);
    let gates = releases.clone();
    let stop = CancellationToken::new();
    // Long lease: no heartbeat fires during the test, so only the test moves the deadline.
    spawn_worker(
        &queue,
        WorkerConfig::default()
            .set_lease(Duration::from_secs(120))
            .set_concurrency(2),
        &stop,
        move |job: Job<u32>, _ctx| {
            let tx = tx.clone();
            let gates = gates.clone();
            async move {
                tx.send(job.attempt).unwrap();
                gates[job.attempt as usize - 1].notified().await;
                Outcome::Done
            }
        },
    );
    let id = queue.schedule(NewJob::new(&1)).await.unwrap().id;
    Promoter::promote(&queue, 10).await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), 1);

    // Attempt 1 stalls past its lease: the promoter hands the job out again.
    let _: () = conn.zadd("punctual:{fence}:running", &id, 1).await.unwrap();
    assert_eq!(Promoter::promote(&queue, 10).await.unwrap().expired, 1);
    assert_eq!(rx.recv().await.unwrap(), 2);

    // The stale attempt finishes first: its ack must not complete the job.
    releases[0].notify_one();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = queue.get(&id).await.unwrap().expect("the job exists");
    assert_eq!(info.state, JobState::Running, "the stale ack was refused");
    assert_eq!(info.attempts, 2);
    assert_eq!(info.last_error.unwrap().reason, "lease_expired");

    releases[1].notify_one();
    wait_state(&queue, &id, None).await;
    stop.cancel();
}

/// Data that cannot be decoded sends the job to the dead set as "undecodable", and the worker
/// goes on with the next job.
#[tokio::test]
async fn undecodable_payloads_go_to_the_dead_set_and_the_worker_lives() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "garbage").await.unwrap();

    // Garbage written by a foreign producer straight into the keys.
    let _: () = conn
        .hset("punctual:{garbage}:jobs", "junk", b"\xc1\x00not msgpack")
        .await
        .unwrap();
    let _: () = conn
        .zadd("punctual:{garbage}:scheduled", "junk", 0)
        .await
        .unwrap();
    // A valid envelope whose data is not the handler's type.
    let wrong = queue
        .schedule(NewJob::new("a string, not a u64"))
        .await
        .unwrap()
        .id;
    let good = queue.schedule(NewJob::new(&42u64)).await.unwrap().id;

    let stop = CancellationToken::new();
    spawn_promoter(&queue, &stop);
    let (tx, mut rx) = mpsc::unbounded_channel();
    spawn_worker(
        &queue,
        WorkerConfig::default(),
        &stop,
        move |job: Job<u64>, _ctx| {
            let tx = tx.clone();
            async move {
                tx.send(job.data).unwrap();
                Outcome::Done
            }
        },
    );
    assert_eq!(rx.recv().await.unwrap(), 42);
    wait_state(&queue, &good, None).await;
    for id in ["junk", wrong.as_str()] {
        wait_state(&queue, id, Some(JobState::Dead)).await;
    }
    let dead: Vec<(String, String)> = conn.hgetall("punctual:{garbage}:errors").await.unwrap();
    assert_eq!(dead.len(), 2);
    for (_, record) in dead {
        assert!(record.contains("\"reason\":\"undecodable\""), "{record}");
    }
    stop.cancel();
}

/// Shutdown: no new jobs are taken, a handler that finishes within the grace period is acked,
/// one that does not is cancelled and its job handed back with no attempt used. Nothing lost.
#[tokio::test]
async fn graceful_shutdown_finishes_or_hands_back() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "shutdown").await.unwrap();
    let quick = queue.schedule(NewJob::new(&100u64)).await.unwrap().id;
    let slow = queue.schedule(NewJob::new(&60_000u64)).await.unwrap().id;
    Promoter::promote(&queue, 10).await.unwrap();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let running = spawn_worker(
        &queue,
        WorkerConfig::default().set_shutdown_grace(Duration::from_millis(800)),
        &stop,
        move |job: Job<u64>, ctx| {
            let tx = tx.clone();
            async move {
                tx.send(()).unwrap();
                ctx.shutdown_requested().await;
                tokio::time::sleep(Duration::from_millis(job.data)).await;
                Outcome::Done
            }
        },
    );
    rx.recv().await.unwrap();
    rx.recv().await.unwrap();
    // A job scheduled now must not be taken once shutdown starts.
    let late = queue.schedule(NewJob::new(&1u64)).await.unwrap().id;
    stop.cancel();
    Promoter::promote(&queue, 10).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("shutdown completes after the grace period")
        .unwrap()
        .unwrap();

    assert!(queue.get(&quick).await.unwrap().is_none(), "acked");
    let handed_back = queue.get(&slow).await.unwrap().expect("the job exists");
    assert_eq!(handed_back.state, JobState::Scheduled);
    assert_eq!(handed_back.attempts, 0, "a hand-back uses no attempt");
    assert_eq!(
        queue
            .get(&late)
            .await
            .unwrap()
            .expect("the job exists")
            .state,
        JobState::Ready
    );
}

/// Due times cost nothing until a worker asks for them: without, nothing is written to the
/// `due` hash and `Job::due_at` is `None`; once a worker sets `set_due_times`, every job's
/// `due_at` is exactly its due time on the server's clock, and the hash is emptied by claims.
#[tokio::test]
async fn due_times_cost_nothing_until_a_worker_asks() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "dt").await.unwrap();
    let mut conn = redis.conn().await;

    let mut jobs = support::run_jobs::<u32>(&queue, WorkerConfig::default());
    queue
        .schedule(NewJob::new(&1).delay(Duration::from_millis(100)))
        .await
        .unwrap();
    let job = jobs.next().await;
    assert_eq!(job.due_at, None, "not asked for: not recorded");
    let flag: Option<String> = conn.hget("punctual:{dt}:meta", "due").await.unwrap();
    assert_eq!(flag, None);
    let exists: bool = conn.exists("punctual:{dt}:due").await.unwrap();
    assert!(!exists, "nothing written to the due hash");
    jobs.stop().await;

    let mut jobs = support::run_jobs::<u32>(&queue, WorkerConfig::default().set_due_times(true));
    eventually(Duration::from_secs(10), "the worker asked", || {
        let mut conn = conn.clone();
        async move {
            conn.hget::<_, _, Option<String>>("punctual:{dt}:meta", "due")
                .await
                .unwrap()
                .is_some()
        }
    })
    .await;
    let due_ms = server_ms(&mut conn).await + 300;
    let due = std::time::UNIX_EPOCH + Duration::from_millis(due_ms);
    queue.schedule(NewJob::new(&2).at(due)).await.unwrap();
    let job = jobs.next().await;
    assert_eq!(job.due_at, Some(due), "exactly its due time");
    eventually(Duration::from_secs(5), "the due hash emptied", || {
        let mut conn = conn.clone();
        async move { !conn.exists::<_, bool>("punctual:{dt}:due").await.unwrap() }
    })
    .await;
    jobs.stop().await;
}

/// The dedup record: a job acknowledged soon after it was made keeps its id taken for the
/// window, so a late resend of its schedule call makes nothing; a job made long before its ack
/// (beyond the window and a minute for clocks) leaves no record, since no resend can still be
/// on its way, and its id is free at once.
#[tokio::test]
async fn only_a_recently_made_job_keeps_its_id_taken_after_its_ack() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "dd").await.unwrap();
    let stop = CancellationToken::new();
    spawn_promoter(&queue, &stop);

    // "old": its envelope says it was made two hours ago, as a producer's `c` would.
    queue
        .schedule(
            NewJob::new(&2u32)
                .id("old")
                .delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    #[derive(serde::Serialize)]
    struct Made<'a> {
        k: &'a str,
        #[serde(with = "serde_bytes")]
        d: &'a [u8],
        c: u64,
    }
    let two_hours_ago = server_ms(&mut conn).await - 2 * 3600 * 1000;
    let envelope = rmp_serde::to_vec_named(&Made {
        k: "u32",
        d: &rmp_serde::to_vec_named(&2u32).unwrap(),
        c: two_hours_ago,
    })
    .unwrap();
    let _: () = conn
        .hset("punctual:{dd}:jobs", "old", envelope)
        .await
        .unwrap();
    queue.reschedule("old", punctual::When::NOW).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    spawn_worker(
        &queue,
        WorkerConfig::default(),
        &stop,
        move |job: Job<u32>, _ctx| {
            tx.send((job.id.clone(), job.created_at)).unwrap();
            async { Outcome::Done }
        },
    );
    let (id, made) = rx.recv().await.unwrap();
    assert_eq!(id, "old");
    assert_eq!(
        made,
        std::time::UNIX_EPOCH + Duration::from_millis(two_hours_ago)
    );
    wait_state(&queue, "old", None).await;
    let record: Option<f64> = conn.zscore("punctual:{dd}:done", "old").await.unwrap();
    assert_eq!(record, None, "no dedup record for a job made two hours ago");

    queue
        .schedule(NewJob::new(&1u32).id("fresh"))
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap().0, "fresh");
    wait_state(&queue, "fresh", None).await;
    let record: Option<f64> = conn.zscore("punctual:{dd}:done", "fresh").await.unwrap();
    assert!(record.is_some(), "a job made just now keeps its id taken");

    let again = queue
        .schedule(NewJob::new(&1u32).id("fresh"))
        .await
        .unwrap();
    assert!(!again.created, "a late resend of a fresh job makes nothing");
    let again = queue.schedule(NewJob::new(&2u32).id("old")).await.unwrap();
    assert!(
        again.created,
        "a call two hours after the first is a new job"
    );
    stop.cancel();
}

/// The idle wait blocks in every partition of a queue, and a wait that another partition
/// answers first leaves its `BLMOVE` in flight: the next wait takes it up rather than
/// sending another behind it on the same connection, where it could not answer before the
/// first did. Jobs for one partition only, each run before the next is scheduled, make a
/// wait per job: afterwards no connection holds queued commands.
#[tokio::test]
async fn an_unanswered_idle_wait_is_taken_up_not_stacked() {
    let redis = RedisServer::start();
    let ns = punctual::Namespace::connect(&redis.url(), punctual::QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("idle", 2).await.unwrap();
    let stop = CancellationToken::new();
    spawn_promoter(&queue, &stop);
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default(),
        &stop,
        |_: Job<u32>, _| async { Outcome::Done },
    );
    let ids: Vec<String> = (0..1000)
        .map(|i| format!("p0-{i}"))
        .filter(|id| punctual::keys::partition_of(id, 2) == 0)
        .take(40)
        .collect();
    for (done, id) in ids.iter().enumerate() {
        queue.schedule(NewJob::new(&1u32).id(id)).await.unwrap();
        eventually(Duration::from_secs(10), &format!("job {id} done"), || {
            let queue = queue.clone();
            async move {
                let completed = queue.stats().await.unwrap().totals;
                completed.get(punctual::Event::Completed) > done as u64
            }
        })
        .await;
    }
    // Every client of every server (one, or each node of a cluster) but this test's own.
    let clients = support::all_clients(&redis).await;
    let field = |line: &str, name: &str| {
        line.split(' ')
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_default()
            .to_owned()
    };
    let blocked = clients
        .iter()
        .filter(|l| field(l, "cmd=") == "blmove")
        .count();
    assert_eq!(blocked, 2, "one idle wait per partition: {clients:#?}");
    for line in &clients {
        assert_eq!(
            field(line, "qbuf="),
            "0",
            "commands queued on a connection: {line}"
        );
    }
    stop.cancel();
    worker.await.unwrap().unwrap();
}
