//! The event log: every state change of a job, written by the script that makes it, in the
//! same atomic step, to a capped Redis Stream per queue partition (`p:{q}:events`), and
//! followed live with [`Queue::events`] or `punctual watch`.
//!
//! Off by default ([`Queue::set_event_log`] turns it on with a length bound): a queue without
//! it reads one more meta field per script call and writes nothing. With it, each script call
//! makes ONE `XADD` carrying all of its changes (one line per job), so promoting 1,000 jobs is
//! one entry, not 1,000. Entries hold `t` (server ms) and `e`, lines of
//! `event TAB id TAB attempt TAB reason` (the `events` snippet of `lua/*.lua`).
//!
//! A reader follows each partition's stream on a connection of its own (a blocking `XREAD`),
//! so a partitioned queue's events come in order per partition (so per job), not across
//! partitions. Its [`JobEvent::position`] resumes exactly after that event.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

use redis::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::error::{Error, Result};
use crate::queue::Queue;
use crate::reconnect::ReconnectBackoff;
use crate::time::from_unix_ms;

/// Largest event log bound [`Queue::set_event_log`] takes.
pub const MAX_EVENT_LOG: u64 = 10_000_000;

/// How long one blocking read waits before it is sent again.
const BLOCK: Duration = Duration::from_secs(5);
/// Stream entries read per call.
const READ_COUNT: usize = 100;

/// What happened to a job, as the event log words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Change {
    /// Created (`schedule.lua`).
    Scheduled,
    /// A waiting job got new data and due time (conflict mode replace, keep_*).
    Replaced,
    /// A waiting job got new data and a later due time (conflict mode debounce).
    Debounced,
    /// Due: scheduled → ready (`promote.lua`).
    Promoted,
    /// Its worker stopped renewing its lease: running → ready (`promote.lua`).
    LeaseExpired,
    /// Taken by a worker: ready → running, with the attempt it starts (`claim.lua`).
    Claimed,
    /// Acknowledged: done (`ack.lua`).
    Completed,
    /// A failed attempt waits out its backoff, with the error's reason (`retry.lua`).
    Retried,
    /// Snoozed or handed back without using an attempt (`retry.lua`).
    Snoozed,
    /// Moved to the dead set, with the reason (`bury.lua`).
    Dead,
    /// Its time ran out before it ran: dead, or deleted (reason `dropped`).
    Expired,
    /// Cancelled: deleted from the state in its reason, or (reason `stopped`) stopped while
    /// it ran and moved to the dead set.
    Cancelled,
    /// Its cancellation was asked while it runs (`cancel.lua`).
    CancelRequested,
    /// Moved to a new due time, from the state in its reason (`reschedule.lua`).
    Rescheduled,
    /// A dead job sent back to scheduled (`revive.lua`).
    Revived,
    /// A dead job deleted (`purge.lua`).
    Purged,
    /// Deleted by a retention; the reason says which set (`dead`, `completed`).
    Trimmed,
    /// A compensating job scheduled for a job that died (its id is the compensating job's).
    Compensated,
}

impl Change {
    /// Every change, in the order of a job's life.
    pub const ALL: [Change; 18] = [
        Change::Scheduled,
        Change::Replaced,
        Change::Debounced,
        Change::Promoted,
        Change::LeaseExpired,
        Change::Claimed,
        Change::Completed,
        Change::Retried,
        Change::Snoozed,
        Change::Dead,
        Change::Expired,
        Change::Cancelled,
        Change::CancelRequested,
        Change::Rescheduled,
        Change::Revived,
        Change::Purged,
        Change::Trimmed,
        Change::Compensated,
    ];

