//! Shared test support: a real `redis-server` per test, on a free port, killed on drop.
//!
//! There is no mock: every test talks to a real server it started itself. If `redis-server` is
//! not installed the test fails at once and says how to install it.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Helpers that run the `punctual` binary (only built with the `cli` feature).
#[cfg(feature = "cli")]
pub mod cli;
pub mod proxy;
pub mod web;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A `redis-server` child process serving on 127.0.0.1:`port`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    persistent: bool,
    /// For a TLS server: the directory of `server.crt`, `server.key`, `ca.crt`, and the TLS
    /// port (`port` stays plain, for the readiness check).
    tls: Option<(PathBuf, u16)>,
    /// Started with `--cluster-enabled yes` (a cluster node with no slots yet), with this
    /// cluster bus port.
    cluster: Option<u16>,
    /// Set when this stands for a whole cluster ([`RedisServer::start`] under
    /// `PUNCTUAL_TEST_CLUSTER=1`): its nodes. `port` is then the first node's.
    nodes: Vec<RedisServer>,
    /// A replica of the server on this port (`--replicaof`).
    replica_of: Option<u16>,
}

/// Whether the suite runs against Redis Clusters: `PUNCTUAL_TEST_CLUSTER=1` makes
/// [`RedisServer::start`] start a 3-master cluster instead of one server, so that every test
/// that starts its Redis that way runs unchanged against a cluster (the README's test command
/// runs the suite both ways). Tests that need one server (killing it, `CONFIG SET`, `DEBUG`)
/// use [`RedisServer::start_standalone`].
pub fn on_cluster() -> bool {
    std::env::var("PUNCTUAL_TEST_CLUSTER").is_ok_and(|v| v == "1")
}

