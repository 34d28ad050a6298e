//! Producer-side behaviour: schedule, bulk schedule, get, cancel, reschedule, idempotent ids,
//! bad input, and the key layout. Each test starts its own redis-server.

mod support;

use std::time::{Duration, SystemTime};

use punctual::{
    Cancelled, Error, Exponential, JobState, NewJob, Promoter, Queue, QueueConfig, Rescheduled,
    When,
};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use support::{server_ms, RedisServer};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Email {
    to: String,
    subject: String,
}

fn email(n: u32) -> Email {
    Email {
        to: format!("user{n}@example.com"),
        subject: "hello".into(),
    }
}

/// A relative delay is resolved by the Redis server's clock, and get() reports the job's state,
/// due time, kind, attempts and data.
#[tokio::test]
async fn schedule_in_resolves_due_time_on_the_server_and_get_reports_it() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "emails").await.unwrap();

    let before = server_ms(&mut conn).await;
    let job = queue
        .schedule(
            NewJob::new(&email(1))
                .delay(Duration::from_secs(90))
                .max_attempts(4),
        )
        .await
        .unwrap();
    let after = server_ms(&mut conn).await;
    assert!(job.created);
    assert_eq!(job.id.len(), 26);

    let info = queue.get(&job.id).await.unwrap().expect("the job exists");
    assert_eq!(info.state, JobState::Scheduled);
    let due = info
        .due_at
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        // The server's whole-ms clock, plus one: never due before now + 90 s.
        (before + 90_001..=after + 90_001).contains(&due),
        "due {due} not within [{}, {}]",
        before + 90_000,
        after + 90_000
    );
    assert_eq!(info.kind.as_deref(), Some("Email"));
    assert_eq!(info.attempts, 0);
    assert_eq!(info.max_attempts, Some(4));
    assert_eq!(info.data_as::<Email>().unwrap(), email(1));
    assert!(info.last_error.is_none());

    let missing = queue.get("no-such-job").await.unwrap();
    assert!(missing.is_none(), "no such job: {missing:?}");
}

/// Scheduling a caller-chosen id twice creates one job and says so; the first job's data wins.
#[tokio::test]
async fn caller_ids_are_idempotent() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "emails").await.unwrap();

    let first = queue
        .schedule(
            NewJob::new(&email(1))
                .id("welcome-42")
                .delay(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let second = queue
        .schedule(
            NewJob::new(&email(2))
                .id("welcome-42")
                .delay(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(second.id, "welcome-42");
    assert_eq!(queue.counts().await.unwrap().scheduled, 1);
    let info = queue
        .get("welcome-42")
        .await
        .unwrap()
        .expect("the job exists");
    assert_eq!(info.data_as::<Email>().unwrap(), email(1));
}

/// The bulk form schedules each job at its own time in few round trips, and reports
/// duplicates per job.
#[tokio::test]
async fn schedule_many_sets_each_jobs_own_time() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "bulk").await.unwrap();

    let jobs = (0..1000u64).map(|i| {
        NewJob::new(&i)
            .id(format!("job-{i}"))
            .delay(Duration::from_secs(100 + i))
    });
    let before = server_ms(&mut conn).await;
    let results = queue.schedule_many(jobs).await.unwrap();
    let after = server_ms(&mut conn).await;
    assert_eq!(results.len(), 1000);
    assert!(results.iter().all(|r| r.as_ref().unwrap().created));

    for i in [0u64, 1, 499, 999] {
        let score: f64 = conn
            .zscore("punctual:{bulk}:scheduled", format!("job-{i}"))
            .await
            .unwrap();
        let score = score as u64;
        let offset = (100 + i) * 1000;
        assert!(
            (before + offset..=after + offset).contains(&score),
            "job-{i}"
        );
    }

    // Again with two new jobs among the old ones: only those are created.
    let again = queue
        .schedule_many((998..1002u64).map(|i| NewJob::new(&i).id(format!("job-{i}"))))
        .await
        .unwrap();
    let created: Vec<bool> = again.iter().map(|r| r.as_ref().unwrap().created).collect();
    assert_eq!(created, [false, false, true, true]);
    assert_eq!(queue.counts().await.unwrap().scheduled, 1002);
}

/// Cancel removes a job that is scheduled, ready or dead, refuses a running one, and says
/// which it was.
#[tokio::test]
async fn cancel_reports_what_happened_in_each_state() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "c").await.unwrap();

    queue
        .schedule(NewJob::new(&1).id("later").delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    queue.schedule(NewJob::new(&2).id("now")).await.unwrap();
    Promoter::promote(&queue, 100).await.unwrap();
    assert_eq!(
        queue
            .get("now")
            .await
            .unwrap()
            .expect("the job exists")
            .state,
        JobState::Ready
    );

    assert_eq!(
        queue.cancel("later").await.unwrap(),
        Cancelled::Removed(JobState::Scheduled)
    );
    assert_eq!(
        queue.cancel("now").await.unwrap(),
        Cancelled::Removed(JobState::Ready)
    );
    assert_eq!(queue.cancel("now").await.unwrap(), Cancelled::NotFound);
    assert_eq!(queue.counts().await.unwrap(), Default::default());
    let jobs: usize = conn.hlen("punctual:{c}:jobs").await.unwrap();
    assert_eq!(jobs, 0, "cancelled jobs' data must be deleted");

    // A running job (held under a lease) is left where it is: its cancellation is asked, for
    // its worker to act on (tests/test_steer.rs).
    queue.schedule(NewJob::new(&3).id("busy")).await.unwrap();
    Promoter::promote(&queue, 100).await.unwrap();
    let _: () = redis::cmd("LPOP")
        .arg("punctual:{c}:ready")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = conn
        .zadd("punctual:{c}:running", "busy", 9e12)
        .await
        .unwrap();
    assert_eq!(queue.cancel("busy").await.unwrap(), Cancelled::Requested);
    assert_eq!(
        queue
            .get("busy")
            .await
            .unwrap()
            .expect("the job exists")
            .state,
        JobState::Running
    );
}

