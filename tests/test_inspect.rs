//! Operator features of the library: listing jobs by state, queue stats and event totals, the
//! dead set (retry, purge), the namespace registry, the server check, and a promoter that
//! serves every queue of a namespace. Each test starts its own redis-server.

mod support;

use std::time::Duration;

use punctual::{
    Job, JobState, Namespace, NewJob, Outcome, Promoter, PromoterConfig, Purge, Queue, QueueConfig,
    ServerProblem, WorkerConfig,
};
use support::{eventually, spawn_worker, RedisServer};
use tokio_util::sync::CancellationToken;

/// Runs a worker that fails every job permanently, until `stop` fires.
fn spawn_killer(queue: &Queue, stop: &CancellationToken) {
    spawn_worker(
        queue,
        WorkerConfig::default(),
        stop,
        |_job: Job<u32>, _ctx| async { Outcome::kill("broken on purpose") },
    );
}

/// `list` returns each state oldest first, with details, and honours the limit.
#[tokio::test]
async fn list_shows_each_state_oldest_first() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "ls").await.unwrap();
    for (id, secs) in [("late", 300), ("early", 100), ("middle", 200)] {
        queue
            .schedule(
                NewJob::new(&secs)
                    .id(id)
                    .kind("tick")
                    .delay(Duration::from_secs(secs)),
            )
            .await
            .unwrap();
    }
    let listed = queue.list(JobState::Scheduled, 10).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["early", "middle", "late"]);
    assert!(listed[0].due_at < listed[1].due_at);
    assert_eq!(listed[0].kind.as_deref(), Some("tick"));
    assert_eq!(listed[0].data_as::<u64>().unwrap(), 100);

    let two = queue.list(JobState::Scheduled, 2).await.unwrap();
    assert_eq!(two.len(), 2);
    assert!(queue.list(JobState::Ready, 10).await.unwrap().is_empty());
    // Listing "unknown" jobs is no longer expressible: JobState has no such state.
    assert!(queue
        .list(JobState::Dead, punctual::MAX_LIST + 1)
        .await
        .is_err());

    // Ready: in the order workers take them.
    for id in ["r1", "r2", "r3"] {
        queue.schedule(NewJob::new(&0).id(id)).await.unwrap();
    }
    Promoter::promote(&queue, 100).await.unwrap();
    let ready = queue.list(JobState::Ready, 10).await.unwrap();
    let ids: Vec<&str> = ready.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2", "r3"]);
    assert!(ready.iter().all(|j| j.state == JobState::Ready));
}

