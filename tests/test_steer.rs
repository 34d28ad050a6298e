//! Steering jobs after they are scheduled: conflict modes (debounce, replace, keep), expiry,
//! handler timeouts, cancelling a running job, pausing and resuming a queue. Runs against one
//! server, and against a cluster under `PUNCTUAL_TEST_CLUSTER=1`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use punctual::{
    Event, Job, JobState, Namespace, NewJob, OnConflict, OnExpiry, Outcome, Promoter,
    PromoterConfig, QueueConfig, ScheduleOutcome, WorkerConfig,
};
use support::cli::*;
use support::{eventually, run_jobs, spawn_worker, total, RedisServer};
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

/// Reads job `id`'s data as a string.
async fn data_of(queue: &punctual::Queue, id: &str) -> Option<String> {
    let job = queue.get(id).await.unwrap()?;
    Some(job.data_as::<String>().unwrap())
}

/// Milliseconds from `a` to `b` (negative when `b` is earlier).
fn ms_between(a: SystemTime, b: SystemTime) -> i64 {
    match b.duration_since(a) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Every conflict mode against a *scheduled* job (due in 1 h, data "old"), with a new due time
/// later (2 h) or earlier (30 min): the outcome, the due time now and the data, as a table. On a
/// partitioned queue, so each id goes to its own partition's script.
#[tokio::test]
async fn conflict_modes_on_a_scheduled_job() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("modes", 2).await.unwrap();
    let h = |n: u64| Duration::from_secs(60 * n);
    let debounce = |cap: Option<Duration>| OnConflict::Debounce { max_wait: cap };
    // (mode, new delay, outcome, due time expected: delay from the first scheduling, data)
    let table = [
        (
            OnConflict::Reject,
            h(120),
            ScheduleOutcome::Rejected,
            h(60),
            "old",
        ),
        (
            OnConflict::Replace,
            h(120),
            ScheduleOutcome::Replaced,
            h(120),
            "new",
        ),
        (
            OnConflict::Replace,
            h(30),
            ScheduleOutcome::Replaced,
            h(30),
            "new",
        ),
        (
            debounce(None),
            h(120),
            ScheduleOutcome::Debounced,
            h(120),
            "new",
        ),
        // The cap counts from the first scheduling; the existing job had none, so this
        // debounce starts it: now + 10 min.
        (
            debounce(Some(h(10))),
            h(120),
            ScheduleOutcome::Debounced,
            h(10),
            "new",
        ),
        (
            OnConflict::KeepEarliest,
            h(120),
            ScheduleOutcome::Kept,
            h(60),
            "old",
        ),
        (
            OnConflict::KeepEarliest,
            h(30),
            ScheduleOutcome::Replaced,
            h(30),
            "new",
        ),
        (
            OnConflict::KeepLatest,
            h(120),
            ScheduleOutcome::Replaced,
            h(120),
            "new",
        ),
        (
            OnConflict::KeepLatest,
            h(30),
            ScheduleOutcome::Kept,
            h(60),
            "old",
        ),
    ];
    for (i, (mode, delay, outcome, due, data)) in table.into_iter().enumerate() {
        let id = format!("job-{i}");
        let first = queue
            .schedule(NewJob::new("old").id(&id).delay(h(60)))
            .await
            .unwrap();
        assert_eq!(first.outcome, ScheduleOutcome::Created);
        let start = first.due_at.unwrap() - h(60);
        let got = queue
            .schedule(NewJob::new("new").id(&id).delay(delay).on_conflict(mode))
            .await
            .unwrap();
        let case = format!("{mode:?} with {delay:?}");
        assert_eq!(got.outcome, outcome, "{case}");
        assert!(!got.created, "{case}");
        let off = ms_between(start + due, got.due_at.expect("waits in scheduled"));
        assert!(off.abs() < 2_000, "{case}: due {off} ms off");
        assert_eq!(data_of(&queue, &id).await.as_deref(), Some(data), "{case}");
        let stored = queue.get(&id).await.unwrap().unwrap().due_at.unwrap();
        assert_eq!(
            Some(stored),
            got.due_at,
            "{case}: the reply says the stored due time"
        );
    }
    assert_eq!(
        total(&queue, Event::Scheduled).await,
        9,
        "only creations count"
    );
}

