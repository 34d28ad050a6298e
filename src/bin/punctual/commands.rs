//! The one-shot operator commands. Each validates its input before connecting, makes one
//! library call (or a few), prints the result and maps errors to exit statuses.

use std::io::Read;

use punctual::{Cancelled, NewJob, Purge, Rescheduled, ScheduleOutcome, Waited, When};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{
    CancelArgs, DeadCommand, ImportArgs, JobArgs, LsArgs, QueueArgs, QueueCommand, RescheduleArgs,
    ScheduleArgs, StatsArgs, WaitArgs,
};
use crate::input::{format_duration, format_time, json_to_msgpack};
use crate::output;
use crate::{CmdResult, Ctx, Failure};

/// Lines of an import sent per `schedule_each` call: bounds memory for any file size.
const IMPORT_CHUNK: usize = 10_000;

pub(crate) async fn schedule(ctx: &Ctx, args: ScheduleArgs) -> CmdResult {
    let json = match (&args.data, &args.data_file) {
        (Some(d), _) if d == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::Input(format!("cannot read --data from stdin: {e}")))?;
            Some((text, "--data (stdin)".to_owned()))
        }
        (Some(d), _) => Some((d.clone(), "--data".to_owned())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::Input(format!("cannot read --data-file {}: {e}", path.display()))
            })?;
            Some((text, format!("--data-file {}", path.display())))
        }
        (None, None) => None,
    };
    let data = match json {
        Some((text, origin)) => json_to_msgpack(&text, &origin).map_err(Failure::Input)?,
        None => json_to_msgpack("null", "default data").map_err(Failure::Input)?,
    };
    let mut job = NewJob::from_msgpack(args.kind.as_deref().unwrap_or(crate::DEFAULT_KIND), data)
        .when(args.when.when());
    if let Some(id) = &args.id {
        job = job.id(id.clone());
    }
    if let Some(n) = args.max_attempts {
        job = job.max_attempts(n);
    }
    let job = crate::input::steer(job, &args.steer).map_err(Failure::Input)?;
    let queue = ctx.queue(&args.queue).await?;
    let scheduled = queue.schedule(job).await.map_err(|e| ctx.fail(e))?;
    let outcome = scheduled.outcome;
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "queue": args.queue,
                "id": scheduled.id,
                "outcome": outcome.as_str(),
                "due": scheduled.due_at.map(format_time),
                "created": scheduled.created,
            })
        );
    } else {
        outln!("{}", scheduled.id);
    }
    match outcome {
        ScheduleOutcome::Rejected => {
            tracing::warn!(id = %scheduled.id, "a job with this id already exists; nothing was written")
        }
        ScheduleOutcome::Running => tracing::warn!(
            id = %scheduled.id,
            "a job with this id is running; it is never touched, nothing was written"
        ),
        ScheduleOutcome::Kept => {
            tracing::info!(id = %scheduled.id, "the waiting job's due time won; nothing was written")
        }
        _ => {}
    }
    Ok(())
}

