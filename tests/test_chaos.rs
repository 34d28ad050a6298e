//! The chaos test: producers, 3 promoters and worker processes run against a persistent Redis
//! while workers are SIGKILLed and restarted at random moments and Redis itself is SIGKILLed and
//! restarted on its append-only file. At the end, a record written outside Redis by every run
//! of every job proves that nothing was lost and nothing was promoted twice.
//!
//! - **Workers** are `punctual work --exec` processes (the shipped binary), 3 at a time, each
//!   running `sh job.sh` per job. A job's kind says what it does: `ok` succeeds, `flakyN`
//!   fails its first N attempts, `doomed` always fails (3 attempts, then the dead set).
//! - **The record**: `job.sh` appends `start <attempt> <worker>` and `end <attempt> <worker>
//!   <ok|fail>` to a file named after the job id, in a directory of its own. A killed worker's
//!   commands are ended by its supervisor process (checked through `/proc` after every kill:
//!   none may be alive 2 s later), so such a run has a start and no end; the job runs again
//!   when the lease ends, which is the at-least-once case the check allows.
//! - **Producers** (4 tasks) schedule with caller-chosen ids, due times spread over the run,
//!   one in ten in the past; one in twenty is scheduled a second time under the same id, which
//!   must create nothing. A schedule call that fails (Redis down) is sent again with the same
//!   id until Redis answers, so every job the producers count was acknowledged.
//!
//! Duplicated promotions are counted two ways. (1) From the record: every run of a job but the
//! last must be explained, by a failure the job was built to make or by the death of the
//! worker that ran it; a run with no such reason means the job was in `ready` twice. (2) From
//! the counters the scripts keep: every entry into `scheduled` (`scheduled` + `retried`) is
//! promoted once, so `promoted` must equal their sum.
//!
//! `PUNCTUAL_CHAOS_SECS` sets the length of the chaos phase (default 20, CI); `=600` is a soak.
//! `PUNCTUAL_CHAOS_SEED` replays a run's random choices (the seed is printed).
//!
//! `PUNCTUAL_CHAOS_CLUSTER=1` runs the same against a Redis Cluster of 3 masters with a
//! replica each (all with `appendfsync always`) and a queue of 6 partitions; instead of
//! killing the one Redis, a master is failed over to its in-sync replica (`CLUSTER FAILOVER`)
//! at the same moments. The same checks hold, summed over the partitions.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use punctual::{
    BackoffSpec, Exponential, NewJob, Promoter, PromoterConfig, Queue, Rng, Scheduled, When,
};
use redis::AsyncCommands;
use support::{RedisCluster, RedisServer, TestConn};
use tokio_util::sync::CancellationToken;

const QUEUE: &str = "chaos";
const WORKERS: usize = 3;
const PROMOTERS: usize = 3;
const PRODUCERS: u64 = 4;
/// Lease of the worker processes: how long a killed worker's job waits before it runs again.
const LEASE: &str = "2s";
/// Attempts of the jobs built to always fail.
const DOOMED_ATTEMPTS: u32 = 3;
/// Attempts of every other job: far more than kills can use up in one run.
const MAX_ATTEMPTS: u32 = 20;

const JOB_SCRIPT: &str = r#"#!/bin/sh
# One chaos job: record the run, work a little, fail or succeed as the job's kind says.
rec="$CHAOS_RECORDS/$PUNCTUAL_JOB_ID"
echo "start $PUNCTUAL_ATTEMPT $CHAOS_WORKER" >> "$rec"
behaviour=${PUNCTUAL_KIND%.*}
sleep "$(printf '0.%03d' "${PUNCTUAL_KIND#*.}")"
case "$behaviour" in
  doomed) result=fail ;;
  flaky*) if [ "$PUNCTUAL_ATTEMPT" -le "${behaviour#flaky}" ]; then result=fail; else result=ok; fi ;;
  *) result=ok ;;
esac
echo "end $PUNCTUAL_ATTEMPT $CHAOS_WORKER $result" >> "$rec"
[ "$result" = ok ]
"#;

/// What a job was built to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Ok,
    /// Fails attempts 1..=n.
    Flaky(u32),
    Doomed,
}

