//! Load benchmark: punctual measured against what its own Redis can do at all, in one run.
//! BENCHMARKS.md explains the workloads, the targets and the latest figures.
//!
//! ```text
//! cargo bench --bench load [-- OPTIONS]
//!   --runs N      runs of each workload; medians are reported (default 3; idle runs once)
//!   --only LIST   a comma-separated subset of w1,w2,w3,w4,idle (default: all)
//!   --w4-jobs N   W4's size (default 1,000,000; 10,000,000 takes about 4 GB of Redis)
//!   --quick       small sizes and one run: checks the harness works, figures are not comparable
//!   --steered     W2's jobs carry a max_lateness of 1 h: each has an `opts` entry, which the
//!                 promote, claim and ack scripts read or delete (the cost of steering, used)
//!   --keep-completed  W2's queue keeps completed jobs (1 h, 1,000,000): the cost of the
//!                 completed state, used
//!   --priority    W2's and W3's jobs carry priorities (-9..9 in turn): their queues rank
//!                 ready jobs (the cost of priorities, used)
//!   --events      W2's end-to-end and W3's queues keep an event log (the cost of the log, on)
//!   --concurrency N  the workers' concurrency (default: WorkerConfig's, 32)
//!   --json PATH   where the JSON results go (default target/bench/load.json)
//! ```
//!
//! It starts its own `redis-server` on a free port (`--save '' --appendonly no`, from
//! tests/support) and empties it before every workload.

#[path = "../../tests/support/mod.rs"]
mod support;

mod baseline;
mod stats;
mod workloads;

use std::path::PathBuf;

use redis::aio::MultiplexedConnection;
use serde_json::json;

use crate::stats::median;
use crate::workloads::Lateness;

/// Size of every job's data, MessagePack-encoded.
pub(crate) const PAYLOAD_BYTES: usize = 100;
/// Bytes of a raw baseline member: a 26-character id plus the payload.
const BASELINE_MEMBER: usize = 26 + PAYLOAD_BYTES;
/// Commands per pipeline in the baselines.
pub(crate) const N_PIPELINE: usize = 1000;
/// Ids per call of the baseline move script: the promoter's default batch.
pub(crate) const BATCH: usize = punctual::DEFAULT_BATCH;

/// Workload sizes.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    w1_jobs: usize,
    w2_jobs: usize,
    w3_secs: u64,
    idle_jobs: usize,
    idle_secs: u64,
    w4_jobs: usize,
}

const FULL: Sizes = Sizes {
    w1_jobs: 100_000,
    w2_jobs: 50_000,
    w3_secs: 20,
    idle_jobs: 100_000,
    idle_secs: 60,
    w4_jobs: 1_000_000,
};

const QUICK: Sizes = Sizes {
    w1_jobs: 5_000,
    w2_jobs: 5_000,
    w3_secs: 2,
    idle_jobs: 5_000,
    idle_secs: 5,
    w4_jobs: 20_000,
};

/// W3's steady rates, jobs per second, each with its absolute p99 target (µs) and whether
/// the p99 must also be no worse than the raw baseline's in the same run.
const W3_RATES: [(u64, i64, bool); 3] = [
    (1_000, 5_000, true),
    (10_000, 20_000, true),
    (40_000, 20_000, false),
];

