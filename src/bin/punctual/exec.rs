//! `punctual work --exec CMD`: a worker for any language. Each job runs `sh -c CMD` with the
//! job's data as JSON on stdin and its id, queue and attempt in the environment. Exit 0 acks;
//! another exit, a signal or a timeout fails the attempt (the library retries it with backoff,
//! or sends it to the dead set after the last attempt), with the tail of stderr as the error.
//!
//! Leases, retries and shutdown are the library's [`punctual::Worker`]; this file only turns a
//! job into a process and its exit into an [`Outcome`].

use std::process::Stdio;
use std::time::Duration;

use punctual::{Job, Outcome, Worker, WorkerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::cli::WorkArgs;
use crate::{shutdown_on_signals, CmdResult, Ctx, Failure};

/// How much of a failed command's stderr becomes the job's last error.
const STDERR_TAIL: usize = 2048;

pub(crate) async fn work(ctx: &Ctx, args: WorkArgs) -> CmdResult {
    if args.exec.trim().is_empty() {
        return Err(Failure::Input("--exec: the command is empty".to_owned()));
    }
    if args.timeout.is_some_and(|t| t.is_zero()) {
        return Err(Failure::Input("--timeout must be more than 0".to_owned()));
    }
    let config = WorkerConfig::default()
        .set_concurrency(args.concurrency)
        .set_max_attempts(args.max_attempts)
        .set_lease(args.lease)
        .set_shutdown_grace(args.grace);
    punctual::keys::validate_name(&args.queue).map_err(|e| ctx.fail(e))?;
    let ns = ctx.namespace().await?;
    ctx.check_server(&ns, &args.check).await?;
    let queue = ns.queue(&args.queue).await.map_err(|e| ctx.fail(e))?;
    let worker = Worker::new(queue, config).map_err(|e| ctx.fail(e))?;
    let stop = shutdown_on_signals()?;
    let command = args.exec;
    let timeout = args.timeout;
    tracing::info!(queue = %args.queue, exec = %command, "worker running; SIGTERM or SIGINT stops it");
    worker
        .run(
            move |job: Job<serde_json::Value>, ctx| {
                let command = command.clone();
                let queue = ctx.queue().to_owned();
                async move { run_command(&command, timeout, job, &queue).await }
            },
            stop.cancelled_owned(),
        )
        .await
        .map_err(|e| ctx.fail(e))
}

/// Runs the command for one job and turns its end into an outcome. If this future is dropped
/// (the shutdown grace period ran out), the process is killed with it.
async fn run_command(
    command: &str,
    timeout: Option<Duration>,
    job: Job<serde_json::Value>,
    queue: &str,
) -> Outcome {
    let mut child = match Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("PUNCTUAL_JOB_ID", &job.id)
        .env("PUNCTUAL_QUEUE", queue)
        .env("PUNCTUAL_ATTEMPT", job.attempt.to_string())
        .env("PUNCTUAL_MAX_ATTEMPTS", job.max_attempts.to_string())
        .env("PUNCTUAL_KIND", &job.kind)
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C in the terminal reaches punctual, which lets the
        // command finish within the grace period, instead of killing it mid-job.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return Outcome::fail(format!("cannot start `sh -c {command}`: {e}")),
    };

    let input = job.data.to_string();
    let stdin = child.stdin.take();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A command that does not read its input closes the pipe early: not an error.
            let _ = stdin.write_all(input.as_bytes()).await;
        }
    };
    let stderr = child.stderr.take();
    let collect = async move {
        let mut tail = Vec::new();
        if let Some(mut stderr) = stderr {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                // Pass it on for the operator, keep the end for the error record.
                let _ = tokio::io::stderr().write_all(&buf[..n]).await;
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
        tail
    };
    let run = async {
        let ((), tail, status) = tokio::join!(feed, collect, child.wait());
        (tail, status)
    };
    let (tail, status) = match timeout {
        Some(limit) => match tokio::time::timeout(limit, run).await {
            Ok(done) => done,
            Err(_) => {
                // kill_on_drop has not fired yet (the child is still owned here): kill now.
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Outcome::fail(format!(
                    "timed out after {}: the command was killed",
                    crate::input::format_duration(limit)
                ));
            }
        },
        None => run.await,
    };
    let status = match status {
        Ok(status) => status,
        Err(e) => return Outcome::fail(format!("cannot wait for the command: {e}")),
    };
    if status.success() {
        return Outcome::Done;
    }
    let tail = String::from_utf8_lossy(&tail);
    let tail = tail.trim();
    let how = match status.code() {
        Some(code) => format!("exit status {code}"),
        None => {
            use std::os::unix::process::ExitStatusExt;
            format!("killed by signal {}", status.signal().unwrap_or(0))
        }
    };
    if tail.is_empty() {
        Outcome::fail(how)
    } else {
        Outcome::fail(format!("{how}: {tail}"))
    }
}
