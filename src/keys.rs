//! The Redis key layout of a queue: the one place key names are made.
//!
//! Every key of queue `q` under prefix `p` is `p:{q}:<part>`. The braces make `q` the Redis
//! Cluster hash tag, so all keys of one queue live in one slot and every script may touch them
//! together. Scripts never build key names: they get these in `KEYS`.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `p:{q}:scheduled` | ZSET | id → due time (unix ms, server clock) |
//! | `p:{q}:ready` | LIST | ids due and waiting for a worker, oldest first |
//! | `p:{q}:running` | ZSET | id → lease deadline (unix ms) |
//! | `p:{q}:dead` | ZSET | id → time it died (unix ms) |
//! | `p:{q}:jobs` | HASH | id → envelope (written once by `schedule.lua`) |
//! | `p:{q}:attempts` | HASH | id → attempts started (from the first claim) |
//! | `p:{q}:leases` | HASH | id → fencing token (while running) |
//! | `p:{q}:errors` | HASH | id → last error record, JSON (after a failure) |
//! | `p:{q}:due` | HASH | id → when it became due (unix ms), while it waits in `ready` |
//! | `p:{q}:done` | ZSET | id → time acknowledged (unix ms), for the dedup window |
//! | `p:{q}:seq` | STRING | counter that mints fencing tokens |
//! | `p:{q}:meta` | HASH | `format` → storage format version |
//! | `p:{q}:stats` | HASH | event → count since the queue was created (see below) |
//! | `p:{q}:promoters` | ZSET | partitioned queues: promoter id → alive until (ms), `share.lua` |
//! | `p:{q}:gate` | LIST | one element for a minute after a resume (`pause.lua`): wakes workers |
//! | `p:{q}:completed` | ZSET | id → time it completed (unix ms), while the queue's retention keeps it |
//! | `p:{q}:results` | HASH | id → its completion record (MessagePack: run time, result), while kept |
//! | `p:{q}:opts` | HASH | id → how the job is steered, JSON: expiry, debounce cap, a cancellation asked while it runs (only jobs that have any) |
//! | `p:{q}:cron` | HASH | recurring schedule id → its spec, JSON (`cron.lua`; src/cron.rs) |
//! | `p:{q}:cron_at` | HASH | recurring schedule id → its state, JSON: revision, last fire time created, occurrences created ahead, paused (`cron.lua`, `schedule.lua`) |
//! | `p:{q}:cron_due` | ZSET | recurring schedule id → when it next needs a promoter's pass (unix ms): its next fire time not created yet (`cron.lua`, `schedule.lua`) |
//! | `p:{q}:limits` | HASH | limit key or `prefix:*` or `*` → its rule, `RATE,PER_MS,CONCURRENCY` (empty parts: none) (src/limits.rs) |
//! | `p:{q}:limit_tat` | HASH | limit key → its rate's theoretical arrival time (GCRA, ms; `claim.lua`) |
//! | `p:{q}:limit_held` | ZSET | `key TAB id` of jobs running under a concurrency limit (`claim.lua` adds, `ack.lua` removes; entries of jobs no longer running are dropped when counted) |
//! | `p:{q}:limit_wait` | ZSET | `key TAB id` of jobs deferred by a concurrency limit (`claim.lua`), the first of a key made ready when a slot frees (`ack.lua`) |
//! | `p:{q}:limit_stats` | HASH | limit key → jobs deferred by its limit, in all (`claim.lua`) |
//!
//! The wake channel `p:{q}:wake` and the `p:{q}:ended` channel (how a job whose cancellation
//! was asked ended) are pub/sub channels, not keys. The registry `p:queues` (a
//! SET of queue names, outside every hash tag) lets tools find every queue of a namespace; no
//! script touches it.
//!
//! The `stats` fields are incremented by the script that makes the change, so they are exact
//! and shared by every process: `scheduled`, `promoted`, `lease_expired` (leases that ran out),
//! `expired` (jobs whose time ran out before they ran),
//! `retried` (failed attempts sent back with a backoff), `dead`, `completed`, `cancelled`,
//! `revived` (dead jobs retried), `purged` (dead jobs deleted).

