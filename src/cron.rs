//! Recurring schedules: "every Monday at 09:00 Europe/Berlin", created exactly once by any
//! number of promoters, without a leader.
//!
//! A schedule lives in the partition of its id (`partition_of(id)`), in two hashes: `cron`
//! (id → its spec) and `cron_at` (id → its state: revision, the last fire time whose
//! occurrence was created, the occurrences created ahead, paused). Every change is a compare
//! and set of the state: `cron.lua` for add, edit, pause, resume and remove, and the guard of
//! `schedule.lua` for the promoters, which create each fire time's occurrence, an ordinary
//! job, a short horizon ([`horizon`]) before it is due. Two promoters that read the same state
//! both send the same occurrences; the first call writes them with the new state, the second
//! finds the state changed and writes nothing. So each occurrence is created once.
//!
//! An occurrence's id is the schedule's id and its fire time (`{digest}@2026-12-07T08:00:00Z`,
//! [`occurrence_id`]), in the schedule's partition; a schedule whose job has a conflict mode
//! ([`NewJob::on_conflict`]) gives every occurrence the schedule's own id instead, and the mode
//! says what a new occurrence does to one that still waits.
//!
//! Times: cron expressions are read by `croner` in the schedule's IANA time zone (jiff's
//! built-in copy of the tz database). A wall-clock time the clock skips (spring forward) runs
//! right after the gap; one that happens twice (fall back) runs once, at its first instant;
//! expressions with wildcard or stepped hours, minutes or seconds run at each real instant that
//! matches. Fixed intervals (`every`) are counted from the start time in real time.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use croner::parser::{CronParser, Seconds};
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::envelope::{hex, unhex};
use crate::error::{clip, Error, Result};
use crate::new_job::{NewJob, OnConflict};
use crate::ops;
use crate::queue::{Partition, Queue};
use crate::time::{delay_ms, from_unix_ms, unix_ms};

/// Shortest interval of [`Schedule::every`] (and of a cron expression's seconds).
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// How many missed occurrences [`Misfire::All`] runs at most after an outage: the latest
/// ones; the older ones are skipped (and logged).
pub const MISFIRE_ALL_LIMIT: usize = 1000;
/// Most occurrences one promoter call creates (more are created by the next call at once).
const PER_CALL: usize = 256;
/// Most schedules one promoter pass reads (more are read by the next pass at once).
const PASS_LIMIT: usize = 500;
/// A fire time this far in the past when its occurrence would be created counts as missed
/// (the promoter was away): the misfire policy decides.
const MISFIRE_GRACE_MS: u64 = 1000;
/// Occurrences are created at least this long before they are due.
pub const MIN_HORIZON: Duration = Duration::from_secs(10);
/// Most steps taken to count skipped occurrences for the log.
const COUNT_LIMIT: usize = 100_000;

/// How a schedule's fire times are found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Timing {
    /// A cron expression: 5 fields (minute hour day-of-month month day-of-week), or 6 with
    /// seconds first; names (`MON`, `JAN`), ranges, steps, lists and `@daily`-style nicknames.
    Cron(String),
    /// Every this long, counted from the schedule's start time.
    Every(Duration),
}

/// What a schedule does about fire times that passed while no promoter ran (an outage), or
/// before it was resumed... (see [`Queue::resume_schedule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Misfire {
    /// Run once now for all of them (the latest one's occurrence, due at once). The default:
    /// a digest after an outage is sent once, not twelve times.
    #[default]
    Once,
    /// Run each of them, oldest first, due at once ([`MISFIRE_ALL_LIMIT`] at most: the latest).
    All,
    /// Run none of them; go on with the next fire time.
    Skip,
}

impl Misfire {
    /// The policy named `s` (`once`, `all`, `skip`).
    pub fn parse(s: &str) -> Option<Misfire> {
        match s {
            "once" => Some(Misfire::Once),
            "all" => Some(Misfire::All),
            "skip" => Some(Misfire::Skip),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::Once => "once",
            Misfire::All => "all",
            Misfire::Skip => "skip",
        }
    }
}

/// A recurring schedule to add or edit with [`Queue::upsert_schedule`].
#[derive(Debug)]
pub struct Schedule {
    id: String,
    timing: Timing,
    tz: String,
    job: NewJob,
    start: Option<SystemTime>,
    end: Option<SystemTime>,
    misfire: Misfire,
}

impl Schedule {
    /// Fires at the times of cron expression `expr` (in UTC unless [`Schedule::tz`]), with
    /// `job` as each occurrence (its data, kind, attempts, backoff, timeout, priority,
    /// max lateness and conflict mode; no id or due time of its own).
    pub fn cron(id: impl Into<String>, expr: impl Into<String>, job: NewJob) -> Self {
        Schedule::new(id.into(), Timing::Cron(expr.into()), job)
    }

    /// Fires every `interval` from the start time (default: when it is first added).
    pub fn every(id: impl Into<String>, interval: Duration, job: NewJob) -> Self {
        Schedule::new(id.into(), Timing::Every(interval), job)
    }

    fn new(id: String, timing: Timing, job: NewJob) -> Self {
        Schedule {
            id,
            timing,
            tz: "UTC".to_owned(),
            job,
            start: None,
            end: None,
            misfire: Misfire::default(),
        }
    }

    /// The IANA time zone a cron expression is read in (`Europe/Berlin`; default `UTC`).
    pub fn tz(mut self, zone: impl Into<String>) -> Self {
        self.tz = zone.into();
        self
    }

    /// No fire time before `start` (default: when the schedule is first added). A start in
    /// the past on a new schedule makes the fire times since then missed ones: the misfire
    /// policy decides about them.
    pub fn start(mut self, start: SystemTime) -> Self {
        self.start = Some(start);
        self
    }

