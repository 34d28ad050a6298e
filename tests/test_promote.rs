//! The promoter: on time and never early, FIFO within a millisecond, woken early by an earlier
//! job, silent while nothing is due, exactly-once under racing promoters, and bounded work for
//! huge backlogs. Each test starts its own redis-server.

mod support;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use punctual::metrics::LAG_BUCKETS_MS;
use punctual::{Job, NewJob, Outcome, Promoter, PromoterConfig, Queue, WorkerConfig};
use redis::AsyncCommands;
use support::{eventually, server_ms, server_ms_at, server_us, spawn_worker, RedisServer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Jobs run at their due time: a handler never starts before it (by the Redis clock), and
/// starts well within a generous bound after it.
#[tokio::test]
async fn jobs_run_on_time_and_never_early() {
    support::init_tracing();
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "timely").await.unwrap();

    let mut due = std::collections::HashMap::new();
    for (i, delay_ms) in [300u64, 150, 600, 450, 50, 900].into_iter().enumerate() {
        let job = queue
            .schedule(NewJob::new(&i).delay(Duration::from_millis(delay_ms)))
            .await
            .unwrap();
        let info = queue.get(&job.id).await.unwrap().expect("the job exists");
        due.insert(job.id, ms(info.due_at.unwrap()));
    }

    let stop = CancellationToken::new();
    let promoter = Promoter::new([queue.clone()], PromoterConfig::default()).unwrap();
    tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let url = redis.url();
    spawn_worker(
        &queue,
        WorkerConfig::default(),
        &stop,
        move |job: Job<usize>, _ctx| {
            let tx = tx.clone();
            let url = url.clone();
            async move {
                let started = server_ms_at(&url).await;
                tx.send((job.id, started)).unwrap();
                Outcome::Done
            }
        },
    );

    for _ in 0..due.len() {
        let (id, started) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("every job runs")
            .unwrap();
        let due = due[&id];
        assert!(
            started >= due,
            "job {id} started {} ms early",
            due - started
        );
        assert!(
            started - due < 1000,
            "job {id} started {} ms late",
            started - due
        );
    }
    stop.cancel();
}

/// Jobs due in the same millisecond reach the ready list in the order they were scheduled.
#[tokio::test]
async fn same_millisecond_jobs_keep_scheduling_order() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "fifo").await.unwrap();

    let at = SystemTime::now() + Duration::from_millis(200);
    let mut ids = Vec::new();
    for i in 0..200u32 {
        // One at a time: each call is a separate scheduling event.
        ids.push(queue.schedule(NewJob::new(&i).at(at)).await.unwrap().id);
    }
    eventually(Duration::from_secs(5), "jobs promoted", || {
        let queue = queue.clone();
        async move { Promoter::promote(&queue, 1000).await.unwrap().promoted > 0 }
    })
    .await;
    let ready: Vec<String> = conn.lrange("punctual:{fifo}:ready", 0, -1).await.unwrap();
    assert_eq!(ready, ids);
}

/// A promoter sleeping until a far-away head is woken at once when an earlier job arrives.
#[tokio::test]
async fn promoter_wakes_early_for_an_earlier_job() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "wake").await.unwrap();
    queue
        .schedule(NewJob::new(&0).delay(Duration::from_secs(3600)))
        .await
        .unwrap();

    // EVALSHA calls so far (the schedule call's; a NOSCRIPT answer may count as one).
    let before = redis.calls_of("evalsha").await;

    let stop = CancellationToken::new();
    let config = PromoterConfig::default().set_heartbeat(Duration::from_secs(600));
    let promoter = Promoter::new([queue.clone()], config).unwrap();
    tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    // Let it make its first pass and go to sleep until the head, an hour away: its promote.lua
    // has run once two more EVALSHA calls are counted (the first may be answered NOSCRIPT;
    // otherwise the second is the pass's trim.lua).
    eventually(Duration::from_secs(5), "first promoter pass", || async {
        redis.calls_of("evalsha").await >= before + 2
    })
    .await;

    let job = queue
        .schedule(NewJob::new(&1).delay(Duration::from_millis(100)))
        .await
        .unwrap();
    let due = ms(queue
        .get(&job.id)
        .await
        .unwrap()
        .expect("the job exists")
        .due_at
        .unwrap());
    eventually(
        Duration::from_secs(5),
        "the earlier job is promoted",
        || {
            let queue = queue.clone();
            async move { queue.counts().await.unwrap().ready == 1 }
        },
    )
    .await;
    let promoted_by = server_ms(&mut conn).await;
    assert!(promoted_by >= due);
    assert!(
        promoted_by - due < 2000,
        "promoted {} ms after due",
        promoted_by - due
    );

    // Asleep until the hour-away head again. Two jobs of one call share the new earliest due
    // time, and the head is the one with the smaller id, which came second: still a wake.
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(server_ms(&mut conn).await + 100);
    let jobs = ["tie-b", "tie-a"].map(|id| NewJob::new(&2).id(id).at(at));
    queue.schedule_many(jobs).await.unwrap();
    eventually(Duration::from_secs(5), "the tied jobs are promoted", || {
        let queue = queue.clone();
        async move { queue.counts().await.unwrap().ready == 3 }
    })
    .await;
    let late = server_ms(&mut conn).await - ms(at);
    assert!(late < 2000, "promoted {late} ms after due");
    stop.cancel();
}

