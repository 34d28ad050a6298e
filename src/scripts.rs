//! The Lua scripts, embedded at compile time, and how they are called.
//!
//! Each file in `lua/` is one state change and starts with a header naming its `KEYS`, `ARGV`
//! and reply. Calls go out as `EVALSHA`; when the server answers `NOSCRIPT` (first use, or after
//! a restart or `SCRIPT FLUSH`) the script is loaded with `SCRIPT LOAD` and the call is sent
//! again. A `NOSCRIPT` reply means the script did not run, so sending it again is safe. This
//! holds for pipelines too: only the calls that came back `NOSCRIPT` are sent again.

use redis::aio::ConnectionLike;
use redis::{RedisResult, ServerErrorKind, Value};

/// One embedded Lua script.
#[derive(Debug)]
pub(crate) struct LuaScript {
    script: redis::Script,
}

impl LuaScript {
    fn new(source: &str) -> Self {
        LuaScript {
            script: redis::Script::new(source),
        }
    }

    /// Starts a call of this script.
    pub(crate) fn call(&self) -> redis::ScriptInvocation<'_> {
        self.script.prepare_invoke()
    }

    /// The `EVALSHA` command for `keys`, for the caller to add the arguments to.
    pub(crate) fn evalsha_keys<K: redis::ToRedisArgs>(&self, keys: &[K]) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash()).arg(keys.len());
        for key in keys {
            cmd.arg(key);
        }
        cmd
    }

    /// Sends `calls` (each made by [`LuaScript::evalsha_keys`]) in one pipeline and returns one
    /// reply per call, in order. Calls answered `NOSCRIPT` are sent again after `SCRIPT LOAD`.
    /// A call that failed otherwise (`OOM`, ...) has its `Value::ServerError` as its reply, so
    /// that the caller knows exactly which calls ran; `Err` is for the pipeline as a whole
    /// (the connection failed: which calls ran is unknown).
    pub(crate) async fn pipeline<C: ConnectionLike>(
        &self,
        con: &mut C,
        calls: &[redis::Cmd],
    ) -> RedisResult<Vec<Value>> {
        let mut replies = send_all(con, calls).await?;
        let missing: Vec<usize> = replies
            .iter()
            .enumerate()
            .filter(|(_, reply)| is_noscript(reply))
            .map(|(i, _)| i)
            .collect();
        if !missing.is_empty() {
            self.script.load_async(con).await?;
            let again: Vec<redis::Cmd> = missing.iter().map(|&i| calls[i].clone()).collect();
            let retried = send_all(con, &again).await?;
            for (i, reply) in missing.into_iter().zip(retried) {
                replies[i] = reply;
            }
        }
        Ok(replies)
    }
}

async fn send_all<C: ConnectionLike>(con: &mut C, calls: &[redis::Cmd]) -> RedisResult<Vec<Value>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for call in calls {
        pipe.add_command(call.clone());
    }
    pipe.query_async(con).await
}

fn is_noscript(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(err) if err.kind() == Some(ServerErrorKind::NoScript))
}

/// All scripts, compiled in. Built once per process (see [`scripts`]).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) schedule: LuaScript,
    pub(crate) promote: LuaScript,
    pub(crate) claim: LuaScript,
    pub(crate) extend: LuaScript,
    pub(crate) ack: LuaScript,
    pub(crate) retry: LuaScript,
    pub(crate) bury: LuaScript,
    pub(crate) cancel: LuaScript,
    pub(crate) reschedule: LuaScript,
    pub(crate) revive: LuaScript,
    pub(crate) purge: LuaScript,
    pub(crate) remove: LuaScript,
}

/// The process-wide script table (each script's SHA1 is computed once).
pub(crate) fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        schedule: LuaScript::new(include_str!("../lua/schedule.lua")),
        promote: LuaScript::new(include_str!("../lua/promote.lua")),
        claim: LuaScript::new(include_str!("../lua/claim.lua")),
        extend: LuaScript::new(include_str!("../lua/extend.lua")),
        ack: LuaScript::new(include_str!("../lua/ack.lua")),
        retry: LuaScript::new(include_str!("../lua/retry.lua")),
        bury: LuaScript::new(include_str!("../lua/bury.lua")),
        cancel: LuaScript::new(include_str!("../lua/cancel.lua")),
        reschedule: LuaScript::new(include_str!("../lua/reschedule.lua")),
        revive: LuaScript::new(include_str!("../lua/revive.lua")),
        purge: LuaScript::new(include_str!("../lua/purge.lua")),
        remove: LuaScript::new(include_str!("../lua/remove.lua")),
    })
}
