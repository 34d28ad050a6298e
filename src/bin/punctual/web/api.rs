//! The handlers of `/api/v1` (see `routes.rs` for the table, `assets/openapi.json` for the
//! contract). Each is one library call on one queue, with its input checked first and its
//! answer in the CLI's JSON shapes (`output.rs`), so `punctual show --json` and `GET
//! .../jobs/{id}` print the same object.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use punctual::{
    Cancelled, JobState, PageCursor, Purge, Queue, Rescheduled, ScheduleOutcome, Waited,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, Body, Params, Segments};
use super::Site;
use crate::input::{format_duration, format_time, parse_at, parse_duration, parse_when, JobSpec};
use crate::output::{job_json, stats_json};

type Answer = Result<Response, ApiError>;
type SiteState = State<Arc<Site>>;

/// Most jobs one `POST .../jobs` takes.
const MAX_BULK: usize = 10_000;
/// Jobs per page when the request does not say.
const DEFAULT_PAGE: usize = 50;
/// Most jobs per page.
const MAX_PAGE: usize = 1000;
/// Longest `wait`.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Longest wait of a `DELETE` for the running job to stop.
const MAX_CANCEL_WAIT: Duration = Duration::from_secs(30);
/// Most buckets of a timeline.
const MAX_BUCKETS: usize = 500;
/// Log entries read back for a job's events.
const EVENT_SCAN: usize = 2000;
/// Next fire times shown per recurring schedule.
const NEXT_FIRES: usize = 3;

fn ok(value: Value) -> Answer {
    Ok(Json(value).into_response())
}

fn duration(text: &str, what: &str) -> Result<Duration, ApiError> {
    parse_duration(text).map_err(|e| ApiError::bad(format!("{what}: {e}")))
}

/// Lag percentiles of the promoter this server runs in, for one queue.
fn lag(site: &Site, queue: &str) -> Value {
    let Some(activity) = site
        .promoter
        .as_ref()
        .and_then(|m| m.snapshot().remove(queue))
    else {
        return Value::Null;
    };
    let h = activity.lag;
    let q = |x: f64| {
        h.quantile_ms(x).map(|ms| {
            if ms == u64::MAX {
                Value::Null
            } else {
                ms.into()
            }
        })
    };
    json!({
        "count": h.count(),
        "p50_ms": q(0.5),
        "p90_ms": q(0.9),
        "p99_ms": q(0.99),
        "promoted": activity.promoted,
        "last_error": activity.last_error,
    })
}

/// A queue's summary: its stats, this promoter's lags and recent throughput.
async fn summary(site: &Site, queue: &Queue) -> Result<Value, ApiError> {
    let stats = queue.stats().await?;
    let mut value = stats_json(&stats);
    if let Some(map) = value.as_object_mut() {
        map.insert("lag".into(), lag(site, queue.name()));
        map.insert(
            "throughput".into(),
            site.history.throughput(queue.name()).unwrap_or(Value::Null),
        );
        map.insert("server_time".into(), format_time(stats.server_time).into());
    }
    Ok(value)
}

pub(crate) async fn meta(State(site): SiteState) -> Answer {
    ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "read_only": site.read_only,
        "auth": site.auth.kind(),
        "prefix": site.ns.prefix(),
        "promoter": site.promoter.is_some(),
        "cluster": site.ns.is_cluster(),
        "history_interval_ms": super::history::INTERVAL.as_millis() as u64,
    }))
}

pub(crate) async fn list_queues(State(site): SiteState) -> Answer {
    let names = site.ns.queue_names().await?;
    let reads = names.iter().map(|name| {
        let site = &site;
        async move {
            match site.existing(name).await {
                Ok(queue) => summary(site, &queue).await.map(Some),
                // A registered name whose queue was removed meanwhile is left out.
                Err(e) if e.status() == StatusCode::NOT_FOUND => Ok(None),
                Err(e) => Err(e),
            }
        }
    });
    let mut queues = Vec::with_capacity(names.len());
    for summary in futures_util::future::join_all(reads).await {
        queues.extend(summary?);
    }
    ok(json!({ "queues": queues }))
}

pub(crate) async fn get_queue(State(site): SiteState, Segments(name): Segments<String>) -> Answer {
    let queue = site.existing(&name).await?;
    let mut value = summary(&site, &queue).await?;
    let event_log = queue.event_log().await?;
    if let Some(map) = value.as_object_mut() {
        map.insert("event_log".into(), event_log.into());
    }
    ok(value)
}