pub(crate) async fn import(ctx: &Ctx, args: ImportArgs) -> CmdResult {
    let reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if args.file == "-" {
        Box::new(tokio::io::stdin())
    } else {
        let file = tokio::fs::File::open(&args.file)
            .await
            .map_err(|e| Failure::Input(format!("cannot read {}: {e}", args.file)))?;
        Box::new(file)
    };
    let queue = ctx.queue(&args.queue).await?;
    let mut lines = BufReader::new(reader).lines();
    let mut line_no = 0usize;
    let (mut created, mut existed, mut rejected) = (0u64, 0u64, 0u64);
    // Line numbers of the jobs created, for an exact report if Redis stops taking them.
    let mut written: Vec<usize> = Vec::new();
    loop {
        // One chunk: (line number, job) for lines that parsed; bad lines are reported now.
        let mut chunk: Vec<(usize, NewJob)> = Vec::new();
        let mut eof = false;
        while chunk.len() < IMPORT_CHUNK {
            let line = match lines.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) => {
                    eof = true;
                    break;
                }
                Err(e) => {
                    return Err(Failure::Input(format!(
                        "cannot read {} at line {}: {e} ({created} jobs scheduled before it)",
                        args.file,
                        line_no + 1
                    )))
                }
            };
            line_no += 1;
            if line.trim().is_empty() {
                continue;
            }
            let parsed = serde_json::from_str::<crate::input::JobSpec>(&line)
                .map_err(|e| format!("invalid JSON: {e}"))
                .and_then(crate::input::JobSpec::into_job);
            match parsed {
                Ok(job) => chunk.push((line_no, job)),
                Err(reason) => {
                    rejected += 1;
                    errln!("line {line_no}: {reason}");
                }
            }
        }
        let (numbers, jobs): (Vec<usize>, Vec<NewJob>) = chunk.into_iter().unzip();
        let results = queue.schedule_each(jobs).await.map_err(|e| ctx.fail(e))?;
        // Lines Redis did not take (refused, or lost with the connection), with the error.
        let mut failed: Vec<usize> = Vec::new();
        let mut failure: Option<punctual::Error> = None;
        for (n, result) in numbers.into_iter().zip(results) {
            match result {
                Ok(s) if s.outcome.wrote() => {
                    created += 1;
                    written.push(n);
                }
                Ok(_) => existed += 1,
                Err(e) if e.is_input() => {
                    rejected += 1;
                    errln!("line {n}: {e}");
                }
                Err(e) => {
                    failed.push(n);
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            let unknown = e.is_connection_error();
            let (Failure::Runtime(m) | Failure::Input(m) | Failure::TimedOut(m)) = ctx.fail(e);
            // What is left: the failed lines, and every line not read yet.
            let mut resume: Vec<String> = ranges(&failed)
                .iter()
                .map(|&(a, b)| format!("{a},{b}p"))
                .collect();
            resume.push(format!("{},$p", line_no + 1));
            return Err(Failure::Runtime(format!(
                "import stopped: {created} jobs were scheduled (lines {}); lines {} {} and \
                 lines after {line_no} were not read, because {m}. To resume without \
                 duplicates: sed -n '{}' {} | punctual import {} -",
                line_ranges(&written),
                line_ranges(&failed),
                if unknown {
                    "may or may not have been written"
                } else {
                    "were not written"
                },
                resume.join(";"),
                args.file,
                args.queue,
            )));
        }
        if eof {
            break;
        }
    }
    outln!(
        "scheduled {created} jobs ({existed} already existed and were left as they are, \
         {rejected} lines rejected)"
    );
    if rejected > 0 {
        return Err(Failure::Input(format!(
            "{rejected} of {line_no} lines were rejected (see above); the others were scheduled"
        )));
    }
    Ok(())
}

pub(crate) async fn show(ctx: &Ctx, args: JobArgs) -> CmdResult {
    let queue = ctx.existing_queue(&args.queue).await?;
    let Some(job) = queue.get(&args.id).await.map_err(|e| ctx.fail(e))? else {
        return Err(not_found(&args.queue, &args.id));
    };
    let paused = queue.is_paused().await.map_err(|e| ctx.fail(e))?;
    if args.json {
        let mut json = output::job_json(&job);
        json["queue_paused"] = serde_json::Value::Bool(paused);
        outln!("{json}");
    } else {
        out!("{}", output::job_text(&job));
        if paused {
            outln!("queue:      paused (workers take no jobs until `punctual resume`)");
        }
    }
    Ok(())
}

fn not_found(queue: &str, id: &str) -> Failure {
    Failure::Runtime(format!(
        "job {id:?} not found in queue {queue:?} (never scheduled, or finished and deleted)"
    ))
}