/// Reschedule moves scheduled and ready jobs to a new time, brings dead jobs back with their
/// attempts reset, and refuses running and unknown jobs.
#[tokio::test]
async fn reschedule_moves_jobs_between_states() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "r").await.unwrap();

    queue
        .schedule(NewJob::new(&1).id("a").delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    let before = server_ms(&mut conn).await;
    let moved = queue
        .reschedule("a", When::In(Duration::from_secs(10)))
        .await
        .unwrap();
    let Rescheduled::Moved { from, due_at } = moved else {
        panic!("not moved: {moved:?}")
    };
    assert_eq!(from, JobState::Scheduled);
    let due = due_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(due >= before + 10_000 && due < before + 11_000);

    // ready -> scheduled
    queue.schedule(NewJob::new(&2).id("b")).await.unwrap();
    Promoter::promote(&queue, 100).await.unwrap();
    let moved = queue
        .reschedule("b", When::In(Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(matches!(
        moved,
        Rescheduled::Moved {
            from: JobState::Ready,
            ..
        }
    ));
    let ready: usize = conn.llen("punctual:{r}:ready").await.unwrap();
    assert_eq!(ready, 0);

    // dead -> scheduled, attempts reset
    let _: () = conn.zrem("punctual:{r}:scheduled", "b").await.unwrap();
    let _: () = conn.zadd("punctual:{r}:dead", "b", 1).await.unwrap();
    let _: () = conn.hset("punctual:{r}:attempts", "b", 5).await.unwrap();
    assert_eq!(
        queue.get("b").await.unwrap().expect("the job exists").state,
        JobState::Dead
    );
    let moved = queue.reschedule("b", When::NOW).await.unwrap();
    assert!(matches!(
        moved,
        Rescheduled::Moved {
            from: JobState::Dead,
            ..
        }
    ));
    let info = queue.get("b").await.unwrap().expect("the job exists");
    assert_eq!(info.state, JobState::Scheduled);
    assert_eq!(info.attempts, 0);

    // running: refused
    let _: () = conn.zrem("punctual:{r}:scheduled", "b").await.unwrap();
    let _: () = conn.zadd("punctual:{r}:running", "b", 9e12).await.unwrap();
    assert_eq!(
        queue.reschedule("b", When::NOW).await.unwrap(),
        Rescheduled::Running
    );
    assert_eq!(
        queue.reschedule("nope", When::NOW).await.unwrap(),
        Rescheduled::NotFound
    );
}

/// Bad input gets a typed error and writes nothing.
#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;

    for name in ["", "has space", "br{ace}", &"q".repeat(10_000)] {
        let err = Queue::connect(&redis.url(), name).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidQueueName { .. }),
            "{name:?}: {err}"
        );
    }
    let err = Queue::connect("http//nonsense", "q").await.unwrap_err();
    assert!(matches!(err, Error::InvalidUrl { .. }), "{err}");

    let config = QueueConfig::default().set_max_payload_bytes(1000);
    let queue = Queue::connect_with(&redis.url(), "q", config)
        .await
        .unwrap();

    let err = queue
        .schedule(NewJob::new(&vec![7u8; 5000]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PayloadTooLarge { size, limit: 1000, .. } if size > 5000),
        "{err}"
    );
    let err = queue
        .schedule(NewJob::new(&1).delay(Duration::MAX))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DelayOverflow { .. }), "{err}");
    let err = queue
        .schedule(NewJob::new(&1).at(SystemTime::now() - Duration::from_secs(3600)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InThePast { .. }), "{err}");
    assert!(err.to_string().contains("in the past"), "{err}");
    let err = queue
        .schedule(NewJob::new(&1).max_attempts(0))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
    for id in ["", "line\nbreak", &"i".repeat(300)] {
        let err = queue.schedule(NewJob::new(&1).id(id)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidJobId { .. }), "{id:?}: {err}");
    }
    // One bad job in a batch fails the whole batch before anything is sent.
    let err = queue
        .schedule_many([NewJob::new(&1).id("fine"), NewJob::new(&vec![0u8; 2000])])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }));

    assert_eq!(queue.counts().await.unwrap(), Default::default());
    let jobs: usize = conn.hlen("punctual:{q}:jobs").await.unwrap();
    assert_eq!(jobs, 0);

    // A past time within the tolerance is accepted and due at once.
    let ok = queue
        .schedule(NewJob::new(&1).at(SystemTime::now() - Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(ok.created);
    // And with the tolerance off, any past time is.
    let lenient = Queue::connect_with(
        &redis.url(),
        "q",
        QueueConfig::default().set_past_tolerance(None),
    )
    .await
    .unwrap();
    let old = lenient
        .schedule(NewJob::new(&1).at(SystemTime::UNIX_EPOCH + Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(old.created);
}

/// An unreachable Redis is a connection error naming the queue, not a panic or a hang.
#[tokio::test]
async fn unreachable_redis_is_a_clear_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("redis://:hunter2@127.0.0.1:{port}/");
    let started = std::time::Instant::now();
    let err = Queue::connect(&url, "q").await.unwrap_err();
    assert!(err.is_connection_error(), "{err}");
    assert!(err.to_string().contains("connect"), "{err}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// The storage format is recorded at first connect and a foreign one is refused.
#[tokio::test]
async fn storage_format_is_versioned() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    Queue::connect(&redis.url(), "v").await.unwrap();
    let format: String = conn.hget("punctual:{v}:meta", "format").await.unwrap();
    assert_eq!(format, "1");

    let _: () = conn
        .hset("punctual:{v}:meta", "format", "99")
        .await
        .unwrap();
    let err = Queue::connect(&redis.url(), "v").await.unwrap_err();
    assert!(matches!(err, Error::IncompatibleFormat { .. }), "{err}");
}

/// Every key punctual writes for a queue carries the queue's hash tag, under the prefix, except
/// the namespace's registry of queue names.
#[tokio::test]
async fn all_keys_share_the_queue_hash_tag() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect_with(
        &redis.url(),
        "tagged",
        QueueConfig::default().set_prefix("app"),
    )
    .await
    .unwrap();
    queue
        .schedule(
            NewJob::new(&1).id("x").backoff(
                Exponential::new(Duration::from_millis(10), Duration::from_secs(1)).unwrap(),
            ),
        )
        .await
        .unwrap();
    queue
        .schedule(NewJob::new(&2).delay(Duration::from_secs(600)))
        .await
        .unwrap();
    Promoter::promote(&queue, 10).await.unwrap();
    let keys: Vec<String> = conn.keys("*").await.unwrap();
    assert!(keys.len() >= 4, "{keys:?}");
    for key in keys {
        // The registry of queue names is the one key outside the hash tag; no script uses it.
        if key == "app:queues" {
            let members: Vec<String> = conn.smembers(&key).await.unwrap();
            assert_eq!(members, ["tagged"]);
            continue;
        }
        assert!(key.starts_with("app:{tagged}:"), "{key}");
    }
}

/// Scripts are called by SHA; after the server forgets them (SCRIPT FLUSH, a restart, or a
/// replica just promoted) every call, pipelined ones included, is sent again as EVAL and goes
/// through, and nothing runs twice. Never through SCRIPT LOAD: on a cluster that has no key
/// to route by, and after a failover it went to another node than the call (the call then
/// failed with NOSCRIPT).
#[tokio::test]
async fn calls_survive_a_script_flush() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "flush").await.unwrap();
    queue.schedule(NewJob::new(&0).id("first")).await.unwrap();

    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    // 600 jobs: three script calls in one pipeline, all answered NOSCRIPT, all sent again.
    let results = queue
        .schedule_many((1..=600u32).map(|i| NewJob::new(&i).id(format!("j{i}"))))
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.as_ref().unwrap().created));
    assert_eq!(queue.counts().await.unwrap().scheduled, 601);

    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(Promoter::promote(&queue, 1000).await.unwrap().promoted, 601);
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        queue.cancel("j1").await.unwrap(),
        Cancelled::Removed(JobState::Ready)
    );
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        queue
            .reschedule("j2", When::In(Duration::from_secs(60)))
            .await
            .unwrap(),
        Rescheduled::Moved {
            from: JobState::Ready,
            ..
        }
    ));
    let ready: usize = conn.llen("punctual:{flush}:ready").await.unwrap();
    assert_eq!(
        ready, 599,
        "each job promoted once, one cancelled, one moved back"
    );
    assert_eq!(redis.calls_of("script|load").await, 0);
    assert!(
        redis.calls_of("eval").await >= 6,
        "one EVAL per call answered NOSCRIPT"
    );
}

