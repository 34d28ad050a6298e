//! The one-shot operator commands. Each validates its input before connecting, makes one
//! library call (or a few), prints the result and maps errors to exit statuses.

use std::io::Read;

use punctual::{Cancelled, JobState, NewJob, Purge, Rescheduled, When};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{
    DeadCommand, ImportArgs, JobArgs, LsArgs, RescheduleArgs, ScheduleArgs, StateArg, StatsArgs,
};
use crate::input::{format_time, json_to_msgpack, parse_at, parse_when};
use crate::output;
use crate::{CmdResult, Ctx, Failure};

/// Kind given to jobs scheduled from the command line without `--kind`.
const DEFAULT_KIND: &str = "json";
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
    let mut job = NewJob::from_msgpack(args.kind.as_deref().unwrap_or(DEFAULT_KIND), data)
        .when(args.when.when());
    if let Some(id) = &args.id {
        job = job.id(id.clone());
    }
    if let Some(n) = args.max_attempts {
        job = job.max_attempts(n);
    }
    let queue = ctx.queue(&args.queue).await?;
    let scheduled = queue.schedule(job).await.map_err(|e| ctx.fail(e))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"queue": args.queue, "id": scheduled.id, "created": scheduled.created})
        );
    } else {
        println!("{}", scheduled.id);
    }
    if !scheduled.created {
        tracing::warn!(id = %scheduled.id, "a job with this id already exists; nothing was written");
    }
    Ok(())
}

/// One line of an import file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    id: Option<String>,
    #[serde(rename = "in")]
    in_: Option<String>,
    at: Option<String>,
    #[serde(default)]
    data: serde_json::Value,
    kind: Option<String>,
    max_attempts: Option<u32>,
}

impl ImportLine {
    fn into_job(self) -> Result<NewJob, String> {
        let when = match (&self.in_, &self.at) {
            (Some(d), None) => parse_when(d)?.0,
            (None, Some(t)) => parse_at(t)?.0,
            _ => return Err("needs exactly one of \"in\" and \"at\"".to_owned()),
        };
        let data = rmp_serde::to_vec_named(&self.data).map_err(|e| format!("data: {e}"))?;
        let mut job =
            NewJob::from_msgpack(self.kind.as_deref().unwrap_or(DEFAULT_KIND), data).when(when);
        if let Some(id) = self.id {
            job = job.id(id);
        }
        if let Some(n) = self.max_attempts {
            job = job.max_attempts(n);
        }
        Ok(job)
    }
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
            let parsed = serde_json::from_str::<ImportLine>(&line)
                .map_err(|e| format!("invalid JSON: {e}"))
                .and_then(ImportLine::into_job);
            match parsed {
                Ok(job) => chunk.push((line_no, job)),
                Err(reason) => {
                    rejected += 1;
                    eprintln!("line {line_no}: {reason}");
                }
            }
        }
        let (numbers, jobs): (Vec<usize>, Vec<NewJob>) = chunk.into_iter().unzip();
        let results = queue.schedule_each(jobs).await.map_err(|e| {
            let (Failure::Runtime(m) | Failure::Input(m)) = ctx.fail(e);
            Failure::Runtime(format!(
                "{m} (while sending lines up to {line_no}; {created} jobs were scheduled \
                 before; run the import again: ids given in the file are not duplicated)"
            ))
        })?;
        for (n, result) in numbers.into_iter().zip(results) {
            match result {
                Ok(s) if s.created => created += 1,
                Ok(_) => existed += 1,
                Err(e) => {
                    rejected += 1;
                    eprintln!("line {n}: {e}");
                }
            }
        }
        if eof {
            break;
        }
    }
    println!("scheduled {created} jobs ({existed} already existed, {rejected} lines rejected)");
    if rejected > 0 {
        return Err(Failure::Input(format!(
            "{rejected} of {line_no} lines were rejected (see above); the others were scheduled"
        )));
    }
    Ok(())
}

