//! What a Redis Cluster and partitioned queues change, on this machine (BENCHMARKS.md,
//! "Cluster"), and what durability (`WAIT`) costs.
//!
//! ```text
//! cargo bench --bench cluster [-- --runs N] [--quick]
//! ```
//!
//! Set-ups, each started fresh by the bench (tests/support): one `redis-server` with a queue
//! of 1 partition (today's layout, the reference), and clusters of 1, 2 and 3 masters with a
//! queue of 12 partitions. For each, the median (and min–max) over the runs of:
//! - W1 bulk: 100,000 jobs (100-byte payload) in one `schedule_many`, jobs/s;
//! - W2 end to end: a 50,000-job backlog due at one instant, one promoter and one worker
//!   (default concurrency, no-op handler), from the due instant until every job is
//!   acknowledged, jobs/s;
//! - Redis CPU per job (user + system over every master), and per master;
//! - balance: jobs per partition and per master, max/min.
//!
//! Durability: a primary with one replica; 5,000 `schedule` calls one at a time, and W1 bulk,
//! with and without `set_durability(1 replica)`.
//!
//! Every process shares this machine's 2 cores: a cluster's masters compete with each other
//! and with the client, so the per-master Redis CPU per job, not the wall-clock rate, is the
//! figure that carries over to a cluster of real machines.

#[path = "../tests/support/mod.rs"]
#[allow(missing_docs)]
mod support;

#[path = "load/stats.rs"]
#[allow(dead_code)]
mod stats;

use stats::median;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use punctual::{
    Durability, Job, Namespace, NewJob, Outcome, Promoter, PromoterConfig, Queue, QueueConfig,
    Worker, WorkerConfig,
};
use support::{RedisCluster, RedisServer};
use tokio_util::sync::CancellationToken;

const PARTITIONS: u16 = 12;

#[derive(Debug, Clone, Copy)]
struct Sizes {
    w1: usize,
    w2: usize,
    one_at_a_time: usize,
}

const FULL: Sizes = Sizes {
    w1: 100_000,
    w2: 50_000,
    one_at_a_time: 5_000,
};
const QUICK: Sizes = Sizes {
    w1: 5_000,
    w2: 5_000,
    one_at_a_time: 500,
};

/// The job data: 100 bytes of MessagePack.
#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    #[serde(with = "serde_bytes")]
    pad: Vec<u8>,
}

fn payload() -> Payload {
    Payload { pad: vec![7; 97] }
}

/// A set-up under test: its URL and the servers whose CPU counts.
struct Setup {
    name: String,
    url: String,
    masters: Vec<u16>,
    partitions: u16,
    _one: Option<RedisServer>,
    _cluster: Option<RedisCluster>,
}

impl Setup {
    fn one() -> Setup {
        let server = RedisServer::start_standalone();
        Setup {
            name: "1 server, 1 partition".into(),
            url: server.url(),
            masters: vec![server.port()],
            partitions: 1,
            _one: Some(server),
            _cluster: None,
        }
    }

    fn cluster(masters: usize) -> Setup {
        let cluster = RedisCluster::start(masters);
        Setup {
            name: format!("cluster of {masters}, {PARTITIONS} partitions"),
            url: cluster.seeds(),
            masters: cluster.nodes.iter().map(RedisServer::port).collect(),
            partitions: PARTITIONS,
            _one: None,
            _cluster: Some(cluster),
        }
    }

    async fn queue(&self, name: &str, config: QueueConfig) -> Queue {
        Namespace::connect(&self.url, config)
            .await
            .expect("connect")
            .create_queue(name, self.partitions)
            .await
            .expect("create the queue")
    }

    /// Redis CPU seconds of each master so far.
    fn cpu(&self) -> Vec<f64> {
        self.masters.iter().map(|&port| cpu_s(port)).collect()
    }

    /// Keys of the queue on each master (`DBSIZE`).
    fn keys(&self) -> Vec<u64> {
        self.masters
            .iter()
            .map(|&port| {
                let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .and_then(|c| c.get_connection())
                    .expect("connect to a master");
                redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE")
            })
            .collect()
    }

    fn flush(&self) {
        for &port in &self.masters {
            let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .and_then(|c| c.get_connection())
                .expect("connect to a master");
            let () = redis::cmd("FLUSHALL")
                .arg("SYNC")
                .query(&mut conn)
                .expect("FLUSHALL");
        }
    }
}

fn cpu_s(port: u16) -> f64 {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection())
        .expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query(&mut conn)
        .expect("INFO");
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    field("used_cpu_user") + field("used_cpu_sys")
}

/// One run's figures.
#[derive(Debug, Clone, Default)]
struct Run {
    jobs_per_s: f64,
    /// Redis CPU per job, µs, all masters together.
    us_per_job: f64,
    /// The busiest master's CPU per job, µs.
    busiest_us_per_job: f64,
}