/// Every future of the public API can be handed to `tokio::spawn` (it is `Send + 'static` once
/// its borrows are moved in): a producer inside a spawned task is the common case.
#[tokio::test]
async fn public_futures_can_be_spawned() {
    fn spawn<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) {
        drop(tokio::spawn(f));
    }
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "spawned").await.unwrap();
    let ns = queue.namespace().clone();
    let q = queue.clone();
    let scheduled = tokio::spawn(async move {
        q.schedule(NewJob::new(&email(1)).id("a")).await.unwrap();
        q.schedule_many([NewJob::new(&email(2))]).await.unwrap();
        q.schedule_each([NewJob::new(&email(3))]).await.unwrap();
        q.reschedule("a", When::NOW).await.unwrap();
        q.cancel("a").await.unwrap()
    });
    assert_eq!(
        scheduled.await.unwrap(),
        Cancelled::Removed(JobState::Scheduled)
    );
    let (q1, q2, q3, q4, q5, q6, q7) = (
        queue.clone(),
        queue.clone(),
        queue.clone(),
        queue.clone(),
        queue.clone(),
        queue.clone(),
        queue.clone(),
    );
    spawn(async move { q1.get("a").await });
    spawn(async move { q2.list(JobState::Ready, 10).await });
    spawn(async move { q3.counts().await });
    spawn(async move { q4.stats().await });
    spawn(async move { q5.retry_dead(&["a".to_owned()]).await });
    spawn(async move { q6.purge_dead(punctual::Purge::All).await });
    spawn(async move { Promoter::promote(&q7, 10).await });
    let n = ns.clone();
    spawn(async move { n.queue_names().await });
    spawn(async move { ns.server_info().await });
}

