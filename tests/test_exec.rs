//! `punctual work` owns the processes it starts. Real binary, real redis-server; the processes
//! are found through `/proc` (by the `PUNCTUAL_WORKER` mark every command carries), not
//! guessed from the happy result:
//! - `--timeout` and the shutdown grace end a command's whole process tree (a backgrounded
//!   `sleep`, a pipeline), and the job's error says which signal it took;
//! - SIGKILL of the worker ends its running commands within 2 s, and the job then runs exactly
//!   once more;
//! - a command that exits 0 while a background child holds stderr is acked at once;
//! - every verdict kind does what it says, and a bad verdict is a job error;
//! - `--pipe` runs the Python example end to end, and survives a handler that crashes mid-job
//!   and one that hangs;
//! - `--metrics-addr` counts outcomes, kills, start lag and what runs.

mod support;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use support::cli::*;
use support::{eventually, RedisServer};

/// Commands still alive that worker `worker` started (they carry its mark).
fn commands_of(worker: &Child) -> Vec<Proc> {
    procs_with_env_prefix("PUNCTUAL_WORKER", &format!("{}-", worker.id()))
}

/// Waits until worker `worker` has no live command, for at most `limit`; fails naming those
/// left.
fn assert_commands_gone(worker: &Child, limit: Duration, when: &str) {
    let deadline = Instant::now() + limit;
    loop {
        let left = commands_of(worker);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{when}: commands still alive after {limit:?}: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM to `worker`, waits for it to exit cleanly, and checks that none of the commands
/// (or `--pipe` handlers) it started outlived it.
fn stop_leaving_nothing(worker: &mut Owned) {
    let mark = format!("{}-", worker.id());
    stop_all(&mut [worker]);
    let left = procs_with_env_prefix("PUNCTUAL_WORKER", &mark);
    assert!(left.is_empty(), "outlived their worker: {left:?}");
}

/// A free TCP port for a metrics endpoint.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of one sample line of a Prometheus text body, if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The last error record of job `id`, as JSON text.
async fn last_error(conn: &mut support::TestConn, queue: &str, id: &str) -> String {
    conn.hget::<_, _, Option<String>>(format!("punctual:{{{queue}}}:errors"), id)
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn is_dead(conn: &mut support::TestConn, queue: &str, id: &str) -> bool {
    conn.zscore::<_, _, Option<f64>>(format!("punctual:{{{queue}}}:dead"), id)
        .await
        .unwrap()
        .is_some()
}

async fn jobs_left(conn: &mut support::TestConn, queue: &str) -> u64 {
    conn.hlen(format!("punctual:{{{queue}}}:jobs"))
        .await
        .unwrap()
}

/// `--timeout` ends the whole tree of a command that backgrounds a `sleep` and runs a
/// pipeline (the `cd dir && sh h.sh` case of the bug report: only `sh` used to be killed).
/// By the time the job is dead, nothing the worker started is alive, and the error says
/// which signal it took. The metrics count both kills.
#[tokio::test]
async fn timeout_ends_the_whole_process_tree() {
    let redis = RedisServer::start();
    let dir = out_dir("timeout");
    std::fs::write(
        dir.join("h.sh"),
        "sleep 30 & cat | sleep 30; echo done >> \"$OUT/out\"\n",
    )
    .unwrap();
    let port = free_port();
    let mut promoter = spawn_promote(&redis, &["t"]);
    let mut worker = spawn_work(
        &redis,
        "t",
        "cd \"$OUT\" && sh h.sh",
        &[
            "--timeout",
            "1s",
            "--max-attempts",
            "2",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ],
        &dir,
    );
    let mut conn = redis.conn().await;
    // With --metrics-addr the worker asks for due times (for the start lag) as it starts;
    // jobs promoted from then on carry them.
    eventually(
        Duration::from_secs(10),
        "the worker asked for due times",
        || {
            let mut conn = conn.clone();
            async move {
                conn.hget::<_, _, Option<String>>("punctual:{t}:meta", "due")
                    .await
                    .unwrap()
                    .is_some()
            }
        },
    )
    .await;
    ok(&redis, &["schedule", "t", "--in", "0s", "--id", "slow"]);
    // While attempt 1 runs, its tree is there to be found: sh, sleep, cat, sleep.
    let started = Instant::now();
    while commands_of(&worker).len() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no command tree"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eventually(Duration::from_secs(20), "the job is dead", || {
        let mut conn = conn.clone();
        async move { is_dead(&mut conn, "t", "slow").await }
    })
    .await;
    // The group is ended before the job is reported: nothing may be left even now.
    let left = commands_of(&worker);
    assert!(left.is_empty(), "left after the job died: {left:?}");
    let error = last_error(&mut conn, "t", "slow").await;
    assert!(
        error.contains("attempts_exhausted")
            && error.contains("timed out after 1s")
            && error.contains("SIGTERM"),
        "{error}"
    );
    assert!(!dir.join("out").exists(), "no attempt ran to its end");

    let metrics = http_get(port, "/metrics");
    let q = "queue=\"t\"";
    assert_eq!(
        sample(
            &metrics,
            &format!("punctual_worker_commands_killed_total{{{q},reason=\"timeout\"}}")
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("punctual_worker_jobs_total{{{q},outcome=\"failed\"}}")
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, &format!("punctual_worker_running{{{q}}}")),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("punctual_worker_start_lag_seconds_count{{{q}}}")
        ),
        Some(2.0)
    );
    let run_time = sample(&metrics, &format!("punctual_worker_run_seconds_sum{{{q}}}"));
    assert!(
        run_time.is_some_and(|s| (2.0..10.0).contains(&s)),
        "{metrics}"
    );
    assert!(http_get(port, "/healthz").starts_with("HTTP/1.1 200"));

    stop_all(&mut [&mut worker, &mut promoter]);
}