#[derive(Debug)]
struct Args {
    runs: usize,
    only: Vec<String>,
    sizes: Sizes,
    json: PathBuf,
    /// `--w4-jobs`, which wins over the size set (so `--quick --w4-jobs N` works too).
    w4_jobs: Option<usize>,
    /// `--w3-rate`: W3 at this one of its rates only.
    w3_rate: Option<u64>,
    /// `--worker-threads`: the tokio runtime's worker threads (default: one per core).
    worker_threads: Option<usize>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args {
            runs: 3,
            only: vec![
                "w1".into(),
                "w2".into(),
                "w3".into(),
                "w4".into(),
                "idle".into(),
            ],
            sizes: FULL,
            json: PathBuf::from("target/bench/load.json"),
            w4_jobs: None,
            w3_rate: None,
            worker_threads: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            match arg.as_str() {
                // cargo bench passes --bench to every bench target.
                "--bench" => {}
                "--runs" => {
                    args.runs = it
                        .next()
                        .and_then(|n| n.parse().ok())
                        .filter(|&n| n > 0)
                        .ok_or("--runs needs a positive number")?;
                }
                "--only" => {
                    let list = it.next().ok_or("--only needs a list, e.g. w1,w3")?;
                    args.only = list.split(',').map(str::to_owned).collect();
                    if let Some(bad) = args
                        .only
                        .iter()
                        .find(|w| !["w1", "w2", "w3", "w4", "idle"].contains(&w.as_str()))
                    {
                        return Err(format!(
                            "unknown workload {bad:?}: use w1, w2, w3, w4, idle"
                        ));
                    }
                }
                "--concurrency" => {
                    let n: usize = it
                        .next()
                        .and_then(|n| n.parse().ok())
                        .filter(|&n| n > 0)
                        .ok_or("--concurrency needs a positive number")?;
                    workloads::CONCURRENCY.store(n, std::sync::atomic::Ordering::Relaxed);
                }
                "--worker-threads" => {
                    args.worker_threads = Some(
                        it.next()
                            .and_then(|n| n.parse().ok())
                            .filter(|&n| n > 0)
                            .ok_or("--worker-threads needs a positive number")?,
                    );
                }
                "--w4-jobs" => {
                    args.w4_jobs = Some(
                        it.next()
                            .and_then(|n| n.parse().ok())
                            .filter(|&n| n > 0)
                            .ok_or("--w4-jobs needs a positive number")?,
                    );
                }
                "--w3-rate" => {
                    let rate = it.next().and_then(|n| n.parse().ok());
                    args.w3_rate = Some(
                        rate.filter(|r| W3_RATES.iter().any(|&(known, _, _)| known == *r))
                            .ok_or("--w3-rate needs one of W3's rates: 1000, 10000, 40000")?,
                    );
                }
                "--quick" => {
                    args.sizes = QUICK;
                    args.runs = 1;
                }
                "--json" => args.json = it.next().ok_or("--json needs a path")?.into(),
                "--steered" => workloads::STEERED.store(true, std::sync::atomic::Ordering::Relaxed),
                "--priority" => {
                    workloads::PRIORITY.store(true, std::sync::atomic::Ordering::Relaxed)
                }
                "--events" => workloads::EVENTS.store(true, std::sync::atomic::Ordering::Relaxed),
                "--keep-completed" => {
                    workloads::KEEP_COMPLETED.store(true, std::sync::atomic::Ordering::Relaxed)
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(args)
    }

    fn wants(&self, workload: &str) -> bool {
        self.only.iter().any(|w| w == workload)
    }
}

/// A connection with no response timeout: some replies here are large and some commands block.
pub(crate) async fn connect(url: &str) -> MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect to the benchmark redis")
}

/// `used_memory` from `INFO memory`, bytes.
pub(crate) async fn used_memory(conn: &mut MultiplexedConnection) -> i64 {
    info_field(conn, "memory", "used_memory")
        .await
        .parse()
        .expect("used_memory is a number")
}

async fn info_field(conn: &mut MultiplexedConnection, section: &str, field: &str) -> String {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// A throughput figure: jobs per second of wall-clock time, Redis CPU time (user + system,
/// from `INFO cpu`) per job, which says how close to the single-threaded server's limit it is,
/// and this process's CPU time per job (the clients: punctual's producer, promoter and worker,
/// or the raw limit's), which says what is left of the machine for Redis.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Measured {
    pub(crate) jobs_per_s: f64,
    pub(crate) redis_us_per_job: f64,
    pub(crate) client_us_per_job: f64,
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} jobs/s ({:.2} µs Redis CPU/job, {:.2} µs client CPU/job)",
            self.jobs_per_s, self.redis_us_per_job, self.client_us_per_job
        )
    }
}

impl Measured {
    /// The figure for parts of equal size measured one after another.
    fn combine(parts: &[Measured]) -> Measured {
        let n = parts.len() as f64;
        Measured {
            jobs_per_s: n / parts.iter().map(|m| 1.0 / m.jobs_per_s).sum::<f64>(),
            redis_us_per_job: parts.iter().map(|m| m.redis_us_per_job).sum::<f64>() / n,
            client_us_per_job: parts.iter().map(|m| m.client_us_per_job).sum::<f64>() / n,
        }
    }
}

