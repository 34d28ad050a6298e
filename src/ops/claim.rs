//! `lua/claim.lua`: ready → running, under a lease with fresh fencing tokens.

use redis::Value;

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;

pub(crate) static BINDING: Binding = Binding::new(
    "claim.lua",
    include_str!("../../lua/claim.lua"),
    &[
        Ready, Running, Jobs, Attempts, Leases, Seq, Due, Meta, Dead, Errors, Opts, Stats,
        Ranked, Bell, Scheduled, Events, Limits, LimitTat, LimitHeld, LimitWait, LimitStats,
    ],
    &["n", "lease_ms", "want_due", "wake"],
);

/// A job as claimed.
#[derive(Debug)]
pub(crate) struct ClaimedJob {
    pub(crate) id: String,
    /// The fencing token every report about this attempt must carry.
    pub(crate) token: String,
    /// This attempt's number (the first run is 1).
    pub(crate) attempt: u32,
    pub(crate) envelope: Vec<u8>,
    /// When it became due (server ms); `None` when the queue does not record due times, or
    /// for an id put in `ready` by hand.
    pub(crate) due_ms: Option<u64>,
}

/// What one call claimed.
#[derive(Debug)]
pub(crate) struct Claim {
    /// The server's time of the claim (ms).
    pub(crate) now_ms: u64,
    pub(crate) jobs: Vec<ClaimedJob>,
    /// The partition is paused: nothing was claimed.
    pub(crate) paused: bool,
    /// The queue's completed-job retention, `"AGE_MS,COUNT"`, or empty: passed on to the
    /// jobs' `ack.lua` calls.
    pub(crate) keep: String,
    /// The queue uses priorities: its ready jobs are in `ranked`, and an idle worker waits on
    /// its `bell` rather than on `ready`.
    pub(crate) ranked: bool,
}

/// Claims up to `n` ready jobs, each under a lease of `lease_ms`. `want_due` asks the queue
/// to record due times from now on (see [`crate::WorkerConfig::set_due_times`]).
pub(crate) async fn call(queue: &Partition<'_>, n: usize, lease_ms: u64, want_due: bool) -> Result<Claim> {
    let reply: Vec<Value> = BINDING
        .invoke(queue.keys())
        .arg(n)
        .arg(lease_ms)
        .arg(if want_due { "1" } else { "0" })
        .arg(&queue.keys().wake)
        .invoke_async(&mut queue.conn())
        .await
        .map_err(|e| queue.redis_error("claim", e))?;
    let bad = |detail: String| queue.unexpected("claim", detail);
    let mut fields = reply.into_iter();
    let deadline: u64 = match fields.next() {
        Some(v) => redis::from_redis_value(v).map_err(|e| bad(e.to_string()))?,
        None => return Err(bad("empty reply".into())),
    };
    if deadline == 0 {
        return Ok(Claim {
            now_ms: 0,
            jobs: Vec::new(),
            paused: true,
            keep: String::new(),
            ranked: false,
        });
    }
    let keep: String = match fields.next() {
        Some(v) => redis::from_redis_value(v).map_err(|e| bad(e.to_string()))?,
        None => return Err(bad("no retention field".into())),
    };
    let ranked: i64 = match fields.next() {
        Some(v) => redis::from_redis_value(v).map_err(|e| bad(e.to_string()))?,
        None => return Err(bad("no ranked field".into())),
    };
    let mut jobs = Vec::new();
    while let Some(id) = fields.next() {
        let (Some(token), Some(attempt), Some(envelope), Some(due)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("truncated job record".into()));
        };
        jobs.push(ClaimedJob {
            id: redis::from_redis_value(id).map_err(|e| bad(e.to_string()))?,
            token: redis::from_redis_value::<i64>(token)
                .map_err(|e| bad(e.to_string()))?
                .to_string(),
            attempt: redis::from_redis_value(attempt).map_err(|e| bad(e.to_string()))?,
            envelope: redis::from_redis_value(envelope).map_err(|e| bad(e.to_string()))?,
            due_ms: redis::from_redis_value(due).map_err(|e| bad(e.to_string()))?,
        });
    }
    Ok(Claim {
        now_ms: deadline.saturating_sub(lease_ms),
        jobs,
        paused: false,
        keep,
        ranked: ranked == 1,
    })
}
