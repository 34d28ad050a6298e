//! The supervisor: what ends a worker's commands when the worker itself dies, SIGKILL included.
//!
//! A process cannot run code after SIGKILL, and `PR_SET_PDEATHSIG` (besides needing `unsafe`
//! between fork and exec) only reaches direct children, not the grandchildren a shell command
//! starts. So `punctual work` starts a second, small process at start-up, `punctual
//! __supervise` (this binary again), and keeps the write end of a pipe to its stdin:
//!
//! - Before a command can do anything that matters, the worker writes `+PGID` (its process
//!   group, see `group.rs`); once the group is empty, `-PGID`.
//! - The worker is the only holder of the pipe's write end (Rust opens pipes close-on-exec,
//!   so commands do not inherit it). When the worker dies, however it dies, the kernel closes
//!   it and the supervisor reads end-of-file at once.
//! - On end-of-file the supervisor ends every group it was told about, plus the group of every
//!   process whose environment carries this worker's `PUNCTUAL_WORKER` mark (that covers the
//!   instant between a command's start and its `+PGID`, and descendants that left the group
//!   but kept the environment): SIGTERM, then SIGKILL after `--kill-after`. Then it removes the
//!   worker's verdict directory and exits.
//!
//! The supervisor is in a process group of its own, so a signal sent to the worker's group
//! (a terminal's Ctrl-C, `kill -- -PGID`) does not reach it. What it cannot cover: the
//! supervisor itself being killed together with the worker by something that targets both
//! processes (`pkill -9 punctual`). A container or cgroup being killed as a whole is fine:
//! then the commands die with it. Under systemd, use `KillMode=mixed` so that a stop sends
//! SIGTERM to the worker alone (which then ends its commands after `--grace`).

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ChildStdin, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::group::{is_alive, signal, stat_fields, POLL};
use crate::cli::SuperviseArgs;

/// The environment variable that marks every process a worker starts.
pub(crate) const MARK_VAR: &str = "PUNCTUAL_WORKER";

/// The worker's side: a pipe to the supervisor process.
#[derive(Debug, Clone)]
pub(crate) struct Supervisor {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    stdin: Option<ChildStdin>,
    child: std::process::Child,
    /// Set once a write failed: logged once, not per command.
    broken: bool,
}

impl Supervisor {
    /// Starts the supervisor process for a worker whose commands carry `mark`, and whose
    /// verdict files live in `dir`.
    pub(crate) fn start(
        mark: &str,
        kill_after: Duration,
        dir: &std::path::Path,
    ) -> std::io::Result<Supervisor> {
        // /proc/self/exe still runs this binary if its file was replaced or deleted since.
        let exe = if std::path::Path::new("/proc/self/exe").exists() {
            PathBuf::from("/proc/self/exe")
        } else {
            std::env::current_exe()?
        };
        let mut child = std::process::Command::new(exe)
            // Named as the binary in `ps`, not as /proc/self/exe.
            .arg0("punctual")
            .arg("__supervise")
            .arg("--mark")
            .arg(mark)
            .arg("--kill-after-ms")
            .arg(kill_after.as_millis().to_string())
            .arg("--dir")
            .arg(dir)
            .env_remove(MARK_VAR)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Supervisor {
            inner: Arc::new(Mutex::new(Inner {
                stdin,
                child,
                broken: false,
            })),
        })
    }

    /// Tells the supervisor about a new process group.
    pub(crate) fn register(&self, pgid: i32) {
        self.send(&format!("+{pgid}\n"));
    }

    /// Tells the supervisor a group is empty.
    pub(crate) fn unregister(&self, pgid: i32) {
        self.send(&format!("-{pgid}\n"));
    }

    fn send(&self, line: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(stdin) = inner.stdin.as_mut() else {
            return;
        };
        // A few bytes into a pipe the supervisor drains: this does not block in practice.
        if let Err(e) = stdin.write_all(line.as_bytes()) {
            if !inner.broken {
                inner.broken = true;
                tracing::error!(
                    error = %e,
                    "the supervisor process is gone: if this worker is killed, its running \
                     commands will not be"
                );
            }
        }
    }

    /// Closes the pipe (the supervisor then ends anything still marked as this worker's) and
    /// waits for the supervisor to exit.
    pub(crate) fn close(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.stdin = None;
        let _ = inner.child.wait();
    }
}

/// `punctual __supervise`: the supervisor process. Reads `+PGID`/`-PGID` lines until
/// end-of-file, then ends what is left. Exit status 0.
pub(crate) fn main(args: SuperviseArgs) -> ExitCode {
    let mut groups = HashSet::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match (
            line.get(..1),
            line.get(1..).and_then(|n| n.parse::<i32>().ok()),
        ) {
            (Some("+"), Some(pgid)) if pgid > 1 => {
                groups.insert(pgid);
            }
            (Some("-"), Some(pgid)) => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    // End of file: the worker exited or was killed.
    groups.extend(marked_groups(&args.mark));
    let kill_after = Duration::from_millis(args.kill_after_ms);
    let left = end_groups(&groups, kill_after);
    if !groups.is_empty() {
        errln!(
            "punctual supervisor: the worker is gone; ended {} process group(s) of its commands{}",
            groups.len(),
            if left > 0 {
                " (some needed SIGKILL)"
            } else {
                ""
            }
        );
    }
    if let Some(dir) = args.dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    ExitCode::SUCCESS
}

/// SIGTERM to every group, SIGKILL to those still alive after `kill_after`; returns how many
/// needed SIGKILL.
fn end_groups(groups: &HashSet<i32>, kill_after: Duration) -> usize {
    let mut alive: Vec<i32> = groups
        .iter()
        .copied()
        .filter(|&pgid| signal(pgid, Signal::SIGTERM))
        .collect();
    let deadline = Instant::now() + kill_after;
    while !alive.is_empty() && Instant::now() < deadline {
        std::thread::sleep(POLL);
        alive.retain(|&pgid| is_alive(pgid));
    }
    for &pgid in &alive {
        signal(pgid, Signal::SIGKILL);
    }
    alive.len()
}

/// The process groups of every process whose environment has `PUNCTUAL_WORKER=mark`.
fn marked_groups(mark: &str) -> HashSet<i32> {
    let needle = format!("{MARK_VAR}={mark}").into_bytes();
    let mine = std::process::id().to_string();
    let mut found = HashSet::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid == mine {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !environ
            .split(|&b| b == 0)
            .any(|var| var == needle.as_slice())
        {
            continue;
        }
        if let Some((_, pgid)) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .as_deref()
            .and_then(stat_fields)
        {
            if pgid > 1 {
                found.insert(pgid);
            }
        }
    }
    found
}
