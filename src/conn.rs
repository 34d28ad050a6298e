//! How a namespace reaches Redis: one server, or a Redis Cluster.
//!
//! A URL names one server (`redis://host:6379/`) or several seed nodes of a cluster
//! (`redis://h1:7000,h2:7001`; later entries without a scheme take the first one's scheme and
//! credentials). One URL that points at a node of a cluster is detected (`INFO cluster`) and
//! used as the cluster's seed, so any node of a cluster works.
//!
//! `redis+sentinel://[user:password@]host:26379,host2:26379/NAME` reaches the primary of the
//! service NAME through Redis Sentinel: the sentinels are asked for the primary, and asked
//! again whenever a command finds the primary gone or read-only (a failover), so the next
//! command goes to the new one. The credentials are the data nodes'.
//!
//! On a cluster every command, pipeline and script call is routed by its key's hash slot by the
//! redis crate's cluster connection, which follows `MOVED` and `ASK` (resharding) and refreshes
//! its slot map; none of it reaches the caller. Every key of one queue partition shares one
//! hash tag, so every script call and pipeline here touches one slot. The registry
//! (`p:queues`) lives in its own slot and is only ever read or written on its own.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::config::QueueConfig;
use crate::error::{redact_url, Error, Result};

/// A connection of a namespace; what [`crate::Queue`]'s operations send through.
#[derive(Clone)]
pub(crate) enum Conn {
    /// The shared, auto-reconnecting connection to one server.
    Manager(ConnectionManager),
    /// A connection of its own to one server (blocking commands).
    Own(MultiplexedConnection),
    /// A cluster connection: routes by slot, follows `MOVED`/`ASK`.
    Cluster(ClusterConnection),
    /// The primary found through Sentinel, found again after a failover.
    Sentinel(SentinelConn),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Own(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => Box::pin(async move {
                let mut conn = c.primary().await?;
                let result = conn.req_packed_command(cmd).await;
                c.check(&result);
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Own(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(c) => Box::pin(async move {
                let mut conn = c.primary().await?;
                let result = conn.req_packed_commands(pipeline, offset, count).await;
                c.check(&result);
                // A pipeline that ignores errors answers READONLY per command, not as an Err.
                if let Ok(replies) = &result {
                    if replies.iter().any(is_readonly) {
                        c.forget();
                    }
                }
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Own(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(_) => 0,
        }
    }
}

/// The connection to the primary of a Sentinel-monitored service, shared by every clone; it
/// is dropped (and the primary looked up again) when a command shows the primary is gone.
#[derive(Clone)]
pub(crate) struct SentinelConn {
    sentinel: Arc<tokio::sync::Mutex<redis::sentinel::SentinelClient>>,
    current: Arc<std::sync::Mutex<Option<(redis::Client, MultiplexedConnection)>>>,
    /// Incremented each time a new primary connection is made: a promoter sweeps its queues
    /// when it changes (jobs may have come due while the old primary was going).
    generation: Arc<std::sync::atomic::AtomicU64>,
    config: redis::AsyncConnectionConfig,
}

impl SentinelConn {
    /// The current primary's client and connection, asking the sentinels when there is none.
    async fn current(&self) -> redis::RedisResult<(redis::Client, MultiplexedConnection)> {
        if let Some(found) = self.lock().clone() {
            return Ok(found);
        }
        let mut sentinel = self.sentinel.lock().await;
        // Another task may have looked it up while this one waited.
        if let Some(found) = self.lock().clone() {
            return Ok(found);
        }
        let client = sentinel.async_get_client().await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *self.lock() = Some((client.clone(), conn.clone()));
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(primary = ?client.get_connection_info().addr(), "connected to the primary named by sentinel");
        Ok((client, conn))
    }

    async fn primary(&self) -> redis::RedisResult<MultiplexedConnection> {
        Ok(self.current().await?.1)
    }

    /// Forgets the primary when `result` shows it is gone or demoted.
    fn check<T>(&self, result: &redis::RedisResult<T>) {
        if let Err(e) = result {
            let demoted = e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
            if demoted || e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                self.forget();
            }
        }
    }

    /// The next command asks the sentinels for the primary again.
    fn forget(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(redis::Client, MultiplexedConnection)>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a namespace is connected to, with what it needs to open more connections.
#[derive(Clone)]
pub(crate) enum Backend {
    /// One Redis server.
    Single {
        client: redis::Client,
        conn: ConnectionManager,
    },
    /// The primary of a Sentinel-monitored service.
    Sentinel(SentinelConn),
    /// A Redis Cluster, reached through its seed nodes.
    Cluster {
        seeds: Vec<String>,
        conn: ClusterConnection,
        config: Box<QueueConfig>,
    },
}

/// The seed URLs in `url`: one per comma-separated entry. An entry without `://` takes the
/// first entry's scheme and credentials (`redis://user:pw@h1:7000,h2:7001`).
pub(crate) fn seeds(url: &str) -> Vec<String> {
    let mut entries = url.split(',').map(str::trim).filter(|e| !e.is_empty());
    let Some(first) = entries.next() else {
        return vec![url.to_owned()];
    };
    // `scheme://userinfo@` of the first entry, carried over to bare `host:port` entries.
    let lead = match first.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, _)) => format!("{scheme}://{userinfo}@"),
            None => format!("{scheme}://"),
        },
        None => "redis://".to_owned(),
    };
    std::iter::once(first.to_owned())
        .chain(entries.map(|e| {
            if e.contains("://") {
                e.to_owned()
            } else {
                format!("{lead}{e}")
            }
        }))
        .collect()
}

impl Backend {
    /// Connects to `url` (see the module docs); `queue` names the queue in an error.
    pub(crate) async fn connect(url: &str, config: &QueueConfig, queue: &str) -> Result<Backend> {
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            return Backend::sentinel(url, rest, config, queue).await;
        }
        let seeds = seeds(url);
        if seeds.len() > 1 {
            return Backend::cluster(seeds, config, queue).await;
        }
        let client = single_client(url, config)?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout()))
            .set_connection_timeout(Some(config.connect_timeout()))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let mut conn = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .map_err(|source| Error::from_redis(queue, "connect", source))?;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut conn)
            .await
            .map_err(|source| Error::from_redis(queue, "connect", source))?;
        if info.lines().any(|l| l.trim_end() == "cluster_enabled:1") {
            // A node that has not joined a cluster (or a cluster missing a shard) would only
            // fail later, command by command, with a vague routing error: say so now.
            // A user without `cluster|info` (not needed otherwise) skips this check.
            let state: String = match redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut conn)
                .await
            {
                Ok(state) => state,
                Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) => {
                    "cluster_state:ok".to_owned()
                }
                Err(source) => return Err(Error::from_redis(queue, "connect", source)),
            };
            let field = |name: &str| {
                state
                    .lines()
                    .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
                    .unwrap_or("?")
                    .to_owned()
            };
            if field("cluster_state") != "ok" {
                return Err(Error::ClusterNotReady {
                    url: redact_url(url),
                    state: format!(
                        "cluster_state:{}, {} of 16384 slots assigned, {} ok",
                        field("cluster_state"),
                        field("cluster_slots_assigned"),
                        field("cluster_slots_ok")
                    ),
                });
            }
            return Backend::cluster(seeds, config, queue).await;
        }
        Ok(Backend::Single { client, conn })
    }

    /// Through the sentinels of `rest` (`[user:password@]h1:p1,h2:p2/NAME`).
    async fn sentinel(url: &str, rest: &str, config: &QueueConfig, queue: &str) -> Result<Backend> {
        let invalid = |detail: &str| {
            Error::InvalidUrl {
            url: redact_url(url),
            source: redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "bad sentinel url",
                format!("{detail}; expected redis+sentinel://[user:password@]host:port[,host:port...]/NAME"),
            )),
        }
        };
        let (userinfo, hosts) = match rest.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, rest),
        };
        let (hosts, name) = hosts
            .split_once('/')
            .ok_or_else(|| invalid("no service name"))?;
        let name = name.trim_end_matches('/');
        if name.is_empty() {
            return Err(invalid("no service name"));
        }
        let mut addrs = Vec::new();
        for host in hosts.split(',').filter(|h| !h.is_empty()) {
            let (h, p) = host
                .rsplit_once(':')
                .ok_or_else(|| invalid("a sentinel without a port"))?;
            let port = p
                .parse()
                .map_err(|_| invalid("a sentinel port that is not a number"))?;
            addrs.push(redis::ConnectionAddr::Tcp(h.to_owned(), port));
        }
        if addrs.is_empty() {
            return Err(invalid("no sentinel"));
        }
        let mut builder = redis::sentinel::SentinelClientBuilder::new(
            addrs,
            name,
            redis::sentinel::SentinelServerType::Master,
        )
        .map_err(|e| Error::from_redis(queue, "connect", e))?;
        if let Some(userinfo) = userinfo {
            match userinfo.split_once(':') {
                Some((user, password)) => {
                    if !user.is_empty() {
                        builder = builder.set_client_to_redis_username(user);
                    }
                    builder = builder.set_client_to_redis_password(password);
                }
                None => builder = builder.set_client_to_redis_password(userinfo),
            }
        }
        let sentinel = builder
            .build()
            .map_err(|e| Error::from_redis(queue, "connect", e))?;
        let conn = SentinelConn {
            sentinel: Arc::new(tokio::sync::Mutex::new(sentinel)),
            current: Arc::new(std::sync::Mutex::new(None)),
            generation: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            config: redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connect_timeout()))
                .set_response_timeout(Some(config.response_timeout())),
        };
        conn.current()
            .await
            .map_err(|e| Error::from_redis(queue, "connect", e))?;
        Ok(Backend::Sentinel(conn))
    }

    async fn cluster(seeds: Vec<String>, config: &QueueConfig, queue: &str) -> Result<Backend> {
        let client =
            cluster_builder(&seeds, config)
                .build()
                .map_err(|source| Error::InvalidUrl {
                    url: redact_url(&seeds.join(",")),
                    source,
                })?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|source| Error::from_redis(queue, "connect", source))?;
        Ok(Backend::Cluster {
            seeds,
            conn,
            config: Box::new(config.clone()),
        })
    }

    /// A clone of the shared connection.
    pub(crate) fn conn(&self) -> Conn {
        match self {
            Backend::Single { conn, .. } => Conn::Manager(conn.clone()),
            Backend::Cluster { conn, .. } => Conn::Cluster(conn.clone()),
            Backend::Sentinel(conn) => Conn::Sentinel(conn.clone()),
        }
    }

    /// How many primaries a Sentinel backend has connected to so far (0 otherwise): a change
    /// means a failover was followed.
    pub(crate) fn generation(&self) -> u64 {
        match self {
            Backend::Sentinel(conn) => conn.generation.load(std::sync::atomic::Ordering::Relaxed),
            _ => 0,
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Backend::Cluster { .. })
    }

    /// A new connection of its own whose replies may take up to `response_timeout`: for
    /// blocking commands, which must not hold up the shared connection.
    pub(crate) async fn own_conn(&self, response_timeout: Duration) -> redis::RedisResult<Conn> {
        match self {
            Backend::Single { client, .. } => own(client, response_timeout).await,
            Backend::Cluster { seeds, config, .. } => {
                let client = cluster_builder(seeds, config)
                    .response_timeout(response_timeout)
                    .build()?;
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
            Backend::Sentinel(sentinel) => {
                own(&sentinel.current().await?.0, response_timeout).await
            }
        }
    }

    /// A RESP3 cluster connection whose pushes (pub/sub messages, disconnections) go to
    /// `sender`; `None` for a single server (which uses a classic pub/sub connection).
    pub(crate) async fn cluster_push_conn(
        &self,
        sender: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Option<redis::RedisResult<ClusterConnection>> {
        let Backend::Cluster { seeds, config, .. } = self else {
            return None;
        };
        let connect = async {
            cluster_builder(seeds, config)
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(sender)
                .build()?
                .get_async_connection()
                .await
        };
        Some(connect.await)
    }

    /// The client of the one server (the current primary, through Sentinel), for classic
    /// pub/sub; `None` on a cluster.
    pub(crate) async fn single_client(&self) -> Option<redis::RedisResult<redis::Client>> {
        match self {
            Backend::Single { client, .. } => Some(Ok(client.clone())),
            Backend::Sentinel(sentinel) => Some(sentinel.current().await.map(|(client, _)| client)),
            Backend::Cluster { .. } => None,
        }
    }
}

/// A reply that says the server is a read-only replica (a demoted primary).
fn is_readonly(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::ReadOnly))
}