pub(crate) async fn wait(ctx: &Ctx, args: WaitArgs) -> CmdResult {
    let WaitArgs { job: args, timeout } = args;
    let queue = ctx.existing_queue(&args.queue).await?;
    let waited = queue
        .wait(&args.id, timeout)
        .await
        .map_err(|e| ctx.fail(e))?;
    let id = &args.id;
    match waited {
        Waited::Completed(job) => {
            match (&job, args.json) {
                (Some(job), true) => outln!("{}", output::job_json(job)),
                (Some(job), false) => outln!("{}", output::result_json(job)),
                (None, true) => outln!(
                    "{}",
                    serde_json::json!({"queue": args.queue, "id": id, "state": "completed", "result": null})
                ),
                (None, false) => outln!("null"),
            }
            Ok(())
        }
        Waited::Dead(job) => {
            if args.json {
                outln!("{}", output::job_json(&job));
            }
            let why = job.last_error.as_ref().map_or_else(
                || "no error recorded".to_owned(),
                |e| format!("{}: {}", e.reason, e.message),
            );
            Err(Failure::Runtime(format!("job {id:?} died ({why})")))
        }
        Waited::Deleted => Err(Failure::Runtime(format!(
            "job {id:?} was deleted before it completed (cancelled, or expired and dropped)"
        ))),
        Waited::Gone => Err(Failure::Runtime(format!(
            "job {id:?} ended and is gone (completed without a retention, or cancelled)"
        ))),
        Waited::NotFound => Err(not_found(&args.queue, id)),
        Waited::Pending(job) => {
            if args.json {
                outln!("{}", output::job_json(&job));
            }
            Err(Failure::TimedOut(format!(
                "job {id:?} is still {} after {}",
                job.state,
                format_duration(timeout)
            )))
        }
        _ => Err(Failure::Runtime("unexpected wait outcome".to_owned())),
    }
}

pub(crate) async fn cancel(ctx: &Ctx, args: CancelArgs) -> CmdResult {
    let CancelArgs { job: args, wait } = args;
    let queue = ctx.existing_queue(&args.queue).await?;
    let outcome = queue
        .cancel_and_wait(&args.id, wait)
        .await
        .map_err(|e| ctx.fail(e))?;
    // (cancelled, what it was or became, the line for people)
    let (cancelled, was, text) = match outcome {
        Cancelled::Removed(from) => (
            true,
            from.as_str(),
            format!("cancelled {} (was {from})", args.id),
        ),
        Cancelled::Stopped => (
            true,
            "running",
            format!(
                "cancelled {} (was running: its worker stopped it; it is in the dead set, reason cancelled)",
                args.id
            ),
        ),
        Cancelled::Requested => (
            true,
            "running",
            format!(
                "cancellation of {} asked (it is running: its worker stops it at its next lease extension)",
                args.id
            ),
        ),
        Cancelled::Finished => (
            false,
            "running",
            format!(
                "{} was running and finished before its worker saw the cancellation: nothing was cancelled",
                args.id
            ),
        ),
        Cancelled::NotFound => return Err(not_found(&args.queue, &args.id)),
        _ => return Err(Failure::Runtime("unexpected cancel outcome".to_owned())),
    };
    let stopped = match outcome {
        Cancelled::Stopped => Some(true),
        Cancelled::Finished => Some(false),
        _ => None,
    };
    if args.json {
        let mut json = serde_json::json!({"id": args.id, "cancelled": cancelled, "was": was});
        if outcome == Cancelled::Requested {
            json["pending"] = true.into();
        }
        if let Some(stopped) = stopped {
            json["stopped"] = stopped.into();
        }
        outln!("{json}");
    } else {
        outln!("{text}");
    }
    Ok(())
}

pub(crate) async fn reschedule(ctx: &Ctx, args: RescheduleArgs) -> CmdResult {
    let queue = ctx.existing_queue(&args.queue).await?;
    let when: When = args.when.when();
    match queue
        .reschedule(&args.id, when)
        .await
        .map_err(|e| ctx.fail(e))?
    {
        Rescheduled::Moved { from, due_at } => {
            outln!(
                "rescheduled {} (was {from}): due at {}",
                args.id,
                format_time(due_at)
            );
            Ok(())
        }
        Rescheduled::Running => Err(Failure::Runtime(format!(
            "job {:?} is running: it cannot be rescheduled until its worker reports",
            args.id
        ))),
        Rescheduled::NotFound => Err(not_found(&args.queue, &args.id)),
        _ => Err(Failure::Runtime("unexpected reschedule outcome".to_owned())),
    }
}

