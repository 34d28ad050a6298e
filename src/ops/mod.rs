//! One home for every script's contract: a typed binding per file in `lua/`.
//!
//! Each file in `lua/` is one state change and starts with a header naming its `KEYS`, `ARGV`
//! and reply. Its binding, `ops/<script>.rs`, is the only Rust that knows that contract: the
//! `KEYS` in order (as [`Part`]s, checked by name against the header by a test below), the
//! `ARGV` slots (named, counted against the header), and a typed reply parsed in one place.
//! Nothing else in the crate lists a script's keys or reads its reply by position. Adding a
//! state change is one Lua file, one binding here, and its tests (docs/layout.md says so).
//!
//! Calls go out as `EVALSHA`; when the server answers `NOSCRIPT` (first use, after a restart
//! or `SCRIPT FLUSH`, or on a replica just promoted: scripts are not replicated) the call is
//! sent again as `EVAL` with the script's source, which runs it and caches it on that node. A
//! `NOSCRIPT` reply means the script did not run, so sending it again is safe. This holds for
//! pipelines too: only the calls that came back `NOSCRIPT` are sent again. Not `SCRIPT LOAD`
//! and `EVALSHA` again: `SCRIPT LOAD` has no key, so a cluster client sends it to the masters
//! it knows of, and just after a failover that need not be the node the call goes to (the
//! retried call then failed with `NOSCRIPT`). `EVAL` carries the call's keys, so it goes where
//! the call goes.
//!
//! Arguments that recur have one slot: the wake channel is `ARGV[1]` of every script that
//! publishes (`schedule`, `retry`, `reschedule`, `revive`). No script takes "now": each reads
//! the server's clock with `TIME`.

/// The bindings, each named once: a module per script, and the list the tests check.
macro_rules! bindings {
    ($($script:ident),* $(,)?) => {
        $(pub(crate) mod $script;)*

        /// Every binding, for the header and snippet checks.
        #[cfg(test)]
        const ALL: &[&Binding] = &[$(&$script::BINDING),*];
    };
}

bindings!(
    ack, bury, cancel, claim, cron, extend, pause, promote, purge, remove, reschedule, retry,
    revive, schedule, share, trim, wait,
);

use std::sync::OnceLock;

use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisResult, ServerErrorKind, ToRedisArgs, Value};

use crate::config::Durability;
use crate::keys::{Keys, Part};

/// One embedded script and its calling contract.
#[derive(Debug)]
pub(crate) struct Binding {
    /// Its file in `lua/`.
    // `file` and `argv` state the contract; the header check reads them.
    #[cfg_attr(not(test), allow(dead_code))]
    file: &'static str,
    source: &'static str,
    /// `KEYS`, in order.
    keys: &'static [Part],
    /// `ARGV` names, in order; a last name ending in `...` is a repeated tail.
    #[cfg_attr(not(test), allow(dead_code))]
    argv: &'static [&'static str],
    /// Made (and its SHA1 computed) on first use.
    script: OnceLock<redis::Script>,
}