/// When the shutdown grace runs out, a command's whole tree is ended (a command that ignores
/// SIGTERM takes SIGKILL after --kill-after) before its job is handed back, unused.
#[tokio::test]
async fn grace_ending_ends_the_whole_tree() {
    let redis = RedisServer::start();
    let dir = out_dir("grace");
    for i in 0..2 {
        ok(
            &redis,
            &["schedule", "g", "--in", "0s", "--id", &format!("g{i}")],
        );
    }
    let mut promoter = spawn_promote(&redis, &["g"]);
    let conn = redis.conn().await;
    // g0: a pipeline. g1: a shell that ignores SIGTERM and has a child that does too.
    let exec = r#"touch "$OUT/$PUNCTUAL_JOB_ID"; if [ "$PUNCTUAL_JOB_ID" = g0 ]; then sleep 30 | cat; else trap '' TERM; sh -c "trap '' TERM; sleep 30"; fi"#;
    let mut worker = spawn_work(
        &redis,
        "g",
        exec,
        &["--grace", "300ms", "--kill-after", "500ms"],
        &dir,
    );
    eventually(Duration::from_secs(10), "both commands started", || {
        let dir = dir.clone();
        async move { files_in(&dir).len() == 2 }
    })
    .await;
    stop_leaving_nothing(&mut worker);
    let mut conn = conn;
    let ready: u64 = conn.llen("punctual:{g}:ready").await.unwrap();
    let scheduled: u64 = conn.zcard("punctual:{g}:scheduled").await.unwrap();
    assert_eq!(ready + scheduled, 2, "both handed back");
    let attempts: Vec<(String, u32)> = conn.hgetall("punctual:{g}:attempts").await.unwrap();
    assert!(attempts.iter().all(|(_, n)| *n == 0), "{attempts:?}");
    stop_all(&mut [&mut promoter]);
}

/// SIGKILL of `punctual work` ends its running command (and the supervisor that did it)
/// within 2 s, and the job then runs exactly once more, on another worker.
#[tokio::test]
async fn a_killed_worker_leaves_no_command_behind() {
    let redis = RedisServer::start();
    let dir = out_dir("sigkill");
    ok(&redis, &["schedule", "k", "--in", "0s", "--id", "job"]);
    let mut promoter = spawn_promote(&redis, &["k"]);
    let exec = r#"touch "$OUT/start.$PUNCTUAL_ATTEMPT"; [ "$PUNCTUAL_ATTEMPT" = 1 ] && sleep 20; touch "$OUT/end.$PUNCTUAL_ATTEMPT""#;
    let mut first = spawn_work(&redis, "k", exec, &["--lease", "1s"], &dir);
    let started = Instant::now();
    while commands_of(&first).len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "no command");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mark = format!("{}-", first.id());
    first.kill().unwrap();
    first.wait().unwrap();
    let killed = Instant::now();
    let left = wait_no_procs_prefix("PUNCTUAL_WORKER", &mark, Duration::from_secs(2));
    assert!(left.is_empty(), "alive 2 s after SIGKILL: {left:?}");
    let supervisor = wait_no_procs_cmdline(&format!("--mark {mark}"), Duration::from_secs(2));
    assert!(
        supervisor.is_empty(),
        "the supervisor lingers: {supervisor:?}"
    );
    eprintln!("commands gone {:?} after SIGKILL", killed.elapsed());

    let mut second = spawn_work(&redis, "k", exec, &[], &dir);
    let conn = redis.conn().await;
    eventually(Duration::from_secs(20), "the job is done", || {
        let mut conn = conn.clone();
        async move { jobs_left(&mut conn, "k").await == 0 }
    })
    .await;
    assert_eq!(
        files_in(&dir),
        vec!["end.2", "start.1", "start.2"],
        "attempt 1 never finished; attempt 2 ran once"
    );
    stop_all(&mut [&mut second, &mut promoter]);
    assert_eq!(files_in(&dir).len(), 3, "no third run");
}