async fn set_paused(site: &Site, name: &str, paused: bool) -> Answer {
    let queue = site.existing(name).await?;
    let changed = if paused {
        queue.pause().await?
    } else {
        queue.resume().await?
    };
    ok(json!({ "queue": name, "paused": paused, "changed": changed }))
}

pub(crate) async fn pause(State(site): SiteState, Segments(name): Segments<String>) -> Answer {
    set_paused(&site, &name, true).await
}

pub(crate) async fn resume(State(site): SiteState, Segments(name): Segments<String>) -> Answer {
    set_paused(&site, &name, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    state: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub(crate) async fn list_jobs(
    State(site): SiteState,
    Segments(name): Segments<String>,
    Params(query): Params<ListQuery>,
) -> Answer {
    let state = match query.state.as_deref() {
        None => JobState::Scheduled,
        Some(s) => JobState::parse(s).ok_or_else(|| {
            ApiError::bad(format!(
                "state {s:?}: expected scheduled, ready, running, dead or completed"
            ))
        })?,
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad(format!("limit: 1 to {MAX_PAGE}")));
    }
    let cursor = match query.cursor.as_deref() {
        None | Some("") => PageCursor::start(),
        Some(c) => PageCursor::parse(c)
            .ok_or_else(|| ApiError::bad(format!("cursor {c:?} is not one this API gave")))?,
    };
    let queue = site.existing(&name).await?;
    let page = queue.list_page(state, &cursor, limit).await?;
    let counts = queue.counts().await?;
    let total = match state {
        JobState::Scheduled => counts.scheduled,
        JobState::Ready => counts.ready,
        JobState::Running => counts.running,
        JobState::Dead => counts.dead,
        _ => counts.completed,
    };
    ok(json!({
        "state": state.as_str(),
        "total": total,
        "jobs": page.jobs.iter().map(job_json).collect::<Vec<_>>(),
        "next": page.next.map(|c| c.to_string()),
    }))
}

/// One job's answer to a schedule request.
fn scheduled_json(s: &punctual::Scheduled) -> Value {
    json!({
        "id": s.id,
        "outcome": s.outcome.as_str(),
        "created": s.created,
        "due_at": s.due_at.map(format_time),
    })
}

/// The body is one job (see `JobSpec`), or `{"jobs": [...]}`.
pub(crate) async fn schedule(
    State(site): SiteState,
    Segments(name): Segments<String>,
    Body(body): Body<Value>,
) -> Answer {
    let bulk = body.get("jobs").is_some();
    let specs: Vec<Value> = match body {
        Value::Object(mut map) if bulk => match map.remove("jobs") {
            Some(Value::Array(jobs)) if map.is_empty() => jobs,
            _ => {
                return Err(ApiError::bad(
                    "\"jobs\" must be an array and the only field",
                ))
            }
        },
        one @ Value::Object(_) => vec![one],
        _ => {
            return Err(ApiError::bad(
                "the body must be a job object or {\"jobs\": [...]}",
            ))
        }
    };
    if specs.is_empty() || specs.len() > MAX_BULK {
        return Err(ApiError::bad(format!("1 to {MAX_BULK} jobs per request")));
    }
    // Every job is checked before any is written.
    let mut jobs = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        let job = serde_json::from_value::<JobSpec>(spec)
            .map_err(|e| e.to_string())
            .and_then(|spec| spec.due_now_by_default().into_job())
            .map_err(|why| {
                let message = if bulk {
                    format!("job {index}: {why}")
                } else {
                    why
                };
                let error = ApiError::bad(message);
                if bulk {
                    error.with(json!({ "index": index }))
                } else {
                    error
                }
            })?;
        jobs.push(job);
    }
    let queue = site.queue(&name).await?;
    if !bulk {
        let job = jobs.pop().ok_or_else(|| ApiError::bad("no job"))?;
        let s = queue.schedule(job).await?;
        let body = scheduled_json(&s);
        return match s.outcome {
            ScheduleOutcome::Created => Ok((StatusCode::CREATED, Json(body)).into_response()),
            ScheduleOutcome::Rejected => Err(ApiError::conflict(
                "job_exists",
                format!("a job {:?} exists; nothing was written", s.id),
            )
            .with(body)),
            ScheduleOutcome::Running => Err(ApiError::conflict(
                "job_running",
                format!("job {:?} is running; nothing was written", s.id),
            )
            .with(body)),
            _ => Ok(Json(body).into_response()),
        };
    }
    let results = queue.schedule_each(jobs).await?;
    let mut errors: Vec<ApiError> = Vec::new();
    let mut out = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(s) => out.push(scheduled_json(&s)),
            Err(e) => {
                let e = ApiError::from(e);
                out.push(json!({ "error": e.body() }));
                errors.push(e);
            }
        }
    }
    // Redis failed for every job: that is the answer. Otherwise each job says how it went.
    if errors.len() == out.len() && errors.iter().all(|e| e.status().is_server_error()) {
        if let Some(e) = errors.into_iter().next() {
            return Err(e.with(json!({ "results": out })));
        }
    }
    ok(json!({ "results": out }))
}

