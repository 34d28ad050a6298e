//! What punctual needs from the Redis server, and a check of it.
//!
//! A long-running process (promoter, worker) is best told at start that the server cannot
//! hold its promises: too old for the scripts, free to evict job keys under memory pressure,
//! losing everything on restart, or read-only. [`ServerInfo::problems`] lists these; what to
//! do about each is the caller's choice (the CLI refuses some and warns about others). On a
//! Redis Cluster every master is checked ([`crate::Namespace::servers`]).

use redis::aio::ConnectionLike;

/// The oldest Redis the scripts run on: they use `LPOP` with a count, `BLMOVE` and
/// `ZRANGE … BYSCORE` (new in 6.2), and wake promoters on a cluster with `SPUBLISH` (7.0).
pub const MIN_REDIS_VERSION: (u32, u32, u32) = (7, 0, 0);

/// Facts about a Redis server, read with `INFO` and (where allowed) `CONFIG GET save`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerInfo {
    /// `redis_version`, as the server reports it.
    pub version: String,
    /// `maxmemory_policy`, if `INFO` reported it.
    pub maxmemory_policy: Option<String>,
    /// Whether the append-only file is on.
    pub aof_enabled: bool,
    /// The RDB `save` setting (`""` = snapshots off); `None` when `CONFIG GET` is not allowed.
    pub rdb_save: Option<String>,
    /// `master` or `slave`.
    pub role: String,
    /// Whether the server runs in cluster mode.
    pub cluster_enabled: bool,
}

/// Something about the server that breaks or weakens punctual's guarantees.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerProblem {
    /// Older than [`MIN_REDIS_VERSION`]: the scripts fail.
    TooOld {
        /// The version found.
        found: String,
    },
    /// A `maxmemory-policy` that may evict keys without a TTL (`allkeys-*`): jobs can vanish.
    Evicting {
        /// The policy found.
        policy: String,
    },
    /// Neither AOF nor RDB snapshots: a restart loses every job.
    NoPersistence,
    /// AOF is off and the RDB setting cannot be read (`CONFIG` not allowed).
    PersistenceUnknown,
    /// A read-only replica: every write fails.
    Replica,
}

impl ServerProblem {
    /// True for problems that make punctual fail outright (as opposed to weakening a
    /// guarantee).
    pub fn is_fatal(&self) -> bool {
        matches!(self, ServerProblem::TooOld { .. } | ServerProblem::Replica)
    }
}

impl std::fmt::Display for ServerProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b, c) = MIN_REDIS_VERSION;
        match self {
            ServerProblem::TooOld { found } => {
                write!(
                    f,
                    "redis {found} is too old: punctual needs {a}.{b}.{c} or newer"
                )
            }
            ServerProblem::Evicting { policy } => write!(
                f,
                "maxmemory-policy is {policy}: under memory pressure redis may evict job keys \
                 and lose jobs (use noeviction)"
            ),
            ServerProblem::NoPersistence => f.write_str(
                "persistence is off (appendonly no, save \"\"): a redis restart loses every job",
            ),
            ServerProblem::PersistenceUnknown => f.write_str(
                "appendonly is off and the RDB save setting cannot be read (CONFIG not allowed): \
                 jobs may not survive a redis restart",
            ),
            ServerProblem::Replica => {
                f.write_str("the server is a read-only replica: connect to the primary")
            }
        }
    }
}

impl ServerInfo {
    /// Reads the facts with one `INFO` and one `CONFIG GET save` (whose refusal is not an
    /// error).
    pub(crate) async fn read<C: ConnectionLike>(conn: &mut C) -> redis::RedisResult<ServerInfo> {
        let info: String = redis::cmd("INFO").query_async(conn).await?;
        let save: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("save")
            .query_async(conn)
            .await;
        let mut parsed = ServerInfo::parse(&info);
        parsed.rdb_save = save.ok().and_then(|pair| pair.into_iter().nth(1));
        Ok(parsed)
    }

