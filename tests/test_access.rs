//! Access control: an ACL user restricted to the namespace's keys and channels and to the
//! commands punctual needs (the exact line README.md documents), wrong credentials, missing
//! permissions, and TLS (`rediss://`) against a redis-server with a certificate made here.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use punctual::{
    Error, Job, JobState, Namespace, NewJob, Outcome, Promoter, PromoterConfig, Purge, Queue,
    QueueConfig, TlsConfig, When, WorkerConfig,
};
use support::{eventually, run_jobs, spawn_worker, RedisServer};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);

/// The ACL rules README.md gives for the default prefix, after `ACL SETUSER punctual on
/// >PASSWORD`. A test below checks that README.md still says exactly this.
const ACL_RULES: &str = "resetkeys ~punctual:* resetchannels &punctual:* &punctual:{*}:wake \
    -@all +@read +@write +@scripting +@pubsub +@transaction +@connection +time -@dangerous +info \
    +cluster|slots";

/// Sends `args` to the server, or to every node of a cluster (ACLs are per node).
async fn admin(redis: &RedisServer, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut reply = Ok(redis::Value::Nil);
    for node in redis.each_node() {
        let mut conn = node.client().get_multiplexed_async_connection().await?;
        reply = redis::cmd(args[0])
            .arg(&args[1..])
            .query_async(&mut conn)
            .await;
    }
    reply
}

async fn set_user(redis: &RedisServer, name: &str, password: &str, rules: &str) {
    let mut args = vec!["ACL", "SETUSER", name, "reset", "on"];
    let pass = format!(">{password}");
    args.push(&pass);
    args.extend(rules.split_whitespace());
    admin(redis, &args).await.unwrap();
}

fn user_url(redis: &RedisServer, user: &str, password: &str) -> String {
    format!("redis://{user}:{password}@127.0.0.1:{}/", redis.port())
}

/// Everything punctual does (schedule, a namespace promoter, a worker with retries and the
/// dead set, inspection, cancel, reschedule, dead retry and purge, the server check) works as
/// the restricted user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_the_documented_acl_can_do_everything() {
    let redis = RedisServer::start();
    set_user(&redis, "punctual", "s3cret", ACL_RULES).await;
    let url = user_url(&redis, "punctual", "s3cret");
    let ns = Namespace::connect(&url, QueueConfig::default())
        .await
        .unwrap();
    let info = ns.server_info().await.unwrap();
    assert!(info.version.starts_with('7'), "{info:?}");
    let queue = ns.queue("acl").await.unwrap();
    assert_eq!(ns.queue_names().await.unwrap(), ["acl"]);

    let stop = CancellationToken::new();
    let promoter = Promoter::for_namespace(
        ns.clone(),
        PromoterConfig::default().set_heartbeat(Duration::from_secs(1)),
    )
    .unwrap();
    let metrics = promoter.metrics();
    let promoter = tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default().set_backoff(punctual::Fixed::new(Duration::ZERO).unwrap()),
        &stop,
        |job: Job<String>, _| async move {
            match (job.data.as_str(), job.attempt) {
                ("flaky", 1) => Outcome::fail("first attempt fails"),
                ("doomed", _) => Outcome::kill("never works"),
                _ => Outcome::Done,
            }
        },
    );
    for (id, data) in [("ok", "ok"), ("flaky", "flaky"), ("doomed", "doomed")] {
        queue.schedule(NewJob::new(data).id(id)).await.unwrap();
    }
    eventually(LIMIT, "two jobs done and one dead", || async {
        let c = queue.counts().await.unwrap();
        let t = queue.stats().await.unwrap().totals;
        c.dead == 1 && t.get(punctual::Event::Completed) == 2
    })
    .await;
    assert_eq!(support::total(&queue, punctual::Event::Retried).await, 1);
    assert_eq!(queue.list(JobState::Dead, 10).await.unwrap().len(), 1);
    assert_eq!(
        queue
            .retry_dead(&["doomed".to_owned()])
            .await
            .unwrap()
            .len(),
        1
    );
    eventually(LIMIT, "the revived job to die again", || async {
        queue.counts().await.unwrap().dead == 1
    })
    .await;
    assert_eq!(queue.purge_dead(Purge::All).await.unwrap(), 1);
    queue
        .schedule(
            NewJob::new("later")
                .id("later")
                .delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    queue
        .reschedule("later", When::In(Duration::from_secs(7200)))
        .await
        .unwrap();
    queue.cancel("later").await.unwrap();
    stop.cancel();
    promoter.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
    // Recorded after each call returns, so read once the promoter has stopped.
    assert!(metrics.snapshot()["acl"].promoted >= 3);
}