/// The modes against a job in every other state: ready (replaced in place, or moved back to
/// waiting), running (never touched), dead and finished (absent for every mode but reject).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_modes_on_ready_running_dead_and_finished_jobs() {
    let redis = RedisServer::start();
    let queue = punctual::Queue::connect(&redis.url(), "states")
        .await
        .unwrap();
    let later = Duration::from_secs(3600);
    let with = |id: &str, data: &str, mode: OnConflict| NewJob::new(data).id(id).on_conflict(mode);

    // Ready: promoted, not claimed (no worker yet).
    for id in ["r1", "r2", "r3"] {
        queue.schedule(NewJob::new("old").id(id)).await.unwrap();
    }
    punctual::Promoter::promote(&queue, 100).await.unwrap();
    assert_eq!(queue.counts().await.unwrap().ready, 3);
    let s = queue
        .schedule(with("r1", "new", OnConflict::Replace))
        .await
        .unwrap();
    assert_eq!((s.outcome, s.due_at), (ScheduleOutcome::Replaced, None));
    assert_eq!(
        queue.get("r1").await.unwrap().unwrap().state,
        JobState::Ready
    );
    assert_eq!(data_of(&queue, "r1").await.as_deref(), Some("new"));
    let s = queue
        .schedule(with("r2", "new", OnConflict::Debounce { max_wait: None }).delay(later))
        .await
        .unwrap();
    assert_eq!(s.outcome, ScheduleOutcome::Debounced);
    assert!(s.due_at.is_some());
    assert_eq!(
        queue.get("r2").await.unwrap().unwrap().state,
        JobState::Scheduled,
        "debounced later: back to waiting"
    );
    let s = queue
        .schedule(with("r3", "new", OnConflict::KeepEarliest).delay(later))
        .await
        .unwrap();
    assert_eq!(s.outcome, ScheduleOutcome::Kept);
    assert_eq!(data_of(&queue, "r3").await.as_deref(), Some("old"));
    assert_eq!(queue.counts().await.unwrap().ready, 2);

    // Running: held by a handler until released; every mode leaves it alone.
    let stop = CancellationToken::new();
    let release = Arc::new(tokio::sync::Notify::new());
    let (tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let gate = release.clone();
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default().set_concurrency(4),
        &stop,
        move |job: Job<String>, _| {
            let (tx, gate) = (tx.clone(), gate.clone());
            async move {
                let _ = tx.send(job.id.clone());
                if job.id == "run" {
                    gate.notified().await;
                }
                if job.id == "die" {
                    return Outcome::Kill("for the test".into());
                }
                Outcome::Done
            }
        },
    );
    queue.schedule(NewJob::new("old").id("run")).await.unwrap();
    punctual::Promoter::promote(&queue, 100).await.unwrap();
    eventually(LIMIT, "the job runs", || async {
        queue.get("run").await.unwrap().map(|j| j.state) == Some(JobState::Running)
    })
    .await;
    for mode in [
        OnConflict::Reject,
        OnConflict::Replace,
        OnConflict::Debounce { max_wait: None },
        OnConflict::KeepEarliest,
        OnConflict::KeepLatest,
    ] {
        let s = queue.schedule(with("run", "new", mode)).await.unwrap();
        let want = if mode == OnConflict::Reject {
            ScheduleOutcome::Rejected
        } else {
            ScheduleOutcome::Running
        };
        assert_eq!(s.outcome, want, "{mode:?}");
    }
    assert_eq!(data_of(&queue, "run").await.as_deref(), Some("old"));
    release.notify_one();

    // Finished (completed within the dedup window) and dead: reject keeps the id taken, the
    // other modes make a new job.
    eventually(LIMIT, "the running job completes", || async {
        queue.get("run").await.unwrap().is_none()
    })
    .await;
    let s = queue.schedule(NewJob::new("x").id("run")).await.unwrap();
    assert_eq!(s.outcome, ScheduleOutcome::Rejected, "in the dedup window");
    queue.schedule(NewJob::new("old").id("die")).await.unwrap();
    punctual::Promoter::promote(&queue, 100).await.unwrap();
    eventually(LIMIT, "the job dies", || async {
        queue.get("die").await.unwrap().map(|j| j.state) == Some(JobState::Dead)
    })
    .await;
    let s = queue.schedule(NewJob::new("x").id("die")).await.unwrap();
    assert_eq!(s.outcome, ScheduleOutcome::Rejected);
    stop.cancel();
    worker.await.unwrap().unwrap();
    while started.try_recv().is_ok() {}
    for id in ["run", "die"] {
        let s = queue
            .schedule(with(id, "again", OnConflict::Replace).delay(later))
            .await
            .unwrap();
        assert_eq!(s.outcome, ScheduleOutcome::Created, "{id}");
        let job = queue.get(id).await.unwrap().unwrap();
        assert_eq!((job.state, job.attempts), (JobState::Scheduled, 0), "{id}");
        assert!(job.last_error.is_none(), "{id}: a fresh job");
    }
}

