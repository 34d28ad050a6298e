//! The punctual side of each workload: the library's public API with default settings, one
//! promoter and one worker (default concurrency) on connections of their own, no-op handlers.
//!
//! Every workload also checks what it measured: each job ran exactly once, none started before
//! its due time, and nothing is left in the queue's keys. A failed check panics, because a fast
//! wrong answer is not a result.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use punctual::{Job, NewJob, Outcome, Promoter, PromoterConfig, Queue, Rng, Worker, WorkerConfig};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::stats::percentile;
use crate::{connect, unix_us, used_memory, Clock, Measured, PAYLOAD_BYTES};

/// The job data of every workload: its due time and filler, 100 bytes as MessagePack.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Payload {
    due: u64,
    #[serde(with = "serde_bytes")]
    pad: Vec<u8>,
}

impl Payload {
    /// Filler that makes the encoded payload exactly [`PAYLOAD_BYTES`], whatever `due` is (a
    /// small number encodes shorter, and the filler makes up for it): map header, the name
    /// "due", the number, the name "pad", a bin8 header, the filler. [`check_payload`] checks
    /// the arithmetic against the encoder.
    pub(crate) fn new(due: u64) -> Payload {
        let number = match due {
            0..=127 => 1,
            128..=255 => 2,
            256..=65_535 => 3,
            65_536..=4_294_967_295 => 5,
            _ => 9,
        };
        Payload {
            due,
            pad: vec![b'x'; PAYLOAD_BYTES - (1 + 4 + number + 4 + 2)],
        }
    }
}

/// Panics unless every payload encodes to exactly [`PAYLOAD_BYTES`]: a figure "at 100 B of
/// data" is measured at 100 B.
pub(crate) fn check_payload() {
    for due in [
        0,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        4_294_967_295,
        1 << 40,
        u64::MAX,
    ] {
        let bytes = rmp_serde::to_vec_named(&Payload::new(due)).expect("encode");
        assert_eq!(bytes.len(), PAYLOAD_BYTES, "payload for due {due}");
    }
}

fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The server's clock in unix ms. The server runs on this host, so it is this host's clock;
/// the harness still reads it from Redis, as punctual does.
async fn server_ms(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.expect("TIME");
    secs * 1000 + micros / 1000
}

/// Sleeps until unix time `ms` by this host's clock.
async fn sleep_until_unix_ms(ms: u64) {
    let wait = (ms as i64 * 1000 - unix_us()).max(0) as u64;
    tokio::time::sleep(Duration::from_micros(wait)).await;
}