impl Behaviour {
    fn kind(self, sleep_ms: u64) -> String {
        match self {
            Behaviour::Ok => format!("ok.{sleep_ms:03}"),
            Behaviour::Flaky(n) => format!("flaky{n}.{sleep_ms:03}"),
            Behaviour::Doomed => format!("doomed.{sleep_ms:03}"),
        }
    }

    fn fails(self, attempt: u32) -> bool {
        match self {
            Behaviour::Ok => false,
            Behaviour::Flaky(n) => attempt <= n,
            Behaviour::Doomed => true,
        }
    }
}

/// The Redis the chaos runs against: one persistent server, or a cluster with replicas.
enum Store {
    One(RedisServer),
    Cluster(RedisCluster),
}

/// Partitions of the chaos queue in cluster mode.
const CLUSTER_PARTITIONS: u16 = 6;

impl Store {
    fn start() -> Store {
        if std::env::var("PUNCTUAL_CHAOS_CLUSTER").is_ok_and(|v| v == "1") {
            Store::Cluster(RedisCluster::start_with(3, 1, true))
        } else {
            Store::One(RedisServer::start_with(true))
        }
    }

    fn url(&self) -> String {
        match self {
            Store::One(redis) => redis.url(),
            Store::Cluster(cluster) => cluster.seeds(),
        }
    }

    /// The hash tags the queue's jobs live under.
    fn tags(&self) -> Vec<String> {
        match self {
            Store::One(_) => vec![QUEUE.to_owned()],
            Store::Cluster(_) => (0..CLUSTER_PARTITIONS)
                .map(|p| punctual::keys::partition_tag(QUEUE, p, CLUSTER_PARTITIONS))
                .collect(),
        }
    }

    async fn conn(&self) -> TestConn {
        let urls = match self {
            Store::One(redis) => return redis.conn().await,
            Store::Cluster(cluster) => cluster
                .nodes
                .iter()
                .map(RedisServer::url)
                .collect::<Vec<_>>(),
        };
        let client = redis::cluster::ClusterClient::builder(urls)
            .response_timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        TestConn::Cluster(client.get_async_connection().await.unwrap())
    }

    /// The Redis chaos: SIGKILL and restart the one server (on its append-only file), or
    /// fail a random master over to its replica.
    fn upset(&mut self, rng: &mut Rng) {
        match self {
            Store::One(redis) => {
                redis.kill();
                std::thread::sleep(Duration::from_millis(rng.below(1000)));
                redis.restart();
            }
            Store::Cluster(cluster) => {
                let replicas: Vec<usize> = (0..cluster.nodes.len())
                    .filter(|&i| cluster.replication(i).contains("role:slave"))
                    .collect();
                let pick = replicas[rng.below(replicas.len() as u64) as usize];
                cluster.failover(pick);
                println!(
                    "chaos: node {} took over as master",
                    cluster.nodes[pick].port()
                );
            }
        }
    }

    /// Every key under the prefix, on every master.
    fn keys(&self) -> Vec<String> {
        let servers: Vec<&RedisServer> = match self {
            Store::One(redis) => vec![redis],
            Store::Cluster(cluster) => cluster
                .masters()
                .into_iter()
                .map(|i| &cluster.nodes[i])
                .collect(),
        };
        let mut keys = Vec::new();
        for server in servers {
            let mut conn = server.client().get_connection().unwrap();
            let mine: Vec<String> = redis::cmd("KEYS")
                .arg("punctual:*")
                .query(&mut conn)
                .unwrap();
            keys.extend(mine);
        }
        keys.sort();
        keys
    }
}

/// The worker processes, and which of them were killed.
struct Workers {
    exe: PathBuf,
    url: String,
    dir: PathBuf,
    running: Vec<(String, Child)>,
    next: usize,
    killed: HashSet<String>,
    /// Workers that exited without being killed (e.g. started while Redis was down).
    exited: Vec<String>,
}

impl Workers {
    fn spawn(&mut self) {
        let name = format!("w{}", self.next);
        self.next += 1;
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(&self.exe)
            .args(["--redis-url", &self.url, "work", QUEUE])
            .args([
                "--exec",
                &format!("sh {}", self.dir.join("job.sh").display()),
            ])
            .args(["--concurrency", "8", "--lease", LEASE, "--grace", "20s"])
            .args(["--max-attempts", &MAX_ATTEMPTS.to_string()])
            .env("CHAOS_RECORDS", self.dir.join("records"))
            .env("CHAOS_WORKER", &name)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the punctual binary");
        self.running.push((name, child));
    }