    /// Its word in the log (and in `punctual watch`).
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Scheduled => "scheduled",
            Change::Replaced => "replaced",
            Change::Debounced => "debounced",
            Change::Promoted => "promoted",
            Change::LeaseExpired => "lease_expired",
            Change::Claimed => "claimed",
            Change::Completed => "completed",
            Change::Retried => "retried",
            Change::Snoozed => "snoozed",
            Change::Dead => "dead",
            Change::Expired => "expired",
            Change::Cancelled => "cancelled",
            Change::CancelRequested => "cancel_requested",
            Change::Rescheduled => "rescheduled",
            Change::Revived => "revived",
            Change::Purged => "purged",
            Change::Trimmed => "trimmed",
            Change::Compensated => "compensated",
        }
    }

    /// The change named `s`.
    pub fn parse(s: &str) -> Option<Change> {
        Change::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change of one job, from the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobEvent {
    /// The queue.
    pub queue: String,
    /// Where this event lies in the log: [`Since::After`] it resumes with the next one.
    pub position: String,
    /// When the script made the change (server clock).
    pub at: SystemTime,
    /// What happened.
    pub change: Change,
    /// The job's id.
    pub id: String,
    /// The attempt, where the change knows it (claimed, retried, dead, lease expired, ...).
    pub attempt: Option<u32>,
    /// Why, where there is a reason (an error reason, the state it left, ...).
    pub reason: Option<String>,
}

/// Where [`Queue::events`] starts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Since {
    /// With the changes made from now on.
    Now,
    /// With the oldest change the log still holds.
    Start,
    /// Right after the event whose [`JobEvent::position`] this is.
    After(String),
}

impl Queue {
    /// Turns the queue's event log on, kept to about `max_len` log entries per partition (one
    /// entry per script call, which may carry many jobs' changes), or off (`None`, the
    /// default). Turning it off keeps what was logged until the queue is removed.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bound of 0 or over [`MAX_EVENT_LOG`]; [`Error::Redis`].
    pub async fn set_event_log(&self, max_len: Option<u64>) -> Result<()> {
        if let Some(n) = max_len {
            if n == 0 || n > MAX_EVENT_LOG {
                return Err(Error::InvalidConfig {
                    what: "event log length",
                    reason: format!("must be from 1 to {MAX_EVENT_LOG}"),
                });
            }
        }
        self.set_setting("events", max_len.map(|n| n.to_string()))
            .await?;
        tracing::info!(queue = %self.name(), ?max_len, "event log set");
        Ok(())
    }

    /// The queue's event log bound, `None` while it is off (read from its first partition).
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn event_log(&self) -> Result<Option<u64>> {
        Ok(self.setting("events").await?.and_then(|t| t.parse().ok()))
    }

    /// Follows the queue's event log from `since`: a stream of [`JobEvent`]s that waits for
    /// new ones (blocking reads, no polling) until it is dropped, which ends its reads.
    /// Events of one partition (so of one job) come in the order they happened. A read that
    /// fails is tried again after a backoff; the failure is also yielded once as an `Err`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a position that is not one this queue gave;
    /// [`Error::Redis`] when the start of a partition's log cannot be read.
    pub async fn events(&self, since: Since) -> Result<EventStream> {
        let k = usize::from(self.partitions());
        let starts: Vec<Cursor> = match &since {
            Since::Now => {
                let mut starts = Vec::with_capacity(k);
                for part in self.each_partition() {
                    let last: Vec<(String, Value)> = redis::cmd("XREVRANGE")
                        .arg(&part.keys().events)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1)
                        .query_async(&mut part.conn())
                        .await
                        .map_err(|e| part.redis_error("events", e))?;
                    let id = last
                        .into_iter()
                        .next()
                        .map_or("0-0".to_owned(), |(id, _)| id);
                    starts.push(Cursor { id, skip: 0 });
                }
                starts
            }
            Since::Start => vec![Cursor::start(); k],
            Since::After(position) => {
                Cursor::parse_all(position, k).ok_or_else(|| Error::InvalidConfig {
                    what: "event position",
                    reason: format!("{position:?} is not a position of this queue's log"),
                })?
            }
        };
        let (sender, receiver) = mpsc::channel(16);
        let backend = self.namespace().backend().clone();
        let tasks = self
            .each_partition()
            .zip(starts.iter().cloned())
            .map(|(part, start)| {
                let key = part.keys().events.clone();
                let index = usize::from(part.index());
                let queue = self.name().to_owned();
                tokio::spawn(follow(
                    backend.clone(),
                    queue,
                    key,
                    index,
                    start,
                    sender.clone(),
                ))
            })
            .collect();
        Ok(EventStream {
            queue: self.name().to_owned(),
            receiver,
            tasks,
            cursors: starts,
            ready: VecDeque::new(),
        })
    }
}