/// The dead set: jobs can be retried by id or all at once (attempts reset, due now), and
/// purged by id, by age or all; ids not in the dead set are never touched. Totals count it all.
#[tokio::test]
async fn dead_jobs_are_retried_and_purged() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "graveyard").await.unwrap();
    let ids: Vec<String> = (0..5).map(|i| format!("d{i}")).collect();
    for id in &ids {
        queue.schedule(NewJob::new(&1u32).id(id)).await.unwrap();
    }
    queue
        .schedule(
            NewJob::new(&1u32)
                .id("alive")
                .delay(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    let stop = CancellationToken::new();
    support::spawn_promoter(&queue, Duration::from_millis(100), &stop);
    spawn_killer(&queue, &stop);
    eventually(Duration::from_secs(10), "5 dead jobs", || {
        let queue = queue.clone();
        async move { queue.counts().await.unwrap().dead == 5 }
    })
    .await;
    stop.cancel();

    let dead = queue.list(JobState::Dead, 10).await.unwrap();
    assert_eq!(dead.len(), 5);
    assert_eq!(dead[0].last_error.as_ref().unwrap().reason, "permanent");

    // By id: only dead ids move; "alive" (scheduled) and "nope" (unknown) are left alone.
    let revived = queue
        .retry_dead(&["d0".into(), "alive".into(), "nope".into()])
        .await
        .unwrap();
    assert_eq!(revived, ["d0"]);
    let d0 = queue.get("d0").await.unwrap().expect("the job exists");
    assert_eq!(d0.state, JobState::Scheduled);
    assert_eq!(d0.attempts, 0, "attempts are reset");
    assert!(d0.due_at.unwrap() <= std::time::SystemTime::now() + Duration::from_secs(5));
    let alive = queue.get("alive").await.unwrap().expect("the job exists");
    assert_eq!(alive.state, JobState::Scheduled);
    assert!(alive.due_at.unwrap() > std::time::SystemTime::now() + Duration::from_secs(500));

    // All at once.
    assert_eq!(queue.retry_all_dead().await.unwrap(), 4);
    assert_eq!(queue.counts().await.unwrap().dead, 0);
    assert_eq!(queue.counts().await.unwrap().scheduled, 6);

    // Let them die again, then purge.
    let stop = CancellationToken::new();
    support::spawn_promoter(&queue, Duration::from_millis(100), &stop);
    spawn_killer(&queue, &stop);
    eventually(Duration::from_secs(10), "5 dead again", || {
        let queue = queue.clone();
        async move { queue.counts().await.unwrap().dead == 5 }
    })
    .await;
    stop.cancel();

    let purged = queue
        .purge_dead(Purge::Ids(&["d1".into(), "alive".into()]))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert!(queue.get("d1").await.unwrap().is_none());
    assert_eq!(
        queue
            .get("alive")
            .await
            .unwrap()
            .expect("the job exists")
            .state,
        JobState::Scheduled
    );
    // Nothing has been dead for an hour.
    let old = Purge::OlderThan(Duration::from_secs(3600));
    assert_eq!(queue.purge_dead(old).await.unwrap(), 0);
    assert_eq!(
        queue
            .purge_dead(Purge::OlderThan(Duration::ZERO))
            .await
            .unwrap(),
        4
    );
    assert_eq!(queue.purge_dead(Purge::All).await.unwrap(), 0);

    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.counts.dead, 0);
    assert_eq!(stats.counts.scheduled, 1);
    assert_eq!(stats.totals.get(punctual::Event::Scheduled), 6);
    assert_eq!(stats.totals.get(punctual::Event::Dead), 10);
    assert_eq!(stats.totals.get(punctual::Event::Revived), 5);
    assert_eq!(stats.totals.get(punctual::Event::Purged), 5);
    assert_eq!(stats.totals.get(punctual::Event::Promoted), 10);
    // Only "alive" is left: its data and side records; nothing of the purged jobs.
    let mut conn = redis.conn().await;
    let jobs: Vec<String> = redis::AsyncCommands::hkeys(&mut conn, "punctual:{graveyard}:jobs")
        .await
        .unwrap();
    assert_eq!(jobs, ["alive"]);
    let errors: u64 = redis::AsyncCommands::hlen(&mut conn, "punctual:{graveyard}:errors")
        .await
        .unwrap();
    assert_eq!(errors, 0);
}

/// `stats` reports the next due time and, when no promoter runs, how long the earliest job has
/// been overdue; totals count completions and retries.
#[tokio::test]
async fn stats_report_overdue_age_and_totals() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "st").await.unwrap();
    let empty = queue.stats().await.unwrap();
    assert_eq!(empty.next_due, None);
    assert_eq!(empty.oldest_overdue, None);

    queue.schedule(NewJob::new(&1u32)).await.unwrap();
    queue
        .schedule(NewJob::new(&2u32).delay(Duration::from_secs(60)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // let the first job be overdue
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.counts.scheduled, 2);
    let overdue = stats.oldest_overdue.expect("the first job is overdue");
    assert!(overdue >= Duration::from_millis(250), "{overdue:?}");
    assert!(stats.next_due.unwrap() <= stats.server_time);

    let stop = CancellationToken::new();
    support::spawn_promoter(&queue, Duration::from_millis(100), &stop);
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = attempts.clone();
    spawn_worker(
        &queue,
        WorkerConfig::default()
            .set_backoff(punctual::Fixed::new(Duration::from_millis(10)).unwrap()),
        &stop,
        move |job: Job<u32>, _ctx| {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if job.attempt == 1 {
                    Outcome::fail("first try fails")
                } else {
                    Outcome::Done
                }
            }
        },
    );
    eventually(Duration::from_secs(10), "one job completed", || {
        let queue = queue.clone();
        async move { support::total(&queue, punctual::Event::Completed).await == 1 }
    })
    .await;
    stop.cancel();
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.oldest_overdue, None);
    assert_eq!(stats.totals.get(punctual::Event::Scheduled), 2);
    assert_eq!(stats.totals.get(punctual::Event::Retried), 1);
    assert_eq!(
        stats.totals.get(punctual::Event::Promoted),
        2,
        "first run and the retry"
    );
    assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// Opening a queue registers it; a namespace lists its queues, and other prefixes are apart.