impl Binding {
    pub(crate) const fn new(
        file: &'static str,
        source: &'static str,
        keys: &'static [Part],
        argv: &'static [&'static str],
    ) -> Self {
        Binding {
            file,
            source,
            keys,
            argv,
            script: OnceLock::new(),
        }
    }

    fn script(&self) -> &redis::Script {
        self.script.get_or_init(|| redis::Script::new(self.source))
    }

    /// A call of this script with the queue's keys in order; the binding adds the `ARGV`.
    pub(crate) fn invoke(&self, keys: &Keys) -> Invocation<'_> {
        Invocation {
            binding: self,
            evalsha: self.evalsha(keys),
        }
    }

    /// `evalsha` (made by [`Binding::evalsha`]) as `EVAL` with this script's source, for a
    /// server that answered `NOSCRIPT`.
    fn eval(&self, evalsha: &redis::Cmd) -> redis::Cmd {
        let mut eval = redis::cmd("EVAL");
        eval.arg(self.source);
        // After `EVALSHA <sha1>`: the key count, the keys and the arguments.
        for arg in evalsha.args_iter().skip(2) {
            if let redis::Arg::Simple(bytes) = arg {
                eval.arg(bytes);
            }
        }
        eval
    }

    /// The `EVALSHA` command with the queue's keys, for a pipeline ([`Binding::pipeline`]);
    /// the binding adds the `ARGV`.
    pub(crate) fn evalsha(&self, keys: &Keys) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script().get_hash()).arg(self.keys.len());
        for &part in self.keys {
            cmd.arg(keys.get(part));
        }
        cmd
    }

    /// Sends `calls` (each made by [`Binding::evalsha`]) in one pipeline and returns one
    /// reply per call, in order. Calls answered `NOSCRIPT` are sent again after `SCRIPT LOAD`.
    /// A call that failed otherwise (`OOM`, ...) has its `Value::ServerError` as its reply, so
    /// that the caller knows exactly which calls ran; `Err` is for the pipeline as a whole
    /// (the connection failed: which calls ran is unknown). With `wait` (durability on), the
    /// pipeline ends with `WAIT replicas timeout`, so on the same connection and node as the
    /// calls; the second value is how many replicas confirmed every write before it (`None`
    /// without `wait`).
    pub(crate) async fn pipeline<C: ConnectionLike>(
        &self,
        con: &mut C,
        calls: &[redis::Cmd],
        wait: Option<Durability>,
    ) -> RedisResult<(Vec<Value>, Option<u32>)> {
        let (mut replies, mut confirmed) = send_all(con, calls, wait).await?;
        let missing: Vec<usize> = replies
            .iter()
            .enumerate()
            .filter(|(_, reply)| is_noscript(reply))
            .map(|(i, _)| i)
            .collect();
        if !missing.is_empty() {
            let again: Vec<redis::Cmd> = missing.iter().map(|&i| self.eval(&calls[i])).collect();
            let (retried, waited) = send_all(con, &again, wait).await?;
            for (i, reply) in missing.into_iter().zip(retried) {
                replies[i] = reply;
            }
            // The later WAIT covers every write of the connection so far.
            confirmed = waited;
        }
        Ok((replies, confirmed))
    }

    /// One call with its `ARGV` (made by [`Binding::evalsha`]), followed by `WAIT` when
    /// `wait` is given; its reply (an error reply is an `Err`) and the replicas confirmed.
    pub(crate) async fn call_waiting<C: ConnectionLike, T: redis::FromRedisValue>(
        &self,
        con: &mut C,
        call: redis::Cmd,
        wait: Option<Durability>,
    ) -> RedisResult<(T, Option<u32>)> {
        let (mut replies, confirmed) = self.pipeline(con, &[call], wait).await?;
        let reply = replies.pop().unwrap_or(Value::Nil);
        if let Value::ServerError(e) = reply {
            return Err(e.into());
        }
        Ok((redis::from_redis_value(reply)?, confirmed))
    }
}

/// One call of a script ([`Binding::invoke`]) being built: the binding adds the `ARGV` with
/// [`Invocation::arg`] and sends it with [`Invocation::invoke_async`].
pub(crate) struct Invocation<'a> {
    binding: &'a Binding,
    evalsha: redis::Cmd,
}

impl Invocation<'_> {
    /// Appends the next `ARGV`.
    pub(crate) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.evalsha.arg(arg);
        self
    }

    /// Sends the call as `EVALSHA`, and again as `EVAL` if the server answers `NOSCRIPT`.
    pub(crate) async fn invoke_async<T: redis::FromRedisValue>(
        &self,
        con: &mut impl ConnectionLike,
    ) -> RedisResult<T> {
        match self.evalsha.query_async(con).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.binding.eval(&self.evalsha).query_async(con).await
            }
            reply => reply,
        }
    }
}

/// Sends `calls` in one pipeline, then `WAIT` if asked: the calls' replies, and the WAIT's.
async fn send_all<C: ConnectionLike>(
    con: &mut C,
    calls: &[redis::Cmd],
    wait: Option<Durability>,
) -> RedisResult<(Vec<Value>, Option<u32>)> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for call in calls {
        pipe.add_command(call.clone());
    }
    if let Some(d) = wait {
        pipe.cmd("WAIT")
            .arg(d.replicas)
            .arg(d.timeout.as_millis() as u64);
    }
    let mut replies: Vec<Value> = pipe.query_async(con).await?;
    if wait.is_none() {
        return Ok((replies, None));
    }
    match replies.pop() {
        Some(Value::Int(n)) => Ok((replies, Some(n.max(0) as u32))),
        Some(Value::ServerError(e)) => Err(e.into()),
        other => Err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "WAIT did not answer with a count",
            format!("{other:?}"),
        ))),
    }
}

/// The error for a write that `wait` asked replicas to confirm and `confirmed` did, if too
/// few.
pub(crate) fn check_replicated(
    queue: &crate::queue::Partition<'_>,
    op: &'static str,
    wait: Option<Durability>,
    confirmed: Option<u32>,
) -> crate::error::Result<()> {
    match (wait, confirmed) {
        (Some(d), Some(n)) if n < d.replicas => Err(crate::error::Error::NotReplicated {
            queue: queue.queue().name().to_owned(),
            op,
            confirmed: n,
            wanted: d.replicas,
            timeout: d.timeout,
        }),
        _ => Ok(()),
    }
}

fn is_noscript(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(err) if err.kind() == Some(ServerErrorKind::NoScript))
}

