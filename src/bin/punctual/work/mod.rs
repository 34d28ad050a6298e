//! `punctual work`: a worker for any language. Leases, retries and shutdown are the
//! library's [`punctual::Worker`]; this module turns a job into a process's work and the
//! process's answer into an [`Outcome`], and owns every process it starts.
//!
//! - `exec`: `--exec CMD`, one `sh -c CMD` per job.
//! - `pipe`: `--pipe CMD`, long-lived handler processes fed one job per line.
//! - `verdict`: the outcome contract both speak (JSON: done, retry, snooze, fail).
//! - `group`: a command's process group, ended as a whole (SIGTERM, then SIGKILL).
//! - `supervisor`: the process that ends the commands if the worker dies, SIGKILL included.
//! - `metrics`: what the worker measures, served by `--metrics-addr`.
//!
//! What a worker starts ends with its attempt: when an attempt ends for any reason (the
//! command exits, `--timeout`, the shutdown grace runs out, the lease is lost) its whole
//! process group is gone before the job is failed, handed back or given to anyone else.

mod exec;
mod group;
pub(crate) mod metrics;
mod pipe;
pub(crate) mod supervisor;
mod verdict;

use std::sync::Arc;
use std::time::{Duration, Instant};

use punctual::{CancelReason, Context, Job, Outcome, Worker, WorkerConfig};

use self::metrics::{outcome_label, KillReason, WorkerMetrics};
use self::supervisor::{Supervisor, MARK_VAR};
use crate::cli::WorkArgs;
use crate::{shutdown_on_signals, CmdResult, Ctx, Failure};

/// Longest `--kill-after` accepted.
const MAX_KILL_AFTER: Duration = Duration::from_secs(3600);

/// What both kinds of runner share.
#[derive(Debug)]
struct Setup {
    /// The user's command line, run with `sh -c`.
    command: String,
    kill_after: Duration,
    supervisor: Supervisor,
    /// This worker's `PUNCTUAL_WORKER` value, in every command's environment.
    mark: String,
    metrics: WorkerMetrics,
    /// The queues served, comma-separated: the metrics' `queue` label, and `PUNCTUAL_QUEUE`
    /// of a `--pipe` handler (which serves them all; each job's line names its queue). An
    /// `--exec` command gets its job's queue.
    queues: String,
}

impl Setup {
    /// `sh -c COMMAND`, marked as this worker's.
    fn shell(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(&self.command)
            .env(MARK_VAR, &self.mark)
            .env("PUNCTUAL_QUEUE", &self.queues);
        command
    }

    /// Why a cancelled attempt was cancelled (see [`Context::cancelled`]): the worker's
    /// timeout (`--timeout`, or the job's own) is the library's, which cancels the attempt.
    fn cancel_reason(ctx: &Context) -> KillReason {
        match ctx.cancel_reason() {
            Some(CancelReason::TimedOut) => KillReason::Timeout,
            Some(CancelReason::Cancelled) => KillReason::Cancelled,
            Some(CancelReason::LeaseLost) => KillReason::LeaseLost,
            _ => KillReason::Shutdown,
        }
    }

    /// The error of an attempt the worker cut short, `how` being what ending it took.
    fn stopped_error(&self, reason: KillReason, how: &str, ctx: &Context) -> String {
        match (reason, ctx.timeout()) {
            (KillReason::Timeout, Some(limit)) => format!(
                "timed out after {}: {how}",
                crate::input::format_duration(limit)
            ),
            (KillReason::Timeout, None) => format!("timed out: {how}"),
            _ => format!("cancelled ({}): {how}", reason.label()),
        }
    }
}

/// Words for a process's end: "exit status 3", "killed by signal 9".
fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "ended".to_owned(),
    }
}

/// The two ways to run a job.
#[derive(Debug)]
enum Runner {
    Exec(exec::Exec),
    Pipe(pipe::Pipe),
}

impl Runner {
    fn setup(&self) -> &Setup {
        match self {
            Runner::Exec(e) => e.setup(),
            Runner::Pipe(p) => p.setup(),
        }
    }

    /// Runs one attempt and counts it in the metrics.
    async fn attempt(&self, job: Job<serde_json::Value>, ctx: Context) -> Outcome {
        let metrics = &self.setup().metrics;
        let _running = metrics.start(ctx.start_lag());
        let started = Instant::now();
        let outcome = match self {
            Runner::Exec(e) => e.run(job, &ctx).await,
            Runner::Pipe(p) => p.run(job, &ctx).await,
        };
        metrics.finish(
            outcome_label(&outcome, ctx.cancel_reason()),
            started.elapsed(),
        );
        outcome
    }
}