/// Starts a [`Measured`]: a wall-clock origin and the Redis CPU time at that moment.
#[derive(Debug)]
pub(crate) struct Clock {
    origin_unix_us: i64,
    cpu_s: f64,
    client_cpu_s: f64,
}

impl Clock {
    /// Starts now.
    pub(crate) async fn start(conn: &mut MultiplexedConnection) -> Clock {
        Clock::start_at(conn, unix_us()).await
    }

    /// Starts at `origin_unix_us` (for a backlog: its due instant) with Redis CPU read now.
    pub(crate) async fn start_at(conn: &mut MultiplexedConnection, origin_unix_us: i64) -> Clock {
        Clock {
            origin_unix_us,
            cpu_s: redis_cpu_s(conn).await,
            client_cpu_s: process_cpu_s(),
        }
    }

    /// `jobs` done since the origin.
    pub(crate) async fn stop(self, conn: &mut MultiplexedConnection, jobs: usize) -> Measured {
        let seconds = (unix_us() - self.origin_unix_us) as f64 / 1e6;
        let client = process_cpu_s() - self.client_cpu_s;
        let cpu = redis_cpu_s(conn).await - self.cpu_s;
        Measured {
            jobs_per_s: jobs as f64 / seconds,
            redis_us_per_job: cpu * 1e6 / jobs as f64,
            client_us_per_job: client * 1e6 / jobs as f64,
        }
    }
}

/// This process's CPU seconds so far, user plus system, every thread (`/proc/self/stat`, in
/// the kernel's 10 ms ticks: a run of a second or more reads it to 1-2%). 0 where it cannot be
/// read.
fn process_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces: state is
    // field 3, utime and stime fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ, the unit of these fields, is 100 on Linux.
    (ticks(14) + ticks(15)) / 100.0
}

/// Unix time now, in microseconds (this host's clock, which is the benchmark Redis's clock).
pub(crate) fn unix_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Redis CPU seconds so far, user plus system.
async fn redis_cpu_s(conn: &mut MultiplexedConnection) -> f64 {
    let user: f64 = info_field(conn, "cpu", "used_cpu_user")
        .await
        .parse()
        .unwrap_or(0.0);
    let sys: f64 = info_field(conn, "cpu", "used_cpu_sys")
        .await
        .parse()
        .unwrap_or(0.0);
    user + sys
}

/// Empties the database and the command statistics before a workload.
async fn fresh(conn: &mut MultiplexedConnection) {
    let () = redis::cmd("FLUSHALL")
        .arg("SYNC")
        .query_async(conn)
        .await
        .expect("FLUSHALL");
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(conn)
        .await
        .expect("CONFIG RESETSTAT");
}

/// Keeps every run's values under `name` and returns their median.
fn record(raw: &mut serde_json::Map<String, serde_json::Value>, name: &str, values: &[f64]) -> f64 {
    raw.insert(name.to_owned(), json!(values));
    median(values)
}

/// The smallest and largest of `values`.
fn range(values: &[f64]) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// A figure over runs: the median, which decides whether a target is met, with the smallest
/// and largest run (each field on its own).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Spread {
    med: Measured,
    lo: Measured,
    hi: Measured,
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} jobs/s ({:.0}–{:.0}); {:.2} µs Redis CPU/job ({:.2}–{:.2}); {:.2} µs client CPU/job ({:.2}–{:.2})",
            self.med.jobs_per_s,
            self.lo.jobs_per_s,
            self.hi.jobs_per_s,
            self.med.redis_us_per_job,
            self.lo.redis_us_per_job,
            self.hi.redis_us_per_job,
            self.med.client_us_per_job,
            self.lo.client_us_per_job,
            self.hi.client_us_per_job
        )
    }
}

