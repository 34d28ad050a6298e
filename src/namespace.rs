//! A namespace: one Redis and one key prefix, holding any number of queues.
//!
//! Opening a queue records its name in the namespace's registry (`prefix:queues`, a SET), so
//! that tools that serve "every queue" (the sidecar promoter, `punctual stats`) can find queues
//! they were not told about. The registry is the only key outside a queue's hash tag and no
//! script touches it; a queue that is missing from it still works, it is just not discovered.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::error::{redact_url, Error, Result};
use crate::keys::{validate_name, Keys};
use crate::queue::{Queue, QueueConfig, STORAGE_FORMAT};
use crate::server::ServerInfo;

/// What [`Namespace::remove_queue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Removed {
    /// Every key of the queue and its registry entry are gone, with this many jobs.
    Removed {
        /// Jobs deleted with it.
        jobs: u64,
    },
    /// The queue holds jobs and removal was not forced: nothing changed.
    Refused {
        /// Jobs the queue holds.
        jobs: u64,
    },
}

/// Longest list of queue names read from the registry: a bound on unbounded Redis work.
pub const MAX_REGISTERED_QUEUES: usize = 10_000;

/// A connection to one Redis and one key prefix: the factory of [`Queue`] handles that share
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

    /// A handle on queue `name`: checks (or, for a new queue, records) its storage format and
    /// adds it to the registry.
    ///
    /// # Errors
    /// [`Error::InvalidQueueName`], [`Error::Redis`], [`Error::IncompatibleFormat`].
    pub async fn queue(&self, name: &str) -> Result<Queue> {
        let keys = Keys::new(self.prefix(), name)?;
        let queue = Queue::from_parts(self.clone(), name, keys);
        self.open(&queue).await?;
        Ok(queue)
    }

    /// A handle on queue `name` if it exists, without writing anything: `None` when the
    /// queue is neither registered nor has a format record or jobs (a typo, a wrong prefix).
    /// For reads and for changes to existing jobs; only [`Namespace::queue`] (producers,
    /// workers, promoters) creates a queue.
    ///
    /// # Errors
    /// [`Error::InvalidQueueName`], [`Error::Redis`], [`Error::IncompatibleFormat`].
    pub async fn existing_queue(&self, name: &str) -> Result<Option<Queue>> {
        let keys = Keys::new(self.prefix(), name)?;
        let queue = Queue::from_parts(self.clone(), name, keys);
        let (format, registered, has_jobs): (Option<String>, bool, bool) = redis::pipe()
            .cmd("HGET")
            .arg(&queue.keys().meta)
            .arg("format")
            .cmd("SISMEMBER")
            .arg(self.registry_key())
            .arg(name)
            .cmd("EXISTS")
            .arg(&queue.keys().jobs)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| queue.redis_error("look up", e))?;
        match format {
            Some(v) if v != STORAGE_FORMAT.to_string() => Err(Error::IncompatibleFormat {
                queue: name.to_owned(),
                found: v,
                expected: STORAGE_FORMAT,
            }),
            Some(_) => Ok(Some(queue)),
            None if registered || has_jobs => Ok(Some(queue)),
            None => Ok(None),
        }
    }

    /// Deletes queue `name`: every key of it (`remove.lua`), then its registry entry. While
    /// the queue holds jobs this is refused unless `force`, which deletes them too. Stop the
    /// queue's workers first: a promoter serving it would record its format again.
    ///
    /// # Errors
    /// [`Error::InvalidQueueName`], [`Error::Redis`].
    pub async fn remove_queue(&self, name: &str, force: bool) -> Result<Removed> {
        let keys = Keys::new(self.prefix(), name)?;
        let queue = Queue::from_parts(self.clone(), name, keys);
        let (removed, jobs) = crate::ops::remove::call(&queue, force).await?;
        if !removed {
            return Ok(Removed::Refused { jobs });
        }
        redis::cmd("SREM")
            .arg(self.registry_key())
            .arg(name)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(|e| queue.redis_error("remove queue", e))?;
        Ok(Removed::Removed { jobs })
    }

    /// Records the storage format in a new queue or checks it in an existing one, and
    /// registers the queue's name.
    async fn open(&self, queue: &Queue) -> Result<()> {
        let meta = &queue.keys().meta;
        let (found,): (Option<String>,) = redis::pipe()
            .cmd("HSETNX")
            .arg(meta)
            .arg("format")
            .arg(STORAGE_FORMAT)
            .ignore()
            .cmd("HGET")
            .arg(meta)
            .arg("format")
            .cmd("SADD")
            .arg(self.registry_key())
            .arg(queue.name())
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(|e| queue.redis_error("connect", e))?;
        match found {
            Some(v) if v == STORAGE_FORMAT.to_string() => Ok(()),
            other => Err(Error::IncompatibleFormat {
                queue: queue.name().to_owned(),
                found: other.unwrap_or_default(),
                expected: STORAGE_FORMAT,
            }),
        }
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
