//! `lua/ack.lua`: running → gone, for a batch of (job id, fencing token).

use super::Binding;
use crate::error::Result;
use crate::keys::Part::*;
use crate::queue::Partition;

pub(crate) static BINDING: Binding = Binding::new(
    "ack.lua",
    include_str!("../../lua/ack.lua"),
    &[
        Running, Leases, Jobs, Attempts, Errors, Stats, Done, Opts, Completed, Results, Meta,
        Events, LimitHeld, LimitWait, Scheduled, Ready, Bell,
    ],
    &["dedup_window_ms", "ended", "keep", "id, token, record..."],
);

/// Acknowledges `acks` (job id, token, completion record); one entry per ack, in order: true
/// when applied, false when refused (the lease is no longer the caller's). With a retention
/// `keep` ("AGE_MS,COUNT", as `claim.lua` read it) the jobs are kept as completed, with their
/// records; with `""` they are deleted and the records not sent.
pub(crate) async fn call(
    queue: &Partition<'_>,
    window_ms: u64,
    keep: &str,
    acks: &[(&str, &str, &[u8])],
) -> Result<Vec<bool>> {
    let mut call = BINDING.evalsha(queue.keys());
    call.arg(window_ms).arg(&queue.keys().ended).arg(keep);
    for (id, token, record) in acks {
        call.arg(id).arg(token);
        if !keep.is_empty() {
            call.arg(record);
        }
    }
    let wait = queue.queue().config().durability();
    let (codes, confirmed): (Vec<i64>, _) = BINDING
        .call_waiting(&mut queue.conn(), call, wait)
        .await
        .map_err(|e| queue.redis_error("ack", e))?;
    super::check_replicated(queue, "ack", wait, confirmed)?;
    if codes.len() != acks.len() {
        return Err(queue.unexpected("ack", "one code per acknowledged job expected"));
    }
    Ok(codes.into_iter().map(|c| c == 1).collect())
}