/// Parses a `{now, id_1, ...}` reply (`revive.lua`, `purge.lua`): the ids.
fn ids_after_time(
    queue: &crate::queue::Partition<'_>,
    op: &'static str,
    reply: Vec<Value>,
) -> crate::error::Result<Vec<String>> {
    reply
        .into_iter()
        .skip(1)
        .map(|v| redis::from_redis_value(v).map_err(|e| queue.unexpected(op, e.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slots named in a header: `-- KEYS[i]  name ...` or `-- ARGV[i]  ...`, as
    /// (what is inside the brackets, the first word after them).
    fn header(source: &str, what: &str) -> Vec<(String, String)> {
        source
            .lines()
            .take_while(|l| l.starts_with("--"))
            .filter_map(|l| {
                let rest = l
                    .strip_prefix("-- ")?
                    .strip_prefix(what)?
                    .strip_prefix('[')?;
                let (slot, after) = rest.split_once(']')?;
                let word = after.split_whitespace().next().unwrap_or("").to_owned();
                Some((slot.trim().to_owned(), word))
            })
            .collect()
    }

    /// Every Lua header's KEYS and ARGV match its binding: the same key names in the same
    /// order, and as many ARGV slots (with a repeated tail where the header has one).
    #[test]
    fn bindings_match_the_lua_headers() {
        for b in ALL {
            let keys = header(b.source, "KEYS");
            let numbered: Vec<usize> = keys.iter().map(|(i, _)| i.parse().unwrap()).collect();
            assert_eq!(numbered, (1..=keys.len()).collect::<Vec<_>>(), "{}", b.file);
            let names: Vec<&str> = keys.iter().map(|(_, n)| n.as_str()).collect();
            let bound: Vec<&str> = b.keys.iter().map(|p| p.as_str()).collect();
            assert_eq!(
                names, bound,
                "{}: KEYS of the header vs the binding",
                b.file
            );

            let argv = header(b.source, "ARGV");
            let plain = argv
                .iter()
                .filter(|(i, _)| i.parse::<usize>().is_ok())
                .count();
            let repeated = argv.iter().any(|(i, _)| i.parse::<usize>().is_err());
            let bound_repeated = b.argv.last().is_some_and(|a| a.ends_with("..."));
            let bound_plain = b.argv.len() - usize::from(bound_repeated);
            assert_eq!(plain, bound_plain, "{}: ARGV slots {:?}", b.file, b.argv);
            assert_eq!(repeated, bound_repeated, "{}: a repeated ARGV tail", b.file);
        }
    }

    /// Pieces written once: a block between `-- snippet: NAME` and `-- end snippet` is the
    /// same (but for indentation) in every script that has it, and each is shared. Copies
    /// checked by a test keep every file in `lua/` loadable as it is by other languages
    /// (`schedule.lua` is a public protocol), which compile-time includes would not.
    #[test]
    fn shared_lua_pieces_are_identical() {
        let mut seen: std::collections::BTreeMap<String, Vec<(&str, String)>> =
            std::collections::BTreeMap::new();
        for b in ALL {
            let mut current: Option<(String, String)> = None;
            for line in b.source.lines().map(str::trim) {
                if let Some(name) = line.strip_prefix("-- snippet: ") {
                    assert!(current.is_none(), "{}: nested snippet", b.file);
                    current = Some((name.to_owned(), String::new()));
                } else if line == "-- end snippet" {
                    let (name, text) = current.take().expect("a snippet was open");
                    seen.entry(name).or_default().push((b.file, text));
                } else if let Some((_, text)) = current.as_mut() {
                    text.push_str(line);
                    text.push('\n');
                }
            }
            assert!(current.is_none(), "{}: snippet not closed", b.file);
        }
        for name in [
            "now",
            "lease check",
            "error record",
            "schedule and wake",
            "forget",
            "expire",
            "tell",
            "trim",
        ] {
            let copies = seen.get(name).map_or(0, Vec::len);
            assert!(copies >= 2, "snippet {name:?} is in {copies} scripts");
        }
        for (name, copies) in &seen {
            let (first_file, first) = &copies[0];
            for (file, text) in copies {
                assert_eq!(
                    text, first,
                    "snippet {name:?}: {file} differs from {first_file}"
                );
            }
        }
    }

    /// `remove.lua` deletes every key a queue's partition has, so `queue rm` leaves nothing
    /// (`promoters` lives under the queue's own tag and expires by itself).
    #[test]
    fn removing_a_queue_covers_every_key() {
        for part in Part::ALL {
            if part != Part::Promoters {
                assert!(
                    remove::BINDING.keys.contains(&part),
                    "remove.lua lacks {part:?}"
                );
            }
        }
    }

    /// Every script in `lua/` has a binding (and every binding a script).
    #[test]
    fn every_script_has_a_binding() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/lua");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".lua"))
            .collect();
        files.sort();
        let mut bound: Vec<String> = ALL.iter().map(|b| b.file.to_owned()).collect();
        bound.sort();
        assert_eq!(files, bound);
        for b in ALL {
            let on_disk = std::fs::read_to_string(format!("{dir}/{}", b.file)).unwrap();
            assert_eq!(on_disk, b.source, "{} is embedded as it is on disk", b.file);
        }
    }
}