pub(crate) async fn ls(ctx: &Ctx, args: LsArgs) -> CmdResult {
    // An unknown queue lists nothing (and is not created by looking).
    let queue = ctx.maybe_queue(&args.queue).await?;
    let states = match args.state {
        Some(s) => vec![s],
        None => punctual::JobState::ALL.to_vec(),
    };
    let mut jobs = Vec::new();
    for state in states {
        let Some(queue) = &queue else { break };
        let page = queue
            .list(state, args.limit as usize)
            .await
            .map_err(|e| ctx.fail(e))?;
        jobs.extend(page);
    }
    if args.json {
        let list: Vec<_> = jobs.iter().map(output::job_json).collect();
        outln!("{}", serde_json::Value::Array(list));
    } else {
        let rows: Vec<_> = jobs.iter().map(output::job_row).collect();
        out!("{}", output::table(output::JOB_HEADER, &rows));
    }
    Ok(())
}

pub(crate) async fn stats(ctx: &Ctx, args: StatsArgs) -> CmdResult {
    for name in &args.queues {
        punctual::keys::validate_name(name).map_err(|e| ctx.fail(e))?;
    }
    let ns = ctx.namespace().await?;
    let names = if args.queues.is_empty() {
        ns.queue_names().await.map_err(|e| ctx.fail(e))?
    } else {
        args.queues.clone()
    };
    let mut all = Vec::new();
    for name in &names {
        let queue = match ns.existing_queue(name).await.map_err(|e| ctx.fail(e))? {
            Some(queue) => queue,
            None => {
                return Err(Failure::Runtime(format!(
                    "no queue {name:?} in namespace {:?} at {}",
                    ns.prefix(),
                    ctx.redacted
                )))
            }
        };
        all.push(queue.stats().await.map_err(|e| ctx.fail(e))?);
    }
    if args.json {
        let list: Vec<_> = all.iter().map(output::stats_json).collect();
        outln!("{}", serde_json::Value::Array(list));
    } else if all.is_empty() {
        outln!("no queues in namespace {:?}", ns.prefix());
    } else {
        let rows: Vec<_> = all.iter().map(output::stats_row).collect();
        out!("{}", output::table(output::STATS_HEADER, &rows));
    }
    Ok(())
}

/// `pause` (`pause` true) and `resume`.
pub(crate) async fn pause(ctx: &Ctx, args: QueueArgs, pause: bool) -> CmdResult {
    let queue = ctx.existing_queue(&args.queue).await?;
    let changed = if pause {
        queue.pause().await
    } else {
        queue.resume().await
    }
    .map_err(|e| ctx.fail(e))?;
    let (done, state) = if pause {
        ("paused", "paused")
    } else {
        ("resumed", "running")
    };
    if changed {
        outln!("{done} queue {:?}", args.queue);
    } else {
        outln!("queue {:?} was already {state}", args.queue);
    }
    Ok(())
}