    /// SIGKILLs worker `i`, checks that none of its commands outlives it by more than 2 s,
    /// and starts a replacement.
    fn kill(&mut self, i: usize) {
        let (name, mut child) = self.running.swap_remove(i);
        let mark = format!("{}-", child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        let left = tokio::task::block_in_place(|| {
            support::cli::wait_no_procs_prefix("PUNCTUAL_WORKER", &mark, Duration::from_secs(2))
        });
        assert!(
            left.is_empty(),
            "commands of killed worker {name} alive 2 s later: {left:?}"
        );
        self.killed.insert(name);
        self.spawn();
    }

    /// Replaces workers that exited by themselves.
    fn reap(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            if let Ok(Some(_)) = self.running[i].1.try_wait() {
                let (name, _) = self.running.swap_remove(i);
                self.exited.push(name);
                self.spawn();
            } else {
                i += 1;
            }
        }
    }

    /// SIGTERM to every worker, then waits for them to exit.
    fn stop(&mut self) {
        for (_, child) in &self.running {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for (name, mut child) in self.running.drain(..) {
            let status = child.wait().unwrap();
            assert!(status.success(), "worker {name} exited with {status}");
        }
    }
}

impl Drop for Workers {
    /// A run that fails half-way leaves no worker behind (their commands end with them).
    fn drop(&mut self) {
        for (_, child) in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A job the producers had acknowledged as scheduled.
#[derive(Debug, Clone, Copy)]
struct Expect {
    behaviour: Behaviour,
    /// Scheduled a second time under the same id.
    twice: bool,
    /// Given a due time in the past.
    past: bool,
}

/// Every job the producers had acknowledged, by id.
type Accepted = Arc<Mutex<HashMap<String, Expect>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_loses_nothing_and_promotes_nothing_twice() {
    support::init_tracing();
    let secs: u64 = std::env::var("PUNCTUAL_CHAOS_SECS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("PUNCTUAL_CHAOS_SECS is a number of seconds")
        })
        .unwrap_or(20);
    let seed: u64 = std::env::var("PUNCTUAL_CHAOS_SEED")
        .ok()
        .map(|s| s.parse().expect("PUNCTUAL_CHAOS_SEED is a number"))
        .unwrap_or_else(|| Rng::from_entropy().next_u64());
    println!("chaos: {secs} s, seed {seed}");
    let mut rng = Rng::seeded(seed);

    let mut redis = Store::start();
    let url = redis.url();
    let tags = redis.tags();
    if let Store::Cluster(_) = redis {
        let ns = punctual::Namespace::connect(&url, punctual::QueueConfig::default())
            .await
            .unwrap();
        ns.create_queue(QUEUE, CLUSTER_PARTITIONS).await.unwrap();
    }
    let dir = std::env::temp_dir().join(format!("punctual-chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("records")).unwrap();
    std::fs::write(dir.join("job.sh"), JOB_SCRIPT).unwrap();

    let stop = CancellationToken::new();
    let mut promoters = Vec::new();
    for _ in 0..PROMOTERS {
        // Each promoter on a connection of its own, as separate processes would be.
        let queue = Queue::connect(&url, QUEUE).await.unwrap();
        let config = PromoterConfig::default().set_heartbeat(Duration::from_secs(1));
        let promoter = Promoter::new([queue], config).unwrap();
        promoters.push(tokio::spawn(promoter.run(stop.clone().cancelled_owned())));
    }
    let mut workers = Workers {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_punctual")),
        url: url.clone(),
        dir: dir.clone(),
        running: Vec::new(),
        next: 0,
        killed: HashSet::new(),
        exited: Vec::new(),
    };
    for _ in 0..WORKERS {
        workers.spawn();
    }

    let accepted: Accepted = Arc::default();
    let produce_for = Duration::from_secs(secs) * 3 / 5;
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let queue = Queue::connect(&url, QUEUE).await.unwrap();
        let accepted = accepted.clone();
        let seed = rng.next_u64();
        producers.push(tokio::spawn(produce(queue, p, seed, produce_for, accepted)));
    }

    // The chaos: a worker killed every 0.5 to 2 s; Redis killed at 40% of the run and, in a
    // long run, every 60 s after that.
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut redis_kills = 0u32;
    let mut next_redis_kill = started + Duration::from_secs(secs) * 2 / 5;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500 + rng.below(1500))).await;
        workers.reap();
        let i = rng.below(workers.running.len() as u64) as usize;
        workers.kill(i);
        if Instant::now() >= next_redis_kill {
            tokio::task::block_in_place(|| redis.upset(&mut rng));
            redis_kills += 1;
            next_redis_kill += Duration::from_secs(60);
        }
    }
    for producer in producers {
        producer.await.unwrap();
    }
    let accepted = std::mem::take(&mut *accepted.lock().unwrap());

