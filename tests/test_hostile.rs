//! Hostile input against a real Redis: arbitrary bytes where an envelope should be, due times
//! anywhere in the accepted range, huge data, and queue names and ids made to break keys.
//! (The pure properties, backoff maths, time conversion and envelope decoding, are proptests
//! next to their code in src/.)

mod support;

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use punctual::{Error, NewJob, Queue, QueueConfig, When, WorkerConfig, MAX_DELAY};
use redis::AsyncCommands;
use support::{eventually, run_jobs, server_ms, RedisServer};

const LIMIT: Duration = Duration::from_secs(20);

/// 200 random byte strings stored as jobs (as a foreign producer or a damaged write could):
/// each goes to the dead set as "undecodable", none crashes the worker, and a good job
/// scheduled after them still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_bytes_as_envelopes_go_to_the_dead_set() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "fuzz").await.unwrap();
    let mut runner = TestRunner::new(Config::default());
    let bytes = proptest::collection::vec(any::<u8>(), 0..300);
    let mut garbage = Vec::new();
    for i in 0..200 {
        let value = bytes.new_tree(&mut runner).unwrap().current();
        if punctual::bench_support::decode_envelope(&value).is_ok() {
            continue; // astronomically unlikely, but then it is not garbage
        }
        let id = format!("garbage-{i}");
        let _: () = conn.hset("punctual:{fuzz}:jobs", &id, value).await.unwrap();
        let _: () = conn
            .zadd("punctual:{fuzz}:scheduled", &id, 0)
            .await
            .unwrap();
        garbage.push(id);
    }
    let mut running = run_jobs::<String>(&queue, WorkerConfig::default());
    eventually(LIMIT, "every garbage job in the dead set", || async {
        queue.counts().await.unwrap().dead == garbage.len() as u64
    })
    .await;
    let errors: Vec<String> = conn.hvals("punctual:{fuzz}:errors").await.unwrap();
    assert_eq!(errors.len(), garbage.len());
    for record in errors {
        assert!(record.contains("\"reason\":\"undecodable\""), "{record}");
    }
    queue.schedule(NewJob::new("still alive")).await.unwrap();
    assert_eq!(running.next().await.data, "still alive");
    assert!(running.is_running());
    running.stop().await;
}

/// Due times anywhere in the accepted range become exactly the score they should: a relative
/// delay is the server's clock plus the delay (never before now, never rounded by the
/// double), an absolute time is itself; just past the range is a typed error.
#[test]
fn scores_are_exact_across_the_whole_range() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let redis = RedisServer::start();
    let (queue, conn) = runtime.block_on(async {
        let config = QueueConfig::default().set_past_tolerance(None);
        (
            Queue::connect_with(&redis.url(), "scores", config)
                .await
                .unwrap(),
            redis.conn().await,
        )
    });
    let max = MAX_DELAY.as_millis() as u64;
    let mut runner = TestRunner::new(Config::with_cases(128));
    runner
        .run(&(0..=max, any::<bool>()), |(ms, absolute)| {
            // A clone per case: the runner takes a `Fn`, and multiplexed connections clone.
            let mut conn = conn.clone();
            runtime.block_on(async {
                let before = server_ms(&mut conn).await;
                let when = if absolute {
                    When::At(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
                } else {
                    When::In(Duration::from_millis(ms))
                };
                let job = queue.schedule(NewJob::new(&0).when(when)).await.unwrap();
                let after = server_ms(&mut conn).await;
                let score: f64 = conn
                    .zscore("punctual:{scores}:scheduled", &job.id)
                    .await
                    .unwrap();
                prop_assert_eq!(score.fract(), 0.0);
                let score = score as u64;
                if absolute {
                    prop_assert_eq!(score, ms);
                } else {
                    // A delay counts from the server's whole-ms clock plus one (never early).
                    let plus = u64::from(ms > 0);
                    prop_assert!(score >= before + ms + plus && score <= after + ms + plus);
                }
                queue.cancel(&job.id).await.unwrap();
                Ok(())
            })
        })
        .unwrap();
    runtime.block_on(async {
        let err = queue
            .schedule(NewJob::new(&0).delay(MAX_DELAY + Duration::from_millis(1)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DelayOverflow { .. }), "{err}");
    });
}