/// Two producers debouncing one id at once make one job, with the data of the last call Redis
/// ran; never two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_debounces_make_one_job() {
    let redis = RedisServer::start();
    let a = punctual::Queue::connect(&redis.url(), "race")
        .await
        .unwrap();
    let b = punctual::Queue::connect(&redis.url(), "race")
        .await
        .unwrap();
    let mode = OnConflict::Debounce { max_wait: None };
    let producer = |queue: punctual::Queue, who: u32| async move {
        let mut last = None;
        for i in 0..300u32 {
            let job = NewJob::new(&(who, i))
                .id("typing:42")
                .delay(Duration::from_secs(60))
                .on_conflict(mode);
            last = Some(queue.schedule(job).await.unwrap());
        }
        last
    };
    let (la, lb) = tokio::join!(producer(a.clone(), 1), producer(b.clone(), 2));
    let outcomes = [la.unwrap().outcome, lb.unwrap().outcome];
    assert!(
        outcomes.iter().all(|o| *o == ScheduleOutcome::Debounced),
        "{outcomes:?}"
    );
    assert_eq!(a.counts().await.unwrap().scheduled, 1);
    assert_eq!(total(&a, Event::Scheduled).await, 1);
    let (_, i): (u32, u32) = a
        .get("typing:42")
        .await
        .unwrap()
        .unwrap()
        .data_as()
        .unwrap();
    assert_eq!(i, 299, "the data of a last call");
}

/// A stream of 1,000 debounces, each pushing the due time an hour out, cannot postpone the job
/// past `max_wait` after its first scheduling: it runs once, on time for its cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_wait_caps_a_stream_of_debounces() {
    let redis = RedisServer::start();
    let queue = punctual::Queue::connect(&redis.url(), "capped")
        .await
        .unwrap();
    let cap = Duration::from_secs(2);
    let mode = OnConflict::Debounce {
        max_wait: Some(cap),
    };
    let job = |i: u32| {
        NewJob::new(&i)
            .id("burst")
            .delay(Duration::from_secs(3600))
            .on_conflict(mode)
    };
    let first = queue.schedule(job(0)).await.unwrap();
    assert_eq!(first.outcome, ScheduleOutcome::Created);
    // The first due time is the server's whole-ms clock + 1 ms + the delay; the cap counts
    // from that clock.
    let capped_at =
        first.due_at.unwrap() - Duration::from_secs(3600) - Duration::from_millis(1) + cap;
    let mut debounced = 0;
    for i in 1..1000u32 {
        let s = queue.schedule(job(i)).await.unwrap();
        if s.outcome == ScheduleOutcome::Debounced {
            debounced += 1;
            assert_eq!(s.due_at, Some(capped_at), "debounce {i} moved past the cap");
        }
    }
    assert!(debounced >= 900, "{debounced} of 999 debounced");
    let mut jobs = run_jobs::<u32>(&queue, WorkerConfig::default());
    let ran = jobs.next().await;
    let late = ms_between(capped_at, SystemTime::now());
    println!(
        "1,000 debounces, max_wait 2 s: ran {late} ms after the cap, data {}",
        ran.data
    );
    assert!(late >= 0, "ran {late} ms before the cap");
    assert!(late < 5_000, "ran {late} ms after the cap");
    assert!(ran.data >= 900, "the last data it got: {}", ran.data);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), jobs.next_maybe())
            .await
            .is_err(),
        "it ran twice"
    );
    jobs.stop().await;
    assert_eq!(total(&queue, Event::Scheduled).await, 1);
}