/// A partition's place in its log: the last entry read and how many of its lines were given.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    id: String,
    skip: usize,
}

impl Cursor {
    fn start() -> Self {
        Cursor {
            id: "0-0".to_owned(),
            skip: 0,
        }
    }

    /// `ID` or `ID/n` (n lines of entry ID given), per partition, comma-separated.
    fn parse_all(text: &str, partitions: usize) -> Option<Vec<Cursor>> {
        let cursors: Vec<Cursor> = text
            .split(',')
            .map(|one| {
                let (id, skip) = match one.split_once('/') {
                    Some((id, n)) => (id, n.parse().ok()?),
                    None => (one, 0),
                };
                let (ms, seq) = id.split_once('-')?;
                ms.parse::<u64>().ok()?;
                seq.parse::<u64>().ok()?;
                Some(Cursor {
                    id: id.to_owned(),
                    skip,
                })
            })
            .collect::<Option<_>>()?;
        (cursors.len() == partitions).then_some(cursors)
    }

    fn render(cursors: &[Cursor]) -> String {
        let parts: Vec<String> = cursors
            .iter()
            .map(|c| match c.skip {
                0 => c.id.clone(),
                n => format!("{}/{n}", c.id),
            })
            .collect();
        parts.join(",")
    }
}

/// A stream entry as Redis sends it: its id and its field, value pairs.
type RawEntry = (String, Vec<(String, String)>);

/// One log entry of one partition.
#[derive(Debug)]
struct Entry {
    part: usize,
    id: String,
    at_ms: u64,
    lines: Vec<String>,
    /// Lines of this entry already given before (a resumed position inside it).
    skip: usize,
}