fn measure(setup: &Setup, jobs: usize, elapsed: Duration, before: &[f64]) -> Run {
    let after = setup.cpu();
    let per: Vec<f64> = after
        .iter()
        .zip(before)
        .map(|(a, b)| (a - b) * 1e6 / jobs as f64)
        .collect();
    Run {
        jobs_per_s: jobs as f64 / elapsed.as_secs_f64(),
        us_per_job: per.iter().sum(),
        busiest_us_per_job: per.iter().copied().fold(0.0, f64::max),
    }
}

async fn w1(setup: &Setup, n: usize, run: usize) -> (Run, Vec<u64>) {
    setup.flush();
    let queue = setup
        .queue(&format!("w1-{run}"), QueueConfig::default())
        .await;
    let before = setup.cpu();
    let started = Instant::now();
    let results = queue
        .schedule_many((0..n).map(|i| {
            NewJob::new(&payload()).delay(Duration::from_millis(60_000 + (i % 60_000) as u64))
        }))
        .await
        .expect("schedule_many");
    let elapsed = started.elapsed();
    assert!(results.iter().all(|r| matches!(r, Ok(s) if s.created)));
    (measure(setup, n, elapsed, &before), setup.keys())
}

async fn w2(setup: &Setup, n: usize, run: usize) -> (Run, Vec<u64>) {
    setup.flush();
    let name = format!("w2-{run}");
    let queue = setup.queue(&name, QueueConfig::default()).await;
    let stop = CancellationToken::new();
    let promoter = Promoter::new(
        [setup.queue(&name, QueueConfig::default()).await],
        PromoterConfig::default(),
    )
    .expect("promoter");
    tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = ran.clone();
    let worker = Worker::new(
        setup.queue(&name, QueueConfig::default()).await,
        WorkerConfig::default(),
    )
    .expect("worker");
    let worker = tokio::spawn(worker.run(
        move |_job: Job<Payload>, _| {
            counter.fetch_add(1, Ordering::Relaxed);
            async { Outcome::Done }
        },
        stop.clone().cancelled_owned(),
    ));
    // Due 2 s from now: the bulk call is done before.
    let due = std::time::SystemTime::now() + Duration::from_millis(2000);
    let results = queue
        .schedule_many((0..n).map(|_| NewJob::new(&payload()).at(due)))
        .await
        .expect("schedule_many");
    assert!(results.iter().all(|r| r.is_ok()));
    // Jobs per partition, before any is taken.
    let mut per_part = Vec::new();
    for p in 0..queue.partitions() {
        let key = if queue.partitions() == 1 {
            format!("punctual:{{{name}}}:scheduled")
        } else {
            format!(
                "punctual:{{{}}}:scheduled",
                punctual::keys::partition_tag(&name, p, queue.partitions())
            )
        };
        let mut conn = support_conn(setup).await;
        let count: u64 = redis::cmd("ZCARD")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("ZCARD");
        per_part.push(count);
    }
    let wait = due
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait).await;
    let before = setup.cpu();
    let started = Instant::now();
    while ran.load(Ordering::Relaxed) < n
        || queue
            .stats()
            .await
            .expect("stats")
            .totals
            .get(punctual::Event::Completed)
            < n as u64
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    worker.await.expect("worker task").expect("worker");
    assert_eq!(ran.load(Ordering::Relaxed), n, "every job ran exactly once");
    (measure(setup, n, elapsed, &before), per_part)
}

async fn support_conn(setup: &Setup) -> support::TestConn {
    if setup.masters.len() == 1 && setup.partitions == 1 {
        let client = redis::Client::open(setup.url.as_str()).expect("url");
        return support::TestConn::One(
            client
                .get_multiplexed_async_connection()
                .await
                .expect("connect"),
        );
    }
    let urls: Vec<String> = setup
        .masters
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}/"))
        .collect();
    let client = redis::cluster::ClusterClient::new(urls).expect("cluster client");
    support::TestConn::Cluster(client.get_async_connection().await.expect("connect"))
}

/// "median (min–max)".
fn summary(values: &[f64], digits: usize) -> String {
    let m = median(values);
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    format!(
        "{m:.digits$} ({:.digits$}–{:.digits$})",
        v.first().copied().unwrap_or(0.0),
        v.last().copied().unwrap_or(0.0)
    )
}

fn ratio(counts: &[u64]) -> f64 {
    let min = counts.iter().copied().min().unwrap_or(0).max(1);
    let max = counts.iter().copied().max().unwrap_or(0);
    max as f64 / min as f64
}