pub(crate) async fn get_job(
    State(site): SiteState,
    Segments((name, id)): Segments<(String, String)>,
) -> Answer {
    let queue = site.existing(&name).await?;
    match queue.get(&id).await? {
        Some(job) => ok(job_json(&job)),
        None => Err(ApiError::job_not_found(&name, &id)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelQuery {
    wait: Option<String>,
}

pub(crate) async fn cancel(
    State(site): SiteState,
    Segments((name, id)): Segments<(String, String)>,
    Params(query): Params<CancelQuery>,
) -> Answer {
    let wait = match query.wait.as_deref() {
        Some(w) => duration(w, "wait")?,
        None => Duration::ZERO,
    };
    if wait > MAX_CANCEL_WAIT {
        return Err(ApiError::bad(format!(
            "wait: at most {}",
            format_duration(MAX_CANCEL_WAIT)
        )));
    }
    let queue = site.existing(&name).await?;
    let outcome = if wait.is_zero() {
        queue.cancel(&id).await?
    } else {
        queue.cancel_and_wait(&id, wait).await?
    };
    match outcome {
        Cancelled::Removed(from) => {
            ok(json!({"id": id, "cancelled": "removed", "from": from.as_str()}))
        }
        Cancelled::Stopped => ok(json!({"id": id, "cancelled": "stopped"})),
        Cancelled::Requested => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "cancelled": "requested"})),
        )
            .into_response()),
        Cancelled::Finished => Err(ApiError::conflict(
            "job_finished",
            format!("job {id:?} ended before its worker saw the cancellation"),
        )),
        _ => Err(ApiError::job_not_found(&name, &id)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhenBody {
    #[serde(rename = "in")]
    in_: Option<String>,
    at: Option<String>,
}

pub(crate) async fn reschedule(
    State(site): SiteState,
    Segments((name, id)): Segments<(String, String)>,
    Body(when): Body<WhenBody>,
) -> Answer {
    let when = match (&when.in_, &when.at) {
        (Some(d), None) => parse_when(d),
        (None, Some(t)) => parse_at(t),
        _ => Err("needs exactly one of \"in\" and \"at\"".to_owned()),
    }
    .map_err(ApiError::bad)?
    .0;
    let queue = site.existing(&name).await?;
    match queue.reschedule(&id, when).await? {
        Rescheduled::Moved { from, due_at } => ok(json!({
            "id": id,
            "from": from.as_str(),
            "due_at": format_time(due_at),
        })),
        Rescheduled::Running => Err(ApiError::conflict(
            "job_running",
            format!("job {id:?} is running; nothing changed"),
        )),
        _ => Err(ApiError::job_not_found(&name, &id)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitQuery {
    timeout: Option<String>,
}

pub(crate) async fn wait(
    State(site): SiteState,
    Segments((name, id)): Segments<(String, String)>,
    Params(query): Params<WaitQuery>,
) -> Answer {
    let timeout = match query.timeout.as_deref() {
        Some(t) => duration(t, "timeout")?,
        None => Duration::from_secs(30),
    };
    if timeout > MAX_WAIT {
        return Err(ApiError::bad(format!(
            "timeout: at most {}",
            format_duration(MAX_WAIT)
        )));
    }
    let queue = site.existing(&name).await?;
    let (ended, job) = match queue.wait(&id, timeout).await? {
        Waited::Completed(job) => ("completed", job.map(|j| job_json(&j))),
        Waited::Dead(job) => ("dead", Some(job_json(&job))),
        Waited::Deleted => ("deleted", None),
        Waited::Gone => ("gone", None),
        Waited::Pending(job) => ("pending", Some(job_json(&job))),
        _ => return Err(ApiError::job_not_found(&name, &id)),
    };
    ok(json!({ "id": id, "ended": ended != "pending", "state": ended, "job": job }))
}

pub(crate) async fn job_events(
    State(site): SiteState,
    Segments((name, id)): Segments<(String, String)>,
) -> Answer {
    let queue = site.existing(&name).await?;
    let log = queue.event_log().await?;
    let events = if log.is_some() {
        queue.job_events(&id, EVENT_SCAN).await?
    } else {
        Vec::new()
    };
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "at": format_time(e.at),
                "change": e.change.as_str(),
                "attempt": e.attempt,
                "reason": e.reason,
            })
        })
        .collect();
    ok(json!({ "id": id, "event_log": log, "events": events }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeadBody {
    ids: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
    older_than: Option<String>,
}

pub(crate) async fn retry_dead(
    State(site): SiteState,
    Segments(name): Segments<String>,
    Body(body): Body<DeadBody>,
) -> Answer {
    let queue = site.existing(&name).await?;
    match (body.ids, body.all, body.older_than) {
        (Some(ids), false, None) => {
            let moved = queue.retry_dead(&ids).await?;
            ok(json!({ "retried": moved.len(), "ids": moved }))
        }
        (None, true, None) => ok(json!({ "retried": queue.retry_all_dead().await? })),
        _ => Err(ApiError::bad(
            "give exactly one of \"ids\" and \"all\": true",
        )),
    }
}

pub(crate) async fn purge_dead(
    State(site): SiteState,
    Segments(name): Segments<String>,
    Body(body): Body<DeadBody>,
) -> Answer {
    let which = match (&body.ids, body.all, &body.older_than) {
        (Some(ids), false, None) => Purge::Ids(ids),
        (None, true, None) => Purge::All,
        (None, false, Some(age)) => Purge::OlderThan(duration(age, "older_than")?),
        _ => {
            return Err(ApiError::bad(
                "give exactly one of \"ids\", \"all\": true and \"older_than\"",
            ))
        }
    };
    let queue = site.existing(&name).await?;
    ok(json!({ "purged": queue.purge_dead(which).await? }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TimelineQuery {
    span: Option<String>,
    buckets: Option<usize>,
}

pub(crate) async fn timeline(
    State(site): SiteState,
    Segments(name): Segments<String>,
    Params(query): Params<TimelineQuery>,
) -> Answer {
    let span = match query.span.as_deref() {
        Some(s) => duration(s, "span")?,
        None => Duration::from_secs(3600),
    };
    let buckets = query.buckets.unwrap_or(12);
    if buckets == 0 || buckets > MAX_BUCKETS {
        return Err(ApiError::bad(format!("buckets: 1 to {MAX_BUCKETS}")));
    }
    let step = span / buckets as u32;
    if step < Duration::from_millis(1) || span > punctual::MAX_DELAY {
        return Err(ApiError::bad(
            "span: at least 1ms per bucket, at most the longest delay",
        ));
    }
    let queue = site.existing(&name).await?;
    let start = SystemTime::now();
    let edges: Vec<SystemTime> = (0..=buckets).map(|i| start + step * i as u32).collect();
    let counts = queue.due_counts(&edges).await?;
    let buckets: Vec<Value> = edges
        .iter()
        .zip(&counts[1..])
        .take(buckets)
        .map(|(at, n)| json!({ "at": format_time(*at), "count": n }))
        .collect();
    ok(json!({
        "start": format_time(start),
        "step_ms": step.as_millis() as u64,
        "overdue": counts.first(),
        "buckets": buckets,
        "later": counts.last(),
    }))
}

pub(crate) async fn history(State(site): SiteState, Segments(name): Segments<String>) -> Answer {
    site.existing(&name).await?;
    ok(json!({
        "interval_ms": super::history::INTERVAL.as_millis() as u64,
        "samples": site.history.samples(&name),
    }))
}

pub(crate) async fn schedules(State(site): SiteState, Segments(name): Segments<String>) -> Answer {
    let queue = site.existing(&name).await?;
    let now = SystemTime::now();
    let list: Vec<Value> = queue
        .list_schedules()
        .await?
        .iter()
        .map(|s| {
            let mut value = crate::cron::to_json(s);
            let after = s
                .next_fire
                .map(|t| t - Duration::from_millis(1))
                .unwrap_or(now)
                .max(now);
            let fires: Vec<Value> = s
                .fires_after(after, NEXT_FIRES)
                .into_iter()
                .map(|(utc, local)| json!({ "at": format_time(utc), "local": local }))
                .collect();
            if let Some(map) = value.as_object_mut() {
                map.insert("next_fires".into(), fires.into());
            }
            value
        })
        .collect();
    ok(json!({ "schedules": list }))
}

pub(crate) async fn limits(State(site): SiteState, Segments(name): Segments<String>) -> Answer {
    let queue = site.existing(&name).await?;
    let rules = queue.limits().await?;
    let deferred = queue.limit_deferrals().await?;
    ok(crate::limits::to_json(&rules, deferred))
}