    // Drain: every job reaches its end (gone, or dead by design) within a generous bound.
    let mut conn = redis.conn().await;
    let keys_of = |tag: &str, part: &str| format!("punctual:{{{tag}}}:{part}");
    let doomed = accepted
        .values()
        .filter(|e| e.behaviour == Behaviour::Doomed)
        .count();
    let drain_limit = Duration::from_secs(120);
    let drain_start = Instant::now();
    loop {
        workers.reap();
        let (mut scheduled, mut ready, mut running, mut dead) = (0, 0, 0, 0);
        for tag in &tags {
            let counts: (usize, usize, usize, usize) = redis::pipe()
                .zcard(keys_of(tag, "scheduled"))
                .llen(keys_of(tag, "ready"))
                .zcard(keys_of(tag, "running"))
                .zcard(keys_of(tag, "dead"))
                .query_async(&mut conn)
                .await
                .unwrap();
            scheduled += counts.0;
            ready += counts.1;
            running += counts.2;
            dead += counts.3;
        }
        if scheduled + ready + running == 0 && dead >= doomed {
            break;
        }
        assert!(
            drain_start.elapsed() < drain_limit,
            "not drained after {drain_limit:?}: scheduled {scheduled}, ready {ready}, \
             running {running}, dead {dead} of {doomed} doomed; logs in {dir:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    workers.stop();
    stop.cancel();
    for promoter in promoters {
        promoter.await.unwrap().unwrap();
    }

    let mut dead: HashSet<String> = HashSet::new();
    let mut errors: HashMap<String, String> = HashMap::new();
    let mut stats: HashMap<String, u64> = HashMap::new();
    for tag in &tags {
        let ids: Vec<String> = conn.zrange(keys_of(tag, "dead"), 0, -1).await.unwrap();
        dead.extend(ids);
        let part_errors: HashMap<String, String> =
            conn.hgetall(keys_of(tag, "errors")).await.unwrap();
        errors.extend(part_errors);
        let part_stats: HashMap<String, u64> = conn.hgetall(keys_of(tag, "stats")).await.unwrap();
        for (name, n) in part_stats {
            *stats.entry(name).or_default() += n;
        }
    }
    let report = check(
        &dir.join("records"),
        &accepted,
        &dead,
        &errors,
        &workers.killed,
    );

    let stat = |name: &str| stats.get(name).copied().unwrap_or(0);
    let counted_twice =
        stat("promoted") as i64 - (stat("scheduled") + stat("retried") + stat("revived")) as i64;

    println!(
        "chaos: jobs {} (scheduled twice {}, in the past {}), runs {}, failures by design {}, \
         reruns after a worker died {}, worker kills {}, worker exits {}, redis kills {}, \
         dead by design {}, lost {}, duplicated promotions {} (record) {} (counters), \
         expired leases {}",
        accepted.len(),
        report.scheduled_twice,
        report.in_the_past,
        report.runs,
        report.failures,
        report.reruns_after_kill,
        workers.killed.len(),
        workers.exited.len(),
        redis_kills,
        dead.len(),
        report.lost.len(),
        report.unexplained.len(),
        counted_twice,
        stat("expired"),
    );
    assert!(report.lost.is_empty(), "lost jobs: {:?}", report.lost);
    assert!(
        report.unexplained.is_empty(),
        "runs with no reason (promoted twice?): {:?}",
        report.unexplained
    );
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(counted_twice, 0, "promotions against entries: {stats:?}");
    assert_eq!(stat("scheduled"), accepted.len() as u64, "{stats:?}");
    assert!(redis_kills >= 1 && workers.killed.len() >= 3);

    // No leaks: what is left is the dead jobs' data, the ids finished within the dedup window
    // (a key that expires by itself), the queue's record, and nothing else.
    let remaining = redis.keys();
    let mut allowed: HashSet<String> = HashSet::from(["punctual:queues".to_owned()]);
    if tags.len() > 1 {
        allowed.insert(format!("punctual:{{{QUEUE}}}:meta"));
        // The promoters' heartbeat set expires by itself, too.
        allowed.insert(format!("punctual:{{{QUEUE}}}:promoters"));
    }
    for tag in &tags {
        for part in [
            "attempts", "dead", "done", "errors", "jobs", "meta", "seq", "stats",
        ] {
            allowed.insert(keys_of(tag, part));
        }
    }
    let unexpected: Vec<&String> = remaining.iter().filter(|k| !allowed.contains(*k)).collect();
    assert!(unexpected.is_empty(), "keys left over: {unexpected:?}");
    let mut hashes: HashMap<&str, HashSet<String>> = HashMap::new();
    for tag in &tags {
        let done = keys_of(tag, "done");
        let ttl: i64 = conn.pttl(&done).await.unwrap();
        assert!(
            ttl == -2 || (ttl > 0 && ttl <= 60_000),
            "done expires by itself: {ttl}"
        );
        let finished: Vec<String> = conn.zrange(&done, 0, -1).await.unwrap();
        assert!(finished
            .iter()
            .all(|id| accepted.contains_key(id) && !dead.contains(id)));
        for hash in ["jobs", "attempts", "errors"] {
            let fields: HashSet<String> = conn.hkeys(keys_of(tag, hash)).await.unwrap();
            hashes.entry(hash).or_default().extend(fields);
        }
    }
    for (hash, fields) in hashes {
        assert_eq!(fields, dead, "{hash} holds more than the dead jobs");
    }
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Schedules jobs for `length`: caller-chosen ids, spread due times, some in the past, some
/// scheduled twice. Records each job once Redis has acknowledged it.
async fn produce(queue: Queue, p: u64, seed: u64, length: Duration, accepted: Accepted) {
    let mut rng = Rng::seeded(seed);
    let backoff = BackoffSpec::from(
        Exponential::new(Duration::from_millis(100), Duration::from_millis(800)).unwrap(),
    );
    let spread_ms = length.as_millis() as u64;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < length {
        let id = format!("p{p}-{n:06}");
        n += 1;
        let behaviour = match rng.below(100) {
            0..=4 => Behaviour::Doomed,
            5..=24 => Behaviour::Flaky(1 + rng.below(3) as u32),
            _ => Behaviour::Ok,
        };
        let twice = rng.below(20) == 0;
        let past = !twice && rng.below(10) == 0;
        let when = if twice {
            // Far enough ahead that the second call finds the first still waiting.
            When::In(Duration::from_millis(3000 + rng.below(spread_ms)))
        } else if past {
            When::At(SystemTime::now() - Duration::from_millis(rng.below(30_000)))
        } else {
            When::In(Duration::from_millis(rng.below(spread_ms)))
        };
        let sleep_ms = rng.below(100);
        let job = || {
            NewJob::from_msgpack(behaviour.kind(sleep_ms), vec![0xc0])
                .id(&id)
                .when(when)
                .max_attempts(if behaviour == Behaviour::Doomed {
                    DOOMED_ATTEMPTS
                } else {
                    MAX_ATTEMPTS
                })
                .backoff(backoff.clone())
        };
        // `created` may be false here too: a first call that landed but whose reply was lost.
        schedule_until_acknowledged(&queue, job).await;
        if twice {
            let second = schedule_until_acknowledged(&queue, job).await;
            assert!(!second.created, "{id} scheduled twice made a second job");
        }
        let expect = Expect {
            behaviour,
            twice,
            past,
        };
        accepted.lock().unwrap().insert(id, expect);
        tokio::time::sleep(Duration::from_millis(20 + rng.below(40))).await;
    }
}

/// Sends `job` until Redis answers; a connection error is retried with the same id, so a job
/// whose first call did land is found, not made twice.
async fn schedule_until_acknowledged(queue: &Queue, job: impl Fn() -> NewJob) -> Scheduled {
    loop {
        match queue.schedule(job()).await {
            Ok(scheduled) => return scheduled,
            Err(e) if e.is_connection_error() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("schedule failed: {e}"),
        }
    }
}

/// One run of a job, from its record.
#[derive(Debug)]
struct Run {
    attempt: u32,
    worker: String,
    /// `None` when the run never finished.
    ok: Option<bool>,
}

#[derive(Debug, Default)]
struct Report {
    runs: usize,
    failures: usize,
    reruns_after_kill: usize,
    scheduled_twice: usize,
    in_the_past: usize,
    lost: Vec<String>,
    unexplained: Vec<String>,
    problems: Vec<String>,
}

/// Reads every record and checks each accepted job against what it was built to do.
fn check(
    records: &Path,
    accepted: &HashMap<String, Expect>,
    dead: &HashSet<String>,
    errors: &HashMap<String, String>,
    killed: &HashSet<String>,
) -> Report {
    let mut report = Report::default();
    let mut runs_of: HashMap<String, Vec<Run>> = HashMap::new();
    for entry in std::fs::read_dir(records).unwrap() {
        let entry = entry.unwrap();
        let id = entry.file_name().into_string().unwrap();
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let runs = runs_of.entry(id.clone()).or_default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields[..] {
                ["start", attempt, worker] => runs.push(Run {
                    attempt: attempt.parse().unwrap(),
                    worker: worker.to_owned(),
                    ok: None,
                }),
                ["end", attempt, worker, result] => {
                    let attempt: u32 = attempt.parse().unwrap();
                    match runs
                        .iter_mut()
                        .find(|r| r.attempt == attempt && r.worker == worker && r.ok.is_none())
                    {
                        Some(run) => run.ok = Some(result == "ok"),
                        None => report
                            .problems
                            .push(format!("{id}: end without start: {line}")),
                    }
                }
                _ => report
                    .problems
                    .push(format!("{id}: bad record line {line:?}")),
            }
        }
    }
    for id in runs_of.keys() {
        if !accepted.contains_key(id) {
            report
                .problems
                .push(format!("{id} ran but was never acknowledged as scheduled"));
        }
    }
    for (id, expect) in accepted {
        let behaviour = expect.behaviour;
        report.scheduled_twice += usize::from(expect.twice);
        report.in_the_past += usize::from(expect.past);
        let mut runs = runs_of.remove(id).unwrap_or_default();
        runs.sort_by_key(|r| r.attempt);
        report.runs += runs.len();
        let mut attempts: Vec<u32> = runs.iter().map(|r| r.attempt).collect();
        attempts.dedup();
        if attempts.len() != runs.len() {
            report
                .problems
                .push(format!("{id}: one attempt number ran twice: {runs:?}"));
        }
        let succeeded = runs.iter().any(|r| r.ok == Some(true));
        match behaviour {
            Behaviour::Doomed => {
                let error = errors.get(id).map(String::as_str).unwrap_or("");
                if !dead.contains(id) || !error.contains("attempts_exhausted") {
                    report
                        .lost
                        .push(format!("{id}: doomed but not dead: {runs:?} {error}"));
                }
            }
            _ if !succeeded || dead.contains(id) => {
                report.lost.push(format!("{id}: never succeeded: {runs:?}"));
                continue;
            }
            _ => {}
        }
        // Every run but the last needs a reason to have been followed by another.
        let last = runs.len().saturating_sub(1);
        for run in &runs[..last] {
            let failed_by_design = run.ok == Some(false) && behaviour.fails(run.attempt);
            if failed_by_design {
                report.failures += 1;
            } else if killed.contains(&run.worker) {
                report.reruns_after_kill += 1;
            } else {
                report.unexplained.push(format!("{id}: {runs:?}"));
                break;
            }
        }
        if let Some(run) = runs.last() {
            if run.ok == Some(false) && behaviour.fails(run.attempt) {
                report.failures += 1;
            }
        }
    }
    report
}
