//! `punctual work --pipe CMD`: long-lived handler processes, for languages whose start-up
//! costs more than the job (Python: 25-50 ms).
//!
//! `--concurrency` handlers are started at once (each `sh -c CMD`, in a process group of its
//! own). A handler serves one job at a time: the job goes to its stdin as one JSON line,
//!
//! ```text
//! {"id": "…", "queue": "…", "attempt": 1, "max_attempts": 10, "kind": "json", "data": …}
//! ```
//!
//! and it answers with one verdict line on stdout (`verdict.rs`; a handler logs to stderr,
//! which is passed on). A verdict that does not parse fails that job and the handler stays.
//! A handler that exits, closes stdout, writes an over-long line, or does not answer within
//! `--timeout` has its group ended and is replaced by a fresh one at the next job; the job's
//! attempt fails (and counts): nothing is lost. At shutdown each handler's stdin is closed
//! (its signal to exit), and its group is ended after `--kill-after`.

use std::process::Stdio;
use std::sync::Mutex;

use punctual::{Context, Job, Outcome};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::group::{Ended, ProcessGroup};
use super::metrics::KillReason;
use super::verdict::{self, MAX_VERDICT};
use super::{describe_status, Setup};

/// One handler process.
#[derive(Debug)]
struct Handler {
    child: Child,
    group: ProcessGroup,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// The handler processes of a worker.
#[derive(Debug)]
pub(super) struct Pipe {
    setup: Setup,
    /// Handlers waiting for a job. At most `--concurrency` exist: the worker runs no more
    /// jobs at once than that, and each job holds one handler.
    idle: Mutex<Vec<Handler>>,
}

/// How a job's exchange with a handler ended.
enum Exchange {
    /// A line came back.
    Answered(Vec<u8>),
    /// The handler closed stdout: it exited or crashed.
    Closed,
    /// Writing the job or reading the answer failed (an over-long line included).
    Broken(std::io::Error),
}

impl Pipe {
    pub(super) fn new(setup: Setup) -> Self {
        Pipe {
            setup,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn setup(&self) -> &Setup {
        &self.setup
    }

    /// Starts `n` handlers.
    pub(super) fn start(&self, n: usize) -> std::io::Result<()> {
        for _ in 0..n {
            let handler = self.spawn()?;
            self.idle().push(handler);
        }
        Ok(())
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Handler>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn(&self) -> std::io::Result<Handler> {
        let mut command = self.setup.shell();
        command
            .env("PUNCTUAL_PROTOCOL", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let (mut child, group) = ProcessGroup::spawn(&mut command, &self.setup.supervisor)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("the handler's pipes were not set up"));
        };
        Ok(Handler {
            child,
            group,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    /// An idle handler that is still running, or a new one.
    fn take(&self) -> std::io::Result<Handler> {
        loop {
            let Some(mut handler) = self.idle().pop() else {
                return self.spawn();
            };
            match handler.child.try_wait() {
                // Exited while idle: dropping its group ends anything it left behind.
                Ok(Some(status)) => {
                    tracing::warn!(status = %describe_status(status), "a --pipe handler exited between jobs; starting another");
                }
                _ => return Ok(handler),
            }
        }
    }

    /// Runs one job on a handler.
    pub(super) async fn run(&self, job: Job<serde_json::Value>, ctx: &Context) -> Outcome {
        let s = &self.setup;
        let mut handler = match self.take() {
            Ok(handler) => handler,
            Err(e) => {
                return Outcome::fail(format!(
                    "cannot start the handler `sh -c {}`: {e}",
                    s.command
                ))
            }
        };
        let request = serde_json::json!({
            "id": job.id,
            "queue": ctx.queue(),
            "attempt": job.attempt,
            "max_attempts": job.max_attempts,
            "kind": job.kind,
            "data": job.data,
        });
        let mut line = request.to_string().into_bytes();
        line.push(b'\n');

        let exchange = async {
            if let Err(e) = write_line(&mut handler.stdin, &line).await {
                return Exchange::Broken(e);
            }
            match read_line(&mut handler.stdout).await {
                Ok(Some(answer)) => Exchange::Answered(answer),
                Ok(None) => Exchange::Closed,
                Err(e) => Exchange::Broken(e),
            }
        };
        let exchanged = tokio::select! {
            exchanged = exchange => Ok(exchanged),
            () = ctx.cancelled() => Err(Setup::cancel_reason(ctx)),
        };
        match exchanged {
            Ok(Exchange::Answered(answer)) => {
                self.idle().push(handler);
                let answer = String::from_utf8_lossy(&answer);
                verdict::parse(&answer).unwrap_or_else(|why| {
                    Outcome::Fail(format!("invalid verdict from the --pipe handler: {why}"))
                })
            }
            Ok(Exchange::Closed) => {
                let (_, status) = self.retire(handler, KillReason::Protocol).await;
                Outcome::Fail(format!(
                    "the --pipe handler exited before answering ({status}); it was replaced"
                ))
            }
            Ok(Exchange::Broken(e)) => {
                let (ended, _) = self.retire(handler, KillReason::Protocol).await;
                Outcome::Fail(format!(
                    "the --pipe handler broke the protocol ({e}); {}; it was replaced",
                    ended.describe(s.kill_after)
                ))
            }
            Err(reason) => {
                let (ended, _) = self.retire(handler, reason).await;
                let how = format!(
                    "the handler {}; it was replaced",
                    ended.describe(s.kill_after)
                );
                Outcome::Fail(s.stopped_error(reason, &how, ctx))
            }
        }
    }

    /// Ends a handler's process group; counts a kill for `reason` if anything was left to end.
    /// Returns how it ended and the handler's exit status in words.
    async fn retire(&self, mut handler: Handler, reason: KillReason) -> (Ended, String) {
        let ended = handler
            .group
            .terminate(&mut handler.child, self.setup.kill_after)
            .await;
        if ended != Ended::Empty {
            self.setup.metrics.killed(reason);
        }
        let status = match handler.child.try_wait() {
            Ok(Some(status)) => describe_status(status),
            _ => "status unknown".to_owned(),
        };
        (ended, status)
    }

    /// Shuts every handler down: closes its stdin, gives it `--kill-after` to exit, then ends
    /// its group.
    pub(super) async fn close(&self) {
        let handlers: Vec<Handler> = std::mem::take(&mut *self.idle());
        let kill_after = self.setup.kill_after;
        let mut ending = tokio::task::JoinSet::new();
        for handler in handlers {
            let Handler {
                mut child,
                mut group,
                stdin,
                stdout,
            } = handler;
            drop(stdin);
            ending.spawn(async move {
                let _ = tokio::time::timeout(kill_after, child.wait()).await;
                group.terminate(&mut child, kill_after).await;
                drop(stdout);
            });
        }
        while ending.join_next().await.is_some() {}
    }
}

async fn write_line(stdin: &mut ChildStdin, line: &[u8]) -> std::io::Result<()> {
    stdin.write_all(line).await?;
    stdin.flush().await
}

/// One line of at most [`MAX_VERDICT`] bytes, without its newline; `None` at end of file
/// (a partial last line included: the handler did not finish its answer).
async fn read_line(stdout: &mut BufReader<ChildStdout>) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buf = stdout.fill_buf().await?;
        if buf.is_empty() {
            return Ok(None);
        }
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&buf[..end]);
            stdout.consume(end + 1);
            return Ok(Some(line));
        }
        let n = buf.len();
        line.extend_from_slice(buf);
        stdout.consume(n);
        if line.len() > MAX_VERDICT {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("an answer line longer than {MAX_VERDICT} bytes"),
            ));
        }
    }
}