pub(crate) async fn show(ctx: &Ctx, args: JobArgs) -> CmdResult {
    let queue = ctx.queue(&args.queue).await?;
    let job = queue.get(&args.id).await.map_err(|e| ctx.fail(e))?;
    if job.state == JobState::Unknown {
        return Err(not_found(&args.queue, &args.id));
    }
    if args.json {
        println!("{}", output::job_json(&job));
    } else {
        print!("{}", output::job_text(&job));
    }
    Ok(())
}

fn not_found(queue: &str, id: &str) -> Failure {
    Failure::Runtime(format!(
        "job {id:?} not found in queue {queue:?} (never scheduled, or finished and deleted)"
    ))
}

pub(crate) async fn cancel(ctx: &Ctx, args: JobArgs) -> CmdResult {
    let queue = ctx.queue(&args.queue).await?;
    match queue.cancel(&args.id).await.map_err(|e| ctx.fail(e))? {
        Cancelled::Removed(from) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"id": args.id, "cancelled": true, "was": from.as_str()})
                );
            } else {
                println!("cancelled {} (was {from})", args.id);
            }
            Ok(())
        }
        Cancelled::Running => Err(Failure::Runtime(format!(
            "job {:?} is running: a running job cannot be cancelled; it ends through its worker",
            args.id
        ))),
        Cancelled::NotFound => Err(not_found(&args.queue, &args.id)),
        _ => Err(Failure::Runtime("unexpected cancel outcome".to_owned())),
    }
}

pub(crate) async fn reschedule(ctx: &Ctx, args: RescheduleArgs) -> CmdResult {
    let queue = ctx.queue(&args.queue).await?;
    let when: When = args.when.when();
    match queue
        .reschedule(&args.id, when)
        .await
        .map_err(|e| ctx.fail(e))?
    {
        Rescheduled::Moved { from, due_at } => {
            println!(
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
    let queue = ctx.queue(&args.queue).await?;
    let states = match args.state {
        Some(s) => vec![s],
        None => StateArg::ALL.to_vec(),
    };
    let mut jobs = Vec::new();
    for state in states {
        let page = queue
            .list(state.state(), args.limit as usize)
            .await
            .map_err(|e| ctx.fail(e))?;
        jobs.extend(page);
    }
    if args.json {
        let list: Vec<_> = jobs.iter().map(output::job_json).collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        let rows: Vec<_> = jobs.iter().map(output::job_row).collect();
        print!("{}", output::table(output::JOB_HEADER, &rows));
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
        let queue = ns.queue(name).await.map_err(|e| ctx.fail(e))?;
        all.push(queue.stats().await.map_err(|e| ctx.fail(e))?);
    }
    if args.json {
        let list: Vec<_> = all.iter().map(output::stats_json).collect();
        println!("{}", serde_json::Value::Array(list));
    } else if all.is_empty() {
        println!("no queues in namespace {:?}", ns.prefix());
    } else {
        let rows: Vec<_> = all.iter().map(output::stats_row).collect();
        print!("{}", output::table(output::STATS_HEADER, &rows));
    }
    Ok(())
}

pub(crate) async fn dead(ctx: &Ctx, command: DeadCommand) -> CmdResult {
    match command {
        DeadCommand::Retry(args) => {
            let queue = ctx.queue(&args.queue).await?;
            if args.all {
                let n = queue.retry_all_dead().await.map_err(|e| ctx.fail(e))?;
                println!("retried {n} dead jobs");
                return Ok(());
            }
            let revived = queue.retry_dead(&args.ids).await.map_err(|e| ctx.fail(e))?;
            println!("retried {} dead jobs", revived.len());
            missing(&args.ids, &revived)
        }
        DeadCommand::Purge(args) => {
            let queue = ctx.queue(&args.queue).await?;
            let which = match (args.all, args.older_than) {
                (true, _) => Purge::All,
                (false, Some(age)) => Purge::OlderThan(age),
                (false, None) => Purge::Ids(&args.ids),
            };
            let n = queue.purge_dead(which).await.map_err(|e| ctx.fail(e))?;
            println!("purged {n} dead jobs");
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
