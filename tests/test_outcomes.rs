//! Knowing what happened: completed jobs kept by a retention, with their results. Runs against
//! one server, and against a cluster under `PUNCTUAL_TEST_CLUSTER=1`.

mod support;

use std::time::{Duration, SystemTime};

use punctual::{
    Cancelled, Event, Job, JobState, Namespace, NewJob, OnConflict, Outcome, QueueConfig,
    Rescheduled, Retention, ScheduleOutcome, When, WorkerConfig,
};
use redis::AsyncCommands;
use support::cli::*;
use support::{eventually, spawn_promoter, spawn_worker, total, RedisServer};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Sent {
    to: String,
    messages: u32,
}

/// With a retention, completed jobs stay visible with their result, finish time and run time,
/// listed in completion order; the count bound trims the oldest (counted, leaving no data);
/// an id stays taken while its job is kept. A partitioned queue keeps jobs per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_jobs_are_kept_with_their_results() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("kept", 2).await.unwrap();
    assert_eq!(queue.completed_retention().await.unwrap(), None);
    let retention = Retention::new(Duration::from_secs(3600), 3).unwrap();
    queue
        .set_completed_retention(Some(retention))
        .await
        .unwrap();
    assert_eq!(queue.completed_retention().await.unwrap(), Some(retention));
    let stop = CancellationToken::new();
    let promoter = spawn_promoter(&queue, Duration::from_secs(1), &stop);
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default().set_concurrency(1),
        &stop,
        |job: Job<u32>, _| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if job.data.is_multiple_of(2) {
                Outcome::done_with(&Sent {
                    to: format!("user{}", job.data),
                    messages: job.data,
                })
            } else {
                Outcome::Done
            }
        },
    );
    // Partition key "p": every job in one partition, so the count bound is exact.
    for i in 0..5u32 {
        queue
            .schedule(NewJob::new(&i).id(format!("job-{i}{{p}}")))
            .await
            .unwrap();
        eventually(LIMIT, "the job completes", || async {
            total(&queue, Event::Completed).await == u64::from(i) + 1
        })
        .await;
    }
    let job = queue.get("job-4{p}").await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(
        job.result_as::<Sent>().unwrap(),
        Sent {
            to: "user4".into(),
            messages: 4
        }
    );
    assert!(job.run_time.unwrap() >= Duration::from_millis(20));
    let completed_at = job.completed_at.unwrap();
    let age = SystemTime::now()
        .duration_since(completed_at)
        .unwrap_or_default();
    assert!(age < Duration::from_secs(10), "{age:?}");
    assert_eq!(job.attempts, 1);
    let odd = queue.get("job-3{p}").await.unwrap().unwrap();
    assert_eq!(
        (odd.state, odd.result.is_none()),
        (JobState::Completed, true)
    );
    // Kept: the newest 3, in completion order; the 2 oldest were trimmed and left nothing.
    let listed: Vec<String> = queue
        .list(JobState::Completed, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(listed, ["job-2{p}", "job-3{p}", "job-4{p}"]);
    assert!(queue.get("job-0{p}").await.unwrap().is_none());
    assert_eq!(total(&queue, Event::CompletedTrimmed).await, 2);
    assert_eq!(queue.counts().await.unwrap().completed, 3);
    let mut conn = redis.conn().await;
    let (mut jobs, mut records) = (0u64, 0u64);
    for i in 0..2 {
        let tag = punctual::keys::partition_tag("kept", i, 2);
        jobs += conn
            .hlen::<_, u64>(format!("punctual:{{{tag}}}:jobs"))
            .await
            .unwrap();
        records += conn
            .hlen::<_, u64>(format!("punctual:{{{tag}}}:results"))
            .await
            .unwrap();
    }
    assert_eq!((jobs, records), (3, 3), "trimmed jobs leave no data");

    // The id stays taken while kept: rejected; a replace makes a fresh job.
    let again = queue
        .schedule(
            NewJob::new(&9u32)
                .id("job-4{p}")
                .delay(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(again.outcome, ScheduleOutcome::Rejected);
    let fresh = queue
        .schedule(
            NewJob::new(&9u32)
                .id("job-4{p}")
                .delay(Duration::from_secs(60))
                .on_conflict(OnConflict::Replace),
        )
        .await
        .unwrap();
    assert_eq!(fresh.outcome, ScheduleOutcome::Created);
    let job = queue.get("job-4{p}").await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Scheduled, 0));
    assert!(job.result.is_none() && job.completed_at.is_none());
    // Cancel deletes a kept job; reschedule runs one again.
    assert_eq!(
        queue.cancel("job-2{p}").await.unwrap(),
        Cancelled::Removed(JobState::Completed)
    );
    assert!(matches!(
        queue.reschedule("job-3{p}", When::NOW).await.unwrap(),
        Rescheduled::Moved {
            from: JobState::Completed,
            ..
        }
    ));
    eventually(LIMIT, "the rescheduled job completes again", || async {
        total(&queue, Event::Completed).await == 6
    })
    .await;
    assert_eq!(
        queue.get("job-3{p}").await.unwrap().unwrap().state,
        JobState::Completed
    );

    // Off again: completed jobs are deleted.
    queue.set_completed_retention(None).await.unwrap();
    queue
        .schedule(NewJob::new(&7u32).id("after{p}"))
        .await
        .unwrap();
    eventually(LIMIT, "the job completes", || async {
        total(&queue, Event::Completed).await == 7
    })
    .await;
    assert!(queue.get("after{p}").await.unwrap().is_none());
    stop.cancel();
    worker.await.unwrap().unwrap();
    promoter.await.unwrap().unwrap();
}

