//! Creating, opening, finding and removing queues: the namespace side of a [`Queue`].
//!
//! A queue's record is its `meta` hash under its own hash tag (`p:{q}:meta`): `format` (the
//! storage format) and `partitions` (how many partitions it has; absent means 1, as written
//! before partitions existed). A queue of one partition keeps every key under `{q}`; a queue
//! of K partitions keeps its jobs under K tags `{q#i.n}` (`keys::partition_tag`), each partition a full set of keys
//! with its own `meta` (format, and the data-loss check of `promote.lua`). The registry
//! (`p:queues`) is written apart from the record: on a cluster it lives in another slot.

use crate::config::STORAGE_FORMAT;
use crate::error::{Error, Result};
use crate::keys::{validate_name, Keys, MAX_PARTITIONS};
use crate::namespace::Namespace;
use crate::queue::Queue;

/// What [`Namespace::remove_queue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Removed {
    /// Every key of the queue and its registry entry are gone, with this many jobs.
    Removed {
        /// Jobs deleted with it.
        jobs: u64,
    },
    /// The queue holds jobs or recurring schedules and removal was not forced: nothing
    /// changed.
    Refused {
        /// Jobs the queue holds.
        jobs: u64,
        /// Recurring schedules the queue holds.
        schedules: u64,
    },
}

/// A queue's record as read from `meta`.
struct Record {
    format: Option<String>,
    partitions: Option<String>,
}

impl Namespace {
    /// A handle on queue `name`: checks (or, for a new queue, records) its storage format,
    /// reads its partition count and adds it to the registry. A new queue gets one partition;
    /// use [`Namespace::create_queue`] for more.
    ///
    /// # Errors
    /// [`Error::InvalidQueueName`], [`Error::Redis`], [`Error::IncompatibleFormat`].
    pub async fn queue(&self, name: &str) -> Result<Queue> {
        self.open(name, None).await
    }

