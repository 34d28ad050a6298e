//! How jobs and queue stats are printed: aligned text for people, JSON for programs. Times are
//! RFC 3339 UTC with milliseconds; job data is shown as JSON.

use std::time::SystemTime;

use punctual::{JobInfo, QueueStats};
use serde_json::{json, Value};

use crate::input::{format_duration, format_time};

/// Writes `text` to stdout and flushes it. If the reader went away (a closed pipe), the
/// command ends at once with status 0: it has nobody left to tell. Any other write error ends
/// it with one line on stderr and status 1. What the command changed before is done either
/// way: output comes after the change it reports.
pub(crate) fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        errln!("error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// A job as a JSON object.
pub(crate) fn job_json(job: &JobInfo) -> Value {
    let time = |t: Option<SystemTime>| t.map(format_time);
    let (data, data_error) = job_data(job);
    json!({
        "queue": job.queue,
        "id": job.id,
        "state": job.state.as_str(),
        "due_at": time(job.due_at),
        "lease_until": time(job.lease_until),
        "died_at": time(job.died_at),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "kind": job.kind,
        "created_at": time(job.created_at),
        "last_error": job.last_error.as_ref().map(|e| json!({
            "reason": e.reason,
            "message": e.message,
            "at": format_time(punctual_time(e.at)),
            "attempt": e.attempt,
        })),
        "data": data,
        "data_error": data_error,
        "completed_at": time(job.completed_at),
        "run_time": job.run_time.map(format_duration),
        "result": job_result(job),
        "result_note": job.result_note,
        "expires_at": time(job.expires_at),
        "cancel_requested": job.cancel_requested,
        "timeout": job.timeout.map(format_duration),
        "priority": job.priority,
        "compensation": job.compensation,
        "limit_key": job.limit_key,
        "limited": job.limited.as_ref().map(|(why, until)| serde_json::json!({
            "by": why,
            "until": format_time(*until),
        })),
    })
}

/// The job's result as JSON text (`null` when it has none).
pub(crate) fn result_json(job: &JobInfo) -> String {
    job_result(job).to_string()
}

/// The job's result as JSON (null when it has none or it is not JSON-shaped).
fn job_result(job: &JobInfo) -> Value {
    job.result
        .as_ref()
        .and_then(|_| job.result_as::<Value>().ok())
        .unwrap_or(Value::Null)
}

/// The job's data as JSON, or why it cannot be shown as JSON.
fn job_data(job: &JobInfo) -> (Value, Option<String>) {
    if let Some(reason) = &job.decode_error {
        return (Value::Null, Some(reason.clone()));
    }
    match job.data_as::<Value>() {
        Ok(v) => (v, None),
        Err(e) => (Value::Null, Some(e.to_string())),
    }
}

fn punctual_time(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}

/// A job for people: one `field: value` line each.
pub(crate) fn job_text(job: &JobInfo) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<12} {v}\n"));
    line("queue", job.queue.clone());
    line("id", job.id.clone());
    line("state", job.state.to_string());
    if let Some(t) = job.due_at {
        line("due at", format!("{} ({})", format_time(t), relative(t)));
    }
    if let Some(t) = job.lease_until {
        line("lease until", format_time(t));
    }
    if let Some(t) = job.died_at {
        line("died at", format_time(t));
    }
    if let Some(t) = job.completed_at {
        line("completed", format!("{} ({})", format_time(t), relative(t)));
    }
    if let Some(d) = job.run_time {
        line("ran for", format_duration(d));
    }
    if job.result.is_some() {
        line("result", job_result(job).to_string());
    }
    if let Some(note) = &job.result_note {
        line("result", note.clone());
    }
    if let Some(t) = job.expires_at {
        line(
            "expires at",
            format!("{} ({})", format_time(t), relative(t)),
        );
    }
    if let Some(t) = job.timeout {
        line("timeout", format_duration(t));
    }
    if job.priority != 0 {
        line("priority", job.priority.to_string());
    }
    if let Some(undo) = &job.compensation {
        line("on death", format!("schedules {undo}"));
    }
    if let Some(key) = &job.limit_key {
        line("limit key", key.clone());
    }
    if let Some((why, until)) = &job.limited {
        line(
            "waiting",
            format!(
                "on its {why} limit, until {} at the latest",
                format_time(*until)
            ),
        );
    }
    if job.cancel_requested {
        line(
            "cancel",
            "asked: its worker stops it at its next lease extension".to_owned(),
        );
    }
    let limit = job
        .max_attempts
        .map_or_else(|| "worker default".to_owned(), |m| m.to_string());
    line("attempts", format!("{} (max {limit})", job.attempts));
    if let Some(kind) = &job.kind {
        line("kind", kind.clone());
    }
    if let Some(t) = job.created_at {
        line("created at", format_time(t));
    }
    if let Some(e) = &job.last_error {
        line(
            "last error",
            format!("{} (attempt {}): {}", e.reason, e.attempt, e.message),
        );
    }
    match job_data(job) {
        (_, Some(reason)) => line("data", format!("<not JSON: {reason}>")),
        (data, None) => line("data", data.to_string()),
    }
    out
}