impl RedisServer {
    /// The usual test Redis: one server with persistence off, or, under
    /// `PUNCTUAL_TEST_CLUSTER=1` ([`on_cluster`]), a cluster of 3 masters.
    pub fn start() -> Self {
        if !on_cluster() {
            return Self::start_with(false);
        }
        let mut nodes = RedisCluster::start(3).nodes;
        let port = nodes[0].port;
        let dir = std::env::temp_dir().join(format!(
            "punctual-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        RedisServer {
            child: None,
            port,
            dir,
            persistent: false,
            tls: None,
            cluster: None,
            nodes: std::mem::take(&mut nodes),
            replica_of: None,
        }
    }

    /// A replica of `master` (`--replicaof`), persistence off; waits until its link is up.
    pub fn start_replica_of(master: &RedisServer) -> Self {
        let mut replica = Self::start_with(false);
        replica.replica_of = Some(master.port);
        replica.kill();
        assert!(replica.spawn(), "the replica did not start");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut conn = replica
                .client()
                .get_connection()
                .expect("connect to the replica");
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut conn)
                .unwrap_or_default();
            if info.contains("master_link_status:up") {
                return replica;
            }
            assert!(
                Instant::now() < deadline,
                "the replica did not sync: {info}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One server with persistence off, whatever [`on_cluster`] says: for tests that kill,
    /// restart or reconfigure their server.
    pub fn start_standalone() -> Self {
        Self::start_with(false)
    }

    /// The servers: this one, or every node of the cluster it stands for.
    pub fn each_node(&self) -> Vec<&RedisServer> {
        if self.is_cluster() {
            self.nodes.iter().collect()
        } else {
            vec![self]
        }
    }

    /// Whether this stands for a cluster.
    pub fn is_cluster(&self) -> bool {
        !self.nodes.is_empty()
    }

    /// A server with `appendonly yes` and `appendfsync always` when `persistent`, so that a
    /// restart (even after SIGKILL) keeps every acknowledged write.
    pub fn start_with(persistent: bool) -> Self {
        Self::start_inner(persistent, None)
    }

    /// A server that also listens with TLS, on certificates in `certs` (see
    /// `test_access.rs`); [`RedisServer::port`] is then the TLS port.
    pub fn start_tls(certs: &std::path::Path) -> Self {
        Self::start_inner(false, Some(certs))
    }

    /// A server in cluster mode (`--cluster-enabled yes`): a node of a cluster of one, with
    /// no slots assigned.
    pub fn start_cluster_node() -> Self {
        Self::start_inner_with(false, None, true)
    }

    /// A cluster node that keeps every acknowledged write on disk (`appendfsync always`)
    /// when `persistent`.
    pub fn start_cluster_node_with(persistent: bool) -> Self {
        Self::start_inner_with(persistent, None, true)
    }

    fn start_inner(persistent: bool, certs: Option<&std::path::Path>) -> Self {
        Self::start_inner_with(persistent, certs, false)
    }

    fn start_inner_with(persistent: bool, certs: Option<&std::path::Path>, cluster: bool) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "punctual-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // A port picked by the OS can be taken between our probe and redis' bind (by another
        // test's server, or as the local port of an outgoing connection): try a few, each
        // with fresh ports, the cluster bus port included.
        let mut last_log = String::new();
        for _ in 0..5 {
            // Made again for every try: a failed try's server removes it when dropped, and
            // redis-server cannot start in a missing directory (that turned one taken port
            // into five failed tries).
            std::fs::create_dir_all(&dir).expect("create a temp dir for redis-server");
            let port = free_port();
            let cluster = cluster.then(free_port);
            let mut server = RedisServer {
                child: None,
                port,
                dir: dir.clone(),
                persistent,
                tls: certs.map(|c| (c.to_owned(), free_port())),
                cluster,
                nodes: Vec::new(),
                replica_of: None,
            };
            if server.spawn() {
                return server;
            }
            last_log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
        }
        let tail: Vec<&str> = last_log.lines().rev().take(10).collect();
        panic!(
            "redis-server did not start on any of 5 free ports; the last try's log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }

    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg("redis.log")
            .arg("--save")
            .arg("")
            .arg("--daemonize")
            .arg("no")
            // DEBUG SLEEP, for the pause tests.
            .arg("--enable-debug-command")
            .arg("local");
        if let Some((certs, tls_port)) = &self.tls {
            cmd.arg("--tls-port")
                .arg(tls_port.to_string())
                .arg("--tls-cert-file")
                .arg(certs.join("server.crt"))
                .arg("--tls-key-file")
                .arg(certs.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(certs.join("ca.crt"))
                .args(["--tls-auth-clients", "no"]);
        }
        if let Some(bus) = self.cluster {
            // An explicit bus port: the default (port + 10000) may not exist or be free.
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .arg("--cluster-port")
            .arg(bus.to_string());
            if self.tls.is_some() {
                // The bus and the ports nodes announce to TLS clients are TLS too.
                cmd.args(["--tls-cluster", "yes", "--tls-replication", "yes"]);
            }
        }
        if let Some(master) = self.replica_of {
            cmd.arg("--replicaof")
                .arg("127.0.0.1")
                .arg(master.to_string());
        }
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = match cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server was not found on PATH. punctual's tests run against a real Redis \
                 (7.x) that they start themselves. Install it, e.g. \
                 `sudo apt-get install -y redis-server` on Debian/Ubuntu or \
                 `brew install redis` on macOS, then run the tests again."
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return true;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return false; // exited: most likely the port was taken
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port clients use: the TLS port of a TLS server.
    pub fn port(&self) -> u16 {
        self.tls.as_ref().map_or(self.port, |(_, port)| *port)
    }

    /// A plain client, for looking at keys directly.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("valid url")
    }

    /// An async connection with no response timeout (tests may read big replies); on a
    /// cluster, one that routes each command by its key.
    pub async fn conn(&self) -> TestConn {
        if self.is_cluster() {
            let urls: Vec<String> = self.nodes.iter().map(|n| n.url()).collect();
            let client = redis::cluster::ClusterClient::builder(urls)
                .response_timeout(Duration::from_secs(60))
                .build()
                .expect("a cluster client");
            return TestConn::Cluster(
                client
                    .get_async_connection()
                    .await
                    .expect("connect to the test cluster"),
            );
        }
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        TestConn::One(
            self.client()
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .expect("connect to the test redis"),
        )
    }

    /// The text of `INFO section`; on a cluster, every node's, one after the other (so that
    /// "contains" finds a line of any node and sums add up over the nodes).
    pub async fn info(&self, section: &str) -> String {
        let mut text = String::new();
        for server in self.each_node() {
            let mut conn = server
                .client()
                .get_multiplexed_async_connection()
                .await
                .expect("connect to the test redis");
            let info: String = redis::cmd("INFO")
                .arg(section)
                .query_async(&mut conn)
                .await
                .expect("INFO");
            text.push_str(&info);
        }
        text
    }

    /// Clients blocked (`BLMOVE` …), summed over the nodes of a cluster.
    pub async fn blocked_clients(&self) -> u64 {
        self.info("clients")
            .await
            .lines()
            .filter_map(|l| l.trim_end().strip_prefix("blocked_clients:"))
            .filter_map(|n| n.parse::<u64>().ok())
            .sum()
    }

    /// Commands the server ran during the next `window` (from `INFO commandstats`, every
    /// node of a cluster; commands inside scripts count too), apart from `INFO` (this
    /// measurement) and `BLMOVE` (idle waits, which block rather than poll).
    pub async fn commands_during(&self, window: Duration) -> u64 {
        let counted = |l: &&str| !l.starts_with("cmdstat_info") && !l.starts_with("cmdstat_blmove");
        let before = command_calls(&self.info("commandstats").await, counted);
        tokio::time::sleep(window).await;
        command_calls(&self.info("commandstats").await, counted).saturating_sub(before)
    }

    /// Calls of `command` (lower case, e.g. `evalsha`) so far, from `INFO commandstats`,
    /// summed over the nodes of a cluster.
    pub async fn calls_of(&self, command: &str) -> u64 {
        let prefix = format!("cmdstat_{command}:");
        command_calls(&self.info("commandstats").await, |l| l.starts_with(&prefix))
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        assert!(
            !self.is_cluster(),
            "this test kills its server: start it with RedisServer::start_standalone()"
        );
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server did not restart on port {}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A cluster's nodes are dropped (killed) with `nodes`.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on now (for a server a test starts).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// A plain connection to one server (one node of a cluster: no routing).
async fn node_conn(node: &RedisServer) -> redis::aio::MultiplexedConnection {
    node.client()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Every key of every node.
pub async fn all_keys(redis: &RedisServer) -> Vec<String> {
    let mut keys = Vec::new();
    for node in redis.each_node() {
        let mut k: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut node_conn(node).await)
            .await
            .unwrap();
        keys.append(&mut k);
    }
    keys
}

/// Every client connection of every node, as `CLIENT LIST` lines, but the one asking.
pub async fn all_clients(redis: &RedisServer) -> Vec<String> {
    let mut clients = Vec::new();
    for node in redis.each_node() {
        let mut conn = node_conn(node).await;
        let me: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut conn)
            .await
            .unwrap();
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut conn)
            .await
            .unwrap();
        let me = format!("id={me} ");
        clients.extend(
            list.lines()
                .filter(|l| !l.starts_with(&me))
                .map(str::to_owned),
        );
    }
    clients
}

/// The server's clock, unix ms.
pub async fn server_ms<C: redis::aio::ConnectionLike>(conn: &mut C) -> u64 {
    server_us(conn).await / 1000
}

/// The server's clock (`TIME`) in microseconds.
pub async fn server_us<C: redis::aio::ConnectionLike>(conn: &mut C) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    secs * 1_000_000 + micros
}

/// Polls `check` every 10 ms until it returns true; panics with `what` after `limit`.
/// For state that has no event to await (e.g. a count in Redis reaching a value).
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Turns on log output for a test when RUST_LOG is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Log lines captured by [`capture_logs`].
pub struct Logs {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
}

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures punctual's info-and-above log lines on this thread until the result is dropped.
/// For single-threaded tests (`#[tokio::test]`), whose tasks all run on this thread.
pub fn capture_logs() -> Logs {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("punctual=info")
        .with_ansi(false)
        .with_writer(move || LogWriter(sink.clone()))
        .finish();
    Logs {
        buf,
        _guard: tracing::subscriber::set_default(subscriber),
    }
}

/// Runs a worker for `queue` with `handler` until `stop` fires.
pub fn spawn_worker<T, H, Fut>(
    queue: &punctual::Queue,
    config: punctual::WorkerConfig,
    stop: &tokio_util::sync::CancellationToken,
    handler: H,
) -> tokio::task::JoinHandle<punctual::Result<()>>
where
    T: serde::de::DeserializeOwned + Send + 'static,
    H: Fn(punctual::Job<T>, punctual::Context) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = punctual::Outcome> + Send + 'static,
{
    let worker = punctual::Worker::new(queue.clone(), config).expect("valid worker config");
    tokio::spawn(worker.run(handler, stop.clone().cancelled_owned()))
}

/// Runs a promoter for `queue` with `heartbeat` until `stop` fires.
pub fn spawn_promoter(
    queue: &punctual::Queue,
    heartbeat: Duration,
    stop: &tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<punctual::Result<()>> {
    let config = punctual::PromoterConfig::default().set_heartbeat(heartbeat);
    let promoter = punctual::Promoter::new([queue.clone()], config).expect("valid promoter config");
    tokio::spawn(promoter.run(stop.clone().cancelled_owned()))
}

/// A promoter and a worker for one queue whose handler succeeds at every job and hands it to
/// the test: the usual harness for "did it run, and with what".
pub struct Running<T> {
    jobs: tokio::sync::mpsc::UnboundedReceiver<punctual::Job<T>>,
    stop: tokio_util::sync::CancellationToken,
    promoter: tokio::task::JoinHandle<punctual::Result<()>>,
    worker: tokio::task::JoinHandle<punctual::Result<()>>,
}

/// Starts [`Running`] on `queue`: a promoter with a 1 s heartbeat and a worker with `config`.
pub fn run_jobs<T>(queue: &punctual::Queue, config: punctual::WorkerConfig) -> Running<T>
where
    T: serde::de::DeserializeOwned + Send + 'static,
{
    let stop = tokio_util::sync::CancellationToken::new();
    let promoter = spawn_promoter(queue, Duration::from_secs(1), &stop);
    let (tx, jobs) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn_worker(queue, config, &stop, move |job: punctual::Job<T>, _| {
        // The receiver lives as long as the test; a send after it is dropped is harmless.
        let _ = tx.send(job);
        async { punctual::Outcome::Done }
    });
    Running {
        jobs,
        stop,
        promoter,
        worker,
    }
}

impl<T> Running<T> {
    /// The next job a handler ran; panics after 20 s.
    pub async fn next(&mut self) -> punctual::Job<T> {
        tokio::time::timeout(Duration::from_secs(20), self.jobs.recv())
            .await
            .expect("no job ran within 20 s")
            .expect("the worker stopped")
    }

    /// The next job a handler ran, waiting as long as it takes (for a timeout around it).
    pub async fn next_maybe(&mut self) -> Option<punctual::Job<T>> {
        self.jobs.recv().await
    }

    /// True while neither the promoter nor the worker has returned.
    pub fn is_running(&self) -> bool {
        !self.promoter.is_finished() && !self.worker.is_finished()
    }

    /// Stops both and checks that they ended cleanly.
    pub async fn stop(self) {
        self.stop.cancel();
        self.promoter.await.unwrap().unwrap();
        self.worker.await.unwrap().unwrap();
    }
}

/// The clock of the Redis at `url`, read on a fresh connection (for use inside handlers).
pub async fn server_ms_at(url: &str) -> u64 {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    server_ms(&mut conn).await
}

/// Lets the server at `conn` use `room` bytes more than it uses now, then refuse writes
/// (`maxmemory` with `noeviction`): how the tests make a Redis that is out of memory.
pub async fn limit_memory(conn: &mut TestConn, room: u64) {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    config_set(conn, "maxmemory-policy", "noeviction").await;
    config_set(conn, "maxmemory", &(used + room).to_string()).await;
}

/// `CONFIG SET name value`.
pub async fn config_set(conn: &mut TestConn, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(conn)
        .await
        .unwrap();
}

/// A real Redis Cluster on this machine: `masters` cluster-enabled `redis-server`s joined with
/// `redis-cli --cluster create`, every slot assigned. Killed (with their data) on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` nodes and makes them one cluster; waits until every node reports
    /// `cluster_state:ok`. Fails loudly if `redis-cli` is missing.
    pub fn start(masters: usize) -> Self {
        Self::start_with(masters, 0, false)
    }

    /// `masters` masters with `replicas` replicas each (`--cluster-replicas`), persistent
    /// (`appendfsync always`) when `persistent`. Waits until every replica is in sync.
    pub fn start_with(masters: usize, replicas: usize, persistent: bool) -> Self {
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| RedisServer::start_cluster_node_with(persistent))
            .collect();
        Self::create(nodes, masters, replicas, None)
    }

    /// `masters` masters (at least 3) speaking TLS to clients and to each other, with the
    /// certificates in `certs` (see `test_access.rs`); node ports are their TLS ports.
    pub fn start_tls(masters: usize, certs: &std::path::Path) -> Self {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| RedisServer::start_inner_with(false, Some(certs), true))
            .collect();
        Self::create(nodes, masters, 0, Some(certs))
    }