/// Keeps every run's figures under `name` and returns their median and range.
fn record_measured(
    raw: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    runs: &[Measured],
) -> Spread {
    let rates: Vec<f64> = runs.iter().map(|m| m.jobs_per_s).collect();
    let cpu: Vec<f64> = runs.iter().map(|m| m.redis_us_per_job).collect();
    let client: Vec<f64> = runs.iter().map(|m| m.client_us_per_job).collect();
    let ((r_lo, r_hi), (c_lo, c_hi), (k_lo, k_hi)) = (range(&rates), range(&cpu), range(&client));
    Spread {
        med: Measured {
            jobs_per_s: record(raw, &format!("{name}_jobs_per_s"), &rates),
            redis_us_per_job: record(raw, &format!("{name}_redis_us_per_job"), &cpu),
            client_us_per_job: record(raw, &format!("{name}_client_us_per_job"), &client),
        },
        lo: Measured {
            jobs_per_s: r_lo,
            redis_us_per_job: c_lo,
            client_us_per_job: k_lo,
        },
        hi: Measured {
            jobs_per_s: r_hi,
            redis_us_per_job: c_hi,
            client_us_per_job: k_hi,
        },
    }
}

/// [`record_measured`] for the four figures of a workload, in order.
fn record_four(
    raw: &mut serde_json::Map<String, serde_json::Value>,
    names: [&str; 4],
    runs: [Vec<Measured>; 4],
) -> [Spread; 4] {
    let mut out = [Spread::default(); 4];
    for ((slot, name), runs) in out.iter_mut().zip(names).zip(runs) {
        *slot = record_measured(raw, name, &runs);
    }
    out
}

/// "median (min–max)" of a figure, with `unit` after each number.
/// W3's figures over runs: the medians of each percentile, each run's p99 (ms) and the early
/// starts in all, recorded under `prefix` in the JSON results.
struct LatenessFigures {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    p99_runs_ms: Vec<f64>,
    early: usize,
    redis_us_per_job: f64,
    client_us_per_job: f64,
}

fn record_lateness(
    raw: &mut serde_json::Map<String, serde_json::Value>,
    prefix: &str,
    runs: &[Lateness],
) -> LatenessFigures {
    let pick = |f: fn(&Lateness) -> i64| runs.iter().map(|l| f(l) as f64).collect::<Vec<_>>();
    let early = runs.iter().map(|l| l.early).sum();
    raw.insert(format!("{prefix}_early"), json!(early));
    LatenessFigures {
        p50: record(raw, &format!("{prefix}_p50_us"), &pick(|l| l.p50_us)),
        p90: record(raw, &format!("{prefix}_p90_us"), &pick(|l| l.p90_us)),
        p99: record(raw, &format!("{prefix}_p99_us"), &pick(|l| l.p99_us)),
        max: record(raw, &format!("{prefix}_max_us"), &pick(|l| l.max_us)),
        p99_runs_ms: pick(|l| l.p99_us).iter().map(|us| us / 1000.0).collect(),
        early,
        redis_us_per_job: record(
            raw,
            &format!("{prefix}_redis_us_per_job"),
            &runs.iter().map(|l| l.redis_us_per_job).collect::<Vec<_>>(),
        ),
        client_us_per_job: record(
            raw,
            &format!("{prefix}_client_us_per_job"),
            &runs.iter().map(|l| l.client_us_per_job).collect::<Vec<_>>(),
        ),
    }
}

fn spread_text(values: &[f64], decimals: usize, unit: &str) -> String {
    let (lo, hi) = range(values);
    format!(
        "{:.*}{unit} ({:.*}–{:.*})",
        decimals,
        median(values),
        decimals,
        lo,
        decimals,
        hi
    )
}

/// One line of the results table.
#[derive(Debug, serde::Serialize)]
struct Row {
    figure: String,
    punctual: String,
    baseline: String,
    ratio: String,
    target: String,
    met: Option<bool>,
}

fn row(figure: &str, punctual: String, baseline: String, ratio: Option<f64>) -> Row {
    Row {
        figure: figure.to_owned(),
        punctual,
        baseline,
        ratio: ratio.map_or_else(String::new, |r| format!("{:.0}%", r * 100.0)),
        target: String::new(),
        met: None,
    }
}

impl Row {
    fn target(mut self, target: &str, met: bool) -> Row {
        self.target = target.to_owned();
        self.met = Some(met);
        self
    }
}

fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1000.0)
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({ "cpu": cpu, "cores": cores, "os": std::env::consts::OS })
}

