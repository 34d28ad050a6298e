//! Redis Cluster, against a real one the test starts (3 masters, `redis-cli --cluster
//! create`). Until cluster support lands, every command of the `punctual` binary refuses a
//! cluster before it reads or writes a key: a one-shot command used to write keys on two nodes
//! and then print a raw `MOVED` error.

mod support;

use std::time::Duration;

use support::cli::*;
use support::RedisCluster;

/// Every command, pointed at any node of a 3-master cluster, exits 1 with one line naming
/// cluster mode, and no node holds a key afterwards.
#[tokio::test]
async fn every_command_refuses_a_cluster_before_writing() {
    let cluster = RedisCluster::start(3);
    let dir = out_dir("cluster");
    let file = dir.join("jobs.ndjson");
    std::fs::write(&file, "{\"in\":\"1s\"}\n").unwrap();
    let file = file.to_str().unwrap();
    for node in &cluster.nodes {
        for args in [
            vec!["schedule", "q", "--in", "1s"],
            vec!["import", "q", file],
            vec!["show", "q", "x"],
            vec!["ls", "q"],
            vec!["stats"],
            vec!["cancel", "q", "x"],
            vec!["queue", "rm", "q"],
            vec!["dead", "purge", "q", "--all"],
        ] {
            fails(&run(node, &args, None), 1, "cluster mode");
        }
    }
    // The long-running commands refuse too (their start-up check), and exit at once.
    for args in [vec!["promote"], vec!["work", "q", "--exec", "true"]] {
        let mut child = punctual(&cluster.nodes[1])
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(10));
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("cluster mode"), "{args:?}: {err}");
    }
    for node in &cluster.nodes {
        let mut conn = node.conn().await;
        let keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
        assert_eq!(keys, 0, "node {} holds keys", node.port());
    }
}