/// A live view of a queue's event log ([`Queue::events`]). Dropping it ends its reads.
#[derive(Debug)]
pub struct EventStream {
    queue: String,
    receiver: mpsc::Receiver<Result<Entry>>,
    tasks: Vec<JoinHandle<()>>,
    cursors: Vec<Cursor>,
    ready: VecDeque<JobEvent>,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl EventStream {
    /// Turns an entry into its events, moving the cursor of its partition along.
    fn take(&mut self, entry: Entry) {
        let total = entry.lines.len();
        for (n, line) in entry.lines.iter().enumerate().skip(entry.skip) {
            if let Some(cursor) = self.cursors.get_mut(entry.part) {
                *cursor = Cursor {
                    id: entry.id.clone(),
                    // The last line moves past the entry; any other stays inside it.
                    skip: if n + 1 == total { 0 } else { n + 1 },
                };
            }
            let Some(mut event) = parse_line(&self.queue, entry.at_ms, line) else {
                warn!(line = %line, "event log line not understood; skipped");
                continue;
            };
            event.position = Cursor::render(&self.cursors);
            self.ready.push_back(event);
        }
    }
}

/// One line of an entry (`event TAB id TAB attempt TAB reason`) as an event without a
/// position; `None` when it is not one.
fn parse_line(queue: &str, at_ms: u64, line: &str) -> Option<JobEvent> {
    let mut fields = line.split('\t');
    let (Some(change), Some(id)) = (fields.next().and_then(Change::parse), fields.next()) else {
        return None;
    };
    Some(JobEvent {
        queue: queue.to_owned(),
        position: String::new(),
        at: from_unix_ms(at_ms),
        change,
        id: id.to_owned(),
        attempt: fields.next().and_then(|a| a.parse().ok()),
        reason: fields.next().filter(|r| !r.is_empty()).map(str::to_owned),
    })
}

/// Most log entries [`Queue::job_events`] reads.
pub const MAX_EVENT_SCAN: usize = 10_000;

impl Queue {
    /// Job `id`'s events among the newest `scan` entries (at most [`MAX_EVENT_SCAN`]) of its
    /// partition's log, oldest first: a bounded look back for a job page, not a full history
    /// (older entries are not read; the log's own bound drops the oldest). Their
    /// [`JobEvent::position`] is empty: to follow the log, use [`Queue::events`].
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a scan over [`MAX_EVENT_SCAN`]; [`Error::Redis`].
    pub async fn job_events(&self, id: &str, scan: usize) -> Result<Vec<JobEvent>> {
        if scan > MAX_EVENT_SCAN {
            return Err(Error::InvalidConfig {
                what: "event scan",
                reason: format!("must be at most {MAX_EVENT_SCAN} entries"),
            });
        }
        let part = self.partition_of(id);
        let entries: Vec<RawEntry> = redis::cmd("XREVRANGE")
            .arg(&part.keys().events)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(scan)
            .query_async(&mut part.conn())
            .await
            .map_err(|e| part.redis_error("job events", e))?;
        let mut events = Vec::new();
        for (_, fields) in entries.iter().rev() {
            let field = |name: &str| fields.iter().find(|(f, _)| f == name).map(|(_, v)| v);
            let at_ms = field("t").and_then(|t| t.parse().ok()).unwrap_or(0);
            let Some(lines) = field("e") else { continue };
            events.extend(
                lines
                    .split('\n')
                    .filter(|line| line.split('\t').nth(1) == Some(id))
                    .filter_map(|line| parse_line(self.name(), at_ms, line)),
            );
        }
        Ok(events)
    }
}

impl futures_util::Stream for EventStream {
    type Item = Result<JobEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            match self.receiver.poll_recv(cx) {
                Poll::Ready(Some(Ok(entry))) => self.take(entry),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Reads partition `part`'s log (`key`, of `queue`) from `start`, forever, sending each entry; ends when
/// the stream is dropped (the send fails, or the task is aborted).
async fn follow(
    backend: crate::conn::Backend,
    queue: String,
    key: String,
    part: usize,
    start: Cursor,
    sender: mpsc::Sender<Result<Entry>>,
) {
    let mut last = start.id.clone();
    let mut conn = None;
    let mut outage = ReconnectBackoff::new();
    // A position inside an entry: that entry's remaining lines first.
    let mut first = (start.skip > 0).then_some(start);
    loop {
        let read = async {
            let c = match &mut conn {
                Some(c) => c,
                None => conn.insert(backend.own_conn(BLOCK * 2).await?),
            };
            if let Some(cursor) = first.as_ref() {
                let entries: Vec<RawEntry> = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(&cursor.id)
                    .arg(&cursor.id)
                    .query_async(c)
                    .await?;
                return Ok::<_, redis::RedisError>(entries);
            }
            let reply: Option<Vec<(String, Vec<RawEntry>)>> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&key)
                .arg(&last)
                .query_async(c)
                .await?;
            Ok(reply
                .into_iter()
                .flatten()
                .flat_map(|(_, entries)| entries)
                .collect())
        }
        .await;
        let entries = match read {
            Ok(entries) => {
                outage.reset();
                entries
            }
            Err(e) => {
                conn = None;
                let delay = outage.next_delay();
                warn!(error = %e, retry_in = ?delay, "cannot read the event log; redis unavailable?");
                let error = Error::Redis {
                    queue: queue.clone(),
                    op: "events",
                    source: e,
                };
                if sender.send(Err(error)).await.is_err() {
                    return;
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let skip = first.take().map_or(0, |c| c.skip);
        for (id, fields) in entries {
            let mut at_ms = 0;
            let mut lines = Vec::new();
            for (field, value) in fields {
                match field.as_str() {
                    "t" => at_ms = value.parse().unwrap_or(0),
                    "e" => lines = value.split('\n').map(str::to_owned).collect(),
                    _ => {}
                }
            }
            last = id.clone();
            let entry = Entry {
                part,
                id,
                at_ms,
                lines,
                skip,
            };
            if sender.send(Ok(entry)).await.is_err() {
                return;
            }
        }
    }
}