async fn durability(sizes: Sizes, runs: usize) {
    let primary = RedisServer::start_standalone();
    let _replica = RedisServer::start_replica_of(&primary);
    println!("\n## Durability (a primary and one replica, same machine)\n");
    println!("| setting | one at a time, jobs/s | one at a time, µs per call | W1 bulk, jobs/s |");
    println!("|---|---|---|---|");
    for (i, (label, durability)) in [
        ("off", None),
        (
            "1 replica (WAIT 1)",
            Some(Durability {
                replicas: 1,
                timeout: Duration::from_secs(1),
            }),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let config = QueueConfig::default().set_durability(durability);
        let mut single = Vec::new();
        let mut bulk = Vec::new();
        for run in 0..runs {
            let queue =
                Queue::connect_with(&primary.url(), &format!("d-{i}-{run}"), config.clone())
                    .await
                    .expect("connect");
            let started = Instant::now();
            for i in 0..sizes.one_at_a_time {
                queue
                    .schedule(NewJob::new(&payload()).delay(Duration::from_secs(3600 + i as u64)))
                    .await
                    .expect("schedule");
            }
            single.push(sizes.one_at_a_time as f64 / started.elapsed().as_secs_f64());
            let started = Instant::now();
            queue
                .schedule_many(
                    (0..sizes.w1).map(|_| NewJob::new(&payload()).delay(Duration::from_secs(3600))),
                )
                .await
                .expect("schedule_many")
                .into_iter()
                .for_each(|r| assert!(r.is_ok()));
            bulk.push(sizes.w1 as f64 / started.elapsed().as_secs_f64());
        }
        let per_call: Vec<f64> = single.iter().map(|r| 1e6 / r).collect();
        println!(
            "| {label} | {} | {} | {} |",
            summary(&single, 0),
            summary(&per_call, 0),
            summary(&bulk, 0)
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut runs = 3;
    let mut sizes = FULL;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--quick" => {
                sizes = QUICK;
                runs = 1;
            }
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| {
                        eprintln!("--runs needs a positive number");
                        std::process::exit(2)
                    })
            }
            other => {
                eprintln!("unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    println!(
        "# cluster bench: W1 bulk {} jobs, W2 backlog {} jobs, {runs} run(s) each; median (min–max)\n",
        sizes.w1, sizes.w2
    );
    println!(
        "| set-up | W1 bulk, jobs/s | W1 Redis µs/job (all / busiest master) | W2 end to end, jobs/s | \
         W2 Redis µs/job (all / busiest master) | jobs per partition max/min | keys per master max/min |"
    );
    println!("|---|---|---|---|---|---|---|");
    for setup in [
        || Setup::one(),
        || Setup::cluster(1),
        || Setup::cluster(2),
        || Setup::cluster(3),
    ] {
        let setup = setup();
        let (mut w1s, mut w2s) = (Vec::new(), Vec::new());
        let (mut balance, mut spread) = (Vec::new(), Vec::new());
        for run in 0..runs {
            let (r, keys) = w1(&setup, sizes.w1, run).await;
            w1s.push(r);
            spread.push(ratio(&keys));
            let (r, per_part) = w2(&setup, sizes.w2, run).await;
            w2s.push(r);
            balance.push(ratio(&per_part));
        }
        let col = |runs: &[Run], f: fn(&Run) -> f64, d: usize| {
            summary(&runs.iter().map(f).collect::<Vec<_>>(), d)
        };
        println!(
            "| {} | {} | {} / {} | {} | {} / {} | {} | {} |",
            setup.name,
            col(&w1s, |r| r.jobs_per_s, 0),
            col(&w1s, |r| r.us_per_job, 2),
            col(&w1s, |r| r.busiest_us_per_job, 2),
            col(&w2s, |r| r.jobs_per_s, 0),
            col(&w2s, |r| r.us_per_job, 2),
            col(&w2s, |r| r.busiest_us_per_job, 2),
            summary(&balance, 3),
            summary(&spread, 3),
        );
    }
    balance_by_k();
    durability(sizes, runs).await;
}

/// How evenly K partitions land on M masters that own equal, contiguous slot ranges (as
/// `redis-cli --cluster create` assigns them): partitions per master, max/min, the median over
/// 100 queue names (computed, no server).
fn balance_by_k() {
    println!("\n## Partitions per master, max/min (median over 100 queue names)\n");
    println!("| K | 3 masters | 10 masters | 30 masters |");
    println!("|---|---|---|---|");
    for k in [12u16, 24, 48, 96, 192] {
        let mut row = format!("| {k} |");
        for masters in [3usize, 10, 30] {
            let ratios: Vec<f64> = (0..100)
                .map(|q| {
                    let mut per = vec![0u64; masters];
                    for i in 0..k {
                        let slot = punctual::keys::partition_of(
                            &punctual::keys::partition_tag(&format!("q{q}"), i, k),
                            16384,
                        );
                        per[usize::from(slot) * masters / 16384] += 1;
                    }
                    let min = per.iter().copied().min().unwrap_or(0);
                    let max = per.iter().copied().max().unwrap_or(0);
                    if min == 0 {
                        f64::INFINITY
                    } else {
                        max as f64 / min as f64
                    }
                })
                .collect();
            let m = median(&ratios);
            if m.is_finite() {
                row.push_str(&format!(" {m:.2} |"));
            } else {
                row.push_str(" a master gets none |");
            }
        }
        println!("{row}");
    }
}