#[tokio::test]
async fn the_namespace_registry_lists_opened_queues() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    assert!(ns.queue_names().await.unwrap().is_empty());
    ns.queue("b").await.unwrap();
    Queue::connect(&redis.url(), "a").await.unwrap();
    Queue::connect_with(
        &redis.url(),
        "c",
        QueueConfig::default().set_prefix("other"),
    )
    .await
    .unwrap();
    assert_eq!(ns.queue_names().await.unwrap(), ["a", "b"]);
}

/// The server check reads the real server: the test server runs with persistence off, which
/// is reported; with an allkeys policy, eviction is reported.
#[tokio::test]
async fn the_server_check_reports_persistence_and_eviction() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let info = ns.server_info().await.unwrap();
    assert!(info.version_numbers().unwrap() >= punctual::MIN_REDIS_VERSION);
    assert_eq!(info.problems(), [ServerProblem::NoPersistence]);

    let mut conn = redis.conn().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut conn)
        .await
        .unwrap();
    let problems = ns.server_info().await.unwrap().problems();
    assert!(
        problems.contains(&ServerProblem::Evicting {
            policy: "allkeys-lru".into()
        }),
        "{problems:?}"
    );
    assert!(problems.iter().all(|p| !p.is_fatal()));
}

/// A namespace promoter serves queues that exist when it starts and queues created later: the
/// first job of a new queue wakes it at once (long heartbeat), and the promotion-lag metrics
/// count every job it moved.
#[tokio::test]
async fn a_namespace_promoter_picks_up_new_queues() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let old = ns.queue("old").await.unwrap();
    old.schedule(NewJob::new(&1u32)).await.unwrap();

    let promoter = Promoter::for_namespace(
        ns.clone(),
        PromoterConfig::default().set_heartbeat(Duration::from_secs(600)),
    )
    .unwrap();
    let metrics = promoter.metrics();
    let stop = CancellationToken::new();
    let running = tokio::spawn(promoter.run(stop.clone().cancelled_owned()));

    eventually(Duration::from_secs(5), "old queue promoted", || {
        let old = old.clone();
        async move { old.counts().await.unwrap().ready == 1 }
    })
    .await;

    // A queue made after the promoter started, by another connection.
    let fresh = Queue::connect(&redis.url(), "fresh").await.unwrap();
    fresh
        .schedule(NewJob::new(&2u32).delay(Duration::from_millis(300)))
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "new queue promoted", || {
        let fresh = fresh.clone();
        async move { fresh.counts().await.unwrap().ready == 1 }
    })
    .await;
    // Its counters are recorded after each call returns: read them once it has stopped.
    stop.cancel();
    running.await.unwrap().unwrap();
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot["old"].promoted, 1);
    assert_eq!(snapshot["fresh"].promoted, 1);
    assert_eq!(snapshot["fresh"].lag.count(), 1);
    assert!(snapshot["fresh"].last_error.is_none());
}