/// A due time or delay finer than a millisecond is rounded up, never down (the job must never
/// be due before the instant asked for), and a delay counts from the server's clock rounded
/// up: `in` 5 ms is due no earlier than the request's arrival plus 5 ms.
#[tokio::test]
async fn sub_millisecond_due_times_round_up() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "exact").await.unwrap();
    let base = SystemTime::UNIX_EPOCH + Duration::from_millis(server_ms_at(&redis).await + 60_000);
    for (id, fraction) in [("plus-1ns", 1), ("plus-999us", 999_000), ("whole", 0)] {
        let at = base + Duration::from_nanos(fraction);
        let s = queue.schedule(NewJob::new(&1).id(id).at(at)).await.unwrap();
        let due = s.due_at.unwrap();
        assert!(due >= at, "{id}: due {due:?} is before {at:?}");
        let expected = base + Duration::from_millis(u64::from(fraction > 0));
        assert_eq!(due, expected, "{id}");
    }
    let mut conn = redis.conn().await;
    for _ in 0..50 {
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
        let before_us = secs * 1_000_000 + micros;
        let s = queue
            .schedule(NewJob::new(&1).delay(Duration::from_micros(4_500)))
            .await
            .unwrap();
        let due_ms = s
            .due_at
            .unwrap()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            due_ms * 1000 >= before_us + 4_500,
            "due {due_ms} ms is before {before_us} µs + 4.5 ms"
        );
        let moved = queue
            .reschedule(&s.id, When::In(Duration::from_micros(2_100)))
            .await
            .unwrap();
        let Rescheduled::Moved { due_at, .. } = moved else {
            panic!("{moved:?}")
        };
        let due_ms = due_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(due_ms * 1000 >= before_us + 2_100);
    }
}

async fn server_ms_at(redis: &RedisServer) -> u64 {
    let mut conn = redis.conn().await;
    server_ms(&mut conn).await
}