/// A command that exits 0 while a background child still holds stderr is acked when it
/// exits, not when the child ends (which used to fail it by --timeout); the child is ended.
#[tokio::test]
async fn exit_zero_is_acked_at_once_despite_a_background_child() {
    let redis = RedisServer::start();
    let dir = out_dir("background");
    ok(&redis, &["schedule", "b", "--in", "0s", "--id", "bg"]);
    let mut promoter = spawn_promote(&redis, &["b"]);
    let mut worker = spawn_work(
        &redis,
        "b",
        "sleep 6 & echo started",
        &["--timeout", "3s"],
        &dir,
    );
    let started = Instant::now();
    let mut conn = redis.conn().await;
    eventually(Duration::from_secs(10), "acked", || {
        let mut conn = conn.clone();
        async move { jobs_left(&mut conn, "b").await == 0 }
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "acked after {took:?}");
    let done = (
        stat(&mut conn, "b", "completed").await,
        stat(&mut conn, "b", "retried").await,
    );
    assert_eq!(done, (1, 0));
    assert_commands_gone(&worker, Duration::from_secs(2), "after the ack");
    stop_all(&mut [&mut worker, &mut promoter]);
}

/// Each verdict a command writes to $PUNCTUAL_VERDICT_FILE does what it says, over the exit
/// status; a bad verdict is a job error naming the problem; no verdict file is left behind.
#[tokio::test]
async fn verdicts_decide_the_outcome() {
    let redis = RedisServer::start();
    let dir = out_dir("verdicts");
    for (id, attempts) in [
        ("done", "3"),
        ("retry", "3"),
        ("snooze", "3"),
        ("fail", "3"),
        ("bad", "1"),
        ("plain", "3"),
    ] {
        ok(
            &redis,
            &[
                "schedule",
                "v",
                "--in",
                "0s",
                "--id",
                id,
                "--max-attempts",
                attempts,
            ],
        );
    }
    let mut promoter = spawn_promote(&redis, &["v"]);
    let exec = r#"echo "$PUNCTUAL_ATTEMPT" >> "$OUT/$PUNCTUAL_JOB_ID"
v="$PUNCTUAL_VERDICT_FILE"
case "$PUNCTUAL_JOB_ID.$PUNCTUAL_ATTEMPT" in
  done.*) echo '{"outcome":"done","result":{"n":1}}' > "$v"; exit 1 ;;
  retry.1) echo '{"outcome":"retry","in":"200ms","error":"try later"}' > "$v" ;;
  snooze.*) echo '{"outcome":"snooze","in":"1h"}' > "$v" ;;
  fail.*) echo '{"outcome":"fail","error":"no such user"}' > "$v" ;;
  bad.*) echo '{"outcome":"maybe"}' > "$v" ;;
  plain.*) exit 0 ;;