use crate::error::{Error, Result};

/// Longest queue name or prefix accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// The key prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "punctual";

/// Most partitions a queue may have.
pub const MAX_PARTITIONS: u16 = 1024;

/// All key names of one queue.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub(crate) scheduled: String,
    pub(crate) ready: String,
    pub(crate) running: String,
    pub(crate) dead: String,
    pub(crate) jobs: String,
    pub(crate) attempts: String,
    pub(crate) leases: String,
    pub(crate) errors: String,
    /// When each job in `ready` became due: written by `promote.lua`, taken by `claim.lua`.
    pub(crate) due: String,
    pub(crate) done: String,
    pub(crate) seq: String,
    pub(crate) meta: String,
    pub(crate) stats: String,
    /// The live promoters of a partitioned queue (`share.lua`); in the queue's own tag.
    pub(crate) promoters: String,
    /// Wakes workers waiting out a pause when the queue resumes (`pause.lua`).
    pub(crate) gate: String,
    /// What the scripts act on after scheduling, per job that has any: its expiry and
    /// debounce cap (`schedule.lua`), a cancellation asked while it runs (`cancel.lua`).
    pub(crate) opts: String,
    /// Completed jobs kept by the queue's retention (`ack.lua`).
    pub(crate) completed: String,
    /// Completion records (run time, result) of the jobs in `completed`.
    pub(crate) results: String,
    /// Ready jobs of a queue that uses priorities, by rank (`promote.lua`, `claim.lua`).
    pub(crate) ranked: String,
    /// Wakes idle workers of a queue that uses priorities when `ranked` fills (its doorbell:
    /// they block on it instead of on `ready`).
    pub(crate) bell: String,
    /// The queue's event log, a capped STREAM, written while `meta` has `events`.
    pub(crate) events: String,
    /// Recurring schedules of the partition: id → spec (`cron.lua`).
    pub(crate) cron: String,
    /// Recurring schedules' states: id → revision, last fire created, ... (`cron.lua`, and
    /// `schedule.lua` when it creates occurrences).
    pub(crate) cron_at: String,
    /// Recurring schedules by the time they next need a pass (the next fire time not created
    /// yet, ms): what a promoter's pass reads, so an idle pass is one `ZRANGE`.
    pub(crate) cron_due: String,
    /// Limit rules: key or pattern → `RATE,PER_MS,CONCURRENCY` (src/limits.rs).
    pub(crate) limits: String,
    /// Per limit key: the rate's theoretical arrival time (GCRA, ms).
    pub(crate) limit_tat: String,
    /// `key TAB id` of jobs running under a concurrency limit.
    pub(crate) limit_held: String,
    /// `key TAB id` of jobs deferred by a concurrency limit.
    pub(crate) limit_wait: String,
    /// Per limit key: jobs deferred, in all.
    pub(crate) limit_stats: String,
    /// Pub/sub channel the scripts PUBLISH to when a job becomes the earliest due.
    pub(crate) wake: String,
    /// Pub/sub channel told how a job whose cancellation was asked ended (the `tell` snippet),
    /// heard by [`crate::Queue::cancel_and_wait`].
    pub(crate) ended: String,
}

impl Keys {
    /// The layout for `queue` under `prefix`; both must pass [`validate_name`]. For a queue of
    /// one partition these are its keys; for a partitioned queue only `meta` is used here
    /// (the queue's record: its format and partition count).
    pub(crate) fn new(prefix: &str, queue: &str) -> Result<Self> {
        validate_name(prefix)?;
        validate_name(queue)?;
        Ok(Keys::with_tag(prefix, queue))
    }

    /// The layout of partition `index` of `partitions`: hash tag [`partition_tag`]. `#` is
    /// not allowed in names, so no queue's keys can collide with a partition's.
    pub(crate) fn partition(
        prefix: &str,
        queue: &str,
        index: u16,
        partitions: u16,
    ) -> Result<Self> {
        validate_name(prefix)?;
        validate_name(queue)?;
        Ok(Keys::with_tag(
            prefix,
            &partition_tag(queue, index, partitions),
        ))
    }