async fn hash_len(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> usize {
    redis::cmd("HLEN")
        .arg(key)
        .query_async(conn)
        .await
        .expect("HLEN")
}

async fn completed(conn: &mut redis::aio::MultiplexedConnection, queue: &str) -> usize {
    let n: Option<usize> = redis::cmd("HGET")
        .arg(format!("punctual:{{{queue}}}:stats"))
        .arg("completed")
        .query_async(conn)
        .await
        .expect("HGET stats");
    n.unwrap_or(0)
}

/// Counts the jobs a worker's handler ran and wakes [`Ran::all`] once `n` have.
#[derive(Clone)]
struct Ran {
    count: Arc<AtomicUsize>,
    n: usize,
    done: Arc<tokio::sync::Notify>,
}

impl Ran {
    fn new(n: usize) -> Ran {
        Ran {
            count: Arc::new(AtomicUsize::new(0)),
            n,
            done: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// One more job ran (the handler's side).
    fn one(&self) {
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 == self.n {
            self.done.notify_one();
        }
    }

    fn get(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Until every job's handler ran, then until Redis counts every job acknowledged
    /// (`completed`, polled every `poll`). The wait costs Redis nothing until the last
    /// handler ran: polling `completed` all along would add its own commands, one round trip
    /// each, to the Redis CPU the workload is measured by.
    async fn all(
        &self,
        admin: &mut redis::aio::MultiplexedConnection,
        queue: &str,
        poll: Duration,
    ) {
        if self.get() < self.n {
            self.done.notified().await;
        }
        while completed(admin, queue).await < self.n {
            tokio::time::sleep(poll).await;
        }
    }
}

fn spawn_promoter(queue: &Queue, stop: &CancellationToken) -> punctual::metrics::PromoterMetrics {
    let promoter =
        Promoter::new([queue.clone()], PromoterConfig::default()).expect("promoter config");
    let metrics = promoter.metrics();
    tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    metrics
}

/// Runs a worker with default settings on its own connection to queue `name`, with a handler
/// that calls `on_job` and succeeds, until `stop` fires.
async fn spawn_worker(
    url: &str,
    name: &str,
    stop: &CancellationToken,
    on_job: impl Fn(&Job<Payload>) + Send + Sync + 'static,
) -> tokio::task::JoinHandle<punctual::Result<()>> {
    let worker = Worker::new(
        Queue::connect(url, name).await.expect("connect"),
        WorkerConfig::default().set_concurrency(CONCURRENCY.load(Ordering::Relaxed)),
    )
    .expect("worker config");
    tokio::spawn(worker.run(
        move |job: Job<Payload>, _ctx| {
            on_job(&job);
            async { Outcome::Done }
        },
        stop.clone().cancelled_owned(),
    ))
}

/// W1, one call at a time: `n` jobs due 60-120 s ahead, each `schedule` awaited before the
/// next.
pub(crate) async fn w1_one_at_a_time(url: &str, n: usize, run: u64, part: usize) -> Measured {
    let mut admin = connect(url).await;
    let mut rng = Rng::seeded(run);
    let queue = Queue::connect(url, &format!("w1-one-{run}-{part}"))
        .await
        .expect("connect");
    let clock = Clock::start(&mut admin).await;
    for _ in 0..n {
        let delay = Duration::from_millis(60_000 + rng.below(60_000));
        let scheduled = queue
            .schedule(NewJob::new(&Payload::new(0)).delay(delay))
            .await
            .expect("schedule");
        assert!(scheduled.created);
    }
    clock.stop(&mut admin, n).await
}

/// W1, bulk: `n` jobs due 60-120 s ahead in one `schedule_many` call. Also returns the growth
/// of `used_memory` per job.
pub(crate) async fn w1_bulk(url: &str, n: usize, run: u64) -> (Measured, f64) {
    let mut admin = connect(url).await;
    let mut rng = Rng::seeded(run);
    let queue = Queue::connect(url, &format!("w1-bulk-{run}"))
        .await
        .expect("connect");
    let before = used_memory(&mut admin).await;
    let clock = Clock::start(&mut admin).await;
    let jobs = (0..n).map(|_| {
        let delay = Duration::from_millis(60_000 + rng.below(60_000));
        NewJob::new(&Payload::new(0)).delay(delay)
    });
    let results = queue.schedule_many(jobs).await.expect("schedule_many");
    let measured = clock.stop(&mut admin, n).await;
    let after = used_memory(&mut admin).await;
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, Ok(s) if s.created))
            .count(),
        n
    );
    (measured, (after - before) as f64 / n as f64)
}

/// `--steered`: W2's jobs carry an expiry (an `opts` entry each).
pub(crate) static STEERED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// `--priority`: W2's and W3's jobs carry priorities (-9..9 in turn), so their queues rank
/// ready jobs.
pub(crate) static PRIORITY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// `--events`: W2's end-to-end and W3's queues keep an event log (100,000 entries).
pub(crate) static EVENTS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Job `i` with the features `--priority` asks for.
fn featured(job: NewJob, i: usize) -> NewJob {
    if PRIORITY.load(Ordering::Relaxed) {
        job.priority((i % 19) as i8 - 9)
    } else {
        job
    }
}

/// Turns the event log of `queue` on under `--events`.
async fn log_events(queue: &Queue) {
    if EVENTS.load(Ordering::Relaxed) {
        queue
            .set_event_log(Some(100_000))
            .await
            .expect("set event log");
    }
}

/// `--keep-completed`: W2's end-to-end queue keeps its completed jobs.
/// `--concurrency`: the workers' concurrency.
pub(crate) static CONCURRENCY: AtomicUsize = AtomicUsize::new(punctual::DEFAULT_CONCURRENCY);

pub(crate) static KEEP_COMPLETED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Schedules `n` jobs all due at unix ms `due` in bulk (with a max lateness of an hour under
/// `--steered`).
async fn schedule_backlog(queue: &Queue, n: usize, due: u64) {
    let steered = STEERED.load(Ordering::Relaxed);
    let jobs = (0..n).map(|i| {
        let job = featured(NewJob::new(&Payload::new(due)).at(at_ms(due)), i);
        if steered {
            job.max_lateness(Duration::from_secs(3600))
        } else {
            job
        }
    });
    let results = queue.schedule_many(jobs).await.expect("schedule_many");
    assert!(results.iter().all(|r| matches!(r, Ok(s) if s.created)));
}

/// How long the backlog is scheduled ahead of its due instant: the bulk call must be done
/// well before it.
const BACKLOG_LEAD_MS: u64 = 1500;

/// W2, promote-only: a promoter and no worker; seconds from the due instant until the
/// promoter has moved all `n` jobs. Jobs/s.
pub(crate) async fn w2_promote_only(url: &str, n: usize, run: u64) -> Measured {
    let name = format!("w2-promote-{run}");
    let queue = Queue::connect(url, &name).await.expect("connect");
    let mut admin = connect(url).await;
    let stop = CancellationToken::new();
    let metrics = spawn_promoter(&Queue::connect(url, &name).await.expect("connect"), &stop);
    let due = server_ms(&mut admin).await + BACKLOG_LEAD_MS;
    schedule_backlog(&queue, n, due).await;
    let clock = Clock::start_at(&mut admin, due as i64 * 1000).await;
    sleep_until_unix_ms(due).await;
    let promoted = || {
        metrics
            .snapshot()
            .get(&name)
            .map_or(0, |activity| activity.promoted as usize)
    };
    while promoted() < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let measured = clock.stop(&mut admin, n).await;
    stop.cancel();
    // Ready jobs are in the `ready` list, or ranked under `--priority`: `counts` reads both.
    let ready = queue.counts().await.expect("counts").ready as usize;
    assert_eq!(ready, n, "every job promoted exactly once");
    measured
}

/// W2, end to end: promoter and worker; seconds from the due instant until every handler ran
/// and every job was acknowledged. Jobs/s.
pub(crate) async fn w2_end_to_end(url: &str, n: usize, run: u64) -> Measured {
    let name = format!("w2-e2e-{run}");
    let producer = Queue::connect(url, &name).await.expect("connect");
    log_events(&producer).await;
    let keep = KEEP_COMPLETED.load(Ordering::Relaxed);
    if keep {
        let retention =
            punctual::Retention::new(Duration::from_secs(3600), 1_000_000).expect("retention");
        producer
            .set_completed_retention(Some(retention))
            .await
            .expect("set retention");
    }
    let mut admin = connect(url).await;
    let stop = CancellationToken::new();
    spawn_promoter(&Queue::connect(url, &name).await.expect("connect"), &stop);
    let ran = Ran::new(n);
    let counter = ran.clone();
    let worker = spawn_worker(url, &name, &stop, move |_| counter.one()).await;
    let due = server_ms(&mut admin).await + BACKLOG_LEAD_MS;
    schedule_backlog(&producer, n, due).await;
    let clock = Clock::start_at(&mut admin, due as i64 * 1000).await;
    sleep_until_unix_ms(due).await;
    ran.all(&mut admin, &name, Duration::from_millis(1)).await;
    let measured = clock.stop(&mut admin, n).await;
    stop.cancel();
    worker.await.expect("worker task").expect("worker");
    assert_eq!(ran.get(), n, "every job ran exactly once");
    let left = hash_len(&mut admin, &format!("punctual:{{{name}}}:jobs")).await;
    if keep {
        assert_eq!(left, n, "completed jobs are kept");
    } else {
        assert_eq!(left, 0, "acknowledged jobs leave nothing behind");
    }
    measured
}

/// W3's figures for one run, lateness in microseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Lateness {
    pub(crate) jobs: usize,
    pub(crate) p50_us: i64,
    pub(crate) p90_us: i64,
    pub(crate) p99_us: i64,
    pub(crate) max_us: i64,
    pub(crate) early: usize,
    /// Redis CPU (user + system) per job over the whole run: producer, promoter and worker.
    pub(crate) redis_us_per_job: f64,
    /// This process's CPU per job over the whole run (the same clients).
    pub(crate) client_us_per_job: f64,
}

impl Lateness {
    /// The figures of `sorted` lateness samples (µs, ascending).
    pub(crate) fn of(sorted: Vec<i64>) -> Lateness {
        Lateness {
            jobs: sorted.len(),
            p50_us: percentile(&sorted, 50.0),
            p90_us: percentile(&sorted, 90.0),
            p99_us: percentile(&sorted, 99.0),
            max_us: sorted.last().copied().unwrap_or(0),
            early: sorted.iter().filter(|&&late| late < 0).count(),
            redis_us_per_job: 0.0,
            client_us_per_job: 0.0,
        }
    }
}

/// How far ahead of its due time the W3 producer schedules each job.
pub(crate) const PRODUCER_LEAD_MS: u64 = 2000;
/// The W3 producer sends the jobs due in each slice of this length in one bulk call.
pub(crate) const PRODUCER_SLICE_MS: u64 = 100;

/// W3: jobs due at a steady `rate` per second for `secs` seconds, scheduled by a producer
/// running alongside ([`PRODUCER_LEAD_MS`] ahead); lateness = handler start minus due time.
pub(crate) async fn w3_lateness(url: &str, rate: u64, secs: u64, run: u64) -> Lateness {
    let name = format!("w3-{rate}-{run}");
    let producer = Queue::connect(url, &name).await.expect("connect");
    log_events(&producer).await;
    let mut admin = connect(url).await;
    let stop = CancellationToken::new();
    spawn_promoter(&Queue::connect(url, &name).await.expect("connect"), &stop);
    let total = (rate * secs) as usize;
    let samples = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let all_ran = Arc::new(tokio::sync::Notify::new());
    let (record, done) = (samples.clone(), all_ran.clone());
    let worker = spawn_worker(url, &name, &stop, move |job| {
        let late = unix_us() - job.data.due as i64 * 1000;
        let mut samples = record.lock().unwrap_or_else(|p| p.into_inner());
        samples.push(late);
        if samples.len() == total {
            done.notify_one();
        }
    })
    .await;

    let start = server_ms(&mut admin).await + PRODUCER_LEAD_MS;
    let due_of = |i: u64| start + i * 1000 / rate;
    let per_slice = rate * PRODUCER_SLICE_MS / 1000;
    let mut next = 0u64;
    while next < total as u64 {
        let slice: Vec<u64> = (next..(next + per_slice).min(total as u64)).collect();
        next += slice.len() as u64;
        sleep_until_unix_ms(due_of(slice[0]).saturating_sub(PRODUCER_LEAD_MS)).await;
        let jobs = slice.iter().map(|&i| {
            let due = due_of(i);
            featured(NewJob::new(&Payload::new(due)).at(at_ms(due)), i as usize)
        });
        let results = producer.schedule_many(jobs).await.expect("schedule_many");
        assert!(results.iter().all(|r| matches!(r, Ok(s) if s.created)));
    }
    tokio::time::timeout(Duration::from_secs(secs + 60), all_ran.notified())
        .await
        .expect("every W3 job ran in time");
    let deadline = Instant::now() + Duration::from_secs(30);
    while completed(&mut admin, &name).await < total {
        assert!(Instant::now() < deadline, "W3 acks did not finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    worker.await.expect("worker task").expect("worker");

    let mut sorted = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(sorted.len(), total, "every job ran exactly once");
    sorted.sort_unstable();
    Lateness::of(sorted)
}

/// Commands that block in Redis waiting for data or messages: the idle target excludes them.
const BLOCKING: &[&str] = &["blmove", "subscribe", "psubscribe"];

/// What the idle workload saw: commands sent by clients (not those run inside scripts), by
/// the role of the connection that sent them.
#[derive(Debug, Default, Serialize)]
pub(crate) struct IdleCounts {
    pub(crate) seconds: u64,
    /// Role → command → calls, blocking commands included.
    pub(crate) calls: BTreeMap<String, BTreeMap<String, u64>>,
}

impl IdleCounts {
    /// Non-blocking commands per second sent by connections of `role`.
    pub(crate) fn per_second(&self, role: &str) -> f64 {
        let n: u64 = self.calls.get(role).map_or(0, |commands| {
            commands
                .iter()
                .filter(|(c, _)| !BLOCKING.contains(&c.as_str()))
                .map(|(_, n)| n)
                .sum()
        });
        n as f64 / self.seconds as f64
    }
}

/// Idle: `n` jobs due an hour ahead, a promoter and a worker running, `secs` seconds watched
/// with `MONITOR`. `INFO commandstats` would also count the commands scripts run, so the
/// harness reads the command stream instead: each line names its connection (`lua` for a
/// script's own calls), and a connection's role follows from the script or blocking command
/// it sends (promote.lua: promoter; claim.lua or BLMOVE: worker).
pub(crate) async fn idle(url: &str, n: usize, secs: u64) -> IdleCounts {
    let name = "idle";
    let producer = Queue::connect(url, name).await.expect("connect");
    let jobs = (0..n).map(|_| NewJob::new(&Payload::new(0)).delay(Duration::from_secs(3600)));
    producer.schedule_many(jobs).await.expect("schedule_many");
    let stop = CancellationToken::new();
    spawn_promoter(&Queue::connect(url, name).await.expect("connect"), &stop);
    let worker = spawn_worker(url, name, &stop, |_| {}).await;
    // Let both settle into their waits, then watch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let monitor = redis::Client::open(url)
        .expect("url")
        .get_async_monitor()
        .await
        .expect("MONITOR");
    let mut lines = monitor.into_on_message::<String>();
    let mut seen = Vec::new();
    let window = tokio::time::sleep(Duration::from_secs(secs));
    tokio::pin!(window);
    loop {
        tokio::select! {
            () = &mut window => break,
            line = lines.next() => match line {
                Some(line) => seen.push(line),
                None => panic!("MONITOR connection closed"),
            },
        }
    }
    stop.cancel();
    worker.await.expect("worker task").expect("worker");

    let promote = redis::Script::new(include_str!("../../lua/promote.lua"))
        .get_hash()
        .to_owned();
    let claim = redis::Script::new(include_str!("../../lua/claim.lua"))
        .get_hash()
        .to_owned();
    // (connection, command, first argument) of every client command.
    let commands: Vec<(String, String, String)> = seen
        .iter()
        .filter_map(|line| {
            let (_, rest) = line.split_once('[')?;
            let (client, args) = rest.split_once(']')?;
            let connection = client.split_whitespace().nth(1)?.to_owned();
            let mut args = args.split('"').skip(1).step_by(2);
            let command = args.next()?.to_ascii_lowercase();
            let first = args.next().unwrap_or("").to_owned();
            (connection != "lua").then_some((connection, command, first))
        })
        .collect();
    let mut roles: BTreeMap<String, &str> = BTreeMap::new();
    for (connection, command, first) in &commands {
        let role = match command.as_str() {
            "evalsha" if *first == promote => "promoter",
            "evalsha" if *first == claim => "worker",
            "blmove" => "worker",
            _ => continue,
        };
        roles.insert(connection.clone(), role);
    }
    let mut counts = IdleCounts {
        seconds: secs,
        ..IdleCounts::default()
    };
    for (connection, command, _) in commands {
        let role = roles.get(&connection).copied().unwrap_or("other");
        *counts
            .calls
            .entry(role.to_owned())
            .or_default()
            .entry(command)
            .or_default() += 1;
    }
    counts
}

/// What W4 measured: scheduling `jobs` in bulk, the memory per job with all of them waiting,
/// and draining them (promoted, claimed, run, acknowledged) end to end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scale {
    pub(crate) schedule: Measured,
    pub(crate) bytes_per_job: f64,
    pub(crate) drain: Measured,
}

/// W4: `n` jobs (100 B of data each) scheduled in chunks of 10,000 with nothing promoting,
/// all due by the end; then a promoter and a worker (the library's defaults) start and drain
/// them. The cost of scale: memory per job at `n`, and whether throughput holds.
pub(crate) async fn w4_scale(url: &str, n: usize) -> Scale {
    let name = "w4";
    let queue = Queue::connect(url, name).await.expect("connect");
    let mut admin = connect(url).await;
    let due = server_ms(&mut admin).await;
    let before = used_memory(&mut admin).await;
    let clock = Clock::start(&mut admin).await;
    let mut i = 0;
    while i < n {
        let end = (i + 10_000).min(n);
        let jobs = (i..end).map(|_| NewJob::new(&Payload::new(due)).at(at_ms(due)));
        let results = queue.schedule_many(jobs).await.expect("schedule_many");
        assert!(results.iter().all(|r| matches!(r, Ok(s) if s.created)));
        i = end;
    }
    let schedule = clock.stop(&mut admin, n).await;
    let bytes_per_job = (used_memory(&mut admin).await - before) as f64 / n as f64;

    let stop = CancellationToken::new();
    let ran = Ran::new(n);
    let counter = ran.clone();
    let clock = Clock::start(&mut admin).await;
    let worker = spawn_worker(url, name, &stop, move |_| counter.one()).await;
    spawn_promoter(&queue, &stop);
    ran.all(&mut admin, name, Duration::from_millis(1)).await;
    let drain = clock.stop(&mut admin, n).await;
    stop.cancel();
    worker.await.expect("worker task").expect("worker");
    assert_eq!(ran.get(), n, "every job ran exactly once");
    let left = hash_len(&mut admin, &format!("punctual:{{{name}}}:jobs")).await;
    assert_eq!(left, 0, "acknowledged jobs leave nothing behind");
    Scale {
        schedule,
        bytes_per_job,
        drain,
    }
}
