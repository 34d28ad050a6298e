//! Redis Cluster, against real clusters the tests start (`redis-cli --cluster create`): how
//! punctual is pointed at one, wake-ups over sharded pub/sub, and what a cluster adds
//! (partitioned queues, resharding, failover). The rest of the suite runs against a cluster
//! too, unchanged, under `PUNCTUAL_TEST_CLUSTER=1` (see `support::on_cluster`).

mod support;

use std::time::{Duration, Instant};

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

    // The start-up check reads all three masters (their addresses are logged).
    let mut promote = punctual(&cluster.nodes[2])
        .arg("promote")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + LIMIT;
    {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(promote.stderr.take().unwrap()).lines();
        while Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("promoter started") {
                break;
            }
        }
    }
    terminate(&promote);
    wait_exit(&mut promote, LIMIT);
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
    let first = Instant::now();
    queue
        .schedule(NewJob::new(&1).delay(Duration::from_millis(200)))
        .await
        .unwrap();
    eventually(LIMIT, "the first job promoted", || async {
        queue.counts().await.unwrap().ready == 1
    })
    .await;
    assert!(
        first.elapsed() < Duration::from_millis(1500),
        "first job promoted after {:?}",
        first.elapsed()
    );
    // Now a later head, then an earlier job: the SPUBLISH wakes the sleeping promoter.
    queue
        .schedule(NewJob::new(&2).delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = Instant::now();
    queue
        .schedule(NewJob::new(&3).delay(Duration::from_millis(200)))
        .await
        .unwrap();
    eventually(LIMIT, "the earlier job promoted", || async {
        queue.counts().await.unwrap().ready == 2
    })
    .await;
    assert!(
        second.elapsed() < Duration::from_millis(1500),
        "woken after {:?}",
        second.elapsed()
    );
    assert!(metrics.snapshot().contains_key("fresh"));
    stop.cancel();
    running.await.unwrap().unwrap();
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