/// With nothing due for an hour, a running promoter and worker send (almost) no commands:
/// the promoter sleeps until its heartbeat and the worker blocks in BLMOVE.
#[tokio::test]
async fn idle_promoter_and_worker_do_not_poll() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "idle").await.unwrap();
    queue
        .schedule_many((0..100u32).map(|i| NewJob::new(&i).delay(Duration::from_secs(3600))))
        .await
        .unwrap();

    let stop = CancellationToken::new();
    let promoter = Promoter::new([queue.clone()], PromoterConfig::default()).unwrap();
    tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    spawn_worker(
        &queue,
        WorkerConfig::default(),
        &stop,
        |_job: Job<u32>, _ctx| async { Outcome::Done },
    );
    // Wait until both are settled: the worker is blocked in BLMOVE.
    eventually(Duration::from_secs(5), "worker blocked", || async {
        redis.blocked_clients().await == 1
    })
    .await;
    let sent = redis.commands_during(Duration::from_secs(3)).await;
    // Heartbeat and idle wait are 5 s each: in 3 s at most one of each may fire.
    assert!(sent <= 3, "{sent} commands in 3 s while idle");
    stop.cancel();
}

/// Five promoters racing over 20,000 due jobs promote every job exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_promoters_promote_each_job_exactly_once() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "race").await.unwrap();
    let at = SystemTime::now() + Duration::from_millis(500);
    let jobs = (0..20_000u32).map(|i| {
        // Spread over 200 ms so promoters overlap on partial batches, too.
        NewJob::new(&i).at(at + Duration::from_millis(u64::from(i % 200)))
    });
    let ids: HashSet<String> = queue
        .schedule_many(jobs)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().id)
        .collect();
    assert_eq!(ids.len(), 20_000);

    let mut racers = Vec::new();
    for _ in 0..5 {
        // Each promoter on its own connection, as separate processes would be.
        let queue = Queue::connect(&redis.url(), "race").await.unwrap();
        racers.push(tokio::spawn(async move {
            let mut promoted = 0u64;
            loop {
                promoted += Promoter::promote(&queue, 500).await.unwrap().promoted;
                if queue.counts().await.unwrap().scheduled == 0 {
                    return promoted;
                }
            }
        }));
    }
    let mut total = 0;
    for racer in racers {
        total += racer.await.unwrap();
    }
    assert_eq!(total, 20_000, "promotions counted by the promoters");
    let ready: Vec<String> = conn.lrange("punctual:{race}:ready", 0, -1).await.unwrap();
    assert_eq!(ready.len(), 20_000, "entries in ready");
    let unique: HashSet<String> = ready.into_iter().collect();
    assert_eq!(unique, ids, "each job exactly once");
}

/// 50,000 jobs due at the same instant drain through promoter and worker without a script
/// error (each promote call moves a bounded batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_jobs_due_at_once_drain() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "herd").await.unwrap();
    let at = SystemTime::now() + Duration::from_millis(300);
    let results = queue
        .schedule_many((0..50_000u32).map(|i| NewJob::new(&i).at(at)))
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.is_ok()));

    let stop = CancellationToken::new();
    let promoter = Promoter::new([queue.clone()], PromoterConfig::default()).unwrap();
    let promoter = tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default().set_concurrency(64),
        &stop,
        move |job: Job<u32>, _ctx| {
            let tx = tx.clone();
            async move {
                tx.send(job.data).unwrap();
                Outcome::Done
            }
        },
    );
    let mut seen = HashSet::new();
    while seen.len() < 50_000 {
        let n = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("jobs keep draining")
            .unwrap();
        seen.insert(n);
    }
    eventually(Duration::from_secs(10), "all acked", || {
        let queue = queue.clone();
        async move { queue.counts().await.unwrap() == Default::default() }
    })
    .await;
    stop.cancel();
    promoter.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
}