/// A job whose time ran out is not run: at promotion (max_lateness passed while no promoter
/// ran), at claim (expires_at passed while it waited in ready), and at retry (its backoff would
/// land past the expiry). Dead with reason `expired`, or deleted with `on_expiry` drop; counted
/// in the `expired` total. A job with time left runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_jobs_are_not_run() {
    let redis = RedisServer::start();
    let queue = punctual::Queue::connect(&redis.url(), "expiry")
        .await
        .unwrap();
    let ms = Duration::from_millis;

    // Promotion: due in 100 ms, at most 100 ms late; promoted 600 ms later.
    queue
        .schedule(
            NewJob::new(&1)
                .id("late")
                .delay(ms(100))
                .max_lateness(ms(100)),
        )
        .await
        .unwrap();
    queue
        .schedule(
            NewJob::new(&2)
                .id("late-drop")
                .delay(ms(100))
                .max_lateness(ms(100))
                .on_expiry(OnExpiry::Drop),
        )
        .await
        .unwrap();
    queue
        .schedule(
            NewJob::new(&3)
                .id("in-time")
                .delay(ms(100))
                .max_lateness(ms(60_000)),
        )
        .await
        .unwrap();
    tokio::time::sleep(ms(600)).await;
    Promoter::promote(&queue, 100).await.unwrap();
    let late = queue.get("late").await.unwrap().unwrap();
    assert_eq!(late.state, JobState::Dead);
    let error = late.last_error.unwrap();
    assert_eq!(
        (error.reason.as_str(), error.attempt),
        ("expired", 0),
        "{}",
        error.message
    );
    assert!(queue.get("late-drop").await.unwrap().is_none(), "dropped");
    assert_eq!(
        queue.get("in-time").await.unwrap().unwrap().state,
        JobState::Ready
    );
    assert_eq!(total(&queue, Event::Expired).await, 2);
    assert_eq!(total(&queue, Event::Promoted).await, 1);

    // Claim: promoted at once, expires 300 ms later while no worker runs.
    queue
        .schedule(
            NewJob::new(&4)
                .id("stale")
                .expires_at(SystemTime::now() + ms(300)),
        )
        .await
        .unwrap();
    Promoter::promote(&queue, 100).await.unwrap();
    assert_eq!(queue.counts().await.unwrap().ready, 2);
    tokio::time::sleep(ms(500)).await;

    // Retry: the handler fails; the 10 s backoff lands past the job's 2 s lateness.
    queue
        .schedule(
            NewJob::new(&5)
                .id("flaky")
                .max_lateness(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let promoter = support::spawn_promoter(&queue, Duration::from_secs(1), &stop);
    let (tx, mut ran) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default()
            .set_backoff(punctual::Fixed::new(Duration::from_secs(10)).unwrap())
            .set_max_attempts(5),
        &stop,
        move |job: Job<u32>, _| {
            let _ = tx.send(job.id.clone());
            async move {
                if job.id == "flaky" {
                    Outcome::Fail("down".into())
                } else {
                    Outcome::Done
                }
            }
        },
    );
    eventually(LIMIT, "the failed job expires at its retry", || async {
        queue.get("flaky").await.unwrap().map(|j| j.state) == Some(JobState::Dead)
    })
    .await;
    let flaky = queue.get("flaky").await.unwrap().unwrap();
    assert_eq!(flaky.last_error.unwrap().reason, "expired");
    assert_eq!(flaky.attempts, 1);
    assert_eq!(total(&queue, Event::Retried).await, 0);
    let mut seen = Vec::new();
    while let Ok(Some(id)) = tokio::time::timeout(ms(300), ran.recv()).await {
        seen.push(id);
    }
    seen.sort();
    assert_eq!(seen, ["flaky", "in-time"], "stale and late never ran");
    let stale = queue.get("stale").await.unwrap().unwrap();
    assert_eq!(stale.state, JobState::Dead);
    assert_eq!(stale.last_error.unwrap().reason, "expired");
    assert_eq!(total(&queue, Event::Expired).await, 4);
    stop.cancel();
    worker.await.unwrap().unwrap();
    promoter.await.unwrap().unwrap();

    // Bad input is refused before anything is written.
    let at = SystemTime::now() + Duration::from_secs(60);
    let err = queue
        .schedule(NewJob::new(&6).at(at).expires_at(at - ms(1)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expires_at"), "{err}");
    let err = queue
        .schedule(NewJob::new(&7).on_expiry(OnExpiry::Drop))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("expires_at or max_lateness"),
        "{err}"
    );
    // Reviving an expired job drops its expiry: it runs.
    assert_eq!(
        queue.retry_dead(&["late".to_owned()]).await.unwrap().len(),
        1
    );
    let mut jobs = run_jobs::<u32>(&queue, WorkerConfig::default());
    assert_eq!(jobs.next().await.id, "late");
    jobs.stop().await;
}

/// A handler that runs past its timeout is cancelled (it sees why, and its deadline) and its
/// attempt fails with reason `timed_out`; it is retried and succeeds. A slow job does not hold
/// up the others. A job's own timeout wins over the worker's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_handlers_are_retried_and_do_not_block_others() {
    let redis = RedisServer::start();
    let queue = punctual::Queue::connect(&redis.url(), "slow")
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let promoter = support::spawn_promoter(&queue, Duration::from_secs(1), &stop);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default()
            .set_concurrency(2)
            .set_timeout(Some(Duration::from_millis(500)))
            .set_backoff(punctual::Fixed::new(Duration::from_millis(100)).unwrap()),
        &stop,
        move |job: Job<String>, ctx: punctual::Context| {
            let tx = tx.clone();
            async move {
                let deadline = ctx.deadline().expect("a deadline");
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if job.data == "slow" && job.attempt == 1 {
                    ctx.cancelled().await;
                    let _ = tx.send(format!(
                        "cancelled {:?} {}",
                        ctx.cancel_reason(),
                        left.as_millis()
                    ));
                    return Outcome::Fail("stopped what it did".into());
                }
                let _ = tx.send(format!("{} {} {}", job.data, job.attempt, left.as_millis()));
                Outcome::Done
            }
        },
    );
    queue
        .schedule(NewJob::new("slow").id("slow"))
        .await
        .unwrap();
    queue
        .schedule(
            NewJob::new("own")
                .id("own")
                .timeout(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..5 {
        queue
            .schedule(NewJob::new("fast").id(format!("fast-{i}")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 8 {
        let event = tokio::time::timeout(LIMIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        seen.push(event);
    }
    println!("{seen:?}");
    let cancelled = seen
        .iter()
        .position(|e| e.starts_with("cancelled"))
        .unwrap();
    assert!(
        seen[cancelled].starts_with("cancelled Some(TimedOut)"),
        "{seen:?}"
    );
    let fast: Vec<usize> = (0..seen.len())
        .filter(|&i| seen[i].starts_with("fast"))
        .collect();
    assert_eq!(fast.len(), 5);
    assert!(
        fast.iter().all(|&i| i < cancelled),
        "the fast jobs ran while the slow one hung: {seen:?}"
    );
    let own = seen.iter().find(|e| e.starts_with("own")).unwrap();
    let left: u64 = own.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(left > 20_000, "the job's own 30 s timeout: {own}");
    assert!(
        seen.iter().any(|e| e.starts_with("slow 2")),
        "retried: {seen:?}"
    );
    eventually(LIMIT, "the slow job completes", || async {
        queue.get("slow").await.unwrap().is_none()
    })
    .await;
    assert_eq!(total(&queue, Event::Retried).await, 1);
    stop.cancel();
    worker.await.unwrap().unwrap();
    promoter.await.unwrap().unwrap();
}

/// Cancelling a running job: its worker hears it at the next lease extension, its handler sees
/// `CancelReason::Cancelled`, and the job ends in the dead set with reason `cancelled`; the
/// caller learns it was stopped. A job that finishes before its worker hears it: the caller
/// learns it finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_its_handler() {
    let redis = RedisServer::start();
    let queue = punctual::Queue::connect(&redis.url(), "stoppable")
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let promoter = support::spawn_promoter(&queue, Duration::from_secs(1), &stop);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default().set_lease(Duration::from_millis(900)),
        &stop,
        move |job: Job<u64>, ctx: punctual::Context| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(format!("started {}", job.id));
                tokio::select! {
                    () = ctx.cancelled() => {
                        let _ = tx.send(format!("cancelled {:?}", ctx.cancel_reason()));
                        Outcome::Done // not reported: the job is cancelled
                    }
                    () = tokio::time::sleep(Duration::from_millis(job.data)) => Outcome::Done,
                }
            }
        },
    );
    queue
        .schedule(NewJob::new(&60_000u64).id("long"))
        .await
        .unwrap();
    assert_eq!(events.recv().await.unwrap(), "started long");
    let asked = Instant::now();
    let outcome = queue
        .cancel_and_wait("long", Duration::from_secs(10))
        .await
        .unwrap();
    println!(
        "cancel of a running job (lease 900 ms): {outcome:?} after {:?}",
        asked.elapsed()
    );
    assert_eq!(outcome, punctual::Cancelled::Stopped);
    assert_eq!(events.recv().await.unwrap(), "cancelled Some(Cancelled)");
    let job = queue.get("long").await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.last_error.unwrap().reason, "cancelled");
    assert_eq!(total(&queue, Event::Cancelled).await, 1);
    assert_eq!(
        queue.cancel("long").await.unwrap(),
        punctual::Cancelled::Removed(JobState::Dead),
        "a dead job is deleted"
    );

    // Finishes 100 ms after the request, before the next extension (300 ms): finished.
    queue
        .schedule(NewJob::new(&150u64).id("quick"))
        .await
        .unwrap();
    assert_eq!(events.recv().await.unwrap(), "started quick");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let outcome = queue
        .cancel_and_wait("quick", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(outcome, punctual::Cancelled::Finished);
    assert!(queue.get("quick").await.unwrap().is_none(), "it completed");
    // 2: "long" stopped, then its dead record deleted; "quick" adds nothing.
    assert_eq!(
        total(&queue, Event::Cancelled).await,
        2,
        "nothing more was cancelled"
    );
    assert_eq!(total(&queue, Event::Completed).await, 1);

    // Without a wait: asked, and the worker stops it.
    queue
        .schedule(NewJob::new(&60_000u64).id("again"))
        .await
        .unwrap();
    assert_eq!(events.recv().await.unwrap(), "started again");
    assert_eq!(
        queue.cancel("again").await.unwrap(),
        punctual::Cancelled::Requested
    );
    assert_eq!(events.recv().await.unwrap(), "cancelled Some(Cancelled)");
    stop.cancel();
    worker.await.unwrap().unwrap();
    promoter.await.unwrap().unwrap();
    let leftovers = queue.get("again").await.unwrap().unwrap();
    assert_eq!(leftovers.last_error.unwrap().reason, "cancelled");
}

/// The CLI: `schedule --on-conflict ... --json` prints the outcome and due time; `import` lines
/// take the same fields; bad values are one-line errors that write nothing.
#[tokio::test]
async fn the_cli_takes_conflict_modes_expiry_and_timeouts() {
    let redis = RedisServer::start();
    let first = json(&ok(
        &redis,
        &[
            "schedule", "typing", "--id", "t42", "--in", "1h", "--data", "1", "--json",
        ],
    ));
    assert_eq!(first["outcome"], "created", "{first}");
    assert!(first["due"].as_str().unwrap().ends_with('Z'), "{first}");
    let again = json(&ok(
        &redis,
        &[
            "schedule",
            "typing",
            "--id",
            "t42",
            "--in",
            "2h",
            "--data",
            "2",
            "--json",
            "--on-conflict",
            "debounce",
            "--max-wait",
            "30m",
        ],
    ));
    assert_eq!(
        (&again["outcome"], &again["created"]),
        (&"debounced".into(), &false.into()),
        "{again}"
    );
    let kept = json(&ok(
        &redis,
        &[
            "schedule",
            "typing",
            "--id",
            "t42",
            "--in",
            "3h",
            "--json",
            "--on-conflict",
            "keep-earliest",
        ],
    ));
    assert_eq!(kept["outcome"], "kept", "{kept}");
    assert_eq!(kept["due"], again["due"], "{kept}");
    let rejected = json(&ok(
        &redis,
        &["schedule", "typing", "--id", "t42", "--in", "1m", "--json"],
    ));
    assert_eq!(rejected["outcome"], "rejected", "{rejected}");
    let shown = json(&ok(&redis, &["show", "typing", "t42", "--json"]));
    assert_eq!(shown["data"], 2, "{shown}");

    let lines = [
        r#"{"id": "a", "in": "1h", "data": 1, "max_lateness": "10m", "timeout": "30s"}"#,
        r#"{"id": "a", "in": "2h", "data": 2, "on_conflict": "replace"}"#,
        r#"{"id": "b", "at": "2099-01-01T00:00:00Z", "expires_at": "2099-01-01T01:00:00Z", "on_expiry": "drop"}"#,
        r#"{"id": "c", "in": "1h", "on_conflict": "sometimes"}"#,
        r#"{"id": "d", "in": "1h", "max_wait": "1m"}"#,
    ]
    .join("\n");
    let out = run(&redis, &["import", "typing", "-"], Some(&lines));
    fails(&out, 2, "2 of 5 lines were rejected");
    let err = stderr(&out);
    assert!(
        err.contains("line 4: invalid on_conflict \"sometimes\""),
        "{err}"
    );
    assert!(
        err.contains("line 5: max_wait goes with on_conflict debounce"),
        "{err}"
    );
    assert!(
        stdout(&out).contains("scheduled 3 jobs"),
        "{}",
        stdout(&out)
    );
    let a = json(&ok(&redis, &["show", "typing", "a", "--json"]));
    assert_eq!(a["data"], 2, "{a}");
    let b = json(&ok(&redis, &["show", "typing", "b", "--json"]));
    assert_eq!(b["expires_at"], "2099-01-01T01:00:00.000Z", "{b}");
    let text = ok(&redis, &["show", "typing", "b"]);
    assert!(
        text.contains("expires at   2099-01-01T01:00:00.000Z"),
        "{text}"
    );

    for (args, needle) in [
        (vec!["--on-conflict", "maybe"], "invalid on_conflict"),
        (
            vec!["--max-wait", "1m"],
            "max_wait goes with on_conflict debounce",
        ),
        (vec!["--max-lateness", "soon"], "invalid duration"),
        (vec!["--expires-at", "yesterday"], "invalid time"),
        (
            vec!["--on-expiry", "drop"],
            "needs expires_at or max_lateness",
        ),
        (vec!["--timeout", "0s"], "job timeout"),
    ] {
        let mut all = vec!["schedule", "typing", "--id", "bad", "--in", "1m"];
        all.extend(args);
        let out = run(&redis, &all, None);
        assert_ne!(out.status.code(), Some(0), "{all:?}");
        fails(&out, out.status.code().unwrap_or(-1), needle);
    }
    fails(
        &run(&redis, &["show", "typing", "bad"], None),
        1,
        "not found",
    );
}

/// One bulk call with every kind of outcome reports each job's, with its due time, in order;
/// an id given twice in one call is decided against the first.
#[tokio::test]
async fn a_bulk_call_reports_each_jobs_outcome() {
    let redis = RedisServer::start();
    let queue = punctual::Queue::connect(&redis.url(), "bulk")
        .await
        .unwrap();
    let min = |n: u64| Duration::from_secs(60 * n);
    queue
        .schedule(NewJob::new("old").id("a").delay(min(10)))
        .await
        .unwrap();
    let jobs = vec![
        NewJob::new("new").id("fresh").delay(min(5)),
        NewJob::new("new").id("a"),
        NewJob::new("new")
            .id("a")
            .delay(min(20))
            .on_conflict(OnConflict::Replace),
        NewJob::new("new").id("twice").delay(min(1)),
        NewJob::new("new")
            .id("twice")
            .delay(min(2))
            .on_conflict(OnConflict::KeepEarliest),
        NewJob::new("new")
            .id("twice")
            .delay(min(3))
            .on_conflict(OnConflict::Debounce { max_wait: None }),
    ];
    let got: Vec<(ScheduleOutcome, SystemTime)> = queue
        .schedule_many(jobs)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let s = r.unwrap();
            (s.outcome, s.due_at.unwrap())
        })
        .collect();
    let outcomes: Vec<ScheduleOutcome> = got.iter().map(|g| g.0).collect();
    use ScheduleOutcome::*;
    assert_eq!(
        outcomes,
        [Created, Rejected, Replaced, Created, Kept, Debounced]
    );
    let start = got[0].1 - min(5);
    for (i, want) in [5, 10, 20, 1, 1, 3].into_iter().enumerate() {
        let off = ms_between(start + min(want), got[i].1);
        assert!(off.abs() < 2_000, "job {i}: due {off} ms off");
    }
    let stored = queue.get("twice").await.unwrap().unwrap().due_at;
    assert_eq!(stored, Some(got[5].1));
    assert_eq!(queue.counts().await.unwrap().scheduled, 3);
}
