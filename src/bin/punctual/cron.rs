//! `punctual cron`: recurring schedules (the library's `Queue::upsert_schedule` and friends).
//! Every command checks its input before it connects; the reads create nothing.

use std::time::SystemTime;

use punctual::{NewJob, Schedule, ScheduleInfo, Timing};

use crate::cli::{CronAddArgs, CronCommand, CronIdArgs, CronLsArgs, CronNextArgs};
use crate::input::{format_duration, format_time, json_to_msgpack};
use crate::{CmdResult, Ctx, Failure};

pub(crate) async fn run(ctx: &Ctx, command: CronCommand) -> CmdResult {
    match command {
        CronCommand::Add(args) => add(ctx, *args).await,
        CronCommand::Ls(args) => ls(ctx, args).await,
        CronCommand::Next(args) => next(ctx, args).await,
        CronCommand::Rm(args) => change(ctx, args, Change::Remove).await,
        CronCommand::Pause(args) => change(ctx, args, Change::Pause).await,
        CronCommand::Resume(args) => change(ctx, args, Change::Resume).await,
    }
}

async fn add(ctx: &Ctx, args: CronAddArgs) -> CmdResult {
    let data = json_to_msgpack(args.data.as_deref().unwrap_or("null"), "--data")
        .map_err(Failure::Input)?;
    let mut job = NewJob::from_msgpack(args.kind.as_deref().unwrap_or(crate::DEFAULT_KIND), data);
    if let Some(n) = args.max_attempts {
        job = job.max_attempts(n);
    }
    let job = crate::input::steer(job, &args.steer).map_err(Failure::Input)?;
    let mut schedule = match (&args.timing.cron, args.timing.every) {
        (Some(expr), _) => Schedule::cron(&args.id, expr, job),
        (None, Some(every)) => Schedule::every(&args.id, every, job),
        (None, None) => return Err(Failure::Input("give --cron or --every".to_owned())),
    };
    schedule = schedule.tz(&args.tz).misfire(args.misfire);
    if let Some(start) = args.start {
        schedule = schedule.start(start);
    }
    if let Some(end) = args.end {
        schedule = schedule.end(end);
    }
    schedule.check().map_err(|e| ctx.fail(e))?;
    let queue = ctx.queue(&args.queue).await?;
    let added = queue
        .upsert_schedule(schedule)
        .await
        .map_err(|e| ctx.fail(e))?;
    let info = queue
        .get_schedule(&args.id)
        .await
        .map_err(|e| ctx.fail(e))?
        .ok_or_else(|| Failure::Runtime(format!("schedule {:?} is gone", args.id)))?;
    outln!(
        "{} schedule {:?}: next {}",
        if added { "added" } else { "updated" },
        args.id,
        next_text(&info)
    );
    Ok(())
}

async fn ls(ctx: &Ctx, args: CronLsArgs) -> CmdResult {
    let Some(queue) = ctx.maybe_queue(&args.queue).await? else {
        if args.json {
            outln!("[]");
        }
        return Ok(());
    };
    let schedules = queue.list_schedules().await.map_err(|e| ctx.fail(e))?;
    if args.json {
        let list: Vec<serde_json::Value> = schedules.iter().map(to_json).collect();
        outln!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    for s in &schedules {
        outln!(
            "{}\t{}\t{}\tmisfire {}{}\tnext {}",
            s.id,
            timing_text(&s.timing),
            s.tz,
            s.misfire.as_str(),
            if s.paused { "\tpaused" } else { "" },
            next_text(s)
        );
    }
    Ok(())
}

async fn next(ctx: &Ctx, args: CronNextArgs) -> CmdResult {
    let queue = ctx.existing_queue(&args.queue).await?;
    let info = find(ctx, &queue, &args.queue, &args.id).await?;
    // From the next fire time not created yet, or from now if that is later.
    let after = info
        .next_fire
        .map(|t| t - std::time::Duration::from_millis(1))
        .unwrap_or_else(SystemTime::now)
        .max(SystemTime::now());
    let fires = info.fires_after(after, usize::from(args.n));
    if fires.is_empty() {
        outln!("no more fire times (the schedule ended)");
    }
    for (utc, local) in fires {
        outln!("{local}\t{}", format_time(utc));
    }
    Ok(())
}

enum Change {
    Remove,
    Pause,
    Resume,
}

async fn change(ctx: &Ctx, args: CronIdArgs, change: Change) -> CmdResult {
    let queue = ctx.existing_queue(&args.queue).await?;
    let (done, found) = match change {
        Change::Remove => ("removed", queue.remove_schedule(&args.id).await),
        Change::Pause => ("paused", queue.pause_schedule(&args.id).await),
        Change::Resume => ("resumed", queue.resume_schedule(&args.id).await),
    };
    if !found.map_err(|e| ctx.fail(e))? {
        return Err(no_schedule(&args.queue, &args.id));
    }
    outln!("{done} schedule {:?}", args.id);
    Ok(())
}

async fn find(
    ctx: &Ctx,
    queue: &punctual::Queue,
    name: &str,
    id: &str,
) -> Result<ScheduleInfo, Failure> {
    queue
        .get_schedule(id)
        .await
        .map_err(|e| ctx.fail(e))?
        .ok_or_else(|| no_schedule(name, id))
}

fn no_schedule(queue: &str, id: &str) -> Failure {
    Failure::Runtime(format!("no recurring schedule {id:?} in queue {queue:?}"))
}

fn timing_text(timing: &Timing) -> String {
    match timing {
        Timing::Cron(expr) => format!("cron {expr:?}"),
        Timing::Every(d) => format!("every {}", format_duration(*d)),
        _ => "?".to_owned(),
    }
}

fn next_text(info: &ScheduleInfo) -> String {
    match (info.paused, info.next_fire) {
        (true, _) => "(paused)".to_owned(),
        (false, None) => "(ended)".to_owned(),
        (false, Some(t)) => match info
            .fires_after(t - std::time::Duration::from_millis(1), 1)
            .pop()
        {
            Some((_, local)) => format!("{local} ({})", format_time(t)),
            None => format_time(t),
        },
    }
}

pub(crate) fn to_json(s: &ScheduleInfo) -> serde_json::Value {
    let data: serde_json::Value = rmp_serde::from_slice(&s.data).unwrap_or(serde_json::Value::Null);
    let (cron, every) = match &s.timing {
        Timing::Cron(expr) => (Some(expr.clone()), None),
        Timing::Every(d) => (None, Some(format_duration(*d))),
        _ => (None, None),
    };
    serde_json::json!({
        "id": s.id,
        "cron": cron,
        "every": every,
        "tz": s.tz,
        "kind": s.kind,
        "data": data,
        "misfire": s.misfire.as_str(),
        "on_conflict": s.on_conflict.map(|m| m.as_str()),
        "start": format_time(s.start),
        "end": s.end.map(format_time),
        "paused": s.paused,
        "last_fire": s.last_fire.map(format_time),
        "next_fire": s.next_fire.map(format_time),
    })
}
