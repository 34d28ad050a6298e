//! `punctual work --exec CMD`: each job runs `sh -c CMD` in a process group of its own, with
//! the job's data as JSON on stdin and its id, queue, attempt and verdict file in the
//! environment.
//!
//! The attempt ends when the command *exits*. Whatever it left running (a background child,
//! the far end of a pipeline) is then ended with its group, and its output is drained for at
//! most [`DRAIN`]: neither can hold the job. The outcome is the command's verdict when it wrote
//! one to `$PUNCTUAL_VERDICT_FILE`, else its exit status (see `verdict.rs`).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use punctual::{Context, Job, Outcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::group::{Ended, ProcessGroup};
use super::metrics::KillReason;
use super::verdict::{self, Exit, MAX_VERDICT};
use super::{describe_status, Setup};

/// How much of a failed command's stderr becomes the job's last error.
const STDERR_TAIL: usize = 2048;
/// How long stderr is still read after the command's group is gone (a process that left the
/// group with `setsid` may still hold it).
const DRAIN: Duration = Duration::from_millis(100);

/// Runs one command per job.
#[derive(Debug)]
pub(super) struct Exec {
    setup: Setup,
    /// The worker's private directory for verdict files.
    dir: PathBuf,
    /// Names verdict files: one per attempt, never reused by this worker.
    next: AtomicU64,
}

impl Exec {
    pub(super) fn new(setup: Setup, dir: PathBuf) -> Self {
        Exec {
            setup,
            dir,
            next: AtomicU64::new(0),
        }
    }

    pub(super) fn setup(&self) -> &Setup {
        &self.setup
    }

    /// Runs the command for one job and turns its end into an outcome.
    pub(super) async fn run(&self, job: Job<serde_json::Value>, ctx: &Context) -> Outcome {
        let s = &self.setup;
        let verdict_file = self.dir.join(format!(
            "{}.json",
            self.next.fetch_add(1, Ordering::Relaxed)
        ));
        let mut command = s.shell();
        command
            .env("PUNCTUAL_JOB_ID", &job.id)
            .env("PUNCTUAL_QUEUE", ctx.queue())
            .env("PUNCTUAL_ATTEMPT", job.attempt.to_string())
            .env("PUNCTUAL_MAX_ATTEMPTS", job.max_attempts.to_string())
            .env("PUNCTUAL_KIND", &job.kind)
            .env("PUNCTUAL_VERDICT_FILE", &verdict_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped());
        let (mut child, mut group) = match ProcessGroup::spawn(&mut command, &s.supervisor) {
            Ok(started) => started,
            Err(e) => return Outcome::fail(format!("cannot start `sh -c {}`: {e}", s.command)),
        };

        // A command that does not read its input closes the pipe early: not an error.
        let feed = child.stdin.take().map(|mut stdin| {
            let input = job.data.to_string();
            tokio::spawn(async move {
                let _ = stdin.write_all(input.as_bytes()).await;
            })
        });
        let tail = Arc::new(Mutex::new(Vec::new()));
        let collect = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(collect_tail(stderr, tail.clone())));

        let stopped = tokio::select! {
            status = child.wait() => Ok(status),
            () = ctx.cancelled() => Err(Setup::cancel_reason(ctx)),
        };
        // The attempt is over: nothing it started may outlive it.
        let ended = group.terminate(&mut child, s.kill_after).await;
        if let Some(feed) = feed {
            feed.abort();
        }
        if let Some(collect) = collect {
            let abort = collect.abort_handle();
            if tokio::time::timeout(DRAIN, collect).await.is_err() {
                abort.abort();
            }
        }
        let tail = {
            let tail = tail.lock().unwrap_or_else(|p| p.into_inner());
            String::from_utf8_lossy(&tail).into_owned()
        };
        let verdict = read_verdict(&verdict_file).await;

        let how = ended.describe(s.kill_after);
        match stopped {
            Err(reason) => {
                if ended != Ended::Empty {
                    s.metrics.killed(reason);
                }
                tracing::warn!(
                    reason = reason.label(),
                    "command ended by the worker: {how}"
                );
                Outcome::Fail(s.stopped_error(reason, &how, ctx))
            }
            Ok(status) => {
                if ended != Ended::Empty {
                    s.metrics.killed(KillReason::Leftover);
                    tracing::info!("the command exited and left processes running; {how}");
                }
                let exit = match status {
                    Ok(status) if status.success() => Exit::Success,
                    Ok(status) => Exit::Failure(describe_status(status)),
                    Err(e) => return Outcome::fail(format!("cannot wait for the command: {e}")),
                };
                verdict::decide(exit, verdict, &tail)
            }
        }
    }
}

/// Passes the command's stderr on (for the operator) and keeps its last [`STDERR_TAIL`]
/// bytes in `tail` (for the job's error record).
async fn collect_tail(mut stderr: tokio::process::ChildStderr, tail: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let _ = tokio::io::stderr().write_all(&buf[..n]).await;
        let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > STDERR_TAIL {
            let cut = tail.len() - STDERR_TAIL;
            tail.drain(..cut);
        }
    }
}

/// Reads and removes the attempt's verdict file: `None` when the command wrote none (or only
/// white space), else its text or why it cannot be used.
async fn read_verdict(path: &std::path::Path) -> Option<Result<String, String>> {
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(e.to_string())),
    };
    let mut bytes = Vec::new();
    let read = file
        .take(MAX_VERDICT as u64 + 1)
        .read_to_end(&mut bytes)
        .await;
    let _ = tokio::fs::remove_file(path).await;
    if let Err(e) = read {
        return Some(Err(e.to_string()));
    }
    if bytes.len() > MAX_VERDICT {
        return Some(Err(format!("it is larger than {MAX_VERDICT} bytes")));
    }
    match String::from_utf8(bytes) {
        Ok(text) if text.trim().is_empty() => None,
        Ok(text) => Some(Ok(text)),
        Err(_) => Some(Err("it is not UTF-8".to_owned())),
    }
}