    fn with_tag(prefix: &str, tag: &str) -> Self {
        let k = |part: &str| format!("{prefix}:{{{tag}}}:{part}");
        Keys {
            scheduled: k("scheduled"),
            ready: k("ready"),
            running: k("running"),
            dead: k("dead"),
            jobs: k("jobs"),
            attempts: k("attempts"),
            leases: k("leases"),
            errors: k("errors"),
            due: k("due"),
            done: k("done"),
            seq: k("seq"),
            meta: k("meta"),
            stats: k("stats"),
            promoters: k("promoters"),
            gate: k("gate"),
            opts: k("opts"),
            completed: k("completed"),
            results: k("results"),
            ranked: k("ranked"),
            bell: k("bell"),
            events: k("events"),
            cron: k("cron"),
            cron_at: k("cron_at"),
            cron_due: k("cron_due"),
            limits: k("limits"),
            limit_tat: k("limit_tat"),
            limit_held: k("limit_held"),
            limit_wait: k("limit_wait"),
            limit_stats: k("limit_stats"),
            wake: k("wake"),
            ended: k("ended"),
        }
    }
}

/// One key of a queue, by its part name (`p:{q}:<part>`): how the script bindings
/// (`crate::ops`) list a script's `KEYS` in order, checked by name against the script's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Scheduled,
    Ready,
    Running,
    Dead,
    Jobs,
    Attempts,
    Leases,
    Errors,
    Due,
    Done,
    Seq,
    Meta,
    Stats,
    Promoters,
    Gate,
    Opts,
    Completed,
    Results,
    Ranked,
    Bell,
    Events,
    Cron,
    CronAt,
    CronDue,
    Limits,
    LimitTat,
    LimitHeld,
    LimitWait,
    LimitStats,
}

impl Part {
    /// Every part, for the checks that a script covers them all.
    #[cfg(test)]
    pub(crate) const ALL: [Part; 29] = [
        Part::Scheduled,
        Part::Ready,
        Part::Running,
        Part::Dead,
        Part::Jobs,
        Part::Attempts,
        Part::Leases,
        Part::Errors,
        Part::Due,
        Part::Done,
        Part::Seq,
        Part::Meta,
        Part::Stats,
        Part::Promoters,
        Part::Gate,
        Part::Opts,
        Part::Completed,
        Part::Results,
        Part::Ranked,
        Part::Bell,
        Part::Events,
        Part::Cron,
        Part::CronAt,
        Part::CronDue,
        Part::Limits,
        Part::LimitTat,
        Part::LimitHeld,
        Part::LimitWait,
        Part::LimitStats,
    ];

    /// The part name, as in the key and in the scripts' headers (the header check reads it).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Part::Scheduled => "scheduled",
            Part::Ready => "ready",
            Part::Running => "running",
            Part::Dead => "dead",
            Part::Jobs => "jobs",
            Part::Attempts => "attempts",
            Part::Leases => "leases",
            Part::Errors => "errors",
            Part::Due => "due",
            Part::Done => "done",
            Part::Seq => "seq",
            Part::Meta => "meta",
            Part::Stats => "stats",
            Part::Promoters => "promoters",
            Part::Gate => "gate",
            Part::Opts => "opts",
            Part::Completed => "completed",
            Part::Results => "results",
            Part::Ranked => "ranked",
            Part::Bell => "bell",
            Part::Events => "events",
            Part::Cron => "cron",
            Part::CronAt => "cron_at",
            Part::CronDue => "cron_due",
            Part::Limits => "limits",
            Part::LimitTat => "limit_tat",
            Part::LimitHeld => "limit_held",
            Part::LimitWait => "limit_wait",
            Part::LimitStats => "limit_stats",
        }
    }
}