pub(crate) async fn queue(ctx: &Ctx, command: QueueCommand) -> CmdResult {
    match command {
        QueueCommand::Create(args) => {
            punctual::keys::validate_name(&args.queue).map_err(|e| ctx.fail(e))?;
            let ns = ctx.namespace().await?;
            let queue = ns
                .create_queue(&args.queue, args.partitions)
                .await
                .map_err(|e| ctx.fail(e))?;
            outln!(
                "queue {:?} has {} partition(s)",
                queue.name(),
                queue.partitions()
            );
            Ok(())
        }
        QueueCommand::Rm(args) => {
            let queue = ctx.existing_queue(&args.queue).await?;
            let ns = ctx.namespace().await?;
            match ns
                .remove_queue(queue.name(), args.force)
                .await
                .map_err(|e| ctx.fail(e))?
            {
                punctual::Removed::Refused { jobs, schedules } => Err(Failure::Runtime(format!(
                    "queue {:?} holds {jobs} jobs and {schedules} recurring schedules; nothing \
                     was removed (--force deletes them too)",
                    args.queue
                ))),
                punctual::Removed::Removed { jobs } => {
                    outln!("removed queue {:?} and its {jobs} jobs", args.queue);
                    Ok(())
                }
                _ => Ok(()),
            }
        }
        QueueCommand::Set(args) => {
            if args.keep_completed.is_none()
                && args.keep_dead.is_none()
                && args.priority_step.is_none()
                && args.events.is_none()
            {
                return Err(Failure::Input(
                    "nothing to set: give --keep-completed, --keep-dead (AGE,COUNT or off), --priority-step or --events"
                        .to_owned(),
                ));
            }
            let events = match args.events.as_deref().map(str::trim) {
                None => None,
                Some("off") => Some(None),
                Some(text) => Some(Some(text.parse::<u64>().map_err(|_| {
                    Failure::Input(format!(
                        "invalid --events {text:?}: expected a number of entries or off"
                    ))
                })?)),
            };
            let step = match args.priority_step.as_deref().map(str::trim) {
                None => None,
                Some("default") => Some(None),
                Some(text) => Some(Some(
                    crate::input::parse_duration(text).map_err(Failure::Input)?,
                )),
            };
            // Both are checked before anything is written.
            let completed = args
                .keep_completed
                .as_deref()
                .map(parse_retention)
                .transpose()
                .map_err(Failure::Input)?;
            let dead = args
                .keep_dead
                .as_deref()
                .map(parse_retention)
                .transpose()
                .map_err(Failure::Input)?;
            let queue = ctx.existing_queue(&args.queue).await?;
            if let Some(retention) = completed {
                queue
                    .set_completed_retention(retention)
                    .await
                    .map_err(|e| ctx.fail(e))?;
                let off = "deletes completed jobs";
                outln!(
                    "queue {:?} {}",
                    args.queue,
                    kept("completed", retention, off)
                );
            }
            if let Some(retention) = dead {
                queue
                    .set_dead_retention(retention)
                    .await
                    .map_err(|e| ctx.fail(e))?;
                let off = "keeps dead jobs until retried or purged";
                outln!("queue {:?} {}", args.queue, kept("dead", retention, off));
            }
            if let Some(events) = events {
                queue.set_event_log(events).await.map_err(|e| ctx.fail(e))?;
                match events {
                    Some(n) => {
                        outln!("queue {:?} logs job changes, about {n} entries", args.queue)
                    }
                    None => outln!("queue {:?} logs no job changes", args.queue),
                }
            }
            if let Some(step) = step {
                queue
                    .set_priority_step(step)
                    .await
                    .map_err(|e| ctx.fail(e))?;
                let step = step.unwrap_or(punctual::DEFAULT_PRIORITY_STEP);
                outln!(
                    "queue {:?} ranks due jobs {} per priority level",
                    args.queue,
                    format_duration(step)
                );
            }
            Ok(())
        }
    }
}

/// What a retention of `what` jobs keeps, in words (`off` without one).
fn kept(what: &str, retention: Option<punctual::Retention>, off: &str) -> String {
    match retention {
        Some(r) => format!(
            "keeps {what} jobs {} and at most {} of them",
            format_duration(r.max_age()),
            r.max_count()
        ),
        None => off.to_owned(),
    }
}

/// `--keep-completed`, `--keep-dead`: "AGE,COUNT" or "off".
fn parse_retention(text: &str) -> Result<Option<punctual::Retention>, String> {
    if text.trim() == "off" {
        return Ok(None);
    }
    let bad = || format!("invalid retention {text:?}: expected AGE,COUNT (e.g. 24h,10000) or off");
    let (age, count) = text.split_once(',').ok_or_else(bad)?;
    let age = crate::input::parse_duration(age)?;
    let count: u64 = count.trim().parse().map_err(|_| bad())?;
    punctual::Retention::new(age, count)
        .map(Some)
        .map_err(|e| format!("invalid retention {text:?}: {e}"))
}