/// Data at the payload limit is stored and runs; one byte more is refused before anything
/// is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_data_runs_up_to_the_limit_and_is_refused_past_it() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "huge").await.unwrap();
    // A msgpack bin of n bytes costs n + 5 bytes: fill the 1 MiB default exactly.
    let limit = 1024 * 1024;
    let at_limit = serde_bytes::ByteBuf::from(vec![0xab; limit - 5]);
    let over = serde_bytes::ByteBuf::from(vec![0xab; limit - 4]);
    let err = queue.schedule(NewJob::new(&over)).await.unwrap_err();
    assert!(
        matches!(err, Error::PayloadTooLarge { size, limit: l, .. } if size == limit + 1 && l == limit),
        "{err}"
    );
    let job = queue.schedule(NewJob::new(&at_limit)).await.unwrap();
    let mut running = run_jobs::<serde_bytes::ByteBuf>(&queue, WorkerConfig::default());
    let ran = running.next().await;
    assert_eq!((ran.id, ran.data.len()), (job.id, limit - 5));
    running.stop().await;
    assert_eq!(queue.counts().await.unwrap().scheduled, 0);
}

/// Queue names that would move the hash tag or make untypeable keys are refused; ids are
/// never part of a key, so any printable text is stored and handed back as it was, and
/// every key written stays inside its queue's hash tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_ids_never_make_a_key_outside_the_hash_tag() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let long = "q".repeat(10 * 1024);
    for name in [
        "a{b}",
        "}",
        "{",
        "with space",
        "tab\tname",
        "new\nline",
        "star*glob",
        "q?",
        "é",
        long.as_str(),
        "",
    ] {
        let err = Queue::connect(&redis.url(), name).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidQueueName { .. }),
            "{name:?}: {err}"
        );
        assert!(
            err.to_string().len() < 300,
            "the error repeats the whole name"
        );
    }
    let err = Queue::connect_with(&redis.url(), "q", QueueConfig::default().set_prefix("p{x}"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidQueueName { .. }), "{err}");

    // Colons and dots are allowed, and stay inside the braces.
    let queue = Queue::connect(&redis.url(), "a:b.c").await.unwrap();
    let odd_ids = [
        "}{".to_owned(),
        "punctual:{other}:jobs".to_owned(),
        "spaces and ✉ emoji".to_owned(),
        "'\"quotes\"'".to_owned(),
        "x".repeat(256),
    ];
    for bad in ["", "nul\0byte", "new\nline", "bell\u{7}"] {
        let err = queue.schedule(NewJob::new(&0).id(bad)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidJobId { .. }), "{bad:?}: {err}");
    }
    let err = queue
        .schedule(NewJob::new(&0).id("x".repeat(257)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidJobId { .. }), "{err}");
    for id in &odd_ids {
        assert!(
            queue
                .schedule(NewJob::new(&0).id(id))
                .await
                .unwrap()
                .created
        );
    }
    let mut running = run_jobs::<u32>(&queue, WorkerConfig::default());
    let mut ran = Vec::new();
    for _ in &odd_ids {
        ran.push(running.next().await.id);
    }
    ran.sort();
    let mut expected = odd_ids.to_vec();
    expected.sort();
    assert_eq!(ran, expected);
    for id in &odd_ids {
        eventually(LIMIT, "the ack", || async {
            queue.get(id).await.unwrap().is_none()
        })
        .await;
    }
    running.stop().await;

    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    for key in &keys {
        assert!(
            key == "punctual:queues" || key.starts_with("punctual:{a:b.c}:"),
            "key outside the hash tag: {key}"
        );
    }
}