impl Keys {
    /// The key of `part`.
    pub(crate) fn get(&self, part: Part) -> &str {
        match part {
            Part::Scheduled => &self.scheduled,
            Part::Ready => &self.ready,
            Part::Running => &self.running,
            Part::Dead => &self.dead,
            Part::Jobs => &self.jobs,
            Part::Attempts => &self.attempts,
            Part::Leases => &self.leases,
            Part::Errors => &self.errors,
            Part::Due => &self.due,
            Part::Done => &self.done,
            Part::Seq => &self.seq,
            Part::Meta => &self.meta,
            Part::Stats => &self.stats,
            Part::Promoters => &self.promoters,
            Part::Gate => &self.gate,
            Part::Opts => &self.opts,
            Part::Completed => &self.completed,
            Part::Results => &self.results,
            Part::Ranked => &self.ranked,
            Part::Bell => &self.bell,
            Part::Events => &self.events,
            Part::Cron => &self.cron,
            Part::CronAt => &self.cron_at,
            Part::CronDue => &self.cron_due,
            Part::Limits => &self.limits,
            Part::LimitTat => &self.limit_tat,
            Part::LimitHeld => &self.limit_held,
            Part::LimitWait => &self.limit_wait,
            Part::LimitStats => &self.limit_stats,
        }
    }

    /// The registry SET of queue names of namespace `prefix`.
    pub(crate) fn registry(prefix: &str) -> String {
        format!("{prefix}:queues")
    }

    /// The pub/sub pattern matching the wake channel of every queue under `prefix`. Names
    /// cannot hold glob characters, so only the braces and the suffix constrain it.
    pub(crate) fn wake_pattern(prefix: &str) -> String {
        format!("{prefix}:{{*}}:wake")
    }

    /// The queue whose wake channel under `prefix` is `channel`, if it is one (for a
    /// partition's channel, `p:{q#i.n}:wake`, the queue `q`).
    pub(crate) fn queue_of_wake_channel<'a>(prefix: &str, channel: &'a str) -> Option<&'a str> {
        let tag = channel
            .strip_prefix(prefix)?
            .strip_prefix(":{")?
            .strip_suffix("}:wake")?;
        let name = match tag.split_once('#') {
            Some((name, suffix)) => {
                let (index, n) = suffix.split_once('.')?;
                index.parse::<u16>().ok()?;
                n.parse::<u32>().ok()?;
                name
            }
            None => tag,
        };
        validate_name(name).ok().map(|()| name)
    }
}