    /// Reads the facts of every master of a cluster: `INFO` and `CONFIG GET save` sent to
    /// each, answered as a map of node address to reply. Sorted by address.
    pub(crate) async fn read_masters(
        conn: &mut redis::cluster_async::ClusterConnection,
    ) -> redis::RedisResult<Vec<(String, ServerInfo)>> {
        use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
        let masters = || RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let infos = conn
            .route_command(redis::cmd("INFO").clone(), masters())
            .await?;
        let saves = conn
            .route_command(
                redis::cmd("CONFIG").arg("GET").arg("save").clone(),
                masters(),
            )
            .await
            .ok();
        let by_node = |reply: redis::Value| -> Vec<(String, redis::Value)> {
            match reply {
                redis::Value::Map(pairs) => pairs
                    .into_iter()
                    .filter_map(|(k, v)| redis::from_redis_value::<String>(k).ok().map(|k| (k, v)))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let saves = saves.map(by_node).unwrap_or_default();
        let mut nodes = Vec::new();
        for (addr, info) in by_node(infos) {
            let info: String = redis::from_redis_value(info)?;
            let mut parsed = ServerInfo::parse(&info);
            parsed.rdb_save = saves
                .iter()
                .find(|(a, _)| *a == addr)
                .and_then(|(_, v)| redis::from_redis_value::<Vec<String>>(v.clone()).ok())
                .and_then(|pair| pair.into_iter().nth(1));
            nodes.push((addr, parsed));
        }
        nodes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(nodes)
    }

    /// Parses the text of `INFO` (fields are `name:value` lines).
    fn parse(info: &str) -> ServerInfo {
        let field = |name: &str| {
            info.lines()
                .filter_map(|line| line.trim_end().split_once(':'))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        };
        ServerInfo {
            version: field("redis_version").unwrap_or_default(),
            maxmemory_policy: field("maxmemory_policy"),
            aof_enabled: field("aof_enabled").as_deref() == Some("1"),
            rdb_save: None,
            role: field("role").unwrap_or_else(|| "master".to_owned()),
            cluster_enabled: field("cluster_enabled").as_deref() == Some("1"),
        }
    }

    /// The version as numbers; `None` when it does not parse.
    pub fn version_numbers(&self) -> Option<(u32, u32, u32)> {
        let mut parts = self.version.split('.').map(|p| p.parse::<u32>().ok());
        Some((
            parts.next()??,
            parts.next()??,
            parts.next().flatten().unwrap_or(0),
        ))
    }

    /// Everything about this server that breaks or weakens punctual, worst first.
    pub fn problems(&self) -> Vec<ServerProblem> {
        let mut problems = Vec::new();
        if self.version_numbers().is_none_or(|v| v < MIN_REDIS_VERSION) {
            problems.push(ServerProblem::TooOld {
                found: self.version.clone(),
            });
        }
        if self.role != "master" {
            problems.push(ServerProblem::Replica);
        }
        if let Some(policy) = &self.maxmemory_policy {
            if policy.starts_with("allkeys-") {
                problems.push(ServerProblem::Evicting {
                    policy: policy.clone(),
                });
            }
        }
        if !self.aof_enabled {
            match self.rdb_save.as_deref() {
                Some("") => problems.push(ServerProblem::NoPersistence),
                Some(_) => {}
                None => problems.push(ServerProblem::PersistenceUnknown),
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n\
        # Memory\r\nmaxmemory_policy:noeviction\r\n# Persistence\r\naof_enabled:1\r\n\
        # Replication\r\nrole:master\r\n# Cluster\r\ncluster_enabled:0\r\n";

    #[test]
    fn a_good_server_has_no_problems() {
        let info = ServerInfo::parse(INFO);
        assert_eq!(info.version_numbers(), Some((7, 0, 15)));
        assert_eq!(info.problems(), []);
    }

    #[test]
    fn each_problem_is_found() {
        let mut info = ServerInfo::parse(INFO);
        info.version = "6.0.9".into();
        info.maxmemory_policy = Some("allkeys-lru".into());
        info.aof_enabled = false;
        info.rdb_save = Some(String::new());
        info.role = "slave".into();
        info.cluster_enabled = true;
        let problems = info.problems();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].is_fatal());
        assert!(!problems[2].is_fatal());
        info.maxmemory_policy = Some("volatile-lru".into());
        info.rdb_save = None;
        info.version = "garbage".into();
        let problems = info.problems();
        assert!(problems.contains(&ServerProblem::PersistenceUnknown));
        assert!(problems.contains(&ServerProblem::TooOld {
            found: "garbage".into()
        }));
        assert!(!problems
            .iter()
            .any(|p| matches!(p, ServerProblem::Evicting { .. })));
    }
}