    /// No fire time after `end`.
    pub fn end(mut self, end: SystemTime) -> Self {
        self.end = Some(end);
        self
    }

    /// What to do about fire times missed while no promoter ran (default [`Misfire::Once`]).
    pub fn misfire(mut self, misfire: Misfire) -> Self {
        self.misfire = misfire;
        self
    }

    /// Checks the id, the timing, the time zone and the start and end, without Redis (what
    /// [`Queue::upsert_schedule`] checks first; the job is checked against the queue's limits
    /// there).
    ///
    /// # Errors
    /// [`Error::InvalidJobId`] for a bad id, [`Error::InvalidConfig`] for the rest.
    pub fn check(&self) -> Result<()> {
        let id = &self.id;
        let reason = if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
            Some("a schedule id must be 1 to 200 bytes without control characters")
        } else if occurrence_id(id, 0).is_none() {
            Some("a schedule id with braces needs a {tag}")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::InvalidJobId {
                queue: String::new(),
                id: clip(id),
                reason,
            });
        }
        let start = self.start.map(unix_ms);
        let end = self.end.map(unix_ms);
        if start == Some(None) || end == Some(None) {
            return Err(invalid("the start and the end must be after 1970"));
        }
        if let (Some(Some(start)), Some(Some(end))) = (start, end) {
            if end < start {
                return Err(invalid("the end is before the start"));
            }
        }
        self.job.check_template()?;
        Compiled::new(&self.timing, &self.tz, start.flatten().unwrap_or(0)).map(|_| ())
    }
}

/// A schedule as stored: its spec (`cron` hash). The occurrence's envelope is hex, which Lua
/// and operators read as text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Spec {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    every_ms: Option<u64>,
    tz: String,
    kind: String,
    /// The occurrence's envelope, hex.
    e: String,
    /// The occurrence's options object for `schedule.lua` ("" for none).
    o: String,
    /// Occurrences share the schedule's id, with this conflict mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    on_conflict: Option<String>,
    start_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_ms: Option<u64>,
    misfire: String,
}

/// A schedule's state (`cron_at` hash), compared and set as the exact text read.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct State {
    /// Bumped by every edit, so a promoter that read the old spec writes nothing.
    rev: u64,
    /// The last fire time (ms) handled: its occurrence created, or skipped as missed.
    #[serde(skip_serializing_if = "Option::is_none")]
    last: Option<u64>,
    /// Fire times (ms) of occurrences created before they were due and maybe still waiting:
    /// what a pause or a removal takes back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ahead: Vec<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    paused: bool,
}

/// A schedule as [`Queue::list_schedules`] reports it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScheduleInfo {
    /// Its id.
    pub id: String,
    /// Its fire times.
    pub timing: Timing,
    /// Its time zone.
    pub tz: String,
    /// Its occurrences' kind.
    pub kind: String,
    /// Its occurrences' data (MessagePack).
    pub data: Vec<u8>,
    /// No fire time before this.
    pub start: SystemTime,
    /// No fire time after this.
    pub end: Option<SystemTime>,
    /// Its misfire policy.
    pub misfire: Misfire,
    /// `Some`: occurrences share the schedule's id, with this mode.
    pub on_conflict: Option<OnConflict>,
    /// Paused ([`Queue::pause_schedule`]).
    pub paused: bool,
    /// The last fire time handled (its occurrence created, or skipped).
    pub last_fire: Option<SystemTime>,
    /// The next fire time whose occurrence is not created yet (`None`: past its end).
    pub next_fire: Option<SystemTime>,
    compiled: Compiled,
    end_ms: Option<u64>,
}

impl ScheduleInfo {
    /// The first `n` fire times after `after`, each in UTC and in the schedule's zone
    /// (RFC 3339 with the zone's offset).
    pub fn fires_after(&self, after: SystemTime, n: usize) -> Vec<(SystemTime, String)> {
        let mut out = Vec::new();
        let mut t = unix_ms(after).unwrap_or(0);
        while out.len() < n {
            match self.compiled.next_after(t) {
                Some(next) if self.end_ms.is_none_or(|end| next <= end) => {
                    out.push((from_unix_ms(next), self.compiled.local(next)));
                    t = next;
                }
                _ => break,
            }
        }
        out
    }
}

/// A spec's timing, ready to compute fire times.
#[derive(Debug, Clone)]
enum Compiled {
    Cron {
        cron: Box<Cron>,
        tz: TimeZone,
    },
    Every {
        start_ms: u64,
        every_ms: u64,
        tz: TimeZone,
    },
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        what: "recurring schedule",
        reason: reason.into(),
    }
}

impl Compiled {
    fn new(timing: &Timing, tz: &str, start_ms: u64) -> Result<Compiled> {
        let zone = TimeZone::get(tz).map_err(|_| {
            invalid(format!(
                "unknown time zone {:?} (an IANA name such as Europe/Berlin)",
                clip(tz)
            ))
        })?;
        match timing {
            Timing::Cron(expr) => {
                let cron = CronParser::builder()
                    .seconds(Seconds::Optional)
                    .build()
                    .parse(expr)
                    .map_err(|e| invalid(format!("cron expression {:?}: {e}", clip(expr))))?;
                let compiled = Compiled::Cron {
                    cron: Box::new(cron),
                    tz: zone,
                };
                if compiled.next_after(start_ms).is_none() {
                    return Err(invalid(format!(
                        "cron expression {:?} never fires",
                        clip(expr)
                    )));
                }
                Ok(compiled)
            }
            Timing::Every(d) => {
                if *d < MIN_INTERVAL {
                    return Err(invalid("the interval must be at least 1s"));
                }
                let every_ms = delay_ms(*d)
                    .ok_or_else(|| invalid("the interval must be at most 100 years"))?;
                Ok(Compiled::Every {
                    start_ms,
                    every_ms,
                    tz: zone,
                })
            }
        }
    }