pub(crate) async fn work(ctx: &Ctx, args: WorkArgs) -> CmdResult {
    let (command, piped) = match (&args.exec, &args.pipe) {
        (Some(command), None) => (command.clone(), false),
        (None, Some(command)) => (command.clone(), true),
        _ => return Err(Failure::Input("give one of --exec or --pipe".to_owned())),
    };
    let flag = if piped { "--pipe" } else { "--exec" };
    if command.trim().is_empty() {
        return Err(Failure::Input(format!("{flag}: the command is empty")));
    }
    if args.timeout.is_some_and(|t| t.is_zero()) {
        return Err(Failure::Input("--timeout must be more than 0".to_owned()));
    }
    if args.kill_after.is_zero() || args.kill_after > MAX_KILL_AFTER {
        return Err(Failure::Input(
            "--kill-after must be more than 0 and at most 1h".to_owned(),
        ));
    }
    let config = WorkerConfig::default()
        .set_concurrency(args.concurrency)
        .set_max_attempts(args.max_attempts)
        .set_lease(args.lease)
        .set_shutdown_grace(args.grace)
        .set_timeout(args.timeout)
        // Time for a cancelled attempt to end its process group: SIGTERM, --kill-after,
        // SIGKILL, and the kernel's part.
        .set_cancel_wait(args.kill_after + Duration::from_secs(3))
        // The start-lag histogram needs due times; they cost a little per job, so only when
        // metrics are served.
        .set_due_times(args.metrics_addr.is_some());
    let served = served_queues(&args.queues, args.strict)?;
    let names: Vec<&str> = served.iter().map(|(name, _)| name.as_str()).collect();
    let names = names.join(",");
    let ns = ctx.namespace().await?;
    ctx.check_server(&ns, &args.check).await?;
    let mut queues = Vec::with_capacity(served.len());
    for (name, weight) in served {
        queues.push((ns.queue(&name).await.map_err(|e| ctx.fail(e))?, weight));
    }
    let worker = match queues.len() {
        1 => queues
            .pop()
            .map(|(queue, _)| Worker::new(queue, config.clone())),
        _ if args.strict => Some(Worker::strict(
            queues.into_iter().map(|(q, _)| q),
            config.clone(),
        )),
        _ => Some(Worker::weighted(queues, config.clone())),
    };
    let worker = worker
        .ok_or_else(|| Failure::Input("name at least one queue".to_owned()))?
        .map_err(|e| ctx.fail(e))?;

    let mark = new_mark();
    let dir = std::env::temp_dir().join(format!("punctual-work-{mark}"));
    create_private_dir(&dir)
        .map_err(|e| Failure::Runtime(format!("cannot create {}: {e}", dir.display())))?;
    let supervisor = Supervisor::start(&mark, args.kill_after, &dir)
        .map_err(|e| Failure::Runtime(format!("cannot start the supervisor process: {e}")))?;
    let setup = Setup {
        command,
        kill_after: args.kill_after,
        supervisor: supervisor.clone(),
        mark,
        metrics: WorkerMetrics::default(),
        queues: names,
    };
    let result = run(ctx, &args, worker, setup, piped, &dir).await;
    // Every attempt has ended; the supervisor finds nothing left, removes the verdict
    // directory and exits.
    supervisor.close();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(
    ctx: &Ctx,
    args: &WorkArgs,
    worker: Worker,
    setup: Setup,
    piped: bool,
    dir: &std::path::Path,
) -> CmdResult {
    let stop = shutdown_on_signals()?;
    let metrics = setup.metrics.clone();
    let runner = Arc::new(if piped {
        let pipe = pipe::Pipe::new(setup);
        pipe.start(args.concurrency)
            .map_err(|e| Failure::Runtime(format!("cannot start the --pipe handlers: {e}")))?;
        Runner::Pipe(pipe)
    } else {
        Runner::Exec(exec::Exec::new(setup, dir.to_owned()))
    });
    if let Some(addr) = args.metrics_addr {
        let queue = runner.setup().queues.clone();
        let concurrency = args.concurrency;
        let probes = crate::web::Probes {
            metrics: Arc::new(move || {
                let body = metrics.render(&queue, concurrency);
                Box::pin(async move { body })
            }),
            health: Arc::new(|| Box::pin(async { Ok(()) })),
        };
        crate::web::serve_probes(addr, stop.clone(), probes).await?;
    }
    tracing::info!(
        queue = %runner.setup().queues,
        command = %runner.setup().command,
        mode = if piped { "pipe" } else { "exec" },
        "worker running; SIGTERM or SIGINT stops it"
    );
    let handler = runner.clone();
    let result = worker
        .run(
            move |job: Job<serde_json::Value>, ctx| {
                let runner = handler.clone();
                async move { runner.attempt(job, ctx).await }
            },
            stop.cancelled_owned(),
        )
        .await
        .map_err(|e| ctx.fail(e));
    if let Runner::Pipe(pipe) = &*runner {
        pipe.close().await;
    }
    result
}

/// The queues `QUEUE[=WEIGHT]` names, each with its weight (1 when not given). In `strict`
/// order weights are refused: the order is the weight.
fn served_queues(specs: &[String], strict: bool) -> Result<Vec<(String, u32)>, Failure> {
    let mut served: Vec<(String, u32)> = Vec::with_capacity(specs.len());
    for spec in specs {
        let (name, weight) = match spec.split_once('=') {
            Some((_, _)) if strict => {
                return Err(Failure::Input(format!(
                    "{spec:?}: --strict serves queues in the order named; weights go without it"
                )))
            }
            Some((name, weight)) => {
                let weight = weight
                    .parse::<u32>()
                    .ok()
                    .filter(|w| (1..=punctual::MAX_WEIGHT).contains(w))
                    .ok_or_else(|| {
                        Failure::Input(format!(
                            "{spec:?}: a queue's weight is a whole number from 1 to {}",
                            punctual::MAX_WEIGHT
                        ))
                    })?;
                (name, weight)
            }
            None => (spec.as_str(), 1),
        };
        punctual::keys::validate_name(name)
            .map_err(|e| Failure::Input(format!("{spec:?}: {e}")))?;
        if served.iter().any(|(n, _)| n == name) {
            return Err(Failure::Input(format!("queue {name:?} is named twice")));
        }
        served.push((name.to_owned(), weight));
    }
    Ok(served)
}

/// This worker's mark: its pid and a random part, so that a reused pid cannot match.
fn new_mark() -> String {
    let nonce = punctual::Rng::from_entropy().next_u64();
    format!("{}-{nonce:016x}", std::process::id())
}

/// A directory only this user can read: commands' verdict files live there.
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}