fn main() {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.worker_threads {
        builder.worker_threads(n);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    workloads::check_payload();
    let server = support::RedisServer::start();
    let url = server.url();
    let mut admin = connect(&url).await;
    let redis_version = info_field(&mut admin, "server", "redis_version").await;
    let machine = machine();
    let s = args.sizes;
    let threads = args
        .worker_threads
        .map_or_else(|| "one per core".to_owned(), |n| n.to_string());
    eprintln!(
        "punctual load benchmark: redis {redis_version} on {url}, {machine}, {} run(s), {:?}, \
         runtime worker threads: {threads}",
        args.runs, s
    );

    let mut rows = Vec::new();
    let mut raw = serde_json::Map::new();

    if args.wants("w1") {
        let mut m: [Vec<Measured>; 4] = Default::default();
        let (mut b_mem, mut mem) = (vec![], vec![]);
        for run in 0..args.runs {
            let r = run as u64;
            // One at a time is round-trip bound, so it follows the machine's noise closely: the
            // two sides alternate in tenths, so that both see the same conditions.
            fresh(&mut admin).await;
            let (mut base, mut ours) = (vec![], vec![]);
            for part in 0..10 {
                let n = s.w1_jobs / 10;
                base.push(baseline::zadd_one_at_a_time(&mut admin, n, BASELINE_MEMBER, part).await);
                ours.push(workloads::w1_one_at_a_time(&url, n, r, part).await);
            }
            m[0].push(Measured::combine(&base));
            m[2].push(Measured::combine(&ours));
            fresh(&mut admin).await;
            let (bulk, bytes) =
                baseline::zadd_pipelined(&mut admin, s.w1_jobs, BASELINE_MEMBER).await;
            m[1].push(bulk);
            b_mem.push(bytes);
            fresh(&mut admin).await;
            let (bulk, bytes) = workloads::w1_bulk(&url, s.w1_jobs, r).await;
            m[3].push(bulk);
            mem.push(bytes);
            eprintln!(
                "w1 run {run}: one at a time {} vs ZADD {}; bulk {} vs pipelined ZADD {}; {bytes:.0} B/job",
                m[2][run], m[0][run], m[3][run], m[1][run]
            );
        }
        let [b_one, b_bulk, one, bulk] = record_four(
            &mut raw,
            [
                "w1_baseline_zadd_one",
                "w1_baseline_zadd_pipelined",
                "w1_one_at_a_time",
                "w1_bulk",
            ],
            m,
        );
        let (b_mem_text, mem_text) = (spread_text(&b_mem, 0, " B"), spread_text(&mem, 0, " B"));
        let _ = record(&mut raw, "w1_baseline_zadd_bytes_per_job", &b_mem);
        let mem = record(&mut raw, "w1_bytes_per_job", &mem);
        let r = one.med.jobs_per_s / b_one.med.jobs_per_s;
        rows.push(
            row(
                "W1 schedule, one at a time",
                one.to_string(),
                format!("{b_one} ZADD"),
                Some(r),
            )
            .target(">= 80% of ZADD", r >= 0.8),
        );
        let r = bulk.med.jobs_per_s / b_bulk.med.jobs_per_s;
        rows.push(
            row(
                "W1 schedule, bulk",
                bulk.to_string(),
                format!("{b_bulk} pipelined ZADD"),
                Some(r),
            )
            .target(
                ">= 100000 jobs/s and >= 50%",
                bulk.med.jobs_per_s >= 100_000.0 && r >= 0.5,
            ),
        );
        rows.push(
            row(
                "W1 memory per job (100 B of data)",
                mem_text,
                format!("{b_mem_text} (ZSET member)"),
                None,
            )
            .target("<= 300 B", mem <= 300.0),
        );
    }

    if args.wants("w2") {
        let mut m: [Vec<Measured>; 4] = Default::default();
        let mut reliable = Vec::new();
        for run in 0..args.runs {
            let r = run as u64;
            fresh(&mut admin).await;
            reliable.push(baseline::reliable_drain(&url, s.w2_jobs, PAYLOAD_BYTES).await);
            fresh(&mut admin).await;
            m[0].push(baseline::lua_move(&url, s.w2_jobs, false).await);
            fresh(&mut admin).await;
            m[1].push(baseline::lua_move(&url, s.w2_jobs, true).await);
            fresh(&mut admin).await;
            m[2].push(workloads::w2_promote_only(&url, s.w2_jobs, r).await);
            fresh(&mut admin).await;
            m[3].push(workloads::w2_end_to_end(&url, s.w2_jobs, r).await);
            eprintln!(
                "w2 run {run}: promote-only {} vs Lua move {}; end to end {} vs move + LPOP {} \
                 and reliable raw {}",
                m[2][run], m[0][run], m[3][run], m[1][run], reliable[run]
            );
        }
        let [b_move, b_consume, promote, e2e] = record_four(
            &mut raw,
            [
                "w2_baseline_lua_move",
                "w2_baseline_lua_move_consume",
                "w2_promote_only",
                "w2_end_to_end",
            ],
            m,
        );
        let reliable = record_measured(&mut raw, "w2_baseline_reliable_drain", &reliable);
        let r = e2e.med.jobs_per_s / reliable.med.jobs_per_s;
        rows.push(
            row(
                "W2 backlog, end to end",
                e2e.to_string(),
                format!(
                    "{reliable} reliable raw claim + ack ({} consumers, {} per claim); \
                     {b_consume} Lua move + LPOP",
                    baseline::RELIABLE_CONSUMERS,
                    baseline::RELIABLE_BATCH
                ),
                Some(r),
            )
            .target(
                ">= 100000 jobs/s and >= 50% of reliable raw",
                e2e.med.jobs_per_s >= 100_000.0 && r >= 0.5,
            ),
        );
        let r = promote.med.jobs_per_s / b_move.med.jobs_per_s;
        rows.push(
            row(
                "W2 backlog, promote only",
                promote.to_string(),
                format!("{b_move} Lua move"),
                Some(r),
            )
            .target(">= 50% of Lua move", r >= 0.5),
        );
    }

    if args.wants("w3") {
        let rates: Vec<_> = W3_RATES
            .into_iter()
            .filter(|&(rate, _, _)| args.w3_rate.is_none_or(|only| only == rate))
            .collect();
        let mut per_rate = Vec::new();
        for &(rate, _, _) in &rates {
            let (mut runs, mut raws): (Vec<Lateness>, Vec<Lateness>) = (Vec::new(), Vec::new());
            let jobs = (rate * s.w3_secs) as usize;
            for run in 0..args.runs {
                fresh(&mut admin).await;
                let clock = Clock::start(&mut admin).await;
                let mut l = workloads::w3_lateness(&url, rate, s.w3_secs, run as u64).await;
                let cpu = clock.stop(&mut admin, jobs).await;
                (l.redis_us_per_job, l.client_us_per_job) =
                    (cpu.redis_us_per_job, cpu.client_us_per_job);
                eprintln!("w3 {rate}/s run {run}: {l:?}");
                runs.push(l);
                fresh(&mut admin).await;
                let clock = Clock::start(&mut admin).await;
                let mut l = baseline::reliable_lateness(&url, rate, s.w3_secs).await;
                let cpu = clock.stop(&mut admin, jobs).await;
                (l.redis_us_per_job, l.client_us_per_job) =
                    (cpu.redis_us_per_job, cpu.client_us_per_job);
                eprintln!("w3 raw {rate}/s run {run}: {l:?}");
                raws.push(l);
            }
            per_rate.push((runs, raws));
        }
        for ((rate, p99_target, vs_raw), (runs, raws)) in rates.into_iter().zip(per_rate) {
            let ours = record_lateness(&mut raw, &format!("w3_{rate}"), &runs);
            let base = record_lateness(&mut raw, &format!("w3_{rate}_baseline"), &raws);
            let (p99, early) = (ours.p99, ours.early);
            let ratio = p99 / base.p99;
            let (target, met) = match vs_raw {
                true => (
                    format!("p99 <= {} ms and <= 1.0x raw, 0 early", p99_target / 1000),
                    p99 <= p99_target as f64 && ratio <= 1.0 && early == 0,
                ),
                false => (
                    format!("p99 <= {} ms, 0 early", p99_target / 1000),
                    p99 <= p99_target as f64 && early == 0,
                ),
            };
            rows.push(Row {
                ratio: format!("{ratio:.2}x p99"),
                ..row(
                    &format!("W3 lateness at {rate}/s"),
                    format!(
                        "p50 {} p90 {} p99 {} max {} early {early}; {:.1} µs Redis CPU/job, \
                         {:.1} µs client CPU/job",
                        ms(ours.p50),
                        ms(ours.p90),
                        spread_text(&ours.p99_runs_ms, 2, " ms"),
                        ms(ours.max),
                        ours.redis_us_per_job,
                        ours.client_us_per_job
                    ),
                    format!(
                        "raw reliable ({} consumers, BLMOVE): p50 {} p99 {}; {:.1} µs Redis, \
                         {:.1} µs client",
                        baseline::LATENESS_CONSUMERS,
                        ms(base.p50),
                        spread_text(&base.p99_runs_ms, 2, " ms"),
                        base.redis_us_per_job,
                        base.client_us_per_job
                    ),
                    None,
                )
                .target(&target, met)
            });
        }
    }

    if args.wants("w4") {
        let n = args.w4_jobs.unwrap_or(s.w4_jobs);
        let mut runs = Vec::new();
        for run in 0..args.runs {
            fresh(&mut admin).await;
            let scale = workloads::w4_scale(&url, n).await;
            eprintln!(
                "w4 run {run}: {n} jobs scheduled {}, {:.0} B/job, drained {}",
                scale.schedule, scale.bytes_per_job, scale.drain
            );
            runs.push(scale);
        }
        let schedule = record_measured(
            &mut raw,
            "w4_schedule",
            &runs.iter().map(|r| r.schedule).collect::<Vec<_>>(),
        );
        let drain = record_measured(
            &mut raw,
            "w4_drain",
            &runs.iter().map(|r| r.drain).collect::<Vec<_>>(),
        );
        let bytes: Vec<f64> = runs.iter().map(|r| r.bytes_per_job).collect();
        let bytes_text = spread_text(&bytes, 0, " B");
        let mem = record(&mut raw, "w4_bytes_per_job", &bytes);
        rows.push(row(
            &format!("W4 schedule {n} jobs in bulk"),
            schedule.to_string(),
            String::new(),
            None,
        ));
        rows.push(
            row(
                &format!("W4 memory per job with {n} waiting"),
                bytes_text,
                String::new(),
                None,
            )
            .target("<= 300 B", mem <= 300.0),
        );
        rows.push(
            row(
                &format!("W4 drain {n} jobs end to end"),
                drain.to_string(),
                String::new(),
                None,
            )
            .target(">= 100000 jobs/s", drain.med.jobs_per_s >= 100_000.0),
        );
    }

    if args.wants("idle") {
        fresh(&mut admin).await;
        let counts = workloads::idle(&url, s.idle_jobs, s.idle_secs).await;
        eprintln!("idle: {counts:?}");
        for role in ["promoter", "worker"] {
            let per_s = counts.per_second(role);
            raw.insert(format!("idle_{role}_commands_per_s"), json!(per_s));
            rows.push(
                row(
                    &format!("Idle: {role} commands/s"),
                    format!("{per_s:.2}"),
                    String::new(),
                    None,
                )
                .target("<= 1", per_s <= 1.0),
            );
        }
        raw.insert("idle_calls".into(), json!(counts));
    }

    print_table(&rows);
    let out = json!({
        "machine": machine,
        "redis_version": redis_version,
        "punctual_version": env!("CARGO_PKG_VERSION"),
        "runs": args.runs,
        "sizes": format!("{s:?}"),
        "worker_threads": args.worker_threads,
        "medians_and_runs": raw,
        "table": rows,
    });
    if let Some(dir) = args.json.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(
        &args.json,
        serde_json::to_string_pretty(&out).unwrap_or_default(),
    ) {
        Ok(()) => eprintln!("results written to {}", args.json.display()),
        Err(e) => eprintln!("cannot write {}: {e}", args.json.display()),
    }
    drop(server);
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| figure | punctual (median) | baseline (median) | ratio | target | met |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        println!(
            "| {} | {} | {} | {} | {} | {met} |",
            r.figure, r.punctual, r.baseline, r.ratio, r.target
        );
    }
}