    fn zoned(ms: u64, tz: &TimeZone) -> Option<Zoned> {
        let ts = Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()?;
        Some(ts.to_zoned(tz.clone()))
    }

    fn ms_of(z: &Zoned) -> Option<u64> {
        u64::try_from(z.timestamp().as_millisecond()).ok()
    }

    /// The first fire time after `t` (ms).
    fn next_after(&self, t: u64) -> Option<u64> {
        match self {
            Compiled::Cron { cron, tz } => {
                // Whole seconds: croner's resolution. A fire at or before `t` is not after it.
                let z = Compiled::zoned(t - t % 1000, tz)?;
                let next = cron.find_next_occurrence(&z, false).ok()?;
                Compiled::ms_of(&next)
            }
            Compiled::Every {
                start_ms, every_ms, ..
            } => {
                if t < *start_ms {
                    return Some(*start_ms);
                }
                let k = (t - start_ms) / every_ms + 1;
                start_ms.checked_add(k.checked_mul(*every_ms)?)
            }
        }
    }

    /// The last fire time at or before `t` (ms).
    fn at_or_before(&self, t: u64) -> Option<u64> {
        match self {
            Compiled::Cron { cron, tz } => {
                let z = Compiled::zoned(t - t % 1000, tz)?;
                let prev = cron.find_previous_occurrence(&z, true).ok()?;
                Compiled::ms_of(&prev)
            }
            Compiled::Every {
                start_ms, every_ms, ..
            } => {
                if t < *start_ms {
                    return None;
                }
                Some(start_ms + (t - start_ms) / every_ms * every_ms)
            }
        }
    }

    /// Fire time `ms` in the schedule's zone, RFC 3339 with its offset.
    fn local(&self, ms: u64) -> String {
        let tz = match self {
            Compiled::Cron { tz, .. } | Compiled::Every { tz, .. } => tz,
        };
        Compiled::zoned(ms, tz)
            .map(|z| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
            .unwrap_or_default()
    }
}

/// The id of a schedule's occurrence at fire time `fire_ms`: `{id}@<RFC 3339 UTC>`, or
/// `id@<time>` when the id has a hash tag, so that it lies in the schedule's partition.
/// `None` for an id with braces but no tag.
pub fn occurrence_id(id: &str, fire_ms: u64) -> Option<String> {
    let time = Timestamp::from_millisecond(i64::try_from(fire_ms).ok()?).ok()?;
    let tagged = id
        .find('{')
        .and_then(|open| id[open + 1..].find('}').filter(|&close| close > 0));
    match tagged {
        Some(_) => Some(format!("{id}@{time}")),
        None if !id.contains(['{', '}']) => Some(format!("{{{id}}}@{time}")),
        None => None,
    }
}

/// What one promoter pass decided for one schedule: the fire times to create, and the state
/// to write with them.
#[derive(Debug, PartialEq)]
struct Plan {
    fires: Vec<u64>,
    state: State,
    /// Missed fire times not run (counted up to a limit, for the log).
    skipped: usize,
    /// More fire times are due for creation now: call again.
    more: bool,
}

/// The plan for a schedule at server time `now` (ms): which fire times up to
/// `now + horizon` to create. `None` when there is nothing to do.
fn plan(
    compiled: &Compiled,
    spec: &Spec,
    state: &State,
    now: u64,
    horizon_ms: u64,
) -> Option<Plan> {
    if state.paused {
        return None;
    }
    let misfire = Misfire::parse(&spec.misfire).unwrap_or_default();
    // Fire times after `from` are not handled yet.
    let from = match state.last {
        Some(last) => last.max(spec.start_ms.saturating_sub(1)),
        None => spec.start_ms.saturating_sub(1),
    };
    let upto = (now + horizon_ms).min(spec.end_ms.unwrap_or(u64::MAX));
    let cut = now.saturating_sub(MISFIRE_GRACE_MS).min(upto);
    let mut fires = Vec::new();
    let mut last = state.last;
    let mut skipped = 0;
    // Missed: fire times in (from, cut].
    if let Some(latest) = compiled.at_or_before(cut).filter(|&t| t > from) {
        let keep = match misfire {
            Misfire::Skip => 0,
            Misfire::Once => 1,
            Misfire::All => MISFIRE_ALL_LIMIT,
        };
        // The latest `keep` missed fire times, oldest first.
        let mut kept = Vec::new();
        let mut t = latest;
        while kept.len() < keep && t > from {
            kept.push(t);
            match compiled.at_or_before(t - 1) {
                Some(prev) => t = prev,
                None => break,
            }
        }
        kept.reverse();
        let first_kept = kept.first().copied().unwrap_or(latest + 1);
        // Count what is skipped (for the log), within reason.
        let mut t = from;
        while skipped < COUNT_LIMIT {
            match compiled.next_after(t) {
                Some(next) if next < first_kept && next <= latest => {
                    skipped += 1;
                    t = next;
                }
                _ => break,
            }
        }
        let take = kept.len().min(PER_CALL);
        fires.extend_from_slice(&kept[..take]);
        if take < kept.len() {
            // The rest of the missed ones at the next call, right away.
            let handled = fires.last().copied().unwrap_or(latest);
            return Some(Plan {
                state: advance(state, handled, &fires, now),
                fires,
                skipped,
                more: true,
            });
        }
        last = Some(latest);
    }
    // Coming: fire times in (max(from, cut), upto]. Occurrences that share the schedule's id
    // are created one at a time: the next once the one before is due.
    let shared = spec.on_conflict.is_some();
    let mut waiting = shared && state.ahead.iter().any(|&t| t > now);
    let mut t = last.unwrap_or(from).max(from);
    let mut more = false;
    while let Some(next) = compiled.next_after(t) {
        if next > upto || waiting {
            break;
        }
        waiting = shared && next > now;
        if fires.len() >= PER_CALL {
            more = true;
            break;
        }
        fires.push(next);
        last = Some(next);
        t = next;
    }
    if last == state.last {
        return None;
    }
    let handled = last.unwrap_or(from);
    Some(Plan {
        state: advance(state, handled, &fires, now),
        fires,
        skipped,
        more,
    })
}

/// `state` after creating `fires`, having handled everything up to `last`.
fn advance(state: &State, last: u64, fires: &[u64], now: u64) -> State {
    let mut ahead: Vec<u64> = state
        .ahead
        .iter()
        .chain(fires)
        .copied()
        .filter(|&t| t > now)
        .collect();
    ahead.sort_unstable();
    ahead.dedup();
    State {
        rev: state.rev,
        last: Some(last),
        ahead,
        paused: state.paused,
    }
}

/// How far ahead of its fire time a promoter with heartbeat `heartbeat` creates an
/// occurrence: two heartbeats, at least [`MIN_HORIZON`], so that a pass once a heartbeat is
/// always early.
pub(crate) fn horizon(heartbeat: Duration) -> Duration {
    (heartbeat * 2).max(MIN_HORIZON)
}

/// One schedule as read from a partition: its spec, compiled, and its state with the exact
/// text read (the compare-and-set value).
struct Stored {
    spec: Spec,
    compiled: Compiled,
    state: State,
    raw: String,
}

/// A schedule a pass reads: its id, what is stored (`None`: removed meanwhile, or
/// unreadable), and its `cron_due` score.
struct DueSchedule {
    id: String,
    stored: Option<Stored>,
    score: u64,
}

/// What a promoter's pass over one partition's schedules did.
#[derive(Debug, Default)]
pub(crate) struct Materialized {
    /// Occurrences created.
    pub(crate) created: u64,
    /// When the next pass is needed before the next heartbeat: now (a pass creates at most
    /// 64 calls' worth), or when an occurrence that shares its schedule's id comes due (the
    /// next one is created then).
    pub(crate) next_in: Option<Duration>,
}

impl Partition<'_> {
    /// Reads the partition's schedules (and the server's clock, ms): id → stored.
    async fn schedules(&self) -> Result<(u64, HashMap<String, Stored>)> {
        let keys = self.keys();
        let (specs, states, time): (HashMap<String, String>, HashMap<String, String>, (u64, u64)) =
            redis::pipe()
                .hgetall(&keys.cron)
                .hgetall(&keys.cron_at)
                .cmd("TIME")
                .query_async(&mut self.conn())
                .await
                .map_err(|e| self.redis_error("read schedules", e))?;
        let now = time.0 * 1000 + time.1 / 1000;
        let mut out = HashMap::new();
        for (id, text) in specs {
            let raw = states.get(&id).cloned().unwrap_or_default();
            if let Some(stored) = self.stored(&id, &text, raw) {
                out.insert(id, stored);
            }
        }
        Ok((now, out))
    }