    fn create(
        nodes: Vec<RedisServer>,
        masters: usize,
        replicas: usize,
        tls: Option<&std::path::Path>,
    ) -> Self {
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        if masters < 3 && replicas == 0 {
            // `redis-cli --cluster create` wants 3 masters: join smaller clusters by hand.
            Self::join_by_hand(&nodes);
        } else {
            let mut create = Command::new("redis-cli");
            if let Some(certs) = tls {
                create
                    .arg("--tls")
                    .arg("--cacert")
                    .arg(certs.join("ca.crt"));
            }
            let out = match create
                .arg("--cluster")
                .arg("create")
                .args(&addrs)
                .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
                .output()
            {
                Ok(out) => out,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "redis-cli was not found on PATH; it comes with redis-server \
                     (`sudo apt-get install -y redis-server`) and makes the test clusters"
                ),
                Err(e) => panic!("cannot run redis-cli: {e}"),
            };
            assert!(
                out.status.success(),
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let mut conn = node
                    .client()
                    .get_connection()
                    .expect("connect to a cluster node");
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut conn)
                    .unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not become ok: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let cluster = RedisCluster { nodes };
        if replicas > 0 {
            let deadline = Instant::now() + Duration::from_secs(30);
            while cluster.replicas_in_sync() < masters * replicas {
                assert!(Instant::now() < deadline, "replicas did not sync");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    /// Splits the slots evenly over `nodes` (`CLUSTER ADDSLOTSRANGE`) and has them meet.
    fn join_by_hand(nodes: &[RedisServer]) {
        let share = 16384 / nodes.len();
        for (i, node) in nodes.iter().enumerate() {
            let mut conn = node.client().get_connection().expect("connect to a node");
            let first = i * share;
            let last = if i + 1 == nodes.len() {
                16383
            } else {
                first + share - 1
            };
            let () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query(&mut conn)
                .expect("CLUSTER ADDSLOTSRANGE");
            if i > 0 {
                let bus = node.cluster.expect("a cluster node");
                let mut first_conn = nodes[0].client().get_connection().expect("connect");
                let () = redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(node.port())
                    .arg(bus)
                    .query(&mut first_conn)
                    .expect("CLUSTER MEET");
            }
        }
    }

    /// `INFO replication` of node `i`, as `field:value` lines.
    pub fn replication(&self, i: usize) -> String {
        let mut conn = self.nodes[i]
            .client()
            .get_connection()
            .expect("connect to a node");
        redis::cmd("INFO")
            .arg("replication")
            .query(&mut conn)
            .unwrap_or_default()
    }

    /// How many replicas report their link to their master up.
    pub fn replicas_in_sync(&self) -> usize {
        (0..self.nodes.len())
            .filter(|&i| {
                let info = self.replication(i);
                info.contains("role:slave") && info.contains("master_link_status:up")
            })
            .count()
    }

    /// Indexes of the nodes that are masters now.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.replication(i).contains("role:master"))
            .collect()
    }

    /// Fails over the master of replica `i` to it with `CLUSTER FAILOVER` (the replica
    /// catches up first: nothing acknowledged is lost) and waits until it is a master. A
    /// manual failover that cannot finish within Redis's own limit (5 s, when the master is
    /// busy on a loaded machine) is abandoned by Redis; it is asked again after 6 s.
    pub fn failover(&self, i: usize) {
        let mut conn = self.nodes[i]
            .client()
            .get_connection()
            .expect("connect to a node");
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut asked = None;
        while !self.replication(i).contains("role:master") {
            assert!(Instant::now() < deadline, "node {i} did not become master");
            if asked.is_none_or(|at: Instant| at.elapsed() > Duration::from_secs(6)) {
                let sent: redis::RedisResult<()> =
                    redis::cmd("CLUSTER").arg("FAILOVER").query(&mut conn);
                // Asked again, it may have become master in between: then it refuses.
                if asked.is_none() {
                    sent.expect("CLUSTER FAILOVER");
                }
                asked = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every node's URL, comma-separated: a seed list.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The URL of the first node (any node answers for the cluster).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }
}

/// The total of `event` on `queue` (its `stats`), read now.
pub async fn total(queue: &punctual::Queue, event: punctual::Event) -> u64 {
    queue.stats().await.unwrap().totals.get(event)
}

/// A test's connection: to one server, or to a cluster (routing each command by its key).
#[derive(Clone)]
pub enum TestConn {
    One(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for TestConn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            TestConn::One(c) => c.req_packed_command(cmd),
            TestConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            TestConn::One(c) => c.req_packed_commands(pipeline, offset, count),
            TestConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// A primary, a replica and three Redis Sentinels (`redis-server --sentinel`) watching it as
/// service `punctual` (quorum 2, down after 1 s). Everything is killed on drop.
pub struct SentinelSetup {
    pub primary: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<(Child, u16, PathBuf)>,
}

impl SentinelSetup {
    pub const SERVICE: &'static str = "punctual";

    pub fn start() -> Self {
        let primary = RedisServer::start_standalone();
        let replica = RedisServer::start_replica_of(&primary);
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "punctual-sentinel-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("a sentinel dir");
            let conf = dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {} 1000\n\
                     sentinel failover-timeout {} 5000\n",
                    dir.display(),
                    Self::SERVICE,
                    primary.port(),
                    Self::SERVICE,
                    Self::SERVICE
                ),
            )
            .expect("write sentinel.conf");
            let child = match Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "redis-server was not found on PATH (it also runs the sentinels): \
                     `sudo apt-get install -y redis-server`"
                ),
                Err(e) => panic!("cannot start a sentinel: {e}"),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while !ping(port) {
                assert!(
                    Instant::now() < deadline,
                    "sentinel on {port} did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            sentinels.push((child, port, dir));
        }
        SentinelSetup {
            primary,
            replica,
            sentinels,
        }
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/punctual`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(_, port, _)| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), Self::SERVICE)
    }

    /// The port of the primary the sentinels name now.
    pub fn primary_port(&self) -> Option<u16> {
        let (_, port, _) = self.sentinels.first()?;
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .ok()?
            .get_connection()
            .ok()?;
        let addr: Vec<String> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(Self::SERVICE)
            .query(&mut conn)
            .ok()?;
        addr.get(1)?.parse().ok()
    }
}

impl Drop for SentinelSetup {
    fn drop(&mut self) {
        for (child, _, dir) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The `calls=` counts of the `cmdstat_` lines of `INFO commandstats` text that `keep` keeps,
/// summed.
fn command_calls(info: &str, keep: impl Fn(&&str) -> bool) -> u64 {
    info.lines()
        .filter(|l| l.starts_with("cmdstat_"))
        .filter(keep)
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}