/// `promote.lua` counts promotion lags into the histogram's buckets itself (the reply stays a
/// few integers however many jobs move): jobs overdue by about 3 s, 40 s and 100 s land in the
/// 5 s, 60 s and overflow buckets, with an exact count, a sum and a max to match.
#[tokio::test]
async fn promotion_lags_are_counted_into_buckets_by_the_script() {
    let redis = RedisServer::start();
    let config = punctual::QueueConfig::default().set_past_tolerance(None);
    let queue = Queue::connect_with(&redis.url(), "lags", config)
        .await
        .unwrap();
    let now = server_ms(&mut redis.conn().await).await;
    let at = |ago_ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(now - ago_ms);
    let jobs =
        [100_000, 40_000, 40_000, 3_000, 3_000, 3_000].map(|ago| NewJob::new(&ago).at(at(ago)));
    queue.schedule_many(jobs).await.unwrap();

    let report = Promoter::promote(&queue, 1000).await.unwrap();
    assert_eq!(report.promoted, 6);
    assert_eq!(report.lag.count(), 6);
    // Each lag is its offset plus the few ms between scheduling and promoting.
    assert!(
        (100_000..101_000).contains(&report.max_lag_ms),
        "{report:?}"
    );
    let sum = report.lag.sum_ms();
    assert!((189_000..196_000).contains(&sum), "sum {sum}");
    let cumulative = report.lag.cumulative();
    let at_most = |bound: u64| {
        cumulative
            .iter()
            .find(|(b, _)| *b == Some(bound))
            .map(|&(_, n)| n)
            .unwrap()
    };
    assert_eq!(at_most(2_000), 0);
    assert_eq!(at_most(5_000), 3);
    assert_eq!(at_most(30_000), 3);
    assert_eq!(at_most(60_000), 5);
    assert_eq!(cumulative.last(), Some(&(None, 6)));
}

/// Jobs that share a due time (a burst) are read as ids and share one score, and jobs with due
/// times of their own are read with their scores (`promote.lua`): either way each call takes
/// at most its batch, oldest first and in id order within an instant, with exact lags. Five
/// jobs due 29 s ago, three 19 s ago and one 9 s ago, promoted by batches of 1 to 4 (so calls
/// end inside and at the edge of each instant) and of 100, at the protocol level.
#[tokio::test]
async fn bursts_and_single_due_times_are_promoted_oldest_first_within_the_batch() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let config = punctual::QueueConfig::default().set_past_tolerance(None);
    let script = redis::Script::new(include_str!("../lua/promote.lua"));
    let order = ["a1", "a2", "a3", "a4", "a5", "b1", "b2", "b3", "c1"];
    let ago = |id: &str| match &id[..1] {
        "a" => 29_000,
        "b" => 19_000,
        _ => 9_000,
    };
    for batch in [1, 2, 3, 4, 100] {
        let name = format!("burst{batch}");
        let key = |part: &str| format!("punctual:{{{name}}}:{part}");
        let queue = Queue::connect_with(&redis.url(), &name, config.clone())
            .await
            .unwrap();
        let now = server_ms(&mut conn).await;
        let at = |ago_ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(now - ago_ms);
        // Scheduled out of order: the order of due times and ids is what counts.
        let jobs = ["c1", "b3", "a5", "b1", "a2", "a1", "b2", "a4", "a3"]
            .map(|id| NewJob::new(&id).id(id).at(at(ago(id))));
        queue.schedule_many(jobs).await.unwrap();

        // The keys and arguments in the order of promote.lua's header.
        let parts = [
            "scheduled",
            "ready",
            "running",
            "leases",
            "attempts",
            "errors",
            "stats",
            "meta",
            "due",
            "dead",
            "jobs",
            "opts",
            "ranked",
            "bell",
            "events",
        ];
        let (mut moved, mut sum, mut max, mut within) = (0, 0, 0, [0u64; 3]);
        while moved < order.len() {
            let mut call = script.prepare_invoke();
            for part in parts {
                call.key(key(part));
            }
            call.arg(batch).arg(1).arg(key("ended"));
            let reply: Vec<i64> = call.invoke_async(&mut conn).await.unwrap();
            assert_eq!(reply.len(), 10 + LAG_BUCKETS_MS.len() + 1);
            let promoted = reply[1] as usize;
            assert_eq!(promoted, batch.min(order.len() - moved), "batch {batch}");
            moved += promoted;
            let ready: Vec<String> = conn.lrange(key("ready"), 0, -1).await.unwrap();
            assert_eq!(ready, order[..moved], "batch {batch}");
            max = max.max(reply[5]);
            sum += reply[6];
            // Lags of at most 5 s, 10 s and 30 s: the counts of the buckets up to that bound.
            for (n, bound) in within.iter_mut().zip([5_000, 10_000, 30_000]) {
                let last = LAG_BUCKETS_MS.iter().position(|&b| b == bound).unwrap();
                *n += reply[10..=10 + last].iter().sum::<i64>() as u64;
            }
        }
        // Each lag is its offset plus the few ms between scheduling and promoting.
        let offsets: i64 = order.iter().map(|id| ago(id) as i64).sum();
        assert!(
            (offsets..offsets + 9 * 1_000).contains(&sum),
            "batch {batch}: lag sum {sum}, offsets {offsets}"
        );
        assert!(
            (29_000..30_000).contains(&max),
            "batch {batch}: max lag {max}"
        );
        assert_eq!(
            within,
            [0, 1, 9],
            "batch {batch}: lags within 5 s, 10 s, 30 s"
        );
        let left: u64 = conn.zcard(key("scheduled")).await.unwrap();
        assert_eq!(left, 0);
    }
}

