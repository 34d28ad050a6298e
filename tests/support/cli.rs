//! Running the `punctual` binary in tests: start it against a test's redis-server, wait for
//! it, signal it, read what its commands left behind, and find its processes in `/proc`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::RedisServer;

/// A `punctual` process a test started, killed (and reaped) when dropped: a test that fails
/// half-way leaves no promoter or worker running. Use it as the [`Child`] it holds.
#[derive(Debug)]
pub struct Owned(Child);

impl std::ops::Deref for Owned {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Owned {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl From<Child> for Owned {
    fn from(child: Child) -> Owned {
        Owned(child)
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // Exited already (the usual case): kill fails harmlessly and wait reaps.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary under test, pointed at `redis`, with logs quiet unless the test asks.
pub fn punctual(redis: &RedisServer) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_punctual"));
    cmd.env("PUNCTUAL_REDIS_URL", redis.url())
        .env_remove("PUNCTUAL_PREFIX")
        .env_remove("RUST_LOG")
        // A panic would print a backtrace: the tests check that none ever does.
        .env("RUST_BACKTRACE", "1");
    cmd
}

/// Runs the binary to completion with `args` (and `stdin`, if any).
pub fn run(redis: &RedisServer, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = punctual(redis)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start punctual");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait for punctual")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a successful run and returns its stdout.
pub fn ok(redis: &RedisServer, args: &[&str]) -> String {
    let out = run(redis, args, None);
    assert!(
        out.status.success(),
        "punctual {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// Asserts that a run failed with `code`, printed one `error:` line naming `needle`, and did
/// not panic.
pub fn fails(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    let error_lines = err.lines().filter(|l| l.starts_with("error:")).count();
    assert_eq!(error_lines, 1, "one error line expected: {err}");
}

/// Sends SIGTERM to a child.
pub fn terminate(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// Waits for a child with a generous bound; kills it and fails if it does not exit.
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    match exit_within(child, limit) {
        Some(status) => status,
        None => panic!("punctual did not exit within {limit:?}"),
    }
}

/// Waits up to `limit` for a child to exit; if it has not, kills and reaps it and returns
/// `None` (for a test that says more than [`wait_exit`] when it fails).
pub fn exit_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh directory for the files the handler commands write.
pub fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("punctual-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create out dir");
    dir
}

pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Starts `punctual work` on `queue` running `exec`, with `OUT` set to `dir`.
pub fn spawn_work(
    redis: &RedisServer,
    queue: &str,
    exec: &str,
    extra: &[&str],
    dir: &Path,
) -> Owned {
    spawn_worker_with(redis, queue, "--exec", exec, extra, dir)
}

/// Starts `punctual work` on `queue` with `--pipe handler`, with `OUT` set to `dir`.
pub fn spawn_work_pipe(
    redis: &RedisServer,
    queue: &str,
    handler: &str,
    extra: &[&str],
    dir: &Path,
) -> Owned {
    spawn_worker_with(redis, queue, "--pipe", handler, extra, dir)
}

fn spawn_worker_with(
    redis: &RedisServer,
    queue: &str,
    mode: &str,
    command: &str,
    extra: &[&str],
    dir: &Path,
) -> Owned {
    Owned(
        punctual(redis)
            .args(["work", queue, mode, command])
            .args(extra)
            .env("OUT", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start punctual work"),
    )
}

/// Starts `punctual promote` with `args`.
pub fn spawn_promote(redis: &RedisServer, args: &[&str]) -> Owned {
    Owned(
        punctual(redis)
            .arg("promote")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start punctual promote"),
    )
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Reads one HTTP response from the sidecar's endpoint.
pub fn http_get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response
}

/// A process seen in `/proc`.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub state: char,
    pub pgrp: i32,
    pub cmdline: String,
}

/// Every live (not zombie) process for which `matches(environ, cmdline)` holds.
fn procs(matches: impl Fn(&[u8], &str) -> bool) -> Vec<Proc> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let (Ok(environ), Ok(stat)) = (
            std::fs::read(format!("/proc/{pid}/environ")),
            std::fs::read_to_string(format!("/proc/{pid}/stat")),
        ) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        if !matches(&environ, &cmdline) {
            continue;
        }
        let rest = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (Some(state), Some(pgrp)) = (fields.first(), fields.get(2)) else {
            continue;
        };
        let state = state.chars().next().unwrap_or('?');
        if state == 'Z' {
            continue;
        }
        found.push(Proc {
            pid,
            state,
            pgrp: pgrp.parse().unwrap_or(0),
            cmdline,
        });
    }
    found
}

/// Every live process whose environment has `var` set to a value starting with `prefix`.
pub fn procs_with_env_prefix(var: &str, prefix: &str) -> Vec<Proc> {
    let needle = format!("{var}={prefix}").into_bytes();
    procs(|environ, _| {
        environ
            .split(|&b| b == 0)
            .any(|v| v.starts_with(needle.as_slice()))
    })
}

/// Waits, bounded by `limit`, until [`procs_with_env_prefix`] finds nothing; returns what
/// it still finds at the end (empty on success).
pub fn wait_no_procs_prefix(var: &str, prefix: &str, limit: Duration) -> Vec<Proc> {
    wait_until_none(limit, || procs_with_env_prefix(var, prefix))
}

/// Waits, bounded by `limit`, until no live process's command line contains `needle`.
pub fn wait_no_procs_cmdline(needle: &str, limit: Duration) -> Vec<Proc> {
    wait_until_none(limit, || procs(|_, cmdline| cmdline.contains(needle)))
}

fn wait_until_none(limit: Duration, find: impl Fn() -> Vec<Proc>) -> Vec<Proc> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = find();
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM to each of `children`, then waits for each (10 s at most) and checks it exited
/// cleanly.
pub fn stop_all(children: &mut [&mut Child]) {
    for child in children.iter() {
        terminate(child);
    }
    for child in children.iter_mut() {
        assert!(wait_exit(child, Duration::from_secs(10)).success());
    }
}

/// The totals the scripts keep for `queue` (its `stats` hash), by name; 0 for none.
pub async fn stat(conn: &mut super::TestConn, queue: &str, name: &str) -> u64 {
    redis::cmd("HGET")
        .arg(format!("punctual:{{{queue}}}:stats"))
        .arg(name)
        .query_async::<Option<u64>>(conn)
        .await
        .unwrap()
        .unwrap_or(0)
}

/// Reads a child's log (its stderr) in a thread, which returns what it read. `seen` gets a
/// message when a line contains `needle`; with `close_there`, the pipe is closed right after
/// that line (the child runs on with nobody reading its log), else it is read to the end.
pub fn read_log(
    stderr: std::process::ChildStderr,
    needle: &str,
    close_there: bool,
) -> (
    std::sync::mpsc::Receiver<()>,
    std::thread::JoinHandle<String>,
) {
    let needle = needle.to_owned();
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            log.push_str(&line);
            log.push('\n');
            if line.contains(&needle) {
                let _ = seen_tx.send(());
                if close_there {
                    break; // the read end is dropped with the reader
                }
            }
        }
        log
    });
    (seen, reader)
}

/// Starts `cmd` with its stderr on a pipe, reads its log until a line contains `needle`, then
/// closes the pipe ([`read_log`]): the process runs on with nobody reading its log, as when a
/// log collector goes away. Fails if `needle` is not logged within `limit`.
pub fn spawn_then_close_stderr(mut cmd: Command, needle: &str, limit: Duration) -> Owned {
    let mut child = Owned(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start punctual"),
    );
    let (seen, reader) = read_log(child.stderr.take().expect("stderr"), needle, true);
    match seen.recv_timeout(limit) {
        Ok(()) => child,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            let log = reader.join().unwrap_or_default();
            panic!("exited before logging {needle:?}: {log}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{needle:?} not logged within {limit:?}")
        }
    }
}