    /// Creates queue `name` with `partitions` partitions (1 to [`MAX_PARTITIONS`]), or opens it
    /// if it exists with that many. A partitioned queue spreads its jobs, memory and script
    /// load over `partitions` hash slots, so over the masters of a Redis Cluster.
    ///
    /// # Errors
    /// [`Error::PartitionsMismatch`] when the queue exists with another partition count
    /// (nothing changed); [`Error::InvalidConfig`] for 0 or more than [`MAX_PARTITIONS`];
    /// as [`Namespace::queue`].
    pub async fn create_queue(&self, name: &str, partitions: u16) -> Result<Queue> {
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(Error::InvalidConfig {
                what: "queue partitions",
                reason: format!("must be between 1 and {MAX_PARTITIONS}"),
            });
        }
        self.open(name, Some(partitions)).await
    }

    /// A handle on queue `name` if it exists, without writing anything: `None` when the
    /// queue is neither registered nor has a record or jobs (a typo, a wrong prefix). For
    /// reads and for changes to existing jobs; only [`Namespace::queue`] and
    /// [`Namespace::create_queue`] (producers, workers, promoters) create a queue.
    ///
    /// # Errors
    /// [`Error::InvalidQueueName`], [`Error::Redis`], [`Error::IncompatibleFormat`].
    pub async fn existing_queue(&self, name: &str) -> Result<Option<Queue>> {
        let root = Keys::new(self.prefix(), name)?;
        let record = self.read_record(name, &root).await?;
        let partitions = check(name, &record)?;
        if record.format.is_some() {
            return Queue::from_parts(self.clone(), name, partitions).map(Some);
        }
        // No record: a queue written by hand or by an older producer still counts if it is
        // registered or holds jobs.
        let has_jobs: bool = redis::cmd("EXISTS")
            .arg(&root.jobs)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| Error::from_redis(name, "look up", e))?;
        let registered: bool = redis::cmd("SISMEMBER")
            .arg(self.registry_key())
            .arg(name)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| Error::from_redis(name, "look up", e))?;
        if registered || has_jobs {
            Queue::from_parts(self.clone(), name, partitions).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Deletes queue `name`: every key of every partition (`remove.lua` on each), then its
    /// record and registry entry. While the queue holds jobs or recurring schedules this is
    /// refused unless `force`, which deletes them too. Stop the queue's workers first: a promoter serving it would
    /// record its format again.
    ///
    /// # Errors
    /// [`Error::InvalidQueueName`], [`Error::Redis`].
    pub async fn remove_queue(&self, name: &str, force: bool) -> Result<Removed> {
        validate_name(name)?;
        let queue = match self.existing_queue(name).await? {
            Some(queue) => queue,
            // Nothing recorded: remove whatever one-partition keys there are.
            None => Queue::from_parts(self.clone(), name, 1)?,
        };
        if !force {
            let (jobs, schedules) = queue.job_count().await?;
            if jobs + schedules > 0 {
                return Ok(Removed::Refused { jobs, schedules });
            }
        }
        let mut total = 0;
        for part in queue.each_partition() {
            let (removed, jobs, schedules) = crate::ops::remove::call(&part, force).await?;
            if !removed {
                // Jobs arrived since the count: partitions removed so far were empty.
                return Ok(Removed::Refused { jobs, schedules });
            }
            total += jobs;
        }
        let mut conn = self.conn();
        if queue.partitions() > 1 {
            redis::cmd("DEL")
                .arg(&queue.root_keys().meta)
                .arg(&queue.root_keys().promoters)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| queue.redis_error("remove queue", e))?;
        }
        redis::cmd("SREM")
            .arg(self.registry_key())
            .arg(name)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| queue.redis_error("remove queue", e))?;
        Ok(Removed::Removed { jobs: total })
    }

    /// Opens queue `name`, creating its record with `create` partitions (or 1, for `None`)
    /// when it has none, and checking it otherwise; writes each partition's format and
    /// registers the name.
    async fn open(&self, name: &str, create: Option<u16>) -> Result<Queue> {
        let root = Keys::new(self.prefix(), name)?;
        let record = self.read_record(name, &root).await?;
        let record = if record.format.is_some() && record.partitions.is_none() {
            // Written before partitions existed: one partition. Say so in the record.
            Record {
                partitions: Some("1".to_owned()),
                ..record
            }
        } else if record.partitions.is_none() {
            let want = create.unwrap_or(1);
            // HSETNX: when two processes create the queue at once, the first count wins and
            // the other is checked against it below.
            let (format, partitions): (Option<String>, Option<String>) = redis::pipe()
                .cmd("HSETNX")
                .arg(&root.meta)
                .arg("partitions")
                .arg(want)
                .ignore()
                .cmd("HSETNX")
                .arg(&root.meta)
                .arg("format")
                .arg(STORAGE_FORMAT)
                .ignore()
                .cmd("HGET")
                .arg(&root.meta)
                .arg("format")
                .cmd("HGET")
                .arg(&root.meta)
                .arg("partitions")
                .query_async(&mut self.conn())
                .await
                .map_err(|e| Error::from_redis(name, "connect", e))?;
            Record { format, partitions }
        } else {
            record
        };
        let partitions = check(name, &record)?;
        if let Some(want) = create {
            if want != partitions {
                return Err(Error::PartitionsMismatch {
                    queue: name.to_owned(),
                    found: partitions,
                    asked: want,
                });
            }
        }
        let queue = Queue::from_parts(self.clone(), name, partitions)?;
        if partitions > 1 {
            // Each partition's own record: the data-loss check of `promote.lua` reads it.
            let writes = queue.each_partition().map(|part| async move {
                redis::cmd("HSETNX")
                    .arg(&part.keys().meta)
                    .arg("format")
                    .arg(STORAGE_FORMAT)
                    .query_async::<()>(&mut part.conn())
                    .await
                    .map_err(|e| part.redis_error("connect", e))
            });
            for result in futures_util::future::join_all(writes).await {
                result?;
            }
        }
        // Apart from the record: the registry has a slot of its own on a cluster.
        redis::cmd("SADD")
            .arg(self.registry_key())
            .arg(name)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(|e| queue.redis_error("connect", e))?;
        Ok(queue)
    }

    async fn read_record(&self, name: &str, root: &Keys) -> Result<Record> {
        let (format, partitions): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(&root.meta)
            .arg("format")
            .arg("partitions")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| Error::from_redis(name, "look up", e))?;
        Ok(Record { format, partitions })
    }
}

/// Checks a record's format and reads its partition count (1 when absent).
fn check(name: &str, record: &Record) -> Result<u16> {
    if let Some(found) = &record.format {
        if *found != STORAGE_FORMAT.to_string() {
            return Err(Error::IncompatibleFormat {
                queue: name.to_owned(),
                found: found.clone(),
                expected: STORAGE_FORMAT,
            });
        }
    }
    match &record.partitions {
        None => Ok(1),
        Some(text) => match text.parse::<u16>() {
            Ok(n) if (1..=MAX_PARTITIONS).contains(&n) => Ok(n),
            _ => Err(Error::IncompatibleFormat {
                queue: name.to_owned(),
                found: format!("partitions={text}"),
                expected: STORAGE_FORMAT,
            }),
        },
    }
}