    /// A schedule as read, compiled; `None` (logged) when it cannot be read or computed.
    fn stored(&self, id: &str, spec: &str, raw: String) -> Option<Stored> {
        let spec: Spec = match serde_json::from_str(spec) {
            Ok(spec) => spec,
            Err(e) => {
                warn!(queue = self.queue().name(), schedule = %id, error = %e, "unreadable schedule; left alone");
                return None;
            }
        };
        let compiled = match spec_timing(&spec)
            .and_then(|timing| Compiled::new(&timing, &spec.tz, spec.start_ms))
        {
            Ok(c) => c,
            Err(e) => {
                warn!(queue = self.queue().name(), schedule = %id, error = %e, "schedule cannot be computed; left alone");
                return None;
            }
        };
        let state = serde_json::from_str(&raw).unwrap_or_default();
        Some(Stored {
            spec,
            compiled,
            state,
            raw,
        })
    }

    /// The schedules that need a pass by `now + horizon_ms` (at most [`PASS_LIMIT`]), with
    /// their `cron_due` scores, and the server's clock; nothing more is read when the
    /// earliest score is later (an idle pass is one round trip).
    async fn due_schedules(&self, horizon_ms: u64) -> Result<(u64, Vec<DueSchedule>)> {
        let keys = self.keys();
        let (time, earliest): ((u64, u64), Vec<(String, u64)>) = redis::pipe()
            .cmd("TIME")
            .zrange_withscores(&keys.cron_due, 0, 0)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.redis_error("read schedules", e))?;
        let now = time.0 * 1000 + time.1 / 1000;
        let upto = now.saturating_add(horizon_ms);
        if earliest.first().is_none_or(|(_, t)| *t > upto) {
            return Ok((now, Vec::new()));
        }
        let due: Vec<(String, u64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(&keys.cron_due)
            .arg("-inf")
            .arg(upto)
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(PASS_LIMIT)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.redis_error("read schedules", e))?;
        if due.is_empty() {
            return Ok((now, Vec::new()));
        }
        let ids: Vec<&str> = due.iter().map(|(id, _)| id.as_str()).collect();
        let (specs, states): (Vec<Option<String>>, Vec<Option<String>>) = redis::pipe()
            .cmd("HMGET")
            .arg(&keys.cron)
            .arg(&ids)
            .cmd("HMGET")
            .arg(&keys.cron_at)
            .arg(&ids)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.redis_error("read schedules", e))?;
        let out = due
            .iter()
            .zip(specs.into_iter().zip(states))
            .map(|((id, score), (spec, state))| DueSchedule {
                stored: spec.and_then(|text| self.stored(id, &text, state.unwrap_or_default())),
                id: id.clone(),
                score: *score,
            })
            .collect();
        Ok((now, out))
    }

    /// Creates the occurrences of this partition's schedules that are due within `horizon`:
    /// the promoter's pass (several promoters may make it at once; each occurrence is
    /// created once).
    pub(crate) async fn materialize(&self, horizon: Duration) -> Result<Materialized> {
        let horizon_ms = delay_ms(horizon).unwrap_or(u64::MAX / 4);
        let mut report = Materialized::default();
        let (now, due) = self.due_schedules(horizon_ms).await?;
        let mut next: Option<u64> = None;
        let mut again = due.len() >= PASS_LIMIT;
        let mut planned = Vec::new();
        for DueSchedule { id, stored, score } in &due {
            let Some(stored) = stored else {
                continue; // removed meanwhile (or unreadable: logged)
            };
            let Some(plan) = plan(
                &stored.compiled,
                &stored.spec,
                &stored.state,
                now,
                horizon_ms,
            ) else {
                let due = due_of(&stored.compiled, &stored.spec, &stored.state, now);
                if due == Some(*score) {
                    // An occurrence that shares the schedule's id waits: the next one is
                    // created when it comes due.
                    next = earliest(next, due);
                    continue;
                }
                // The index says a pass is needed and the state says not (a schedule
                // written before the index existed): mend the index.
                let change = ops::cron::Change {
                    id,
                    read: &stored.raw,
                    state: &stored.raw,
                    spec: "",
                    due,
                };
                if let Err(e) = ops::cron::call(self, change, &[]).await {
                    warn!(queue = self.queue().name(), schedule = %id, error = %e, "cannot mend a schedule's next pass time");
                }
                continue;
            };
            if plan.skipped > 0 {
                info!(
                    queue = self.queue().name(),
                    schedule = %id,
                    skipped = plan.skipped,
                    policy = %stored.spec.misfire,
                    "missed fire times of a recurring schedule (no promoter ran) were skipped"
                );
            }
            let due = due_of(&stored.compiled, &stored.spec, &plan.state, now);
            match self.occurrences_call(stored, &plan, due) {
                Ok(call) => planned.push((id, stored, plan, due, call)),
                Err(e) => {
                    warn!(queue = self.queue().name(), schedule = %id, error = %e, "cannot create a schedule's occurrences");
                }
            }
        }
        if !planned.is_empty() {
            // Every schedule's call in one pipeline. With durability on, occurrences count as
            // created once replicas have them (a failover before then loses them with the
            // schedule's new state, and they are created again).
            let wait = self.queue().config().durability();
            let calls: Vec<redis::Cmd> = planned.iter().map(|p| p.4.clone()).collect();
            let (replies, confirmed) = ops::schedule::BINDING
                .pipeline(&mut self.conn(), &calls, wait)
                .await
                .map_err(|e| self.redis_error("schedule occurrences", e))?;
            ops::check_replicated(self, "schedule occurrences", wait, confirmed)?;
            for ((id, stored, plan, due, _), reply) in planned.into_iter().zip(replies) {
                match self.created(reply, &plan) {
                    Ok(Some(created)) => {
                        report.created += created;
                        again |= plan.more;
                        if stored.spec.on_conflict.is_some() {
                            next = earliest(next, due);
                        }
                    }
                    Ok(None) => {} // another promoter was first, or the schedule changed
                    Err(e) => {
                        warn!(queue = self.queue().name(), schedule = %id, error = %e, "cannot create a schedule's occurrences");
                    }
                }
            }
        }
        report.next_in = match again {
            true => Some(Duration::ZERO),
            false => next.map(|t| Duration::from_millis(t.saturating_sub(now))),
        };
        Ok(report)
    }

    /// The guarded `schedule.lua` call that creates `plan`'s occurrences with its new state
    /// (and `due`, the schedule's next pass time), if the schedule's state is still the one
    /// read.
    fn occurrences_call(
        &self,
        stored: &Stored,
        plan: &Plan,
        due: Option<u64>,
    ) -> Result<redis::Cmd> {
        let spec = &stored.spec;
        let envelope = unhex(&spec.e).ok_or_else(|| self.unexpected("schedule", "bad envelope"))?;
        let ids: Vec<String> = plan
            .fires
            .iter()
            .map(|&t| match spec.on_conflict {
                Some(_) => Some(spec.id.clone()),
                None => occurrence_id(&spec.id, t),
            })
            .collect::<Option<_>>()
            .ok_or_else(|| self.unexpected("schedule", "schedule id without a hash tag"))?;
        let state = serde_json::to_string(&plan.state)
            .map_err(|e| self.unexpected("schedule", e.to_string()))?;
        let jobs = ids
            .iter()
            .zip(&plan.fires)
            .map(|(id, &t)| (id.as_str(), "at", t, envelope.as_slice(), spec.o.as_str()));
        Ok(ops::schedule::command_guarded(
            self.keys(),
            jobs,
            (&spec.id, &stored.raw, &state, due),
        ))
    }

    /// How many occurrences a reply of [`Partition::occurrences_call`] created; `None` when
    /// the schedule's state had changed (nothing written).
    fn created(&self, reply: redis::Value, plan: &Plan) -> Result<Option<u64>> {
        if let redis::Value::ServerError(refused) = reply {
            return Err(self.redis_error("schedule occurrences", refused.into()));
        }
        let replies =
            ops::schedule::parse_guarded(self, reply, plan.fires.iter().map(|&t| ("at", t)))?;
        Ok(replies.map(|(_, written)| {
            written
                .iter()
                .filter(|(w, _)| {
                    matches!(
                        w,
                        ops::schedule::Written::Outcome(crate::ScheduleOutcome::Created)
                    )
                })
                .count() as u64
        }))
    }
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// When schedule `spec` in `state` next needs a promoter's pass (its `cron_due` score, ms):
/// when its next fire time not created yet falls within a promoter's horizon, or, while an
/// occurrence that shares the schedule's id waits, when that one comes due. `None`: never
/// (paused, or past its end).
fn due_of(compiled: &Compiled, spec: &Spec, state: &State, now: u64) -> Option<u64> {
    if state.paused {
        return None;
    }
    if spec.on_conflict.is_some() {
        if let Some(waiting) = state.ahead.iter().copied().filter(|&t| t > now).min() {
            return Some(waiting);
        }
    }
    let after = state.last.unwrap_or(0).max(spec.start_ms.saturating_sub(1));
    compiled
        .next_after(after)
        .filter(|&t| spec.end_ms.is_none_or(|end| t <= end))
}

