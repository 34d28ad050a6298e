//! Acknowledgements, batched: one `ack.lua` call (per partition) carries the acks of every job
//! that finished while the previous call was in flight.
//!
//! A job whose handler succeeded hands its id and fencing token to the batching task and its
//! slot is free at once: a slot bounds running handlers, and an ack in flight runs none. The
//! batch forms by itself: an ack that arrives while nothing is in flight goes out at once (no
//! timer, no added latency); under load, acks queue behind the call in flight and share the
//! next one. The queue is bounded ([`QUEUED_ACKS`]); when it is full, finishing jobs wait.
//!
//! The batching task owns what used to be each job's report loop: it tries a failed call again
//! while Redis is unreachable and logs acks refused because the lease had moved on. An ack that
//! cannot be delivered leaves its job in `running`, and the job runs again when its lease ends
//! (at-least-once). [`Acks::close`] waits until every queued ack has been sent or given up on.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error, warn};

use crate::queue::Queue;
use crate::reconnect::send_again;
use crate::time::delay_ms;

/// Most acks in one `ack.lua` call (2 arguments each, unpacked onto Lua's stack).
const MAX_ACK_BATCH: usize = 1000;
/// Acks that may wait for a call before finishing jobs wait too.
const QUEUED_ACKS: usize = 4 * MAX_ACK_BATCH;

/// One job's ack.
#[derive(Debug)]
pub(super) struct Ack {
    pub(super) id: String,
    pub(super) token: String,
    /// The queue (its index among the worker's) and partition the job was claimed from.
    pub(super) lane: usize,
    pub(super) part: u16,
    /// The queue's completed-job retention as its claim read it ("" for none).
    pub(super) keep: std::sync::Arc<str>,
    /// The completion record kept with the job when there is a retention (MessagePack).
    pub(super) record: Vec<u8>,
    /// A schedule call of the job could still arrive: its id must stay taken for the dedup
    /// window (`done`). A batch without such a job writes no `done` record.
    pub(super) resendable: bool,
}

/// Where job tasks send their acks.
#[derive(Debug)]
pub(super) struct Acks {
    sender: mpsc::Sender<Ack>,
}

/// The batching task, to wait for at shutdown.
#[derive(Debug)]
pub(super) struct AckTask(JoinHandle<()>);

impl Acks {
    /// Starts the batching task for the worker's `queues`; it sends at most `tries` times
    /// per batch.
    pub(super) fn start(queues: Vec<Queue>, tries: u32) -> (Acks, AckTask) {
        let (sender, receiver) = mpsc::channel(QUEUED_ACKS);
        let task = tokio::spawn(batch_loop(queues, receiver, tries));
        (Acks { sender }, AckTask(task))
    }

    /// Queues the ack of job `id` held under `token`; waits only while the queue is full.
    pub(super) async fn send(&self, ack: Ack) {
        if self.sender.send(ack).await.is_err() {
            // Only possible if the batching task ended early, which it does not do while a
            // sender exists; the job then returns when its lease ends.
            error!("ack batching task is gone; the job returns when its lease ends");
        }
    }
}

impl AckTask {
    /// Waits until every ack queued before the last [`Acks`] was dropped is sent or given up.
    pub(super) async fn close(self) {
        if let Err(e) = self.0.await {
            error!(error = %e, "ack batching task ended abnormally");
        }
    }
}

async fn batch_loop(queues: Vec<Queue>, mut receiver: mpsc::Receiver<Ack>, tries: u32) {
    let mut batch = Vec::new();
    let single = queues.len() == 1 && queues.iter().all(|q| q.partitions() == 1);
    while receiver.recv_many(&mut batch, MAX_ACK_BATCH).await > 0 {
        if single && batch.iter().all(|a| a.keep == batch[0].keep) {
            if let Some(queue) = queues.first() {
                deliver(queue, 0, &batch, tries).await;
            }
        } else {
            // One call per queue, partition and retention (a retention set while jobs ran
            // splits a batch once).
            batch.sort_by(|a, b| (a.lane, a.part, &a.keep).cmp(&(b.lane, b.part, &b.keep)));
            for part in
                batch.chunk_by(|a, b| a.lane == b.lane && a.part == b.part && a.keep == b.keep)
            {
                match queues.get(part[0].lane) {
                    Some(queue) => deliver(queue, part[0].part, part, tries).await,
                    None => error!("ack for a queue this worker does not serve"),
                }
            }
        }
        batch.clear();
    }
}

/// Sends one batch, trying again while Redis is unreachable. Sending a batch again is safe:
/// an ack that was applied the first time is refused the second (its lease is gone).
async fn deliver(queue: &Queue, part: u16, batch: &[Ack], tries: u32) {
    let (result, sent) = send_again("ack", tries, crate::Error::is_connection_error, || {
        call(queue, part, batch)
    })
    .await;
    match result {
        Ok(applied) => {
            for (ack, applied) in batch.iter().zip(applied) {
                if !applied && sent > 1 {
                    // The first sending may have been applied before its reply was lost.
                    debug!(id = %ack.id, "ack not applied when sent again: applied the first time, or the lease is gone");
                } else if !applied {
                    warn!(
                        id = %ack.id,
                        "ack refused: the job's lease is gone (it ran out and the job went back to ready, or redis lost its data)"
                    );
                }
            }
            debug!(jobs = batch.len(), "acknowledged");
        }
        Err(e @ crate::Error::NotReplicated { .. }) => warn!(
            error = %e,
            jobs = batch.len(),
            "acks applied but not confirmed by enough replicas: a failover now may run those jobs again"
        ),
        Err(e) => error!(
            error = %e,
            jobs = batch.len(),
            "giving up on sending acks; those jobs return when their leases end"
        ),
    }
}

/// One `ack.lua` call for `batch`; per ack, in order, whether it was applied.
async fn call(queue: &Queue, part: u16, batch: &[Ack]) -> crate::Result<Vec<bool>> {
    let window_ms = match batch.iter().any(|a| a.resendable) {
        true => delay_ms(queue.config().dedup_window()).unwrap_or(0),
        false => 0,
    };
    let acks: Vec<(&str, &str, &[u8])> = batch
        .iter()
        .map(|a| (a.id.as_str(), a.token.as_str(), a.record.as_slice()))
        .collect();
    let keep = batch.first().map_or("", |a| &*a.keep);
    crate::ops::ack::call(&queue.partition(part), window_ms, keep, &acks).await
}