/// A wrong password is refused at connect with a typed error; a user without the key pattern
/// or without a command gets [`Error::PermissionDenied`] naming what was refused.
#[tokio::test]
async fn wrong_credentials_and_missing_permissions_are_named() {
    let redis = RedisServer::start();
    set_user(&redis, "punctual", "s3cret", ACL_RULES).await;
    let err = Queue::connect(&user_url(&redis, "punctual", "wrong"), "q")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuthenticationFailed { .. }), "{err:?}");
    assert!(
        !err.to_string().contains("wrong"),
        "password in the message: {err}"
    );

    // Keys of another prefix only: opening the queue (HSETNX on its meta) is refused.
    let rules = ACL_RULES.replace("~punctual:*", "~other:*");
    set_user(&redis, "narrow", "pw", &rules).await;
    let err = Queue::connect(&user_url(&redis, "narrow", "pw"), "q")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("permission"), "{err}");

    // Keys allowed, but no scripts: scheduling is refused, and the message says why.
    set_user(
        &redis,
        "noscript",
        "pw",
        &format!("{ACL_RULES} -@scripting"),
    )
    .await;
    let queue = Queue::connect(&user_url(&redis, "noscript", "pw"), "q")
        .await
        .unwrap();
    let err = queue.schedule(NewJob::new(&1)).await.unwrap_err();
    assert!(
        matches!(err, Error::PermissionDenied { op: "schedule", .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("evalsha"),
        "the refused command is not named: {err}"
    );

    // Scripts allowed but a command they run is not (TIME): refused inside the script.
    set_user(&redis, "notime", "pw", &format!("{ACL_RULES} -time")).await;
    let queue = Queue::connect(&user_url(&redis, "notime", "pw"), "q")
        .await
        .unwrap();
    let err = queue.schedule(NewJob::new(&1)).await.unwrap_err();
    assert!(
        matches!(err, Error::PermissionDenied { op: "schedule", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("can't run this command"), "{err}");
}

/// README.md documents exactly the rules the tests above use.
#[test]
fn the_readme_documents_this_acl() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let line = format!("ACL SETUSER punctual on >CHANGE-ME {ACL_RULES}");
    assert!(
        readme.contains(&line),
        "README.md lacks the ACL line:\n{line}"
    );
}

/// Writes a CA and a server certificate for 127.0.0.1 with the openssl CLI.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "openssl was not found ({e}); the TLS test makes its certificates with it: \
                     `sudo apt-get install -y openssl`"
                )
            });
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=punctual test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
}

/// `rediss://` with the CA given to punctual: schedule, promote and work over TLS. Without the
/// CA the server's certificate is refused, and the error says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("punctual-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let redis = RedisServer::start_tls(&dir);
    let url = format!("rediss://127.0.0.1:{}/", redis.port());

    let err = Queue::connect(&url, "tls").await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    let config = QueueConfig::default().set_tls(TlsConfig::default().set_root_certificate(ca));
    let queue = Queue::connect_with(&url, "tls", config).await.unwrap();
    let mut running = run_jobs::<u32>(&queue, WorkerConfig::default());
    queue
        .schedule(NewJob::new(&7).delay(Duration::from_millis(50)))
        .await
        .unwrap();
    assert_eq!(running.next().await.data, 7);

    // The binary: --tls-ca-cert does the same; a missing file is an input error (exit 2).
    let punctual = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_punctual"))
            .args(["--redis-url", &url])
            .args(args)
            .output()
            .unwrap()
    };
    let ca_path = dir.join("ca.crt");
    let ca_path = ca_path.to_str().unwrap();
    let out = punctual(&[
        "--tls-ca-cert",
        ca_path,
        "schedule",
        "tls",
        "--in",
        "1h",
        "--id",
        "cli",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        queue
            .get("cli")
            .await
            .unwrap()
            .expect("the job exists")
            .state,
        JobState::Scheduled
    );
    let out = punctual(&["--tls-ca-cert", "/nonexistent.pem", "stats"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-ca-cert: cannot read"));
    running.stop().await;
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Redis Cluster over TLS (clients and the cluster bus): given any node's `rediss://` URL and
/// the CA, punctual finds the cluster, checks every master, and schedules, promotes and works
/// a partitioned queue, wake-ups included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_cluster() {
    let dir = std::env::temp_dir().join(format!("punctual-tls-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let cluster = support::RedisCluster::start_tls(3, &dir);
    let url = format!("rediss://127.0.0.1:{}/", cluster.nodes[1].port());
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    let config = QueueConfig::default().set_tls(TlsConfig::default().set_root_certificate(ca));
    let ns = Namespace::connect(&url, config).await.unwrap();
    assert!(ns.is_cluster());
    assert_eq!(ns.servers().await.unwrap().len(), 3);
    let queue = ns.create_queue("tls", 3).await.unwrap();
    let mut running = run_jobs::<u32>(&queue, WorkerConfig::default());
    for i in 0..30u32 {
        queue
            .schedule(NewJob::new(&i).delay(Duration::from_millis(20)))
            .await
            .unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..30 {
        seen.insert(running.next().await.data);
    }
    assert_eq!(seen.len(), 30);
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