esac"#;
    let mut worker = spawn_work(&redis, "v", exec, &[], &dir);
    let mut conn = redis.conn().await;
    eventually(Duration::from_secs(20), "every job settled", || {
        let mut conn = conn.clone();
        async move {
            // done, retry, plain gone; snooze waiting; fail and bad dead.
            let dead: u64 = conn.zcard("punctual:{v}:dead").await.unwrap();
            let waiting: u64 = conn.zcard("punctual:{v}:scheduled").await.unwrap();
            jobs_left(&mut conn, "v").await == 3 && dead == 2 && waiting == 1
        }
    })
    .await;
    let runs = |id: &str| std::fs::read_to_string(dir.join(id)).unwrap_or_default();
    assert_eq!(runs("done"), "1\n", "done wins over exit status 1");
    assert_eq!(runs("retry"), "1\n2\n", "retried once, after its delay");
    assert_eq!(runs("plain"), "1\n", "no verdict: exit 0 is done");
    let fail = last_error(&mut conn, "v", "fail").await;
    assert!(
        fail.contains("\"permanent\"") && fail.contains("no such user") && runs("fail") == "1\n",
        "fail is dead at once: {fail}"
    );
    let bad = last_error(&mut conn, "v", "bad").await;
    assert!(
        bad.contains("invalid verdict") && bad.contains("unknown variant"),
        "{bad}"
    );
    let snooze_due: f64 = conn
        .zscore("punctual:{v}:scheduled", "snooze")
        .await
        .unwrap();
    let now = support::server_ms(&mut conn).await as f64;
    assert!(
        (snooze_due - now - 3_600_000.0).abs() < 60_000.0,
        "snoozed for 1 h"
    );
    let snooze_attempts: Option<u32> = conn.hget("punctual:{v}:attempts", "snooze").await.unwrap();
    assert_eq!(snooze_attempts.unwrap_or(0), 0, "a snooze uses no attempt");
    let pid = worker.id();
    stop_all(&mut [&mut worker, &mut promoter]);
    let verdict_dirs: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("punctual-work-{pid}-"))
        })
        .collect();
    assert!(verdict_dirs.is_empty(), "verdict directory left behind");
}