/// The time until the next due job is counted from the server's clock to the microsecond, not
/// from its millisecond rounded down (which made the promoter sleep up to 1 ms too long), and
/// from the reply's arrival less half the call's round trip (when the server read its clock,
/// about), not from the reply (which made every sleep a tenth of a millisecond too long): it is
/// at most the due time minus the server's time before the call, at least that minus twice the
/// time the call took as the server saw it (the first call loads the script: its round trip is
/// two), and it is not always a whole number of milliseconds.
#[tokio::test]
async fn the_sleep_until_the_next_job_is_exact_to_the_microsecond() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let queue = Queue::connect(&redis.url(), "exact").await.unwrap();
    let due_ms = server_ms(&mut conn).await + 60_000;
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(due_ms);
    queue.schedule(NewJob::new(&1).at(at)).await.unwrap();
    let mut fractions = Vec::new();
    for _ in 0..5 {
        let before = server_us(&mut conn).await;
        let report = Promoter::promote(&queue, 1000).await.unwrap();
        let after = server_us(&mut conn).await;
        let next_in = report.next_in.unwrap().as_micros() as u64;
        let due_us = due_ms * 1000;
        assert!(
            (due_us - after - (after - before)..=due_us - before).contains(&next_in),
            "next_in {next_in} µs, due {due_us}, server before {before}, after {after}"
        );
        fractions.push(next_in % 1000);
    }
    assert!(fractions.iter().any(|&f| f != 0), "{fractions:?}");
}

/// The promoter holds no jobs, so it stops as soon as it is asked, even in the middle of a
/// Redis call: with the server pausing writes for 5 s, its promote.lua call hangs, and `run`
/// still returns within a second of the shutdown (it used to wait for the call).
#[tokio::test]
async fn a_promoter_stops_at_once_even_while_its_call_hangs() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "hang").await.unwrap();
    queue
        .schedule(NewJob::new(&0).delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let config = PromoterConfig::default().set_heartbeat(Duration::from_millis(20));
    let promoter = Promoter::new([queue.clone()], config).unwrap();
    let running = tokio::spawn(promoter.run(stop.clone().cancelled_owned()));

    for node in redis.each_node() {
        let mut conn = node
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(5000)
            .arg("WRITE")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // A paused call shows as a blocked client; the heartbeat makes the next one at once.
    eventually(
        Duration::from_secs(3),
        "the promoter's call to hang",
        || async { redis.info("clients").await.contains("blocked_clients:1") },
    )
    .await;
    let asked = std::time::Instant::now();
    stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(1), running).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "{stopped:?} after {:?}",
        asked.elapsed()
    );
}
