//! A namespace: one Redis and one key prefix, holding any number of queues.
//!
//! Opening a queue records its name in the namespace's registry (`prefix:queues`, a SET), so
//! that tools that serve "every queue" (the sidecar promoter, `punctual stats`) can find queues
//! they were not told about. The registry is the only key outside a queue's hash tag and no
//! script touches it; a queue that is missing from it still works, it is just not discovered.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::config::QueueConfig;
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
    client: redis::Client,
    conn: ConnectionManager,
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
        let redacted = redact_url(url);
        let client = match config.tls() {
            Some(tls) if url.starts_with("rediss://") => {
                redis::Client::build_with_tls(url, tls.certificates())
            }
            _ => redis::Client::open(url),
        }
        .map_err(|source| Error::InvalidUrl {
            url: redacted.clone(),
            source,
        })?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout()))
            .set_connection_timeout(Some(config.connect_timeout()))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .map_err(|source| Error::from_redis(queue, "connect", source))?;
        Ok(Namespace {
            inner: Arc::new(Inner {
                config,
                url: redacted,
                client,
                conn,
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

    /// What the server is and how it is configured: version, eviction policy, persistence.
    /// See [`ServerInfo::problems`].
    ///
    /// # Errors
    /// [`Error::Redis`] when `INFO` fails; settings that `CONFIG GET` may not read (a
    /// restricted ACL user) are `None` instead.
    pub async fn server_info(&self) -> Result<ServerInfo> {
        ServerInfo::read(&mut self.conn())
            .await
            .map_err(|e| self.redis_error("server check", e))
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

    pub(crate) fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    /// A clone of the shared, auto-reconnecting connection.
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    fn redis_error(&self, op: &'static str, source: redis::RedisError) -> Error {
        Error::from_redis("*", op, source)
    }
}