/// `--pipe` with the shipped Python example: done, retried, snoozed and failed jobs, and
/// `--concurrency` handler processes that go away with the worker.
#[tokio::test]
async fn pipe_mode_runs_the_python_example() {
    let redis = RedisServer::start();
    let dir = out_dir("pipe-example");
    for (id, data) in [
        ("ada", r#"{"to":"ada","text":"stand up"}"#),
        ("flaky", r#"{"to":"bob","fail_until":2}"#),
        ("later", r#"{"to":"cy","snooze":"1h"}"#),
        ("nobody", r#"{"text":"?"}"#),
    ] {
        ok(
            &redis,
            &["schedule", "p", "--in", "0s", "--id", id, "--data", data],
        );
    }
    let mut promoter = spawn_promote(&redis, &["p"]);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pipe_handler.py");
    let mut worker = spawn_work_pipe(
        &redis,
        "p",
        &format!("python3 {}", example.display()),
        &["--concurrency", "2"],
        &dir,
    );
    let mut conn = redis.conn().await;
    eventually(Duration::from_secs(20), "every job settled", || {
        let mut conn = conn.clone();
        async move {
            let dead: u64 = conn.zcard("punctual:{p}:dead").await.unwrap();
            let waiting: u64 = conn.zcard("punctual:{p}:scheduled").await.unwrap();
            jobs_left(&mut conn, "p").await == 2 && dead == 1 && waiting == 1
        }
    })
    .await;
    let done = (
        stat(&mut conn, "p", "completed").await,
        stat(&mut conn, "p", "retried").await,
    );
    assert_eq!(done, (2, 2));
    let error = last_error(&mut conn, "p", "nobody").await;
    assert!(error.contains("no recipient"), "{error}");
    let python = commands_of(&worker)
        .into_iter()
        .filter(|p| p.cmdline.starts_with("python3") || p.cmdline.contains("/python3 "))
        .count();
    assert_eq!(python, 2, "one handler per --concurrency");
    stop_leaving_nothing(&mut worker);
    stop_all(&mut [&mut promoter]);
}

/// A `--pipe` handler that crashes mid-job, or hangs past --timeout, is ended and replaced;
/// its job's attempt fails with an error saying which; the other jobs run; a bad answer line
/// fails only its job.
#[tokio::test]
async fn pipe_mode_survives_a_crash_and_a_hang() {
    let redis = RedisServer::start();
    let dir = out_dir("pipe-faults");
    std::fs::write(
        dir.join("handler.py"),
        r#"import json, os, sys, time
for line in sys.stdin:
    job = json.loads(line)
    with open(os.path.join(os.environ["OUT"], "pids"), "a") as f:
        f.write(f"{os.getpid()} {job['id']}\n")
    what = job["data"]["do"]
    if what == "crash":
        os._exit(3)
    if what == "hang":
        time.sleep(60)
    if what == "garble":
        print("this is not json", flush=True)
        continue
    print(json.dumps({"outcome": "done"}), flush=True)
"#,
    )
    .unwrap();
    let mut promoter = spawn_promote(&redis, &["f"]);
    let mut worker = spawn_work_pipe(
        &redis,
        "f",
        "python3 \"$OUT/handler.py\"",
        &[
            "--concurrency",
            "1",
            "--timeout",
            "2s",
            "--max-attempts",
            "1",
        ],
        &dir,
    );
    // One at a time, so that each fault hits a known job.
    let mut conn = redis.conn().await;
    for (i, what) in ["ok", "crash", "ok", "hang", "garble", "ok"]
        .into_iter()
        .enumerate()
    {
        let id = format!("{i}-{what}");
        ok(
            &redis,
            &[
                "schedule",
                "f",
                "--in",
                "0s",
                "--id",
                &id,
                "--data",
                &format!(r#"{{"do":"{what}"}}"#),
            ],
        );
        eventually(Duration::from_secs(15), &format!("{id} settled"), || {
            let mut conn = conn.clone();
            let id = id.clone();
            async move {
                let exists: bool = conn.hexists("punctual:{f}:jobs", &id).await.unwrap();
                !exists || is_dead(&mut conn, "f", &id).await
            }
        })
        .await;
    }
    let crash = last_error(&mut conn, "f", "1-crash").await;
    assert!(
        crash.contains("exited before answering") && crash.contains("exit status 3"),
        "{crash}"
    );
    let hang = last_error(&mut conn, "f", "3-hang").await;
    assert!(
        hang.contains("timed out after 2s") && hang.contains("SIGTERM"),
        "{hang}"
    );
    let garble = last_error(&mut conn, "f", "4-garble").await;
    assert!(garble.contains("invalid verdict"), "{garble}");
    let dead: Vec<String> = conn.zrange("punctual:{f}:dead", 0, -1).await.unwrap();
    assert_eq!(dead.len(), 3, "only the faulty jobs died: {dead:?}");
    // Handlers: the first served 0 and 1 (crashed), the second 2 and 3 (hung), the third the
    // rest: a garbled answer does not replace a handler.
    let pids = std::fs::read_to_string(dir.join("pids")).unwrap();
    let distinct: std::collections::BTreeSet<&str> =
        pids.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(distinct.len(), 3, "{pids}");
    let hung: u32 = pids
        .lines()
        .find(|l| l.ends_with("3-hang"))
        .and_then(|l| l.split(' ').next()?.parse().ok())
        .unwrap();
    assert!(
        !Path::new(&format!("/proc/{hung}/stat")).exists()
            || std::fs::read_to_string(format!("/proc/{hung}/stat"))
                .unwrap_or_default()
                .contains(") Z "),
        "the hung handler is gone"
    );
    stop_leaving_nothing(&mut worker);
    stop_all(&mut [&mut promoter]);
}

/// A worker that finds its lease gone (here: taken away in Redis, as a stalled worker's would
/// be) ends the command's whole tree at once, counts it, and reports nothing.
#[tokio::test]
async fn a_lost_lease_ends_the_command() {
    let redis = RedisServer::start();
    let dir = out_dir("lease-lost");
    ok(&redis, &["schedule", "l", "--in", "0s", "--id", "held"]);
    let port = free_port();
    let mut promoter = spawn_promote(&redis, &["l"]);
    let mut worker = spawn_work(
        &redis,
        "l",
        "sleep 30 | cat",
        &[
            "--lease",
            "600ms",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ],
        &dir,
    );
    let started = Instant::now();
    while commands_of(&worker).len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no command tree"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut conn = redis.conn().await;
    let _: () = conn.hdel("punctual:{l}:leases", "held").await.unwrap();
    // The next heartbeat (every 200 ms) finds the lease gone.
    assert_commands_gone(&worker, Duration::from_secs(3), "after the lease was lost");
    // The attempt is counted once its group is gone and its output drained.
    let counted = |metrics: &str| {
        let q = "queue=\"l\"";
        (
            sample(
                metrics,
                &format!("punctual_worker_commands_killed_total{{{q},reason=\"lease_lost\"}}"),
            ),
            sample(
                metrics,
                &format!("punctual_worker_jobs_total{{{q},outcome=\"cancelled\"}}"),
            ),
        )
    };
    eventually(Duration::from_secs(5), "the kill counted", || async {
        counted(&http_get(port, "/metrics")) == (Some(1.0), Some(1.0))
    })
    .await;
    stop_all(&mut [&mut worker, &mut promoter]);
}

/// `punctual cancel` of a job whose command is running: the worker hears it at its next lease
/// extension, ends the command's whole tree (a pipeline and a backgrounded `sleep`), and the
/// job is dead with reason `cancelled`; the caller is told it was stopped. Nothing is left.
#[tokio::test]
async fn cancel_stops_a_running_command() {
    let redis = RedisServer::start();
    let dir = out_dir("cancel");
    let mut promoter = spawn_promote(&redis, &["c"]);
    let port = free_port();
    let mut worker = spawn_work(
        &redis,
        "c",
        "sleep 30 & sleep 30 | cat",
        &[
            "--lease",
            "1s",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ],
        &dir,
    );
    let mut conn = redis.conn().await;
    ok(&redis, &["schedule", "c", "--in", "0s", "--id", "busy"]);
    let started = Instant::now();
    while commands_of(&worker).len() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no command tree"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let asked = Instant::now();
    let out = ok(&redis, &["cancel", "c", "busy", "--json"]);
    println!(
        "punctual cancel of a running command (lease 1s): {out} after {:?}",
        asked.elapsed()
    );
    let reply = json(&out);
    assert_eq!(reply["stopped"], true, "{reply}");
    assert_eq!(reply["was"], "running", "{reply}");
    let left = commands_of(&worker);
    assert!(
        left.is_empty(),
        "left after the job was cancelled: {left:?}"
    );
    assert!(is_dead(&mut conn, "c", "busy").await);
    let error = last_error(&mut conn, "c", "busy").await;
    assert!(error.contains("\"cancelled\""), "{error}");
    let metrics = http_get(port, "/metrics");
    assert_eq!(
        sample(
            &metrics,
            "punctual_worker_commands_killed_total{queue=\"c\",reason=\"cancelled\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    stop_all(&mut [&mut worker, &mut promoter]);
}

/// One `punctual work` serves several queues: each command gets its own job's queue in
/// `PUNCTUAL_QUEUE`, every job of both queues runs once, and bad weights are refused with a
/// one-line message before anything starts.
#[tokio::test]
async fn one_worker_serves_several_queues() {
    let redis = RedisServer::start();
    let dir = out_dir("lanes");
    for (queue, n) in [("hi", 6), ("lo", 3)] {
        for i in 0..n {
            let id = format!("{queue}-{i}");
            ok(&redis, &["schedule", queue, "--in", "0s", "--id", &id]);
        }
    }
    let mut promoter = spawn_promote(&redis, &["hi", "lo"]);
    let mut worker = spawn_work(
        &redis,
        "hi=3",
        "echo \"$PUNCTUAL_QUEUE\" >> \"$OUT/$PUNCTUAL_JOB_ID\"",
        &["lo=1", "--concurrency", "2"],
        &dir,
    );
    let mut conn = redis.conn().await;
    eventually(Duration::from_secs(15), "every job acked", || {
        let mut conn = conn.clone();
        async move { jobs_left(&mut conn, "hi").await + jobs_left(&mut conn, "lo").await == 0 }
    })
    .await;
    let files = files_in(&dir);
    assert_eq!(files.len(), 9, "{files:?}");
    for name in files {
        let queue = name.split('-').next().unwrap();
        let text = std::fs::read_to_string(dir.join(&name)).unwrap();
        assert_eq!(
            text,
            format!("{queue}\n"),
            "job {name} ran once, told its queue"
        );
    }
    assert_eq!(stat(&mut conn, "lo", "completed").await, 3);
    stop_leaving_nothing(&mut worker);
    stop_all(&mut [&mut promoter]);

    for (args, needle) in [
        (
            vec!["work", "a=0", "--exec", "true"],
            "weight is a whole number from 1 to 1000",
        ),
        (
            vec!["work", "a", "b=x", "--exec", "true"],
            "weight is a whole number",
        ),
        (vec!["work", "a", "a", "--exec", "true"], "named twice"),
        (
            vec!["work", "a=2", "b", "--strict", "--exec", "true"],
            "--strict",
        ),
    ] {
        fails(&run(&redis, &args, None), 2, needle);
    }
}