fn spec_timing(spec: &Spec) -> Result<Timing> {
    match (&spec.cron, spec.every_ms) {
        (Some(expr), None) => Ok(Timing::Cron(expr.clone())),
        (None, Some(ms)) => Ok(Timing::Every(Duration::from_millis(ms))),
        _ => Err(invalid(
            "a schedule has either a cron expression or an interval",
        )),
    }
}

impl Queue {
    /// Adds recurring schedule `schedule`, or edits the one with its id; `true` when it was
    /// added. An edit takes effect from the next fire time whose occurrence is not created yet
    /// (occurrences are created a short horizon ahead, see [`MIN_HORIZON`]); what it already
    /// created stays. Promoters ([`crate::Promoter`], `punctual promote`) create the
    /// occurrences: ordinary jobs, due at their fire times.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad cron expression, time zone, interval or job;
    /// [`Error::InvalidJobId`] for a bad id; Redis errors.
    pub async fn upsert_schedule(&self, schedule: Schedule) -> Result<bool> {
        schedule.check().map_err(|e| match e {
            Error::InvalidJobId { id, reason, .. } => Error::InvalidJobId {
                queue: self.name().to_owned(),
                id,
                reason,
            },
            e => e,
        })?;
        let Schedule {
            id,
            timing,
            tz,
            job,
            start,
            end,
            misfire,
        } = schedule;
        let kind = job.kind_name().to_owned();
        let (envelope, options, shared) = self.prepare_template(job)?;
        let part = self.partition_of(&id);
        let start_given = start
            .map(|t| unix_ms(t).ok_or_else(|| invalid("the start must be after 1970")))
            .transpose()?;
        let end_ms = end
            .map(|t| unix_ms(t).ok_or_else(|| invalid("the end must be after 1970")))
            .transpose()?;
        for _ in 0..8 {
            let (now, raw, old_spec) = part.read_schedule(&id).await?;
            let start_ms = match (start_given, &old_spec) {
                (Some(ms), _) => ms,
                // An edit without a start keeps the schedule's.
                (None, Some(old)) => old.start_ms,
                (None, None) => now,
            };
            if end_ms.is_some_and(|end| end < start_ms) {
                return Err(invalid("the end is before the start"));
            }
            let compiled = Compiled::new(&timing, &tz, start_ms)?;
            let spec = Spec {
                id: id.clone(),
                cron: match &timing {
                    Timing::Cron(expr) => Some(expr.clone()),
                    Timing::Every(_) => None,
                },
                every_ms: match &timing {
                    Timing::Every(d) => delay_ms(*d),
                    Timing::Cron(_) => None,
                },
                tz: tz.clone(),
                kind: kind.clone(),
                e: hex(&envelope),
                o: options.clone(),
                on_conflict: shared.map(|m| m.as_str().to_owned()),
                start_ms,
                end_ms,
                misfire: misfire.as_str().to_owned(),
            };
            let old: State = serde_json::from_str(&raw).unwrap_or_default();
            let state = State {
                rev: old.rev + 1,
                ..old
            };
            let spec_text = serde_json::to_string(&spec)
                .map_err(|e| self.unexpected("schedule", e.to_string()))?;
            let state_text = serde_json::to_string(&state)
                .map_err(|e| self.unexpected("schedule", e.to_string()))?;
            let change = ops::cron::Change {
                id: &id,
                read: &raw,
                state: &state_text,
                spec: &spec_text,
                due: due_of(&compiled, &spec, &state, now),
            };
            if ops::cron::call(&part, change, &[]).await?.is_some() {
                return Ok(raw.is_empty());
            }
        }
        Err(self.unexpected(
            "schedule",
            "the schedule kept changing while it was written",
        ))
    }

