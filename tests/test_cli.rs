//! The `punctual` binary, run as a real process against a redis-server the test starts:
//! schedule → promote → work --exec end to end, import with bad lines, dead retry and purge,
//! SIGTERM during work (nothing lost), the metrics endpoint, and bad input (exit status 2,
//! nothing written) and a bad Redis (exit status 1, no password, no panic).

mod support;

use std::process::Stdio;
use std::time::Duration;

use redis::AsyncCommands;
use support::cli::*;
use support::{eventually, RedisServer};

/// Jobs scheduled with the CLI reach a command run by `punctual work --exec` through
/// `punctual promote`: the data arrives as JSON on stdin and the id, queue and attempt in the
/// environment. A failing command's stderr becomes the job's last error, a timeout kills it,
/// and `show --json` reports it all.
#[tokio::test]
async fn schedule_promote_work_end_to_end() {
    let redis = RedisServer::start();
    let dir = out_dir("e2e");
    let id = ok(
        &redis,
        &[
            "schedule",
            "mail",
            "--in",
            "300ms",
            "--data",
            r#"{"to":"a@b.c","n":1}"#,
        ],
    );
    let id = id.trim().to_owned();
    assert_eq!(id.len(), 26, "a generated id: {id}");
    let scheduled = json(&ok(
        &redis,
        &[
            "schedule", "mail", "--in", "-5s", "--id", "given", "--kind", "welcome", "--json",
        ],
    ));
    assert_eq!(scheduled["id"], "given");
    assert_eq!(scheduled["created"], true);
    ok(
        &redis,
        &[
            "schedule",
            "mail",
            "--in",
            "0s",
            "--id",
            "broken",
            "--max-attempts",
            "1",
        ],
    );
    ok(
        &redis,
        &[
            "schedule",
            "mail",
            "--in",
            "0s",
            "--id",
            "slow",
            "--max-attempts",
            "1",
        ],
    );

    let exec = r#"case "$PUNCTUAL_JOB_ID" in
        broken) echo "smtp said no" >&2; exit 3;;
        slow) sleep 30;;
        *) cat > "$OUT/$PUNCTUAL_JOB_ID.$PUNCTUAL_QUEUE.$PUNCTUAL_ATTEMPT";;
    esac"#;
    let mut promoter = spawn_promote(&redis, &[]);
    let mut worker = spawn_work(&redis, "mail", exec, &["--timeout", "500ms"], &dir);

    let mut conn = redis.conn().await;
    eventually(Duration::from_secs(15), "two done, two dead", || {
        let dir = dir.clone();
        let mut conn = conn.clone();
        async move {
            let dead: u64 = conn.zcard("punctual:{mail}:dead").await.unwrap();
            files_in(&dir).len() == 2 && dead == 2
        }
    })
    .await;
    assert_eq!(
        files_in(&dir),
        [format!("{id}.mail.1"), "given.mail.1".to_owned()]
    );
    let data = json(&std::fs::read_to_string(dir.join(format!("{id}.mail.1"))).unwrap());
    assert_eq!(data, serde_json::json!({"to": "a@b.c", "n": 1}));
    let null = std::fs::read_to_string(dir.join("given.mail.1")).unwrap();
    assert_eq!(null, "null", "no --data is JSON null");

    let broken = json(&ok(&redis, &["show", "mail", "broken", "--json"]));
    assert_eq!(broken["state"], "dead");
    assert_eq!(broken["last_error"]["reason"], "attempts_exhausted");
    assert_eq!(
        broken["last_error"]["message"],
        "exit status 3: smtp said no"
    );
    let slow = json(&ok(&redis, &["show", "mail", "slow", "--json"]));
    let message = slow["last_error"]["message"].as_str().unwrap();
    assert!(message.starts_with("timed out after 500ms"), "{message}");

    // Finished jobs leave nothing behind.
    let jobs: Vec<String> = conn.hkeys("punctual:{mail}:jobs").await.unwrap();
    assert_eq!(jobs.len(), 2, "only the dead jobs remain: {jobs:?}");

    terminate(&promoter);
    terminate(&worker);
    assert!(wait_exit(&mut promoter, Duration::from_secs(5)).success());
    assert!(wait_exit(&mut worker, Duration::from_secs(10)).success());
}

