//! The cross-language contract, in the language it is documented in: the README's Python
//! producer and reader, taken from README.md as they stand (so the documentation cannot drift
//! from the scripts again), run against a real redis-server with redis-py and msgpack.
//! - Jobs the Python producer schedules are run by a Rust worker with their data intact; an id
//!   scheduled twice is reported as not created; the queue is registered.
//! - The Python reader decodes a job the Rust library wrote.
//!
//! Python comes from `PUNCTUAL_PYTHON`, or the repository's `.venv` that `.ci/run` (and the
//! README's set-up) makes with `tests/python/requirements.txt`. Without one, the test fails
//! and says how to make it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use punctual::{Job, JobState, NewJob, Queue, WorkerConfig};
use redis::AsyncCommands;
use serde_json::{json, Value};
use support::{run_jobs, RedisServer};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python interpreter with redis-py and msgpack, or a failure that says how to get one.
fn python() -> PathBuf {
    let python = std::env::var_os("PUNCTUAL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    let works = Command::new(&python)
        .args(["-c", "import redis, msgpack"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        works,
        "{} cannot import redis and msgpack. Make the test venv from the repository root:\n  \
         python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt\n\
         or point PUNCTUAL_PYTHON at a Python that has them.",
        python.display()
    );
    python
}

/// The `n`-th ```python block of README.md.
fn readme_python(n: usize) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("read README.md");
    readme
        .split("```python\n")
        .nth(n + 1)
        .and_then(|block| block.split("```").next())
        .unwrap_or_else(|| panic!("README.md has no python block {n}"))
        .to_owned()
}

/// Runs the README's producer and reader, then `driver`, with `args`; returns the last line
/// of stdout as JSON.
fn run_python(redis: &RedisServer, driver: &str, args: &[&str]) -> Value {
    let script = format!("{}\n{}\n{driver}\n", readme_python(0), readme_python(1));
    let out = Command::new(python())
        .arg("-c")
        .arg(&script)
        .args(args)
        .current_dir(repo())
        .env("PUNCTUAL_REDIS_URL", redis.url())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// The README's Python producer schedules jobs that a Rust worker runs with their data
/// intact, and the README's Python reader decodes a job the Rust library wrote.
#[tokio::test]
async fn python_producer_and_reader_speak_the_layout() {
    let redis = RedisServer::start_standalone();
    let rust_queue = Queue::connect(&redis.url(), "rust").await.unwrap();
    let written = json!({"to": "ada@example.com", "n": 3, "tags": ["a", "b"]});
    let rust_id = rust_queue
        .schedule(
            NewJob::new(&written)
                .delay(Duration::from_secs(3600))
                .max_attempts(4),
        )
        .await
        .unwrap()
        .id;

    let driver = r#"
import json, sys
data = lambda i: {"to": f"user{i}@example.com", "n": i, "tags": ["x", "y"],
                  "nested": {"ratio": 1.5, "ok": True, "none": None}}
scheduled = [schedule_job("py", data(i), 0, job_id=f"py-{i}") for i in range(3)]
scheduled.append(schedule_job("py", {"again": True}, 0, job_id="py-0"))
print(json.dumps({"scheduled": scheduled, "read": read_job("rust", sys.argv[1]),
                  "missing": read_job("rust", "no-such-job")}))
"#;
    let out = run_python(&redis, driver, &[&rust_id]);

    // The reader.
    assert_eq!(out["read"]["data"], written, "{out}");
    assert_eq!(out["read"]["max_attempts"], 4);
    let info = rust_queue
        .get(&rust_id)
        .await
        .unwrap()
        .expect("the job exists");
    assert_eq!(out["read"]["kind"], json!(info.kind.unwrap()));
    assert_eq!(out["missing"], Value::Null);

    // The producer: three created, the repeated id not.
    assert_eq!(
        out["scheduled"],
        json!([
            ["py-0", true],
            ["py-1", true],
            ["py-2", true],
            ["py-0", false]
        ])
    );
    let mut conn = redis.conn().await;
    let registered: Vec<String> = conn.smembers("punctual:queues").await.unwrap();
    assert!(
        registered.contains(&"py".to_owned()) && registered.contains(&"emails".to_owned()),
        "{registered:?}"
    );
    // The README's own example call: due in 90 s by the server's clock.
    let emails = Queue::connect(&redis.url(), "emails").await.unwrap();
    let listed = emails.list(JobState::Scheduled, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    let due = listed[0].due_at.expect("a due time");
    let wait = due
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        wait > Duration::from_secs(60) && wait <= Duration::from_secs(91),
        "{wait:?}"
    );

    // A Rust worker runs the Python jobs with their data intact.
    let queue = Queue::connect(&redis.url(), "py").await.unwrap();
    let mut jobs = run_jobs::<Value>(&queue, WorkerConfig::default());
    let mut seen = Vec::new();
    for _ in 0..3 {
        let job: Job<Value> = jobs.next().await;
        seen.push((job.id.clone(), job.data.clone()));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (id, data)) in seen.iter().enumerate() {
        assert_eq!(id, &format!("py-{i}"));
        assert_eq!(
            data,
            &json!({"to": format!("user{i}@example.com"), "n": i, "tags": ["x", "y"],
                    "nested": {"ratio": 1.5, "ok": true, "none": null}})
        );
    }
    jobs.stop().await;
}

/// The README's producer with a priority: Rust reads it back and ranks the jobs by it.
#[tokio::test]
async fn python_priorities_rank_the_jobs() {
    let redis = RedisServer::start_standalone();
    let driver = r#"
import json
out = [schedule_job("ranked", {"i": i}, 0, job_id=f"j{i}", priority=p)
       for i, p in enumerate([-1, 0, 4])]
print(json.dumps(out))
"#;
    let out = run_python(&redis, driver, &[]);
    assert_eq!(out, json!([["j0", true], ["j1", true], ["j2", true]]));
    let queue = Queue::connect(&redis.url(), "ranked").await.unwrap();
    let priorities: Vec<i8> =
        futures_util::future::join_all(["j0", "j1", "j2"].map(|id| queue.get(id)))
            .await
            .into_iter()
            .map(|info| info.unwrap().unwrap().priority)
            .collect();
    assert_eq!(priorities, [-1, 0, 4]);
    punctual::Promoter::promote(&queue, 10).await.unwrap();
    let order: Vec<String> = queue
        .list(JobState::Ready, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(order, ["j2", "j1", "j0"]);
}

/// The layout doc's `EVALSHA` line, sent as written (placeholders filled in), schedules a job
/// a Rust worker runs: its key count and argument order match `lua/schedule.lua`.
#[tokio::test]
async fn the_layout_docs_evalsha_line_schedules_a_job() {
    let layout = std::fs::read_to_string(repo().join("docs/layout.md")).unwrap();
    let line = layout
        .lines()
        .find(|l| l.starts_with("EVALSHA <sha1 of schedule.lua>"))
        .expect("docs/layout.md has the EVALSHA line");
    let redis = RedisServer::start_standalone();
    let mut conn = redis.conn().await;
    let source = std::fs::read_to_string(repo().join("lua/schedule.lua")).unwrap();
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(&source)
        .query_async(&mut conn)
        .await
        .unwrap();
    /// The envelope as docs/layout.md describes it.
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        v: u8,
        k: &'a str,
        #[serde(with = "serde_bytes")]
        d: &'a [u8],
        c: u64,
    }
    let data = rmp_serde::to_vec_named(&json!({"from": "the layout doc"})).unwrap();
    let envelope = rmp_serde::to_vec_named(&Envelope {
        v: 1,
        k: "json",
        d: &data,
        c: 0,
    })
    .unwrap();
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(&sha);
    let args = line.strip_prefix("EVALSHA <sha1 of schedule.lua>").unwrap();
    for token in args.replace("<delay ms>", "0").split_whitespace() {
        if token == "<options>" {
            cmd.arg("");
            continue;
        }
        match token {
            "<id>" => cmd.arg("from-doc"),
            "<envelope>" => cmd.arg(&envelope),
            other => cmd.arg(other.replace("p:{q}:", "punctual:{doc}:")),
        };
    }
    let reply: Vec<i64> = cmd.query_async(&mut conn).await.unwrap();
    assert_eq!(reply.get(1), Some(&1), "created: {reply:?}");

    let queue = Queue::connect(&redis.url(), "doc").await.unwrap();
    let mut jobs = run_jobs::<Value>(&queue, WorkerConfig::default());
    let job = jobs.next().await;
    assert_eq!(
        (job.id.as_str(), job.data),
        ("from-doc", json!({"from": "the layout doc"}))
    );
    jobs.stop().await;
}

/// docs/layout.md's Python `partition_tag` (with redis-py's `key_slot`) names the same
/// partitions as the library, and `key_slot(id) % K` puts a job in the same partition, so a
/// producer in Python finds a partitioned queue's keys.
#[test]
fn the_documented_python_partition_tag_matches_the_library() {
    let layout = std::fs::read_to_string(repo().join("docs/layout.md")).expect("read layout.md");
    let block = layout
        .split("```python\n")
        .find(|b| b.contains("def partition_tag"))
        .and_then(|b| b.split("```").next())
        .expect("docs/layout.md has the python partition_tag");
    // The block is indented inside a list item: dedent it.
    let indent = block
        .lines()
        .find(|l| !l.trim().is_empty())
        .map_or(0, |l| l.len() - l.trim_start().len());
    let code: String = block
        .lines()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let cases = [
        ("emails", 3u16, 8u16),
        ("reminders", 0, 24),
        ("a:b.c", 1023, 1024),
        ("q", 1, 2),
    ];
    let mut calls: Vec<String> = cases
        .iter()
        .map(|(q, i, k)| format!("print(partition_tag({q:?}, {i}, {k}))"))
        .collect();
    // A job's partition, as docs/layout.md says to compute it: key_slot(id) % K.
    let ids = ["01JD5", "order-17{customer-4}", "x{}{y}", "{a}b"];
    calls.extend(
        ids.iter()
            .map(|id| format!("print(key_slot({id:?}.encode()) % 12)")),
    );
    let out = Command::new(python())
        .arg("-c")
        .arg(format!("{code}\n{}\n", calls.join("\n")))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let mut expected: Vec<String> = cases
        .iter()
        .map(|(q, i, k)| punctual::keys::partition_tag(q, *i, *k))
        .collect();
    expected.extend(
        ids.iter()
            .map(|id| punctual::keys::partition_of(id, 12).to_string()),
    );
    assert_eq!(printed.lines().collect::<Vec<_>>(), expected);
}