    /// Removes recurring schedule `id` and its occurrences that wait for their fire time;
    /// `false` when there was none. Occurrences already due or running are left to run.
    pub async fn remove_schedule(&self, id: &str) -> Result<bool> {
        self.change_schedule(id, |_, _| None).await
    }

    /// Pauses recurring schedule `id`: it creates nothing, and its occurrences that wait for
    /// their fire time are removed (a resume before that time creates them again).
    /// `false` when there is no such schedule.
    pub async fn pause_schedule(&self, id: &str) -> Result<bool> {
        self.change_schedule(id, |state, now| {
            let (due, coming): (Vec<u64>, Vec<u64>) = state.ahead.iter().partition(|&&t| t <= now);
            Some(State {
                paused: true,
                // The fire times taken back count as not handled.
                last: match coming.first() {
                    Some(&first) => Some(first - 1),
                    None => state.last,
                },
                ahead: due,
                ..state.clone()
            })
        })
        .await
    }

    /// Resumes recurring schedule `id`: it goes on with the first fire time after now; the
    /// fire times that fell in the pause are not run. `false` when there is no such schedule.
    pub async fn resume_schedule(&self, id: &str) -> Result<bool> {
        self.change_schedule(id, |state, now| {
            Some(State {
                paused: false,
                last: Some(state.last.unwrap_or(0).max(now)),
                ..state.clone()
            })
        })
        .await
    }