/// Pages of a partitioned queue: every job once, in due order across partitions, each page
/// reading at most its limit per partition; a cursor of another partition count is refused;
/// due-time counts add up across partitions and read no job.
#[tokio::test]
async fn pages_cover_a_partitioned_queue_once_in_order() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("paged", 4).await.unwrap();
    let jobs: Vec<NewJob> = (0..250u64)
        .map(|i| {
            NewJob::new(&i)
                .id(format!("job-{i:03}"))
                .delay(Duration::from_secs(60 + (i * 7919) % 250))
        })
        .collect();
    queue.schedule_many(jobs).await.unwrap();
    let mut seen: Vec<(std::time::SystemTime, String)> = Vec::new();
    let mut cursor = punctual::PageCursor::start();
    let mut pages = 0;
    loop {
        let page = queue
            .list_page(JobState::Scheduled, &cursor, 60)
            .await
            .unwrap();
        pages += 1;
        assert!(page.jobs.len() <= 60);
        seen.extend(page.jobs.iter().map(|j| (j.due_at.unwrap(), j.id.clone())));
        match page.next {
            Some(next) => {
                // The text form survives a URL round trip.
                cursor = punctual::PageCursor::parse(&next.to_string()).unwrap();
            }
            None => break,
        }
    }
    assert_eq!(pages, 5, "250 jobs in pages of 60");
    assert_eq!(seen.len(), 250);
    let ids: std::collections::BTreeSet<&String> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), 250, "no job twice");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "in due order");
    let foreign = punctual::PageCursor::parse("1.2").unwrap();
    assert!(queue
        .list_page(JobState::Scheduled, &foreign, 10)
        .await
        .unwrap_err()
        .is_input());
    assert!(punctual::PageCursor::parse("x").is_none());

    let now = std::time::SystemTime::now();
    let edges: Vec<std::time::SystemTime> =
        (0..=5).map(|i| now + Duration::from_secs(60 * i)).collect();
    let counts = queue.due_counts(&edges).await.unwrap();
    assert_eq!(counts.len(), 7);
    assert_eq!(counts.iter().sum::<u64>(), 250);
    assert_eq!(counts[0], 0, "nothing overdue");
    assert!(
        counts[1] <= 1,
        "at most one job due in the first minute: {counts:?}"
    );
    let backwards = [edges[1], edges[0]];
    assert!(queue.due_counts(&backwards).await.unwrap_err().is_input());
}

/// A job's recent events come from its partition's log, oldest first, only its own.
#[tokio::test]
async fn a_jobs_recent_events_are_its_own_in_order() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "ev").await.unwrap();
    assert!(
        queue.job_events("a", 100).await.unwrap().is_empty(),
        "log off"
    );
    queue.set_event_log(Some(100)).await.unwrap();
    for id in ["a", "b"] {
        queue
            .schedule(NewJob::new(&1).id(id).delay(Duration::from_secs(60)))
            .await
            .unwrap();
    }
    queue
        .reschedule("a", punctual::When::In(Duration::from_secs(90)))
        .await
        .unwrap();
    queue.cancel("a").await.unwrap();
    let events = queue.job_events("a", 100).await.unwrap();
    let changes: Vec<&str> = events.iter().map(|e| e.change.as_str()).collect();
    assert_eq!(changes, ["scheduled", "rescheduled", "cancelled"]);
    assert!(events.iter().all(|e| e.id == "a"));
    assert!(queue
        .job_events("a", 1_000_000)
        .await
        .unwrap_err()
        .is_input());
}

/// A job's creation time: a generated id carries it (the stored envelope leaves it out, which
/// keeps a job 32 B smaller at 100 B of data), a job with its own id has it in its envelope.
/// Either way `get` and the worker report when it was scheduled.
#[tokio::test]
async fn a_jobs_creation_time_comes_from_its_id_or_its_envelope() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "made").await.unwrap();
    let before = std::time::SystemTime::now() - Duration::from_millis(1);
    let generated = queue
        .schedule(NewJob::new(&1u32).delay(Duration::from_secs(60)))
        .await
        .unwrap()
        .id;
    queue
        .schedule(NewJob::new(&2u32).id("mine").delay(Duration::from_secs(60)))
        .await
        .unwrap();
    let after = std::time::SystemTime::now() + Duration::from_millis(1);

    let mut conn = redis.conn().await;
    for (id, fields) in [(generated.as_str(), 0x82u8), ("mine", 0x83)] {
        let info = queue.get(id).await.unwrap().expect("the job exists");
        let made = info.created_at.expect("a creation time");
        assert!(before <= made && made <= after, "{id}: {made:?}");
        let stored: Vec<u8> = redis::cmd("HGET")
            .arg("punctual:{made}:jobs")
            .arg(id)
            .query_async(&mut conn)
            .await
            .unwrap();
        // k and d, plus c for the job with its own id.
        assert_eq!(stored[0], fields, "{id}: map header");
    }
}