/// The partition, among `partitions`, of job `id`: the Redis Cluster hash slot of the id
/// (CRC16 of its hash tag, the text between the first `{` and the next `}` when that is not
/// empty, else of the whole id; what `CLUSTER KEYSLOT` computes) modulo `partitions`. So
/// jobs whose ids share a tag (`order-17{customer-4}`, `order-18{customer-4}`) share a
/// partition, and any language can compute it (`redis.crc.key_slot` in redis-py).
pub fn partition_of(id: &str, partitions: u16) -> u16 {
    if partitions <= 1 {
        return 0;
    }
    let bytes = id.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &bytes[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    let slot = crc16(tagged.unwrap_or(bytes)) % 16384;
    slot % partitions
}

/// The hash tag of partition `index` of a queue with `partitions` partitions:
/// `queue#index.n`, with the smallest `n` (0, 1, …) for which the tag's key slot lies in the
/// `index`-th of `partitions` equal slot ranges, `[index·16384/partitions,
/// (index+1)·16384/partitions)`. So the partitions are spread evenly over the slot space, and
/// over the masters of a cluster whose masters own equal ranges (as `redis-cli --cluster
/// create` assigns them), instead of landing where a hash puts them. About `partitions` tries
/// per partition; computed once when a queue is opened.
pub fn partition_tag(queue: &str, index: u16, partitions: u16) -> String {
    let k = u32::from(partitions.max(1));
    let lo = u32::from(index) * 16384 / k;
    let hi = (u32::from(index) + 1) * 16384 / k;
    // Each try lands in the range with probability 1/k (at least 1/1024): 10^6 tries cannot
    // all miss in practice; the bound only keeps the loop finite.
    for n in 0..1_000_000u32 {
        let tag = format!("{queue}#{index}.{n}");
        let slot = u32::from(crc16(tag.as_bytes()) % 16384);
        if (lo..hi).contains(&slot) {
            return tag;
        }
    }
    format!("{queue}#{index}.0")
}

/// CRC16-CCITT (XMODEM), the checksum of Redis Cluster's key slots.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Checks a queue name or key prefix: 1 to [`MAX_NAME_LEN`] bytes of ASCII letters, digits and
/// `_ - . :`. Braces would move the hash tag, and spaces or control bytes make keys that
/// operators cannot type.
pub fn validate_name(name: &str) -> Result<()> {
    let reject = |reason| {
        Err(Error::InvalidQueueName {
            name: crate::error::clip(name),
            reason,
        })
    };
    if name.is_empty() {
        return reject("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return reject("it is longer than 128 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        return reject("only ASCII letters, digits, '_', '-', '.' and ':' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = Keys::new("punctual", "emails").unwrap();
        for key in [
            &keys.scheduled,
            &keys.ready,
            &keys.running,
            &keys.dead,
            &keys.jobs,
            &keys.attempts,
            &keys.leases,
            &keys.errors,
            &keys.done,
            &keys.seq,
            &keys.meta,
            &keys.stats,
            &keys.wake,
        ] {
            assert!(key.starts_with("punctual:{emails}:"), "{key}");
        }
    }

    #[test]
    fn wake_channels_map_back_to_their_queue() {
        let keys = Keys::new("ns", "a:b.c").unwrap();
        assert_eq!(Keys::queue_of_wake_channel("ns", &keys.wake), Some("a:b.c"));
        assert_eq!(Keys::queue_of_wake_channel("other", &keys.wake), None);
        assert_eq!(Keys::queue_of_wake_channel("ns", "ns:{x}:ready"), None);
        assert_eq!(Keys::queue_of_wake_channel("ns", "ns:{a}:x:{b}:wake"), None);
        assert_eq!(Keys::wake_pattern("ns"), "ns:{*}:wake");
    }

    #[test]
    fn partitions_follow_redis_key_slots() {
        // Slots as `CLUSTER KEYSLOT` reports them (Redis' own test vectors).
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(partition_of("foo", 16384), 12182);
        assert_eq!(partition_of("{user1000}.following", 16384), 3443);
        // An empty tag does not count: the whole id is hashed.
        assert_ne!(
            partition_of("foo{}{bar}", 16384),
            partition_of("bar", 16384)
        );
        assert_eq!(
            partition_of("a{tag}", 8),
            partition_of("b{tag}", 8),
            "ids sharing a tag share a partition"
        );
        assert_eq!(partition_of("anything", 1), 0);
        let p = Keys::partition("p", "mail", 3, 8).unwrap();
        let tag = partition_tag("mail", 3, 8);
        assert!(tag.starts_with("mail#3."), "{tag}");
        assert_eq!(p.jobs, format!("p:{{{tag}}}:jobs"));
        assert_eq!(Keys::queue_of_wake_channel("p", &p.wake), Some("mail"));
        assert_eq!(Keys::queue_of_wake_channel("p", "p:{mail#x}:wake"), None);
        assert_eq!(Keys::queue_of_wake_channel("p", "p:{mail#3}:wake"), None);
    }

    #[test]
    fn partition_tags_spread_over_the_slot_space() {
        for k in [2u16, 12, 100, 1024] {
            for i in 0..k {
                let slot = u32::from(crc16(partition_tag("emails", i, k).as_bytes()) % 16384);
                let range =
                    u32::from(i) * 16384 / u32::from(k)..(u32::from(i) + 1) * 16384 / u32::from(k);
                assert!(range.contains(&slot), "partition {i} of {k}: slot {slot}");
            }
        }
    }

    #[test]
    fn names_that_would_break_the_hash_tag_are_rejected() {
        for bad in [
            "",
            "a{b",
            "a}b",
            "with space",
            "tab\t",
            "é",
            &"x".repeat(129),
        ] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidQueueName { .. })),
                "{bad:?} was accepted"
            );
        }
        for good in ["emails", "a:b", "v1.reminders", "x-y_z", &"x".repeat(128)] {
            assert!(validate_name(good).is_ok(), "{good:?} was rejected");
        }
    }
}
