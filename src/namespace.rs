//! A namespace: one Redis and one key prefix, holding any number of queues.
//!
//! Opening a queue records its name in the namespace's registry (`prefix:queues`, a SET), so
//! that tools that serve "every queue" (the sidecar promoter, `punctual stats`) can find queues
//! they were not told about. The registry is the only key outside a queue's hash tag and no
//! script touches it; a queue that is missing from it still works, it is just not discovered.

use std::sync::Arc;

use crate::config::QueueConfig;
use crate::conn::{Backend, Conn};
use crate::error::{redact_url, Error, Result};
use crate::keys::{validate_name, Keys};
use crate::server::ServerInfo;

/// Longest list of queue names read from the registry: a bound on unbounded Redis work.
pub const MAX_REGISTERED_QUEUES: usize = 10_000;

/// A connection to one Redis and one key prefix: the factory of [`Queue`](crate::Queue) handles that share
/// the connection. Cheap to clone.
#[derive(Clone)]
pub struct Namespace {
    inner: Arc<Inner>,
}

struct Inner {
    config: QueueConfig,
    url: String,
    backend: Backend,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("prefix", &self.inner.config.prefix())
            .field("url", &self.inner.url)
            .finish()
    }
}

impl Namespace {
    /// Connects to the Redis at `url`, for the queues under `config`'s prefix.
    ///
    /// # Errors
    /// [`Error::InvalidQueueName`] (a bad prefix), [`Error::InvalidUrl`], [`Error::Redis`]
    /// (unreachable, refused credentials; reported against queue `*`).
    pub async fn connect(url: &str, config: QueueConfig) -> Result<Namespace> {
        Namespace::connect_for(url, config, "*").await
    }

    /// As [`Namespace::connect`], naming `queue` in a connection error.
    pub(crate) async fn connect_for(
        url: &str,
        config: QueueConfig,
        queue: &str,
    ) -> Result<Namespace> {
        validate_name(config.prefix())?;
        config.validate()?;
        let backend = Backend::connect(url, &config, queue).await?;
        Ok(Namespace {
            inner: Arc::new(Inner {
                config,
                url: redact_url(url),
                backend,
            }),
        })
    }

    /// The names of the queues registered in this namespace, sorted, at most
    /// [`MAX_REGISTERED_QUEUES`]. Names that are not valid queue names (written by hand) are
    /// skipped.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn queue_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = redis::cmd("SRANDMEMBER")
            .arg(self.registry_key())
            .arg(MAX_REGISTERED_QUEUES)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.redis_error("list queues", e))?;
        names.retain(|n| validate_name(n).is_ok());
        names.sort();
        Ok(names)
    }

    /// Checks that Redis answers (`PING`).
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn ping(&self) -> Result<()> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(|e| self.redis_error("ping", e))
    }

    /// What the server is and how it is configured: version, eviction policy, persistence;
    /// on a cluster, the first master's (see [`Namespace::servers`] for every master).
    /// See [`ServerInfo::problems`].
    ///
    /// # Errors
    /// [`Error::Redis`] when `INFO` fails; settings that `CONFIG GET` may not read (a
    /// restricted ACL user) are `None` instead.
    pub async fn server_info(&self) -> Result<ServerInfo> {
        let mut servers = self.servers().await?;
        if servers.is_empty() {
            return Err(Error::UnexpectedReply {
                queue: "*".to_owned(),
                op: "server check",
                detail: "no server answered".to_owned(),
            });
        }
        Ok(servers.swap_remove(0).1)
    }

    /// Every server that holds this namespace's data, with its facts: the one server (named by
    /// the redacted URL), or every master of a cluster (named `host:port`). Check each one's
    /// [`ServerInfo::problems`].
    ///
    /// # Errors
    /// [`Error::Redis`] when `INFO` fails.
    pub async fn servers(&self) -> Result<Vec<(String, ServerInfo)>> {
        let read = match self.inner.backend.conn() {
            Conn::Cluster(mut conn) => ServerInfo::read_masters(&mut conn).await,
            mut conn => ServerInfo::read(&mut conn)
                .await
                .map(|info| vec![(self.inner.url.clone(), info)]),
        };
        read.map_err(|e| self.redis_error("server check", e))
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.inner.config.prefix()
    }

    /// The Redis URL, password redacted.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The settings every queue opened here uses.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// The registry SET of queue names: `prefix:queues`.
    pub(crate) fn registry_key(&self) -> String {
        Keys::registry(self.prefix())
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// Whether this namespace is on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.backend.is_cluster()
    }

    /// A clone of the shared connection (auto-reconnecting, or routing by slot on a cluster).
    pub(crate) fn conn(&self) -> Conn {
        self.inner.backend.conn()
    }

    fn redis_error(&self, op: &'static str, source: redis::RedisError) -> Error {
        Error::from_redis("*", op, source)
    }
}
