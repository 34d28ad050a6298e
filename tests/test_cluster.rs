//! Redis Cluster, against real clusters the tests start (`redis-cli --cluster create`): how
//! punctual is pointed at one, wake-ups over sharded pub/sub, and what a cluster adds
//! (partitioned queues, resharding, failover). The rest of the suite runs against a cluster
//! too, unchanged, under `PUNCTUAL_TEST_CLUSTER=1` (see `support::on_cluster`).

mod support;

use std::time::{Duration, Instant, SystemTime};

use punctual::{Namespace, NewJob, Promoter, PromoterConfig, QueueConfig};
use support::cli::*;
use support::{eventually, RedisCluster, RedisServer};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);

/// A cluster as the CLI helpers take it: the `RedisServer` the suite uses, whose URL is a
/// seed list here.
fn seeds(cluster: &RedisCluster) -> String {
    cluster
        .nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Any node's URL, a comma-separated seed list and a repeated `--redis-url` all reach the
/// same cluster: a job scheduled through one node is seen through the others, and the start-up
/// check of a long-running command reads every master.
#[tokio::test]
async fn any_node_a_seed_list_or_repeated_flags_reach_the_cluster() {
    let cluster = RedisCluster::start(3);
    let id = ok(&cluster.nodes[1], &["schedule", "mail", "--in", "1h"]);
    let id = id.trim();
    let list = format!("redis://{}", seeds(&cluster));
    let shown = run_url(&list, &["show", "mail", id]);
    assert!(shown.contains("scheduled"), "{shown}");
    let n0 = cluster.nodes[0].url();
    let n2 = cluster.nodes[2].url();
    let stats = run_url_args(&["--redis-url", &n0, "--redis-url", &n2, "stats", "--json"]);
    let stats = json(&stats);
    assert_eq!(stats[0]["queue"], "mail", "{stats}");
    assert_eq!(stats[0]["scheduled"], 1, "{stats}");

    // The start-up check reads all three masters (their addresses are logged). The whole log
    // is read to the end in a thread, so a promoter that does not stop says what it was doing.
    let mut promote = punctual(&cluster.nodes[2])
        .args(["-v", "promote"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (started, reader) = read_log(promote.stderr.take().unwrap(), "promoter started", false);
    let began = started.recv_timeout(LIMIT).is_ok();
    terminate(&promote);
    let stopped = Instant::now();
    let exited = exit_within(&mut promote, LIMIT);
    let seen = reader.join().unwrap();
    assert!(began, "not started within {LIMIT:?}: {seen}");
    assert!(
        exited.is_some_and(|s| s.success()),
        "{exited:?} {:?} after SIGTERM: {seen}",
        stopped.elapsed()
    );
    for node in &cluster.nodes {
        assert!(
            seen.contains(&format!("127.0.0.1:{}", node.port())),
            "master {} not checked: {seen}",
            node.port()
        );
    }
}

/// A promoter of a whole namespace on a cluster finds a queue that did not exist when it
/// started the moment its first job is scheduled (the queue's first job is announced
/// cluster-wide), and is then woken over sharded pub/sub: with a 10 min heartbeat, both jobs
/// are promoted within a second of being due.
#[tokio::test]
async fn a_namespace_promoter_finds_new_queues_at_once_and_is_woken_by_spublish() {
    let cluster = RedisCluster::start(3);
    let ns = Namespace::connect(&cluster.url(), QueueConfig::default())
        .await
        .unwrap();
    assert!(ns.is_cluster());
    let stop = CancellationToken::new();
    let promoter = Promoter::for_namespace(
        ns.clone(),
        PromoterConfig::default().set_heartbeat(Duration::from_secs(600)),
    )
    .unwrap();
    let metrics = promoter.metrics();
    let running = tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    // Let it subscribe before the queue exists.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A queue made by hand (no registry entry, as an unregistered producer would): only the
    // announcement can make it known before the heartbeat.
    let queue = ns.queue("fresh").await.unwrap();
    let mut conn = cluster_conn(&cluster).await;
    let _: () = redis::cmd("SREM")
        .arg("punctual:queues")
        .arg("fresh")
        .query_async(&mut conn)
        .await
        .unwrap();
    let took = promoted_after(&queue, 1, 1).await;
    assert!(
        took < Duration::from_millis(1500),
        "first job promoted after {took:?}"
    );
    // Now a later head, then an earlier job: the SPUBLISH wakes the sleeping promoter.
    queue
        .schedule(NewJob::new(&2).delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let took = promoted_after(&queue, 3, 2).await;
    assert!(took < Duration::from_millis(1500), "woken after {took:?}");
    stop.cancel();
    running.await.unwrap().unwrap();
    assert!(metrics.snapshot().contains_key("fresh"));
}

/// Schedules job `data` due in 200 ms and returns how long until `ready` holds `ready` jobs.
async fn promoted_after(queue: &punctual::Queue, data: u32, ready: u64) -> Duration {
    let started = Instant::now();
    queue
        .schedule(NewJob::new(&data).delay(Duration::from_millis(200)))
        .await
        .unwrap();
    eventually(LIMIT, "the job promoted", || async {
        queue.counts().await.unwrap().ready == ready
    })
    .await;
    started.elapsed()
}

/// A cluster connection for looking at keys directly.
async fn cluster_conn(cluster: &RedisCluster) -> redis::cluster_async::ClusterConnection {
    let urls: Vec<String> = cluster.nodes.iter().map(RedisServer::url).collect();
    redis::cluster::ClusterClient::new(urls)
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

/// Runs the CLI with `PUNCTUAL_REDIS_URL=url`; its stdout, or a panic with its stderr.
fn run_url(url: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_punctual"))
        .env("PUNCTUAL_REDIS_URL", url)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Runs the CLI with exactly `args` (no URL in the environment).
fn run_url_args(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_punctual"))
        .env_remove("PUNCTUAL_REDIS_URL")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// A cluster node as `CLUSTER NODES` lists it.
#[derive(Debug, Clone)]
struct NodeEntry {
    id: String,
    port: u16,
    master: bool,
    /// Slot ranges it owns (masters).
    slots: Vec<(u16, u16)>,
}

fn cluster_nodes(cluster: &RedisCluster) -> Vec<NodeEntry> {
    let mut conn = cluster.nodes[0].client().get_connection().unwrap();
    let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).unwrap();
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = f[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .unwrap();
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .map(|s| match s.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => (s.parse().unwrap(), s.parse().unwrap()),
                })
                .collect();
            NodeEntry {
                id: f[0].to_owned(),
                port,
                master: f[2].contains("master"),
                slots,
            }
        })
        .collect()
}

/// The slot of a key, as the cluster computes it.
fn keyslot(cluster: &RedisCluster, key: &str) -> u16 {
    let mut conn = cluster.nodes[0].client().get_connection().unwrap();
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut conn)
        .unwrap()
}

/// The master that serves `slot`.
fn slot_owner(nodes: &[NodeEntry], slot: u16) -> NodeEntry {
    nodes
        .iter()
        .find(|n| n.master && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
        .unwrap()
        .clone()
}

fn node_by_port(cluster: &RedisCluster, port: u16) -> &RedisServer {
    cluster.nodes.iter().find(|n| n.port() == port).unwrap()
}

/// Moves `slot` with its keys to another master, the way `redis-cli --cluster reshard` does
/// (IMPORTING/MIGRATING, MIGRATE key by key, SETSLOT NODE everywhere), one key every
/// `pace` so that clients meet the slot half-moved (ASK, TRYAGAIN). Returns (from, to) ports.
fn migrate_slot(cluster: &RedisCluster, slot: u16, pace: Duration) -> (u16, u16) {
    let nodes = cluster_nodes(cluster);
    let owner = slot_owner(&nodes, slot);
    let target = nodes
        .iter()
        .find(|n| n.master && n.id != owner.id)
        .unwrap()
        .clone();
    let mut src = node_by_port(cluster, owner.port)
        .client()
        .get_connection()
        .unwrap();
    let mut dst = node_by_port(cluster, target.port)
        .client()
        .get_connection()
        .unwrap();
    let setslot = |conn: &mut redis::Connection, how: &str, id: &str| {
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(how)
            .arg(id)
            .query(conn)
            .unwrap();
    };
    setslot(&mut dst, "IMPORTING", &owner.id);
    setslot(&mut src, "MIGRATING", &target.id);
    loop {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(1)
            .query(&mut src)
            .unwrap();
        let Some(key) = keys.first() else { break };
        let _: () = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(target.port)
            .arg(key)
            .arg(0)
            .arg(10_000)
            .query(&mut src)
            .unwrap();
        std::thread::sleep(pace);
    }
    for node in nodes.iter().filter(|n| n.master) {
        let mut conn = node_by_port(cluster, node.port)
            .client()
            .get_connection()
            .unwrap();
        setslot(&mut conn, "NODE", &target.id);
    }
    (owner.port, target.port)
}

/// What ran, for exactly-once checks: job data → runs.
type Runs = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u32, u32>>>;

/// Starts `promoters` promoters and `workers` workers (concurrency 64) on `queue`, each on a
/// connection of its own (as separate processes would be), counting runs in the result.
async fn run_queue(
    url: &str,
    name: &str,
    promoters: usize,
    workers: usize,
    stop: &CancellationToken,
) -> (Runs, Vec<tokio::task::JoinHandle<punctual::Result<()>>>) {
    let runs: Runs = Default::default();
    let mut tasks = Vec::new();
    for _ in 0..promoters {
        let queue = punctual::Queue::connect(url, name).await.unwrap();
        let promoter = Promoter::new(
            [queue],
            PromoterConfig::default().set_heartbeat(Duration::from_millis(500)),
        )
        .unwrap();
        tasks.push(tokio::spawn(promoter.run(stop.clone().cancelled_owned())));
    }
    for _ in 0..workers {
        let queue = punctual::Queue::connect(url, name).await.unwrap();
        let runs = runs.clone();
        tasks.push(support::spawn_worker(
            &queue,
            punctual::WorkerConfig::default().set_concurrency(64),
            stop,
            move |job: punctual::Job<u32>, _| {
                *runs.lock().unwrap().entry(job.data).or_default() += 1;
                async { punctual::Outcome::Done }
            },
        ));
    }
    (runs, tasks)
}

/// Schedules `chunks` × 100 jobs (data 0, 1, …), 100 per call every 50 ms, each due within
/// `spread_ms` of its call; every job acknowledged (the call returned Ok for it).
async fn produce(queue: punctual::Queue, chunks: u32, spread_ms: u32) {
    for chunk in 0..chunks {
        let jobs = (chunk * 100..(chunk + 1) * 100)
            .map(|i| NewJob::new(&i).delay(Duration::from_millis(u64::from(i % spread_ms))));
        for r in queue.schedule_many(jobs).await.unwrap() {
            r.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 2 minutes) until `n` jobs completed, stops the promoters and workers, checks
/// that every job in `0..n` ran, and returns how many ran more than once, and the totals.
async fn drain(
    queue: &punctual::Queue,
    n: u32,
    stop: &CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<punctual::Result<()>>>,
    runs: &Runs,
) -> (usize, punctual::Totals) {
    eventually(Duration::from_secs(120), "every job completed", || async {
        support::total(queue, punctual::Event::Completed).await >= u64::from(n)
    })
    .await;
    stop.cancel();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let twice = ran_once(runs, n);
    (twice, queue.stats().await.unwrap().totals)
}

/// Each job data in `0..n` ran exactly once; returns how many ran more than once.
fn ran_once(runs: &Runs, n: u32) -> usize {
    let runs = runs.lock().unwrap();
    let missing: Vec<u32> = (0..n).filter(|i| !runs.contains_key(i)).take(10).collect();
    assert!(missing.is_empty(), "jobs never ran, e.g. {missing:?}");
    assert_eq!(runs.len(), n as usize, "unknown jobs ran");
    runs.values().filter(|&&r| r > 1).count()
}

/// A queue of 8 partitions over 3 masters: its jobs land on every master, about evenly over
/// the partitions, and 50,000 of them drain exactly once with 2 promoters and 2 workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_8_partitions_over_3_masters_drains_50000_jobs_exactly_once() {
    const N: u32 = 50_000;
    let cluster = RedisCluster::start(3);
    let url = cluster.seeds();
    let ns = Namespace::connect(&url, QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("bulk", 8).await.unwrap();
    // Due over the next 3 s, so promotion and work overlap scheduling.
    queue
        .schedule_many(
            (0..N).map(|i| NewJob::new(&i).delay(Duration::from_millis(u64::from(i % 3000)))),
        )
        .await
        .unwrap()
        .into_iter()
        .for_each(|r| assert!(r.is_ok()));
    let mut conn = cluster_conn(&cluster).await;
    let mut per_part = Vec::new();
    for p in 0..8 {
        let n: u64 = redis::cmd("HLEN")
            .arg(format!(
                "punctual:{{{}}}:jobs",
                punctual::keys::partition_tag("bulk", p, 8)
            ))
            .query_async(&mut conn)
            .await
            .unwrap();
        per_part.push(n);
    }
    let (min, max) = (
        per_part.iter().min().unwrap(),
        per_part.iter().max().unwrap(),
    );
    println!(
        "jobs per partition {per_part:?}, max/min {:.3}",
        *max as f64 / *min as f64
    );
    let ratio = *max as f64 / *min as f64;
    assert!(ratio < 1.15, "unbalanced: {per_part:?}");
    for node in &cluster.nodes {
        let mut c = node.client().get_connection().unwrap();
        let keys: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert!(keys > 0, "master {} holds no key of the queue", node.port());
    }

    let stop = CancellationToken::new();
    let started = Instant::now();
    let (runs, tasks) = run_queue(&url, "bulk", 2, 2, &stop).await;
    eventually(
        Duration::from_secs(180),
        "50,000 jobs completed",
        || async { support::total(&queue, punctual::Event::Completed).await >= u64::from(N) },
    )
    .await;
    println!("drained in {:?}", started.elapsed());
    stop.cancel();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(ran_once(&runs, N), 0, "jobs ran twice");
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.totals.get(punctual::Event::Promoted), u64::from(N));
    assert_eq!(stats.counts, punctual::Counts::default());
}

/// The slots of two partitions move to another master, key by key, while jobs are scheduled,
/// promoted and run: nothing is lost and nothing runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrated_while_jobs_flow_loses_and_duplicates_nothing() {
    const N: u32 = 6_000;
    let cluster = RedisCluster::start(3);
    let url = cluster.seeds();
    let ns = Namespace::connect(&url, QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("moving", 4).await.unwrap();
    let stop = CancellationToken::new();
    let (runs, tasks) = run_queue(&url, "moving", 1, 2, &stop).await;
    // Producers: 6,000 jobs over ~3 s, due within a second of scheduling.
    let producer = tokio::spawn(produce(queue.clone(), 60, 1000));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for p in [0, 1] {
        let slot = keyslot(
            &cluster,
            &format!("{{{}}}", punctual::keys::partition_tag("moving", p, 4)),
        );
        let moved =
            tokio::task::block_in_place(|| migrate_slot(&cluster, slot, Duration::from_millis(30)));
        println!(
            "partition {p}: slot {slot} moved from {} to {}",
            moved.0, moved.1
        );
    }
    producer.await.unwrap();
    let (twice, totals) = drain(&queue, N, &stop, tasks, &runs).await;
    assert_eq!(twice, 0, "jobs ran twice");
    assert_eq!(totals.get(punctual::Event::Promoted), u64::from(N));
    assert_eq!(totals.get(punctual::Event::Expired), 0);
}

/// A read after the queue's slot moved to another master, with nothing else sent on the
/// connection in between: `stats`, `get` and `due_counts` (transactions and pipelines) find
/// the new owner and answer (`read_again` in src/inspect.rs: a transaction refused with
/// `MOVED` is sent again after a single-key read that makes the client learn the owner).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_the_slot_moved_find_the_new_owner() {
    let cluster = RedisCluster::start(3);
    let queue = punctual::Queue::connect(&cluster.seeds(), "reads")
        .await
        .unwrap();
    let id = queue
        .schedule(NewJob::new(&1u32).delay(Duration::from_secs(3600)))
        .await
        .unwrap()
        .id;
    let later = [SystemTime::now() + Duration::from_secs(7200)];
    assert_eq!(queue.stats().await.unwrap().counts.scheduled, 1);
    for round in 0..2 {
        let slot = keyslot(
            &cluster,
            &format!("{{{}}}", punctual::keys::partition_tag("reads", 0, 1)),
        );
        let (from, to) =
            tokio::task::block_in_place(|| migrate_slot(&cluster, slot, Duration::ZERO));
        println!("round {round}: slot {slot} moved from {from} to {to}");
        // Each read first, alone on the connection since the move.
        let took = Instant::now();
        match round {
            0 => assert_eq!(queue.stats().await.unwrap().counts.scheduled, 1),
            _ => assert!(queue.get(&id).await.unwrap().is_some()),
        }
        println!("round {round}: the first read took {:?}", took.elapsed());
        assert_eq!(queue.due_counts(&later).await.unwrap(), [1, 0]);
        assert_eq!(queue.stats().await.unwrap().counts.scheduled, 1);
    }
}

/// The same after the master of the queue's slot failed over to its replica: the first read
/// meets the old master, now a replica, and must still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_a_failover_find_the_new_master() {
    let cluster = RedisCluster::start_with(3, 1, true);
    let queue = punctual::Queue::connect(&cluster.seeds(), "reads")
        .await
        .unwrap();
    queue
        .schedule(NewJob::new(&1u32).delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(queue.stats().await.unwrap().counts.scheduled, 1);
    let slot = keyslot(
        &cluster,
        &format!("{{{}}}", punctual::keys::partition_tag("reads", 0, 1)),
    );
    let owner = slot_owner(&cluster_nodes(&cluster), slot);
    let replica = (0..cluster.nodes.len())
        .find(|&i| {
            let r = cluster.replication(i);
            r.contains("role:slave") && r.contains(&format!("master_port:{}\r", owner.port))
        })
        .unwrap();
    tokio::task::block_in_place(|| cluster.failover(replica));
    let took = Instant::now();
    assert_eq!(queue.stats().await.unwrap().counts.scheduled, 1);
    println!("the first read took {:?}", took.elapsed());
}

/// 3 masters with a replica each: a master fails over to its replica (`CLUSTER FAILOVER`, in
/// sync) while jobs flow. The promoter and workers carry on; no acknowledged job is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failed_over_while_jobs_flow_loses_nothing() {
    const N: u32 = 4_000;
    let cluster = RedisCluster::start_with(3, 1, true);
    let url = cluster.seeds();
    let ns = Namespace::connect(&url, QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("failover", 6).await.unwrap();
    let stop = CancellationToken::new();
    let (runs, tasks) = run_queue(&url, "failover", 1, 2, &stop).await;
    let producer = tokio::spawn(produce(queue.clone(), 40, 500));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let replica = (0..cluster.nodes.len())
        .find(|&i| cluster.replication(i).contains("role:slave"))
        .unwrap();
    tokio::task::block_in_place(|| cluster.failover(replica));
    println!("node {} is master now", cluster.nodes[replica].port());
    producer.await.unwrap();
    let (twice, totals) = drain(&queue, N, &stop, tasks, &runs).await;
    println!("ran twice {twice}, totals {totals:?}");
    // Promotion stays exactly once: every entry into `scheduled` was promoted once.
    assert_eq!(
        totals.get(punctual::Event::Promoted),
        totals.get(punctual::Event::Scheduled) + totals.get(punctual::Event::Retried)
    );
}