    /// Compare-and-set of schedule `id`'s state with `change` (state, server ms → new state;
    /// `None` removes it); the occurrences the new state no longer has ahead are removed.
    async fn change_schedule(
        &self,
        id: &str,
        change: impl Fn(&State, u64) -> Option<State>,
    ) -> Result<bool> {
        let part = self.partition_of(id);
        for _ in 0..8 {
            let (now, raw, spec) = part.read_schedule(id).await?;
            let Some(spec) = spec else {
                return Ok(false);
            };
            let compiled = spec_timing(&spec)
                .and_then(|timing| Compiled::new(&timing, &spec.tz, spec.start_ms));
            let state: State = serde_json::from_str(&raw).unwrap_or_default();
            let new = change(&state, now);
            let keep: &[u64] = new.as_ref().map_or(&[], |s| s.ahead.as_slice());
            // Only occurrences not due yet are taken back; due ones run.
            let remove: Vec<String> = state
                .ahead
                .iter()
                .filter(|&&t| t > now && !keep.contains(&t))
                .filter_map(|&t| match spec.on_conflict {
                    Some(_) => Some(spec.id.clone()),
                    None => occurrence_id(id, t),
                })
                .collect();
            let text = match &new {
                Some(s) => serde_json::to_string(s)
                    .map_err(|e| self.unexpected("schedule", e.to_string()))?,
                None => String::new(),
            };
            let change = ops::cron::Change {
                id,
                read: &raw,
                state: &text,
                spec: "",
                // A schedule that cannot be computed (written by a newer build) is left out
                // of the passes.
                due: match (&new, &compiled) {
                    (Some(state), Ok(compiled)) => due_of(compiled, &spec, state, now),
                    _ => None,
                },
            };
            if ops::cron::call(&part, change, &remove).await?.is_some() {
                return Ok(true);
            }
        }
        Err(self.unexpected(
            "schedule",
            "the schedule kept changing while it was written",
        ))
    }

    /// Every recurring schedule of the queue, by id.
    pub async fn list_schedules(&self) -> Result<Vec<ScheduleInfo>> {
        let mut out = Vec::new();
        for part in self.each_partition() {
            let (_, schedules) = part.schedules().await?;
            for (_, stored) in schedules {
                out.push(info_of(stored));
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Recurring schedule `id`, if there is one.
    pub async fn get_schedule(&self, id: &str) -> Result<Option<ScheduleInfo>> {
        let part = self.partition_of(id);
        let (_, mut schedules) = part.schedules().await?;
        Ok(schedules.remove(id).map(info_of))
    }
}

fn info_of(stored: Stored) -> ScheduleInfo {
    let Stored {
        spec,
        compiled,
        state,
        ..
    } = stored;
    let data = unhex(&spec.e)
        .and_then(|e| crate::envelope::Envelope::decode(&e).ok())
        .map(|e| e.data)
        .unwrap_or_default();
    let after = state.last.unwrap_or(spec.start_ms.saturating_sub(1));
    let next_fire = compiled
        .next_after(after)
        .filter(|&t| spec.end_ms.is_none_or(|end| t <= end))
        .map(from_unix_ms);
    ScheduleInfo {
        timing: spec_timing(&spec).unwrap_or(Timing::Every(Duration::ZERO)),
        tz: spec.tz,
        kind: spec.kind,
        data,
        start: from_unix_ms(spec.start_ms),
        end: spec.end_ms.map(from_unix_ms),
        misfire: Misfire::parse(&spec.misfire).unwrap_or_default(),
        on_conflict: spec.on_conflict.as_deref().and_then(OnConflict::parse),
        paused: state.paused,
        last_fire: state.last.map(from_unix_ms),
        next_fire,
        compiled,
        end_ms: spec.end_ms,
        id: spec.id,
    }
}

impl Partition<'_> {
    /// The server's clock (ms), schedule `id`'s state text ("" for none) and spec.
    async fn read_schedule(&self, id: &str) -> Result<(u64, String, Option<Spec>)> {
        let keys = self.keys();
        let (spec, state, time): (Option<String>, Option<String>, (u64, u64)) = redis::pipe()
            .hget(&keys.cron, id)
            .hget(&keys.cron_at, id)
            .cmd("TIME")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.redis_error("read schedule", e))?;
        let spec = spec.and_then(|text| serde_json::from_str(&text).ok());
        Ok((
            time.0 * 1000 + time.1 / 1000,
            state.unwrap_or_default(),
            spec,
        ))
    }
}

impl FromStr for Misfire {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Misfire::parse(s).ok_or_else(|| format!("{s:?} is not once, all or skip"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> u64 {
        let ts: Timestamp = text.parse().unwrap();
        ts.as_millisecond() as u64
    }

    fn fires(expr: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
        let c = Compiled::new(&Timing::Cron(expr.into()), tz, 0).unwrap();
        let mut t = ms(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = c.next_after(t).unwrap();
            out.push(c.local(t));
        }
        out
    }

    /// Spring forward: 02:30 does not exist on the day the clocks jump, and runs right after
    /// the gap (03:00 local); the day after it is 02:30 again.
    #[test]
    fn a_skipped_wall_clock_time_runs_right_after_the_gap() {
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 3),
            [
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00",
                "2026-03-31T02:30:00+02:00"
            ]
        );
        assert_eq!(
            fires("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 2),
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
        );
    }

    /// Fall back: 02:30 Berlin (01:30 New York) happens twice and runs once, at the first.
    #[test]
    fn a_repeated_wall_clock_time_runs_once() {
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 3),
            [
                "2026-10-25T02:30:00+02:00",
                "2026-10-26T02:30:00+01:00",
                "2026-10-27T02:30:00+01:00"
            ]
        );
        assert_eq!(
            fires("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
        );
    }

