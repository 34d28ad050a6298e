//! A command's process group: how `work` ends everything a command started.
//!
//! Every command (and every `--pipe` handler) is started as the leader of a new process group,
//! and every process it starts inherits that group unless it leaves on purpose (`setsid`). So
//! "the attempt is over" is one `killpg`: SIGTERM to the whole group, then SIGKILL to what is
//! left after `--kill-after`. Killing only the `sh` we spawned would leave its children
//! running (a pipeline, a `cd dir && ./script`, anything put in the background).
//!
//! A group is registered with the [`Supervisor`] while it may have members, so that if this
//! worker dies by any means the supervisor ends the group instead.
//!
//! There is no event for "a process group is empty" (pidfds watch single processes), so
//! [`ProcessGroup::terminate`] polls every [`POLL`] for at most `--kill-after` plus a short
//! wait after SIGKILL. It runs only when an attempt is being ended, never on the job's path.

use std::io;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::supervisor::Supervisor;

/// How often an ending group is looked at.
pub(crate) const POLL: Duration = Duration::from_millis(10);
/// How long a group may take to disappear after SIGKILL (the kernel's work, not the
/// command's): a bound so that a stuck process (uninterruptible sleep) cannot hang a worker.
const AFTER_KILL: Duration = Duration::from_secs(2);

/// How a group's processes ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Nothing was left to signal.
    Empty,
    /// Every process exited after SIGTERM, within the wait.
    Terminated,
    /// Some process outlived the wait after SIGTERM and was sent SIGKILL.
    Killed,
}

impl Ended {
    /// Words for a job's error record: which signal it took.
    pub(crate) fn describe(self, kill_after: Duration) -> String {
        match self {
            Ended::Empty => "its processes had already exited".to_owned(),
            Ended::Terminated => "its process group was sent SIGTERM and exited".to_owned(),
            Ended::Killed => format!(
                "its process group was sent SIGTERM, did not exit within {}, and was killed \
                 with SIGKILL",
                crate::input::format_duration(kill_after)
            ),
        }
    }
}

/// The process group of one command, owned: dropped without [`ProcessGroup::terminate`], it
/// is sent SIGKILL at once.
#[derive(Debug)]
pub(crate) struct ProcessGroup {
    pgid: i32,
    supervisor: Supervisor,
    /// False once the group is known to be empty.
    live: bool,
}

impl ProcessGroup {
    /// Starts `command` as the leader of a new process group and registers the group with the
    /// supervisor.
    pub(crate) fn spawn(
        command: &mut Command,
        supervisor: &Supervisor,
    ) -> io::Result<(Child, ProcessGroup)> {
        // Its own group: the unit that is signalled. It also keeps a terminal's Ctrl-C (sent to
        // the foreground group) from reaching the command: `work` decides when it ends.
        command.process_group(0).kill_on_drop(true);
        let child = command.spawn()?;
        let Some(pid) = child.id() else {
            return Err(io::Error::other(
                "the command exited before it could be tracked",
            ));
        };
        let pgid = i32::try_from(pid).map_err(|_| io::Error::other("process id out of range"))?;
        supervisor.register(pgid);
        Ok((
            child,
            ProcessGroup {
                pgid,
                supervisor: supervisor.clone(),
                live: true,
            },
        ))
    }

    /// Ends every process of the group: SIGTERM, then SIGKILL to whatever is left after
    /// `kill_after`. `leader` (the process spawned) is reaped meanwhile, so that it does not
    /// linger as a zombie that looks alive. Returns once the group is empty.
    pub(crate) async fn terminate(&mut self, leader: &mut Child, kill_after: Duration) -> Ended {
        if !self.live {
            return Ended::Empty;
        }
        // Reap the leader if it has exited, so an exited leader alone counts as empty.
        let _ = leader.try_wait();
        let ended = if !signal(self.pgid, Signal::SIGTERM) {
            Ended::Empty
        } else if wait_empty(self.pgid, leader, kill_after).await {
            Ended::Terminated
        } else {
            signal(self.pgid, Signal::SIGKILL);
            wait_empty(self.pgid, leader, AFTER_KILL).await;
            Ended::Killed
        };
        let _ = leader.try_wait();
        self.forget();
        ended
    }

    /// The group is empty: nothing to kill on drop, nothing for the supervisor to watch.
    fn forget(&mut self) {
        if self.live {
            self.live = false;
            self.supervisor.unregister(self.pgid);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.live {
            // The attempt's future was dropped mid-run (a bug, or the runtime shutting down):
            // no time to ask nicely, but nothing may outlive it.
            signal(self.pgid, Signal::SIGKILL);
            self.forget();
        }
    }
}

/// Sends `signal` to group `pgid`; false when the group has no process left.
pub(crate) fn signal(pgid: i32, signal: Signal) -> bool {
    !matches!(killpg(Pid::from_raw(pgid), signal), Err(Errno::ESRCH))
}

/// Waits until group `pgid` is empty, for at most `limit`; true if it is.
async fn wait_empty(pgid: i32, leader: &mut Child, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let _ = leader.try_wait();
        if !is_alive(pgid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// True while group `pgid` has a process that is not a zombie. `killpg(pgid, 0)` answers for
/// zombies too (a member whose parent has not reaped it yet, e.g. an orphan waiting for an
/// init that reaps slowly), so a yes from it is checked against `/proc`.
pub(crate) fn is_alive(pgid: i32) -> bool {
    if matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH)) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true; // no /proc: trust killpg
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        matches!(stat_fields(&stat), Some((state, group)) if group == pgid && state != 'Z')
    })
}

/// The state letter and process group of a `/proc/PID/stat` line. The command name (field 2)
/// is in parentheses and may hold spaces or parentheses itself, so fields are counted from
/// the last `)`.
pub(crate) fn stat_fields(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_past_odd_command_names() {
        let line = "4242 (a) b (c) S 1 4240 4240 0 -1 4194560 0 0";
        assert_eq!(stat_fields(line), Some(('S', 4240)));
        assert_eq!(stat_fields("12 (sh) Z 1 12 12 0"), Some(('Z', 12)));
        assert_eq!(stat_fields("garbage"), None);
        assert_eq!(stat_fields("1 (x) R"), None);
    }
}