/// `import` schedules every valid line, reports each bad one with its line number, exits 2,
/// and the bad lines write nothing.
#[tokio::test]
async fn import_reports_bad_lines_and_keeps_the_good_ones() {
    let redis = RedisServer::start();
    let file = out_dir("import").join("jobs.ndjson");
    let past = "2020-01-01T00:00:00Z";
    let lines = [
        r#"{"id":"a","in":"1h","data":{"x":1}}"#,
        r#"{"id":"b","at":"2030-01-01T00:00:00Z","kind":"k","max_attempts":3}"#,
        r#"{"id":"c","in":"soon"}"#,
        "{not json",
        "",
        r#"{"id":"d","in":"1h","at":"2030-01-01T00:00:00Z"}"#,
        &format!(r#"{{"id":"e","at":"{past}"}}"#),
        r#"{"id":"f","in":"-3s","data":[1,2]}"#,
        r#"{"id":"g","in":"1h","colour":"red"}"#,
        r#"{"in":"2h"}"#,
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = run(&redis, &["import", "q", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("scheduled 4 jobs"),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    for n in [3, 4, 6, 7, 9] {
        assert!(
            err.contains(&format!("line {n}: ")),
            "line {n} not reported: {err}"
        );
    }
    assert!(err.contains("\"soon\""), "{err}");
    let mut conn = redis.conn().await;
    let mut ids: Vec<String> = conn.hkeys("punctual:{q}:jobs").await.unwrap();
    ids.sort();
    assert_eq!(ids.len(), 4, "{ids:?}");
    for id in ["a", "b", "f"] {
        assert!(ids.contains(&id.to_owned()), "{id} missing from {ids:?}");
    }
    assert!(
        ids.iter().any(|id| id.len() == 26),
        "a generated id for the line without one"
    );

    // The same file again: ids given are not duplicated.
    let again = run(&redis, &["import", "q", file.to_str().unwrap()], None);
    assert!(
        stdout(&again).contains("3 already existed"),
        "{}",
        stdout(&again)
    );

    // From stdin, all good: exit 0.
    let out = run(
        &redis,
        &["import", "q", "-"],
        Some("{\"id\":\"s1\",\"in\":\"1m\"}\n{\"id\":\"s2\",\"in\":\"2m\"}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("scheduled 2 jobs"));
    let b = json(&ok(&redis, &["show", "q", "b", "--json"]));
    assert_eq!(b["due_at"], "2030-01-01T00:00:00.000Z");
    assert_eq!(b["max_attempts"], 3);
    assert_eq!(b["kind"], "k");
}

/// A dead job can be inspected, retried (it runs again, with its attempts reset) and the
/// dead set purged; `ls` and `stats` show each step.
#[tokio::test]
async fn dead_jobs_are_retried_from_the_cli() {
    let redis = RedisServer::start();
    let dir = out_dir("dead");
    for id in ["flaky", "other"] {
        ok(
            &redis,
            &[
                "schedule",
                "d",
                "--in",
                "0s",
                "--id",
                id,
                "--max-attempts",
                "1",
            ],
        );
    }
    let exec = r#"[ -e "$OUT/fixed" ] || { echo "not yet" >&2; exit 1; }; touch "$OUT/$PUNCTUAL_JOB_ID.$PUNCTUAL_ATTEMPT""#;
    let mut promoter = spawn_promote(&redis, &["d"]);
    let mut worker = spawn_work(&redis, "d", exec, &[], &dir);
    let mut conn = redis.conn().await;
    eventually(Duration::from_secs(10), "both dead", || {
        let mut conn = conn.clone();
        async move { conn.zcard::<_, u64>("punctual:{d}:dead").await.unwrap() == 2 }
    })
    .await;

    let listed = json(&ok(&redis, &["ls", "d", "--state", "dead", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["last_error"]["message"], "exit status 1: not yet");
    let table = ok(&redis, &["ls", "d"]);
    assert!(table.contains("flaky") && table.contains("dead"), "{table}");
    let stats = json(&ok(&redis, &["stats", "d", "--json"]));
    assert_eq!(stats[0]["dead"], 2);

    std::fs::write(dir.join("fixed"), "").unwrap();
    let out = run(&redis, &["dead", "retry", "d", "flaky", "nope"], None);
    fails(&out, 1, "nope");
    assert!(stdout(&out).contains("retried 1 dead jobs"));
    eventually(Duration::from_secs(10), "flaky ran again", || {
        let dir = dir.clone();
        async move { files_in(&dir).contains(&"flaky.1".to_owned()) }
    })
    .await;
    // attempt 1 again: retrying from the dead set resets attempts.

    let purged = ok(&redis, &["dead", "purge", "d", "--all"]);
    assert!(purged.contains("purged 1 dead jobs"), "{purged}");
    let stats = json(&ok(&redis, &["stats", "--json"]));
    assert_eq!(stats.as_array().unwrap().len(), 1, "one queue registered");
    assert_eq!(stats[0]["dead"], 0);
    assert_eq!(stats[0]["totals"]["completed"], 1);
    assert_eq!(stats[0]["totals"]["revived"], 1);
    let jobs: u64 = conn.hlen("punctual:{d}:jobs").await.unwrap();
    assert_eq!(jobs, 0, "nothing left behind");

    terminate(&promoter);
    terminate(&worker);
    assert!(wait_exit(&mut promoter, Duration::from_secs(5)).success());
    assert!(wait_exit(&mut worker, Duration::from_secs(10)).success());
}

/// SIGTERM while commands run: no new jobs are taken, running commands finish within the
/// grace period and are acked; those that cannot finish are killed and handed back without
/// using an attempt. Every job is done or still queued: nothing is lost.
#[tokio::test]
async fn sigterm_during_work_loses_nothing() {
    let redis = RedisServer::start();
    let dir = out_dir("sigterm");
    for i in 0..8 {
        ok(
            &redis,
            &["schedule", "w", "--in", "0s", "--id", &format!("j{i}")],
        );
    }
    let mut promoter = spawn_promote(&redis, &["w"]);
    let mut conn = redis.conn().await;

    // 1. The grace period is long enough: the 4 running commands finish and are acked.
    let exec =
        r#"touch "$OUT/$PUNCTUAL_JOB_ID.started"; sleep 1; touch "$OUT/$PUNCTUAL_JOB_ID.done""#;
    let mut worker = spawn_work(
        &redis,
        "w",
        exec,
        &["--concurrency", "4", "--grace", "20s"],
        &dir,
    );
    eventually(Duration::from_secs(10), "4 commands started", || {
        let dir = dir.clone();
        async move {
            files_in(&dir)
                .iter()
                .filter(|f| f.ends_with(".started"))
                .count()
                == 4
        }
    })
    .await;
    terminate(&worker);
    assert!(wait_exit(&mut worker, Duration::from_secs(15)).success());
    let done = files_in(&dir)
        .iter()
        .filter(|f| f.ends_with(".done"))
        .count();
    assert_eq!(
        done,
        4,
        "the running commands finished: {:?}",
        files_in(&dir)
    );
    let running: u64 = conn.zcard("punctual:{w}:running").await.unwrap();
    let jobs: u64 = conn.hlen("punctual:{w}:jobs").await.unwrap();
    assert_eq!((running, jobs), (0, 4), "4 acked, 4 still queued");

    // 2. The grace period is too short: the commands are killed, the jobs handed back.
    let exec =
        r#"touch "$OUT/$PUNCTUAL_JOB_ID.slow"; sleep 30; touch "$OUT/$PUNCTUAL_JOB_ID.never""#;
    let mut worker = spawn_work(
        &redis,
        "w",
        exec,
        &["--concurrency", "4", "--grace", "300ms"],
        &dir,
    );
    eventually(Duration::from_secs(10), "4 slow commands started", || {
        let dir = dir.clone();
        async move {
            files_in(&dir)
                .iter()
                .filter(|f| f.ends_with(".slow"))
                .count()
                == 4
        }
    })
    .await;
    terminate(&worker);
    assert!(wait_exit(&mut worker, Duration::from_secs(10)).success());
    let running: u64 = conn.zcard("punctual:{w}:running").await.unwrap();
    let waiting: u64 = conn.zcard("punctual:{w}:scheduled").await.unwrap();
    let ready: u64 = conn.llen("punctual:{w}:ready").await.unwrap();
    assert_eq!(running, 0);
    assert_eq!(waiting + ready, 4, "every unfinished job is queued again");
    let attempts: Vec<(String, u32)> = conn.hgetall("punctual:{w}:attempts").await.unwrap();
    assert!(
        attempts.iter().all(|(_, n)| *n == 0),
        "hand-backs use no attempt: {attempts:?}"
    );

    // 3. A new worker finishes them all.
    let exec = r#"touch "$OUT/$PUNCTUAL_JOB_ID.done""#;
    let mut worker = spawn_work(&redis, "w", exec, &[], &dir);
    eventually(Duration::from_secs(10), "all 8 done", || {
        let dir = dir.clone();
        async move {
            files_in(&dir)
                .iter()
                .filter(|f| f.ends_with(".done"))
                .count()
                == 8
        }
    })
    .await;
    assert!(!files_in(&dir).iter().any(|f| f.ends_with(".never")));
    terminate(&worker);
    terminate(&promoter);
    assert!(wait_exit(&mut worker, Duration::from_secs(10)).success());
    assert!(wait_exit(&mut promoter, Duration::from_secs(5)).success());
    let jobs: u64 = conn.hlen("punctual:{w}:jobs").await.unwrap();
    assert_eq!(jobs, 0);
}

/// The sidecar serves every queue of the namespace, including one created after it started,
/// exposes Prometheus metrics and a health check, and stops at once on SIGTERM.
#[tokio::test]
async fn the_sidecar_serves_metrics_and_new_queues() {
    let redis = RedisServer::start();
    ok(&redis, &["schedule", "early", "--in", "0s"]);
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut sidecar = spawn_promote(&redis, &["--metrics-addr", &addr, "--heartbeat", "10m"]);
    let conn = redis.conn().await;
    eventually(Duration::from_secs(10), "early promoted", || {
        let mut conn = conn.clone();
        async move { conn.llen::<_, u64>("punctual:{early}:ready").await.unwrap() == 1 }
    })
    .await;
    // A queue the sidecar has never heard of: its first job wakes it.
    ok(&redis, &["schedule", "late", "--in", "200ms"]);
    eventually(Duration::from_secs(10), "late promoted", || {
        let mut conn = conn.clone();
        async move { conn.llen::<_, u64>("punctual:{late}:ready").await.unwrap() == 1 }
    })
    .await;

    // The job is in `ready` a moment before the sidecar has recorded promoting it (its
    // figures are updated when the script's reply arrives): scrape until they are in.
    eventually(Duration::from_secs(10), "the promotion counted", || async {
        http_get(port, "/metrics")
            .contains("punctual_promotion_lag_seconds_count{queue=\"late\"} 1")
    })
    .await;
    let metrics = http_get(port, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    for line in [
        "punctual_up 1",
        "punctual_jobs{queue=\"late\",state=\"ready\"} 1",
        "punctual_scheduled_total{queue=\"early\"} 1",
        "punctual_promoted_total{queue=\"late\"} 1",
        "punctual_promotion_lag_seconds_count{queue=\"late\"} 1",
        "punctual_promotion_lag_seconds_bucket{queue=\"late\",le=\"+Inf\"} 1",
        "# TYPE punctual_promotion_lag_seconds histogram",
        "# TYPE punctual_dead_total counter",
        "punctual_oldest_overdue_seconds{queue=\"early\"} 0",
    ] {
        assert!(metrics.contains(line), "{line:?} missing from:\n{metrics}");
    }
    let health = http_get(port, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");
    assert!(http_get(port, "/nope").starts_with("HTTP/1.1 404"));

    let started = std::time::Instant::now();
    terminate(&sidecar);
    assert!(wait_exit(&mut sidecar, Duration::from_secs(5)).success());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "SIGTERM stops the sidecar at once"
    );
}

/// Bad input: a one-line error naming the bad value, exit status 2, and nothing written.
#[tokio::test]
async fn bad_input_exits_2_and_writes_nothing() {
    let redis = RedisServer::start();
    let big = out_dir("big").join("big.json");
    std::fs::write(&big, format!("\"{}\"", "x".repeat(1_100_000))).unwrap();
    let big = big.to_str().unwrap().to_owned();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["schedule", "q", "--in", "soon"], "\"soon\""),
        (vec!["schedule", "q", "--in", "5 parsecs"], "\"5 parsecs\""),
        (
            vec!["schedule", "q", "--at", "tomorrow 9am"],
            "\"tomorrow 9am\"",
        ),
        (
            vec!["schedule", "q", "--at", "2026-11-22T09:00:00"],
            "time zone",
        ),
        (
            vec!["schedule", "q", "--at", "2020-01-01T00:00:00Z"],
            "in the past",
        ),
        (
            vec!["schedule", "q", "--in", "1s", "--data", "{oops"],
            "invalid JSON",
        ),
        (
            vec![
                "schedule",
                "q",
                "--in",
                "1s",
                "--data-file",
                "/no/such/file",
            ],
            "/no/such/file",
        ),
        (
            vec!["schedule", "q", "--in", "1s", "--data-file", &big],
            "exceeds the limit",
        ),
        (vec!["schedule", "q{x}", "--in", "1s"], "invalid queue name"),
        (
            vec!["schedule", "q", "--in", "1s", "--max-attempts", "0"],
            "max-attempts",
        ),
        (vec!["schedule", "q"], "--in"),
        (vec!["ls", "q", "--state", "sleeping"], "sleeping"),
        (vec!["import", "q", "/no/such/file"], "/no/such/file"),
        (vec!["reschedule", "q", "id", "--in", "later"], "\"later\""),
        (vec!["dead", "purge", "q", "--older-than", "old"], "\"old\""),
        (
            vec!["work", "q", "--exec", "true", "--timeout", "forever"],
            "\"forever\"",
        ),
    ];
    for (args, needle) in cases {
        let out = run(&redis, &args, None);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let mut conn = redis.conn().await;
    let keys: Vec<String> = conn.keys("*{q}*").await.unwrap();
    let written: Vec<&String> = keys.iter().filter(|k| !k.ends_with(":meta")).collect();
    assert!(written.is_empty(), "bad input wrote {written:?}");
}

/// A Redis that cannot be used: unreachable, a wrong password, an ACL that refuses the keys.
/// One error line naming the URL without its password, exit status 1, no panic.
#[tokio::test]
async fn a_bad_redis_exits_1_without_the_password() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", ">s3cret", "~other:*", "+@all"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let port = redis.port();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cases = [
        (format!("redis://:hunter2@127.0.0.1:{closed}/"), "refused"),
        (
            format!("redis://app:wrong-pw@127.0.0.1:{port}/"),
            "authentication failed",
        ),
        (
            format!("redis://app:s3cret@127.0.0.1:{port}/"),
            "no permissions",
        ),
    ];
    for (url, needle) in cases {
        for args in [
            vec!["schedule", "q", "--in", "1s"],
            vec!["stats"],
            vec!["promote", "q"],
            vec!["work", "q", "--exec", "true"],
        ] {
            let out = punctual(&redis)
                .env("PUNCTUAL_REDIS_URL", &url)
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            fails(&out, 1, needle);
            let err = stderr(&out);
            assert!(
                err.contains(":***@127.0.0.1"),
                "{args:?}: URL not named: {err}"
            );
            assert!(
                !err.contains("hunter2") && !err.contains("wrong-pw") && !err.contains("s3cret"),
                "{args:?}: password leaked: {err}"
            );
        }
    }
}

/// `--data -` reads the job's data from stdin; it is stored as MessagePack (not JSON text) and
/// shown back as the same JSON.
#[tokio::test]
async fn json_data_is_stored_as_msgpack_and_shown_as_json() {
    let redis = RedisServer::start();
    let data = r#"{"a":[1,2.5,{"b":null}],"s":"ünïcode"}"#;
    let out = run(
        &redis,
        &["schedule", "j", "--in", "1h", "--id", "x", "--data", "-"],
        Some(data),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut conn = redis.conn().await;
    let stored: Vec<u8> = conn.hget("punctual:{j}:jobs", "x").await.unwrap();
    assert!(
        !String::from_utf8_lossy(&stored).contains("\"a\""),
        "no JSON text is stored"
    );
    let shown = json(&ok(&redis, &["show", "j", "x", "--json"]));
    assert_eq!(shown["data"], json(data));
    let text = ok(&redis, &["show", "j", "x"]);
    assert!(
        text.contains("ünïcode") && text.contains("scheduled"),
        "{text}"
    );
}

/// Reading never writes: `show`, `ls` and `stats` of a queue that does not exist (a typo, a
/// wrong --prefix) say so and leave Redis empty. `queue rm` refuses a queue with jobs unless
/// --force, then deletes every key of it and its registry entry.
#[tokio::test]
async fn reads_create_nothing_and_queue_rm_removes_a_queue() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    fails(
        &run(&redis, &["show", "typo", "some-id"], None),
        1,
        "no queue \"typo\"",
    );
    let listed = run(&redis, &["ls", "typo"], None);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert_eq!(stdout(&listed).lines().count(), 1, "a header, no rows");
    fails(
        &run(&redis, &["stats", "typo"], None),
        1,
        "no queue \"typo\"",
    );
    fails(
        &run(&redis, &["cancel", "typo", "x"], None),
        1,
        "no queue \"typo\"",
    );
    fails(
        &run(&redis, &["dead", "purge", "typo", "--all"], None),
        1,
        "no queue \"typo\"",
    );
    let empty = ok(&redis, &["--prefix", "typo", "stats"]);
    assert!(empty.contains("no queues"), "{empty}");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "reads wrote {keys:?}");

    ok(&redis, &["schedule", "real", "--in", "1h", "--id", "a"]);
    // A job with an expiry has an entry in `opts`: removed with the rest.
    ok(
        &redis,
        &[
            "schedule",
            "real",
            "--in",
            "1h",
            "--id",
            "x",
            "--max-lateness",
            "1m",
        ],
    );
    ok(&redis, &["schedule", "other", "--in", "1h", "--id", "b"]);
    fails(
        &run(&redis, &["queue", "rm", "real"], None),
        1,
        "holds 2 jobs",
    );
    assert_eq!(
        conn.hlen::<_, u64>("punctual:{real}:jobs").await.unwrap(),
        2
    );
    assert_eq!(
        conn.hlen::<_, u64>("punctual:{real}:opts").await.unwrap(),
        1
    );
    let removed = ok(&redis, &["queue", "rm", "real", "--force"]);
    assert!(removed.contains("removed queue \"real\""), "{removed}");
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    assert!(
        keys.iter().all(|k| !k.contains("{real}")),
        "left behind: {keys:?}"
    );
    let registry: Vec<String> = conn.smembers("punctual:queues").await.unwrap();
    assert_eq!(registry, vec!["other".to_owned()]);
    fails(&run(&redis, &["queue", "rm", "real"], None), 1, "no queue");
}

/// A Redis that wants a password and gets none, and a Redis out of memory, are typed,
/// one-line errors (they used to print a raw list of pipeline failures). An import that runs
/// out of memory says exactly which lines were written, and its resume command, run as
/// printed, schedules exactly the rest: no job twice, none missing.
#[tokio::test]
async fn noauth_and_oom_are_one_line_and_an_import_resumes_exactly() {
    let redis = RedisServer::start_standalone();
    let dir = out_dir("oom-import");
    let file = dir.join("jobs.ndjson");
    let lines: Vec<String> = (0..30_000)
        .map(|i| {
            format!(
                r#"{{"in":"1h","data":{{"n":{i},"pad":"{}"}}}}"#,
                "x".repeat(100)
            )
        })
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let mut conn = redis.conn().await;

    // Out of memory: a little room above what an empty server uses.
    support::limit_memory(&mut conn, 2_000_000).await;
    let out = run(&redis, &["import", "big", file.to_str().unwrap()], None);
    fails(&out, 1, "out of memory");
    let err = stderr(&out);
    assert!(!err.contains("Pipeline failures"), "{err}");
    let written: u64 = conn.hlen("punctual:{big}:jobs").await.unwrap();
    assert!(written > 0 && written < 30_000, "{written}");
    assert!(
        err.contains(&format!("import stopped: {written} jobs were scheduled")),
        "the report counts exactly what Redis holds ({written}): {err}"
    );
    // A single schedule into a full server: full for certain, below what it holds (how far
    // the import's last write went past the limit, and what its connection freed on closing,
    // decide whether one more small job would fit).
    support::config_set(&mut conn, "maxmemory", "1000000").await;
    fails(
        &run(&redis, &["schedule", "big", "--in", "1h"], None),
        1,
        "out of memory",
    );

    // Room again: the printed resume command schedules exactly the rest.
    support::config_set(&mut conn, "maxmemory", "0").await;
    let resume = err
        .split("To resume without duplicates: ")
        .nth(1)
        .expect("a resume command")
        .trim()
        .replace(
            "punctual import",
            &format!("{} import", env!("CARGO_BIN_EXE_punctual")),
        );
    let resumed = std::process::Command::new("sh")
        .arg("-c")
        .arg(&resume)
        .env("PUNCTUAL_REDIS_URL", redis.url())
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{resume}: {resumed:?}");
    assert_eq!(
        conn.hlen::<_, u64>("punctual:{big}:jobs").await.unwrap(),
        30_000
    );
    let mut seen = std::collections::HashSet::new();
    let ids: Vec<String> = conn.hkeys("punctual:{big}:jobs").await.unwrap();
    let queue = punctual::Queue::connect(&redis.url(), "big").await.unwrap();
    for id in ids.iter().step_by(97) {
        let data: serde_json::Value = queue
            .get(id)
            .await
            .unwrap()
            .expect("the job exists")
            .data_as()
            .unwrap();
        assert!(
            seen.insert(data["n"].as_u64().unwrap()),
            "a line twice: {data}"
        );
    }

    // A password the server wants and the URL lacks.
    support::config_set(&mut conn, "requirepass", "sekret").await;
    for args in [
        vec!["schedule", "q", "--in", "1s"],
        vec!["show", "q", "x"],
        vec!["stats"],
    ] {
        let out = run(&redis, &args, None);
        fails(&out, 1, "refused the credentials");
        assert!(!stderr(&out).contains("Pipeline failures"), "{args:?}");
    }
}

/// A cluster node that has not joined a cluster (no slots) is a one-line error naming the
/// cluster's state, before any key is read or written.
#[tokio::test]
async fn a_cluster_that_is_not_ready_is_refused_before_anything_is_written() {
    let redis = RedisServer::start_cluster_node();
    for args in [
        vec!["schedule", "q", "--in", "1s"],
        vec!["show", "q", "x"],
        vec!["ls", "q"],
        vec!["stats"],
        vec!["queue", "rm", "q"],
    ] {
        fails(
            &run(&redis, &args, None),
            1,
            "cluster_state:fail, 0 of 16384 slots",
        );
    }
    let mut conn = redis.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

/// A promoter and a worker whose log nobody reads any more (stderr a pipe whose reader went
/// away, as when a log collector dies) run on and stop on SIGTERM with status 0. A log line
/// that could not be written used to panic the task that wrote it; at SIGTERM that was the
/// one that stops the process, which then never stopped.
#[tokio::test]
async fn a_lost_log_pipe_neither_kills_work_nor_blocks_sigterm() {
    let redis = RedisServer::start();
    let limit = Duration::from_secs(15);
    let mut promote = punctual(&redis);
    promote.args(["promote", "deaf"]);
    let mut promoter = spawn_then_close_stderr(promote, "promoter started", limit);
    let mut work = punctual(&redis);
    work.args(["work", "deaf", "--exec", "echo no >&2; exit 3"]);
    let mut worker = spawn_then_close_stderr(work, "worker started", limit);

    // The failure is logged (a warning, to the closed pipe) and the job is still buried.
    ok(
        &redis,
        &[
            "schedule",
            "deaf",
            "--in",
            "0s",
            "--id",
            "f",
            "--max-attempts",
            "1",
        ],
    );
    let mut conn = redis.conn().await;
    eventually(limit, "the failed job dead", || {
        let mut conn = conn.clone();
        async move {
            let dead: u64 = conn.zcard("punctual:{deaf}:dead").await.unwrap();
            dead == 1
        }
    })
    .await;
    let dead: String = conn
        .zrange("punctual:{deaf}:dead", 0, 0)
        .await
        .map(|v: Vec<String>| v.concat())
        .unwrap();
    assert_eq!(dead, "f");

    for child in [&mut promoter, &mut worker] {
        terminate(child);
        let status = exit_within(child, limit);
        assert!(
            status.is_some_and(|s| s.success()),
            "{status:?} within {limit:?} of SIGTERM"
        );
    }
}

/// `punctual ls q | head -1`: when the reader of the output goes away the command ends
/// quietly with status 0 (it used to panic with a backtrace); a full disk is one error line
/// and status 1.
#[tokio::test]
async fn a_closed_output_pipe_ends_a_command_quietly() {
    use std::io::{BufRead, Read};
    let redis = RedisServer::start();
    // About 250 KB of listing: far more than a pipe holds, so writes meet the closed end.
    let lines: String = (0..3000)
        .map(|i| format!("{{\"id\":\"job-{i}\",\"in\":\"1h\",\"data\":{{\"n\":{i}}}}}\n"))
        .collect();
    let imported = run(&redis, &["import", "big", "-"], Some(&lines));
    assert!(imported.status.success(), "{}", stderr(&imported));

    let mut ls = punctual(&redis)
        .args(["ls", "big", "--limit", "3000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(ls.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("ID "), "{first}");
    // The read end is closed here, with most of the listing unread.
    let status = exit_within(&mut ls, Duration::from_secs(15));
    let mut err = String::new();
    ls.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{err}");
    assert_eq!(err, "");

    let full = punctual(&redis)
        .args(["ls", "big", "--limit", "3000"])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    fails(&full, 1, "cannot write the output");
}