/// The age bound: jobs older than the retention's age are trimmed by a later completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_age_bound_trims_old_completed_jobs() {
    let redis = RedisServer::start();
    let queue = punctual::Queue::connect(&redis.url(), "aged")
        .await
        .unwrap();
    queue
        .set_completed_retention(Some(
            Retention::new(Duration::from_millis(300), 100).unwrap(),
        ))
        .await
        .unwrap();
    let mut jobs = support::run_jobs::<u32>(&queue, WorkerConfig::default());
    for i in 0..2u32 {
        queue
            .schedule(NewJob::new(&i).id(format!("old-{i}")))
            .await
            .unwrap();
        jobs.next().await;
    }
    eventually(LIMIT, "both kept", || async {
        queue.counts().await.unwrap().completed == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    queue.schedule(NewJob::new(&9u32).id("new")).await.unwrap();
    jobs.next().await;
    eventually(LIMIT, "the old ones trimmed", || async {
        queue.counts().await.unwrap().completed == 1
    })
    .await;
    assert_eq!(total(&queue, Event::CompletedTrimmed).await, 2);
    assert!(queue.get("old-0").await.unwrap().is_none());
    assert_eq!(
        queue.get("new").await.unwrap().unwrap().state,
        JobState::Completed
    );
    jobs.stop().await;
}

/// The CLI: `queue set --keep-completed`, `show` reports the completed state and result,
/// `ls --state completed` lists it, `stats --json` counts it; the exec worker's verdict result
/// is what is kept. Bad retentions are one-line errors.
#[tokio::test]
async fn the_cli_keeps_and_shows_results() {
    let redis = RedisServer::start();
    ok(&redis, &["queue", "create", "mail"]);
    let out = ok(
        &redis,
        &["queue", "set", "mail", "--keep-completed", "1h,100"],
    );
    assert!(out.contains("keeps completed jobs 1h"), "{out}");
    ok(
        &redis,
        &[
            "schedule",
            "mail",
            "--in",
            "0s",
            "--id",
            "m1",
            "--data",
            "{\"to\":\"ada\"}",
        ],
    );
    let dir = out_dir("outcomes");
    let mut promoter = spawn_promote(&redis, &["mail"]);
    let mut worker = spawn_work(
        &redis,
        "mail",
        r#"echo '{"outcome":"done","result":{"sent":3}}' > "$PUNCTUAL_VERDICT_FILE""#,
        &[],
        &dir,
    );
    let mut shown = serde_json::Value::Null;
    let started = std::time::Instant::now();
    while shown["state"] != "completed" {
        assert!(started.elapsed() < LIMIT, "not completed: {shown}");
        std::thread::sleep(Duration::from_millis(50));
        shown = json(&ok(&redis, &["show", "mail", "m1", "--json"]));
    }
    assert_eq!(shown["result"], serde_json::json!({"sent": 3}), "{shown}");
    assert!(shown["completed_at"].is_string(), "{shown}");
    let text = ok(&redis, &["show", "mail", "m1"]);
    assert!(text.contains("result       {\"sent\":3}"), "{text}");
    let listed = ok(&redis, &["ls", "mail", "--state", "completed"]);
    assert!(listed.contains("m1"), "{listed}");
    let stats = json(&ok(&redis, &["stats", "mail", "--json"]));
    assert_eq!(stats[0]["completed"], 1, "{stats}");
    stop_all(&mut [&mut worker, &mut promoter]);

    let out = ok(&redis, &["queue", "set", "mail", "--keep-completed", "off"]);
    assert!(out.contains("deletes completed jobs"), "{out}");
    for (value, needle) in [
        ("1h", "expected AGE,COUNT"),
        ("soon,3", "invalid duration"),
        ("1h,0", "the count must be"),
    ] {
        fails(
            &run(
                &redis,
                &["queue", "set", "mail", "--keep-completed", value],
                None,
            ),
            2,
            needle,
        );
    }
    fails(
        &run(
            &redis,
            &["queue", "set", "nosuch", "--keep-completed", "off"],
            None,
        ),
        1,
        "no queue",
    );
}

/// `Queue::wait` returns when the job completes (with its result when kept), dies, or is
/// cancelled; at once for a job that ended before the call; `NotFound` for no job; `Pending`
/// at the timeout, having sent no command while it waited. A debounce that replaces the waited
/// job keeps the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_when_the_job_ends() {
    let redis = RedisServer::start();
    let queue = punctual::Queue::connect(&redis.url(), "awaited")
        .await
        .unwrap();
    let secs = Duration::from_secs;

    // Pending, and quiet: nothing runs the queue.
    queue
        .schedule(NewJob::new(&0u32).id("later").delay(secs(3600)))
        .await
        .unwrap();
    let waiter = {
        let queue = queue.clone();
        tokio::spawn(async move { queue.wait("later", Duration::from_millis(1500)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = redis.commands_during(Duration::from_secs(1)).await;
    assert!(sent <= 1, "{sent} commands while waiting");
    match waiter.await.unwrap().unwrap() {
        punctual::Waited::Pending(job) => assert_eq!(job.state, JobState::Scheduled),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        queue.wait("nosuch", secs(1)).await.unwrap(),
        punctual::Waited::NotFound
    ));

    // Cancelled while waited for.
    let waiter = {
        let queue = queue.clone();
        tokio::spawn(async move { queue.wait("later", secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    queue.cancel("later").await.unwrap();
    assert!(matches!(
        waiter.await.unwrap().unwrap(),
        punctual::Waited::Deleted
    ));

    // Completed (with a retention: its result) and dead, each heard as it happens; a debounce
    // of the waited job before it runs keeps the wait.
    queue
        .set_completed_retention(Some(Retention::new(secs(3600), 100).unwrap()))
        .await
        .unwrap();
    for id in ["ok", "bad"] {
        queue
            .schedule(NewJob::new(&1u32).id(id).delay(Duration::from_millis(700)))
            .await
            .unwrap();
    }
    let waiters: Vec<_> = ["ok", "bad"]
        .into_iter()
        .map(|id| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.wait(id, secs(20)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    queue
        .schedule(
            NewJob::new(&2u32)
                .id("ok")
                .delay(Duration::from_millis(700))
                .on_conflict(OnConflict::Debounce { max_wait: None }),
        )
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let promoter = spawn_promoter(&queue, secs(1), &stop);
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default(),
        &stop,
        |job: Job<u32>, _| async move {
            if job.id == "bad" {
                Outcome::Kill("no such mailbox".into())
            } else {
                Outcome::done_with(&(job.data * 10))
            }
        },
    );
    let mut results = Vec::new();
    for waiter in waiters {
        results.push(waiter.await.unwrap().unwrap());
    }
    match &results[0] {
        punctual::Waited::Completed(Some(job)) => {
            assert_eq!(
                job.result_as::<u32>().unwrap(),
                20,
                "the debounced data ran"
            )
        }
        other => panic!("{other:?}"),
    }
    match &results[1] {
        punctual::Waited::Dead(job) => {
            assert_eq!(job.last_error.as_ref().unwrap().reason, "permanent")
        }
        other => panic!("{other:?}"),
    }
    // Ended before the call: at once.
    let started = std::time::Instant::now();
    assert!(matches!(
        queue.wait("ok", secs(10)).await.unwrap(),
        punctual::Waited::Completed(Some(_))
    ));
    assert!(matches!(
        queue.wait("bad", secs(10)).await.unwrap(),
        punctual::Waited::Dead(_)
    ));
    assert!(started.elapsed() < secs(2));

    // Without a retention: completed, no record.
    queue.set_completed_retention(None).await.unwrap();
    queue
        .schedule(
            NewJob::new(&3u32)
                .id("plain")
                .delay(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    assert!(matches!(
        queue.wait("plain", secs(20)).await.unwrap(),
        punctual::Waited::Completed(None)
    ));
    stop.cancel();
    worker.await.unwrap().unwrap();
    promoter.await.unwrap().unwrap();

    // The CLI's exit codes: 0 completed (prints the result), 1 died, 3 still pending.
    queue
        .set_completed_retention(Some(Retention::new(secs(3600), 100).unwrap()))
        .await
        .unwrap();
    let out = ok(&redis, &["wait", "awaited", "ok", "--timeout", "5s"]);
    assert_eq!(out.trim(), "20");
    fails(
        &run(&redis, &["wait", "awaited", "bad", "--timeout", "5s"], None),
        1,
        "no such mailbox",
    );
    queue
        .schedule(NewJob::new(&4u32).id("far").delay(secs(3600)))
        .await
        .unwrap();
    fails(
        &run(
            &redis,
            &["wait", "awaited", "far", "--timeout", "300ms"],
            None,
        ),
        3,
        "still scheduled",
    );
    fails(
        &run(
            &redis,
            &["wait", "awaited", "nosuch", "--timeout", "1s"],
            None,
        ),
        1,
        "not found",
    );
}

/// The promoter enforces both retentions on an idle queue: dead jobs beyond the count and age
/// are deleted (counted in `dead_trimmed`, logged), and completed jobs past their age go
/// without any later completion. Single-threaded, so that the promoter's logs are captured.
#[tokio::test]
async fn the_promoter_trims_dead_and_completed_jobs() {
    let logs = support::capture_logs();
    let redis = RedisServer::start();
    let queue = punctual::Queue::connect(&redis.url(), "bounded")
        .await
        .unwrap();
    queue
        .set_dead_retention(Some(Retention::new(Duration::from_secs(3600), 2).unwrap()))
        .await
        .unwrap();
    queue
        .set_completed_retention(Some(
            Retention::new(Duration::from_millis(500), 100).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(
        queue.dead_retention().await.unwrap().map(|r| r.max_count()),
        Some(2)
    );
    let stop = CancellationToken::new();
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default().set_concurrency(1),
        &stop,
        |job: Job<u32>, _| async move {
            if job.data < 5 {
                Outcome::Kill(format!("dead {}", job.data))
            } else {
                Outcome::Done
            }
        },
    );
    for i in 0..6u32 {
        queue
            .schedule(NewJob::new(&i).id(format!("j{i}")))
            .await
            .unwrap();
    }
    // Promote by hand, and wait for every job to end before any promoter trims.
    punctual::Promoter::promote(&queue, 100).await.unwrap();
    eventually(LIMIT, "five dead, one completed", || async {
        let c = queue.counts().await.unwrap();
        (c.dead, c.completed) == (5, 1)
    })
    .await;
    let promoter = spawn_promoter(&queue, Duration::from_millis(300), &stop);
    eventually(LIMIT, "the dead set trimmed to 2", || async {
        queue.counts().await.unwrap().dead == 2
    })
    .await;
    assert_eq!(total(&queue, Event::DeadTrimmed).await, 3);
    let kept: Vec<String> = queue
        .list(JobState::Dead, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(kept, ["j3", "j4"], "the newest dead jobs stay");
    assert!(queue.get("j0").await.unwrap().is_none());
    eventually(
        LIMIT,
        "the completed job aged out, with no later ack",
        || async { queue.counts().await.unwrap().completed == 0 },
    )
    .await;
    assert_eq!(total(&queue, Event::CompletedTrimmed).await, 1);
    assert!(
        logs.text().contains("retention: deleted the oldest"),
        "the trims are logged"
    );
    stop.cancel();
    worker.await.unwrap().unwrap();
    promoter.await.unwrap().unwrap();
    let out = ok(&redis, &["queue", "set", "bounded", "--keep-dead", "off"]);
    assert!(
        out.contains("keeps dead jobs until retried or purged"),
        "{out}"
    );
    assert_eq!(queue.dead_retention().await.unwrap(), None);
}