/// A connection of its own to `client`'s server, replies within `response_timeout`.
async fn own(client: &redis::Client, response_timeout: Duration) -> redis::RedisResult<Conn> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response_timeout));
    Ok(Conn::Own(
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await?,
    ))
}

fn single_client(url: &str, config: &QueueConfig) -> Result<redis::Client> {
    match config.tls() {
        Some(tls) if url.starts_with("rediss://") => {
            redis::Client::build_with_tls(url, tls.certificates())
        }
        _ => redis::Client::open(url),
    }
    .map_err(|source| Error::InvalidUrl {
        url: redact_url(url),
        source,
    })
}

fn cluster_builder(seeds: &[String], config: &QueueConfig) -> redis::cluster::ClusterClientBuilder {
    let mut builder = ClusterClient::builder(seeds.iter().map(String::as_str))
        .connection_timeout(config.connect_timeout())
        .response_timeout(config.response_timeout())
        .retries(6);
    if let Some(tls) = config.tls() {
        builder = builder.certs(tls.certificates());
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lists_share_the_first_entrys_scheme_and_credentials() {
        assert_eq!(seeds("redis://h:6379/"), ["redis://h:6379/"]);
        assert_eq!(
            seeds("rediss://u:p@h1:7000,h2:7001, redis://h3:7002"),
            [
                "rediss://u:p@h1:7000",
                "rediss://u:p@h2:7001",
                "redis://h3:7002"
            ]
        );
        assert_eq!(seeds("redis://h1:1,,"), ["redis://h1:1"]);
    }
}