pub(crate) async fn dead(ctx: &Ctx, command: DeadCommand) -> CmdResult {
    match command {
        DeadCommand::Retry(args) => {
            let queue = ctx.existing_queue(&args.queue).await?;
            if args.all {
                let n = queue.retry_all_dead().await.map_err(|e| ctx.fail(e))?;
                outln!("retried {n} dead jobs");
                return Ok(());
            }
            let revived = queue.retry_dead(&args.ids).await.map_err(|e| ctx.fail(e))?;
            outln!("retried {} dead jobs", revived.len());
            missing(&args.ids, &revived)
        }
        DeadCommand::Purge(args) => {
            let queue = ctx.existing_queue(&args.queue).await?;
            let which = match (args.all, args.older_than) {
                (true, _) => Purge::All,
                (false, Some(age)) => Purge::OlderThan(age),
                (false, None) => Purge::Ids(&args.ids),
            };
            let n = queue.purge_dead(which).await.map_err(|e| ctx.fail(e))?;
            outln!("purged {n} dead jobs");
            if matches!(which, Purge::Ids(_)) && n < args.ids.len() as u64 {
                return Err(Failure::Runtime(format!(
                    "{} of the ids given were not in the dead set (left alone)",
                    args.ids.len() as u64 - n
                )));
            }
            Ok(())
        }
    }
}

/// Fails naming the `asked` ids that are not in `done`.
fn missing(asked: &[String], done: &[String]) -> CmdResult {
    let left: Vec<&str> = asked
        .iter()
        .filter(|id| !done.contains(id))
        .map(String::as_str)
        .collect();
    if left.is_empty() {
        return Ok(());
    }
    Err(Failure::Runtime(format!(
        "not in the dead set (left alone): {}",
        left.join(", ")
    )))
}

/// Line numbers as sorted, merged ranges (first, last).
fn ranges(lines: &[usize]) -> Vec<(usize, usize)> {
    let mut sorted = lines.to_vec();
    sorted.sort_unstable();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for n in sorted {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == n => *end = n,
            _ => ranges.push((n, n)),
        }
    }
    ranges
}

/// Line numbers for people: "1-256, 300", at most 8 ranges.
fn line_ranges(lines: &[usize]) -> String {
    let ranges = ranges(lines);
    if ranges.is_empty() {
        return "none".to_owned();
    }
    let shown: Vec<String> = ranges
        .iter()
        .take(8)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    let more = if ranges.len() > 8 { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}

/// `punctual watch`: prints the queue's events as they come, until SIGTERM or SIGINT.
pub(crate) async fn watch(ctx: &Ctx, args: crate::cli::WatchArgs) -> CmdResult {
    use futures_util::StreamExt;
    use std::io::Write;
    let since = match args.since.trim() {
        "now" => punctual::Since::Now,
        "start" => punctual::Since::Start,
        position => punctual::Since::After(position.to_owned()),
    };
    let queue = ctx.existing_queue(&args.queue).await?;
    if queue.event_log().await.map_err(|e| ctx.fail(e))?.is_none() {
        tracing::warn!(queue = %args.queue, "the queue keeps no event log: turn it on with `punctual queue set QUEUE --events N`");
    }
    let stop = crate::shutdown_on_signals()?;
    let mut events = queue.events(since).await.map_err(|e| ctx.fail(e))?;
    let mut out = std::io::stdout().lock();
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            event = events.next() => event,
        };
        let event = match event {
            Some(Ok(event)) => event,
            // Read errors are retried by the stream (and logged); it goes on.
            Some(Err(e)) => {
                tracing::warn!(error = %e, "event log read failed; trying again");
                continue;
            }
            None => return Ok(()),
        };
        let line = if args.json {
            serde_json::json!({
                "position": event.position,
                "at": format_time(event.at),
                "queue": event.queue,
                "event": event.change.as_str(),
                "id": event.id,
                "attempt": event.attempt,
                "reason": event.reason,
            })
            .to_string()
        } else {
            let mut line = format!("{} {} {}", format_time(event.at), event.change, event.id);
            if let Some(a) = event.attempt {
                line.push_str(&format!(" attempt={a}"));
            }
            if let Some(r) = &event.reason {
                line.push_str(&format!(" reason={r}"));
            }
            line.push_str(&format!(" position={}", event.position));
            line
        };
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            // The reader went away (a closed pipe): nothing more to print.
            return Ok(());
        }
    }
}