/// "in 5m 3s" or "2s ago", by this host's clock (display only).
fn relative(t: SystemTime) -> String {
    match t.duration_since(SystemTime::now()) {
        Ok(ahead) => format!("in {}", format_duration(ahead)),
        Err(e) => format!("{} ago", format_duration(e.duration())),
    }
}

/// One row of `ls`.
pub(crate) fn job_row(job: &JobInfo) -> [String; 6] {
    let when = job
        .due_at
        .or(job.lease_until)
        .or(job.died_at)
        .map(format_time)
        .unwrap_or_else(|| "-".to_owned());
    let error = job
        .last_error
        .as_ref()
        .map(|e| clip(&format!("{}: {}", e.reason, e.message), 60))
        .unwrap_or_else(|| "-".to_owned());
    [
        job.id.clone(),
        job.state.to_string(),
        when,
        job.attempts.to_string(),
        job.kind.clone().unwrap_or_else(|| "-".to_owned()),
        error,
    ]
}

/// Header of `ls`.
pub(crate) const JOB_HEADER: [&str; 6] = [
    "ID",
    "STATE",
    "DUE / LEASE END / DIED",
    "ATTEMPTS",
    "KIND",
    "LAST ERROR",
];

/// Stats of one queue as JSON.
pub(crate) fn stats_json(s: &QueueStats) -> Value {
    json!({
        "queue": s.queue,
        "partitions": s.partitions,
        "paused": s.paused,
        "scheduled": s.counts.scheduled,
        "ready": s.counts.ready,
        "running": s.counts.running,
        "dead": s.counts.dead,
        "completed": s.counts.completed,
        "next_due": s.next_due.map(format_time),
        "oldest_overdue_ms": s.oldest_overdue.map(|d| d.as_millis() as u64),
        "totals": s
            .totals
            .iter()
            .map(|(event, n)| (event.as_str().to_owned(), serde_json::Value::from(n)))
            .collect::<serde_json::Map<_, _>>(),
    })
}

/// One row of `stats`.
pub(crate) fn stats_row(s: &QueueStats) -> [String; 7] {
    let next = s.next_due.map_or_else(
        || "-".to_owned(),
        |t| match t.duration_since(s.server_time) {
            Ok(ahead) => format!("in {} ({})", format_duration(ahead), format_time(t)),
            Err(_) => format!("due ({})", format_time(t)),
        },
    );
    [
        if s.paused {
            format!("{} (paused)", s.queue)
        } else {
            s.queue.clone()
        },
        s.counts.scheduled.to_string(),
        s.counts.ready.to_string(),
        s.counts.running.to_string(),
        s.counts.dead.to_string(),
        next,
        s.oldest_overdue
            .map_or_else(|| "-".to_owned(), format_duration),
    ]
}

/// Header of `stats`.
pub(crate) const STATS_HEADER: [&str; 7] = [
    "QUEUE",
    "SCHEDULED",
    "READY",
    "RUNNING",
    "DEAD",
    "NEXT DUE",
    "OLDEST OVERDUE",
];

/// Left-aligned columns, two spaces apart.
pub(crate) fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push = |cells: Vec<&str>| {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    };
    push(header.to_vec());
    for row in rows {
        push(row.iter().map(String::as_str).collect());
    }
    out
}

/// Cuts text to `max` characters, on one line.
fn clip(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    match one_line.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &one_line[..end]),
        None => one_line,
    }
}