    /// An hourly expression runs at every real hour across both changes: 3 runs in the 3
    /// hours of UTC around the fall-back (02:00 local happens twice), 2 around spring forward
    /// (02:00 local does not exist).
    #[test]
    fn an_hourly_expression_runs_every_real_hour() {
        assert_eq!(
            fires("0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00Z", 4),
            [
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T03:00:00+01:00",
                "2026-10-25T04:00:00+01:00"
            ]
        );
        assert_eq!(
            fires("0 * * * *", "Europe/Berlin", "2026-03-29T00:30:00Z", 2),
            ["2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"]
        );
    }

    /// "Every Monday at 09:00 Europe/Berlin" stays at 09:00 local across the change to
    /// summer time (08:00 UTC in winter, 07:00 UTC in summer).
    #[test]
    fn weekly_at_nine_follows_the_wall_clock() {
        let c = Compiled::new(&Timing::Cron("0 9 * * MON".into()), "Europe/Berlin", 0).unwrap();
        let a = c.next_after(ms("2026-03-20T00:00:00Z")).unwrap();
        let b = c.next_after(a).unwrap();
        assert_eq!(a, ms("2026-03-23T08:00:00Z"));
        assert_eq!(b, ms("2026-03-30T07:00:00Z"));
    }

    fn spec(misfire: Misfire, start: u64) -> Spec {
        Spec {
            id: "s".into(),
            cron: None,
            every_ms: Some(1000),
            tz: "UTC".into(),
            kind: "k".into(),
            e: String::new(),
            o: String::new(),
            on_conflict: None,
            start_ms: start,
            end_ms: None,
            misfire: misfire.as_str().into(),
        }
    }

    fn every_second(start: u64) -> Compiled {
        Compiled::new(&Timing::Every(Duration::from_secs(1)), "UTC", start).unwrap()
    }

    /// After an outage of 100 missed fire times: once runs the latest, all runs each, skip
    /// none; then each goes on with the horizon.
    #[test]
    fn misfire_policies() {
        let start = 1_000_000;
        let c = every_second(start);
        let state = State {
            rev: 1,
            last: Some(start),
            ..State::default()
        };
        let now = start + 100_500;
        for (policy, missed) in [(Misfire::Once, 1), (Misfire::All, 99), (Misfire::Skip, 0)] {
            let p = plan(&c, &spec(policy, start), &state, now, 10_000).unwrap();
            let past = p
                .fires
                .iter()
                .filter(|&&t| t <= now - MISFIRE_GRACE_MS)
                .count();
            assert_eq!(past, missed, "{policy:?}: {:?}", p.fires);
            // Not missed: within the grace, and then the horizon.
            let coming: Vec<u64> = p.fires[past..].to_vec();
            let expected: Vec<u64> = (100..=110).map(|k| start + k * 1000).collect();
            assert_eq!(coming, expected, "{policy:?}");
            assert_eq!(p.state.last, Some(start + 110_000));
            assert_eq!(p.skipped, 99 - missed);
            assert!(!p.more);
        }
    }

    /// A promoter that keeps up has nothing to do between horizons, and the state says
    /// which occurrences wait ahead.
    #[test]
    fn nothing_to_do_until_the_horizon_moves() {
        let start = 1_000_000;
        let c = every_second(start);
        let s = spec(Misfire::Once, start);
        let p = plan(&c, &s, &State::default(), start, 5000).unwrap();
        assert_eq!(
            p.fires,
            [
                start,
                start + 1000,
                start + 2000,
                start + 3000,
                start + 4000,
                start + 5000
            ]
        );
        assert_eq!(p.state.ahead, p.fires[1..]);
        assert!(plan(&c, &s, &p.state, start + 100, 5000).is_none());
        let q = plan(&c, &s, &p.state, start + 1000, 5000).unwrap();
        assert_eq!(q.fires, [start + 6000]);
        assert!(!q.state.ahead.contains(&start));
    }

    /// Occurrences that share the schedule's id are created one at a time: the next only
    /// once the one before is due, so a new one can replace one that still waits.
    #[test]
    fn shared_id_occurrences_wait_for_the_one_before() {
        let start = 1_000_000;
        let c = every_second(start);
        let s = Spec {
            on_conflict: Some("replace".into()),
            ..spec(Misfire::Once, start)
        };
        let p = plan(&c, &s, &State::default(), start - 500, 5000).unwrap();
        assert_eq!(p.fires, [start]);
        assert!(plan(&c, &s, &p.state, start - 100, 5000).is_none());
        let q = plan(&c, &s, &p.state, start, 5000).unwrap();
        assert_eq!(q.fires, [start + 1000]);
    }

    #[test]
    fn occurrence_ids_stay_in_the_schedules_partition() {
        let t = ms("2026-12-07T08:00:00Z");
        assert_eq!(
            occurrence_id("digest", t).unwrap(),
            "{digest}@2026-12-07T08:00:00Z"
        );
        assert_eq!(
            occurrence_id("d{7}", t).unwrap(),
            "d{7}@2026-12-07T08:00:00Z"
        );
        assert!(occurrence_id("d{}x", t).is_none());
        for k in [3, 8, 16] {
            assert_eq!(
                crate::keys::partition_of(&occurrence_id("digest", t).unwrap(), k),
                crate::keys::partition_of("digest", k)
            );
        }
    }

    #[test]
    fn bad_timings_are_refused() {
        assert!(Compiled::new(&Timing::Cron("61 * * * *".into()), "UTC", 0).is_err());
        assert!(Compiled::new(&Timing::Cron("0 9 * * MON".into()), "Mars/Olympus", 0).is_err());
        assert!(Compiled::new(&Timing::Every(Duration::from_millis(10)), "UTC", 0).is_err());
        assert!(Compiled::new(&Timing::Cron("0 0 30 2 *".into()), "UTC", 0).is_err());
    }
}
