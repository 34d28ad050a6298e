//! Recurring schedules: every occurrence created exactly once by any number of promoters,
//! misfire policies, edits, pause, resume and removal, occurrences sharing the schedule's id,
//! and `punctual cron`. Runs against one server, and against a cluster under
//! `PUNCTUAL_TEST_CLUSTER=1`. Time zones and daylight-saving changes are tested in
//! `src/cron.rs` (pure functions).

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use punctual::{
    Event, JobState, Misfire, Namespace, NewJob, OnConflict, Outcome, Queue, QueueConfig, Schedule,
    WorkerConfig, MAX_LIST,
};
use support::cli::*;
use support::{all_keys, eventually, server_ms, spawn_promoter, spawn_worker, total, RedisServer};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(30);

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn ms_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The fire time (ms) an occurrence id names, if `id` is an occurrence of `schedule`.
fn fire_of(schedule: &str, id: &str) -> Option<u64> {
    let time = id
        .strip_prefix(&format!("{{{schedule}}}@"))
        .or_else(|| id.strip_prefix(&format!("{schedule}@")))?;
    let ts: jiff::Timestamp = time.parse().ok()?;
    Some(ts.as_millisecond() as u64)
}

/// Fire time → (state, data) of every waiting occurrence of `schedule` (scheduled or
/// ready).
async fn waiting(queue: &Queue, schedule: &str) -> HashMap<u64, (JobState, serde_json::Value)> {
    let mut out = HashMap::new();
    for state in [JobState::Scheduled, JobState::Ready] {
        for job in queue.list(state, MAX_LIST).await.unwrap() {
            if let Some(fire) = fire_of(schedule, &job.id) {
                let data = job
                    .data
                    .as_deref()
                    .map(|d| rmp_serde::from_slice(d).unwrap())
                    .unwrap_or_default();
                // Listed twice if it was promoted between the two reads: one job.
                out.insert(fire, (job.state, data));
            }
        }
    }
    out
}

/// Asserts that `fires` are exactly `first`, `first + step`, ... (none missing, none twice).
fn assert_contiguous(what: &str, fires: &[u64], first: u64, step: u64) {
    assert!(!fires.is_empty(), "{what}: none");
    let expected: Vec<u64> = (0..fires.len() as u64).map(|k| first + k * step).collect();
    assert_eq!(fires, expected, "{what}");
}

/// Two, then five promoters serve the same schedules at once: an hour of missed fire times
/// (every 4 s, misfire `all`: 900 occurrences, created in chunks while they race) and live
/// ones every second, on a queue of 4 partitions. Every occurrence runs exactly once, none is
/// missing, and the event totals count each creation once. The dedup window is off, so an
/// occurrence's id is free again the moment it has run: only the schedule's compare-and-set
/// keeps a promoter that read the schedule before another created (and a worker ran) its
/// occurrences from creating them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_and_five_promoters_create_each_occurrence_once() {
    let redis = RedisServer::start();
    let config = QueueConfig::default().set_dedup_window(Duration::ZERO);
    let ns = Namespace::connect(&redis.url(), config).await.unwrap();
    let mut conn = redis.conn().await;
    for promoters in [2usize, 5] {
        let queue = ns
            .create_queue(&format!("race{promoters}"), 4)
            .await
            .unwrap();
        let now = server_ms(&mut conn).await;
        let hour_ago = now - 3_600_000;
        let schedules = [
            Schedule::every("hour", Duration::from_secs(4), NewJob::new(&"h"))
                .start(at(hour_ago))
                .misfire(Misfire::All),
            Schedule::cron("tick", "* * * * * *", NewJob::new(&"t")).start(at(now)),
            Schedule::every("b{x}", Duration::from_secs(1), NewJob::new(&"b")).start(at(now)),
        ];
        for schedule in schedules {
            assert!(queue.upsert_schedule(schedule).await.unwrap());
        }
        let runs = Arc::new(Mutex::new(Vec::<String>::new()));
        let (stop_workers, stop_promoters) = (CancellationToken::new(), CancellationToken::new());
        let seen = runs.clone();
        let worker = spawn_worker(
            &queue,
            WorkerConfig::default().set_concurrency(64),
            &stop_workers,
            move |job: punctual::Job<String>, _| {
                seen.lock().unwrap().push(job.id);
                async { Outcome::Done }
            },
        );
        let racing: Vec<_> = (0..promoters)
            .map(|_| spawn_promoter(&queue, Duration::from_secs(1), &stop_promoters))
            .collect();
        let count = |prefix: &'static str| {
            let runs = runs.clone();
            move || {
                let n = runs
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|id| id.starts_with(prefix))
                    .count();
                async move { n }
            }
        };
        let (hour, tick, tagged) = (count("{hour}@"), count("{tick}@"), count("b{x}@"));
        eventually(
            LIMIT,
            "the missed hour ran and 4 live seconds passed",
            || {
                let (hour, tick, tagged) = (hour(), tick(), tagged());
                async move { hour.await >= 901 && tick.await >= 4 && tagged.await >= 4 }
            },
        )
        .await;
        // Removing the schedules takes back what waits for its fire time; the rest runs.
        for id in ["hour", "tick", "b{x}"] {
            assert!(queue.remove_schedule(id).await.unwrap());
        }
        eventually(LIMIT, "every occurrence created ran", || async {
            let c = queue.stats().await.unwrap().counts;
            c.scheduled + c.ready + c.running == 0
        })
        .await;
        stop_promoters.cancel();
        for p in racing {
            p.await.unwrap().unwrap();
        }
        stop_workers.cancel();
        worker.await.unwrap().unwrap();

        let runs = runs.lock().unwrap().clone();
        let distinct: BTreeSet<&String> = runs.iter().collect();
        assert_eq!(distinct.len(), runs.len(), "an occurrence ran twice");
        for (id, first, step) in [
            ("hour", Some(hour_ago), 4000),
            ("tick", None, 1000),
            ("b{x}", Some(now), 1000),
        ] {
            let mut fires: Vec<u64> = runs.iter().filter_map(|r| fire_of(id, r)).collect();
            fires.sort_unstable();
            // A cron of every second fires on the first whole second from its start.
            let first = first.unwrap_or(now.div_ceil(1000) * 1000);
            assert_contiguous(
                &format!("{id} with {promoters} promoters"),
                &fires,
                first,
                step,
            );
        }
        let created = total(&queue, Event::Scheduled).await;
        let taken_back = total(&queue, Event::Cancelled).await;
        assert_eq!(
            created,
            runs.len() as u64 + taken_back,
            "creations counted once"
        );
        assert_eq!(total(&queue, Event::Completed).await, runs.len() as u64);
        assert!(queue.list_schedules().await.unwrap().is_empty());
    }
}

/// After an outage (here: schedules whose start lies 95 s back), `all` runs every missed
/// fire time, `once` the latest, `skip` none; each then goes on with the next fire time. An
/// end time stops a schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misfire_policies_and_the_end() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.queue("misfire").await.unwrap();
    let mut conn = redis.conn().await;
    let start = server_ms(&mut conn).await - 95_000;
    let every = Duration::from_secs(10);
    for policy in [Misfire::All, Misfire::Once, Misfire::Skip] {
        let schedule = Schedule::every(policy.as_str(), every, NewJob::new(&policy.as_str()))
            .start(at(start))
            .misfire(policy);
        queue.upsert_schedule(schedule).await.unwrap();
    }
    let ends = Schedule::every("ends", every, NewJob::new(&0))
        .start(at(start))
        .end(at(start + 95_000))
        .misfire(Misfire::All);
    queue.upsert_schedule(ends).await.unwrap();
    let stop = CancellationToken::new();
    let promoter = spawn_promoter(&queue, Duration::from_secs(1), &stop);
    // The next fire time (start + 100 s, 5 s from now) lies within the horizon: each
    // schedule but the ended one creates it.
    for policy in ["all", "once", "skip"] {
        eventually(LIMIT, "the next occurrence is created", || async {
            waiting(&queue, policy)
                .await
                .contains_key(&(start + 100_000))
        })
        .await;
    }
    stop.cancel();
    promoter.await.unwrap().unwrap();

    let fires = |m: HashMap<u64, _>| {
        let mut v: Vec<u64> = m.into_keys().collect();
        v.sort_unstable();
        v
    };
    let all = fires(waiting(&queue, "all").await);
    assert_contiguous("all", &all, start, 10_000);
    assert_eq!(all.last(), Some(&(start + 100_000)));
    assert_eq!(
        fires(waiting(&queue, "once").await),
        [start + 90_000, start + 100_000]
    );
    assert_eq!(fires(waiting(&queue, "skip").await), [start + 100_000]);
    let ended = fires(waiting(&queue, "ends").await);
    assert_contiguous("ends", &ended, start, 10_000);
    assert_eq!(ended.last(), Some(&(start + 90_000)));
    let info = queue.get_schedule("ends").await.unwrap().unwrap();
    assert_eq!(info.next_fire, None);
    // The missed ones are due at once: they are promoted, not left behind.
    let once = waiting(&queue, "once").await;
    assert!(matches!(
        once[&(start + 90_000)].0,
        JobState::Ready | JobState::Scheduled
    ));
}

/// After a stopped sidecar. Three schedules every 2 s (`all`, `once`, `skip`) are served by a
/// promoter until their occurrences are created ahead, then no promoter runs until fire times
/// past the last created one are missed (more than the 10 s horizon). A new promoter, started
/// 1 s after a fire time F, then creates, after the last occurrence created before: every
/// missed one (`all`), only F (`once`), none (`skip`), and goes on from F + 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misfire_policies_after_a_stopped_sidecar() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.queue("outage").await.unwrap();
    let mut conn = redis.conn().await;
    let start = server_ms(&mut conn).await + 1000;
    let policies = [Misfire::All, Misfire::Once, Misfire::Skip];
    for policy in policies {
        let schedule = Schedule::every(policy.as_str(), Duration::from_secs(2), NewJob::new(&0))
            .start(at(start))
            .misfire(policy);
        queue.upsert_schedule(schedule).await.unwrap();
    }
    let last = |queue: &Queue, id: &'static str| {
        let queue = queue.clone();
        async move {
            let info = queue.get_schedule(id).await.unwrap().unwrap();
            info.last_fire.map(ms_of)
        }
    };
    let stop = CancellationToken::new();
    let promoter = spawn_promoter(&queue, Duration::from_secs(1), &stop);
    eventually(LIMIT, "occurrences created ahead", || async {
        let mut ahead = true;
        for p in policies {
            ahead &= last(&queue, p.as_str()).await >= Some(start + 8000);
        }
        ahead
    })
    .await;
    stop.cancel();
    promoter.await.unwrap().unwrap();
    let mut created_before = HashMap::new();
    for p in policies {
        created_before.insert(p.as_str(), last(&queue, p.as_str()).await.unwrap());
    }
    let latest = *created_before.values().max().unwrap();
    // The outage: until fire times after the last created are missed, and then 1 s after a
    // fire time F (so that F is the latest missed one when the new promoter looks).
    let outage = conn.clone();
    eventually(
        Duration::from_secs(40),
        "an outage past the horizon",
        || {
            let mut conn = outage.clone();
            async move {
                let now = server_ms(&mut conn).await;
                now > latest + 5500 && (1000..1400).contains(&((now - start) % 2000))
            }
        },
    )
    .await;
    let resumed = server_ms(&mut conn).await;
    let fire = start + (resumed - start) / 2000 * 2000;
    let stop = CancellationToken::new();
    let promoter = spawn_promoter(&queue, Duration::from_secs(1), &stop);
    eventually(LIMIT, "the new promoter caught up", || async {
        let mut caught_up = true;
        for p in policies {
            caught_up &= last(&queue, p.as_str()).await > Some(resumed);
        }
        caught_up
    })
    .await;
    stop.cancel();
    promoter.await.unwrap().unwrap();
    for p in policies {
        let before = created_before[p.as_str()];
        let mut after: Vec<u64> = waiting(&queue, p.as_str())
            .await
            .into_keys()
            .filter(|&t| t > before)
            .collect();
        after.sort_unstable();
        let first = match p {
            Misfire::All => before + 2000,
            Misfire::Once => fire,
            _ => fire + 2000,
        };
        assert!(
            fire > before + 2000,
            "the outage missed more than one fire time"
        );
        assert_contiguous(
            &format!("{} after the outage", p.as_str()),
            &after,
            first,
            2000,
        );
    }
}

/// An edit takes effect from the next occurrence not yet created; a pause takes back the
/// occurrences that wait for their fire time and creates none; a resume goes on from now
/// (nothing for the paused span); a removal takes back what waits and leaves no schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_pause_resume_and_remove() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.create_queue("edits", 3).await.unwrap();
    let mut conn = redis.conn().await;
    let every = Duration::from_secs(1);
    let v = |n: u32| Schedule::every("e", every, NewJob::new(&serde_json::json!({ "v": n })));
    assert!(queue.upsert_schedule(v(1)).await.unwrap());
    let stop = CancellationToken::new();
    let promoter = spawn_promoter(&queue, Duration::from_secs(1), &stop);
    eventually(LIMIT, "occurrences are created ahead", || async {
        waiting(&queue, "e").await.len() >= 8
    })
    .await;
    let first = waiting(&queue, "e").await;
    let last_v1 = *first.keys().max().unwrap();

    // Edit: the data changes from the next occurrence not created yet.
    assert!(
        !queue.upsert_schedule(v(2)).await.unwrap(),
        "an edit, not an add"
    );
    eventually(LIMIT, "an occurrence of the edited schedule", || async {
        waiting(&queue, "e").await.keys().any(|&t| t > last_v1)
    })
    .await;
    for (fire, (_, data)) in waiting(&queue, "e").await {
        let expected = if fire <= last_v1 { 1 } else { 2 };
        assert_eq!(
            data["v"], expected,
            "fire time {fire} (last of v1 {last_v1})"
        );
    }

    // Pause: what waits for its fire time is taken back; nothing new is created.
    assert!(queue.pause_schedule("e").await.unwrap());
    let paused_at = server_ms(&mut conn).await;
    assert!(queue.get_schedule("e").await.unwrap().unwrap().paused);
    let ahead = |after: u64| {
        let queue = queue.clone();
        async move {
            waiting(&queue, "e")
                .await
                .into_keys()
                .filter(|&t| t > after)
                .count()
        }
    };
    assert_eq!(ahead(paused_at).await, 0, "waiting occurrences taken back");
    // A paused schedule is out of the promoters' passes.
    let tag = punctual::keys::partition_tag("edits", punctual::keys::partition_of("e", 3), 3);
    let next_pass = |conn: &mut support::TestConn| {
        let mut conn = conn.clone();
        let key = format!("punctual:{{{tag}}}:cron_due");
        async move {
            let score: Option<u64> = redis::cmd("ZSCORE")
                .arg(key)
                .arg("e")
                .query_async(&mut conn)
                .await
                .unwrap();
            score
        }
    };
    assert_eq!(next_pass(&mut conn).await, None);
    // Two heartbeats of the promoter: still none.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        ahead(paused_at).await,
        0,
        "a paused schedule created occurrences"
    );

    // Resume: from now on; the paused span stays empty.
    let resumed_at = server_ms(&mut conn).await;
    assert!(queue.resume_schedule("e").await.unwrap());
    let next = next_pass(&mut conn)
        .await
        .expect("a resumed schedule is passed again");
    // Its next pass is due at once, unless the promoter (woken by the resume) already made
    // that pass and moved it on, which left occurrences after the resume.
    let passed = ahead(resumed_at).await > 0;
    assert!(
        next > resumed_at && (next <= resumed_at + 1500 || passed),
        "{next} vs {resumed_at}"
    );
    eventually(LIMIT, "occurrences after the resume", || async {
        ahead(resumed_at + 5000).await > 0
    })
    .await;
    let in_pause = waiting(&queue, "e")
        .await
        .into_keys()
        .filter(|&t| t > paused_at && t <= resumed_at)
        .count();
    assert_eq!(in_pause, 0, "fire times of the pause were created");

    // Remove: what waits for its fire time goes, and nothing comes back.
    assert!(queue.remove_schedule("e").await.unwrap());
    let removed_at = server_ms(&mut conn).await;
    assert_eq!(ahead(removed_at).await, 0);
    assert!(queue.list_schedules().await.unwrap().is_empty());
    assert!(!queue.remove_schedule("e").await.unwrap());
    assert!(!queue.pause_schedule("e").await.unwrap());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        ahead(removed_at).await,
        0,
        "a removed schedule created occurrences"
    );
    assert!(total(&queue, Event::Cancelled).await > 0);
    stop.cancel();
    promoter.await.unwrap().unwrap();
    let left: Vec<String> = all_keys(&redis)
        .await
        .into_iter()
        .filter(|k| k.contains(":cron"))
        .collect();
    assert!(left.is_empty(), "a removed schedule left {left:?}");
}

/// With a conflict mode, occurrences share the schedule's id: at most one waits, and a new
/// one replaces one that was not taken yet (no pile-up behind a stopped worker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occurrences_with_a_conflict_mode_share_the_schedules_id() {
    let redis = RedisServer::start();
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.queue("shared").await.unwrap();
    let job = NewJob::new(&"sync").on_conflict(OnConflict::Replace);
    queue
        .upsert_schedule(Schedule::every("sync", Duration::from_secs(1), job))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let promoter = spawn_promoter(&queue, Duration::from_secs(1), &stop);
    // No worker: occurrences come due and the next replaces the one not taken.
    eventually(LIMIT, "three occurrences", || async {
        total(&queue, Event::Scheduled).await >= 1 && {
            let info = queue.get_schedule("sync").await.unwrap().unwrap();
            let start = ms_of(info.start);
            info.last_fire.is_some_and(|t| ms_of(t) >= start + 3000)
        }
    })
    .await;
    let c = queue.stats().await.unwrap().counts;
    assert_eq!(c.scheduled + c.ready, 1, "{c:?}");
    assert!(queue.get("sync").await.unwrap().is_some());
    // A worker takes it; the next fire time makes a new one.
    let ran = Arc::new(Mutex::new(0u32));
    let seen = ran.clone();
    let worker = spawn_worker(
        &queue,
        WorkerConfig::default(),
        &stop,
        move |job: punctual::Job<String>, _| {
            assert_eq!(job.id, "sync");
            *seen.lock().unwrap() += 1;
            async { Outcome::Done }
        },
    );
    eventually(LIMIT, "two runs", || async { *ran.lock().unwrap() >= 2 }).await;
    stop.cancel();
    promoter.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
}

/// The compare-and-set that makes creation exactly once, at the protocol level: a
/// `schedule.lua` call whose guard names a state the schedule no longer has (a promoter that
/// read it before another promoter, an edit, a pause or a removal changed it) writes nothing
/// and answers `{now, -2}`; with the state the schedule has, it writes the occurrence, the
/// new state and the schedule's next pass time in one step.
#[tokio::test]
async fn schedule_lua_writes_occurrences_only_with_the_state_read() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let now = server_ms(&mut conn).await;
    let key = |part: &str| format!("punctual:{{g}}:{part}");
    let script = redis::Script::new(include_str!("../lua/schedule.lua"));
    let parts = [
        "scheduled",
        "jobs",
        "stats",
        "done",
        "ready",
        "running",
        "dead",
        "attempts",
        "errors",
        "due",
        "opts",
        "meta",
        "completed",
        "results",
        "ranked",
        "events",
        "cron_at",
        "cron_due",
    ];
    let call = |read: &str, new: &str| {
        let mut invocation = script.prepare_invoke();
        for part in parts {
            invocation.key(key(part));
        }
        invocation
            .arg(key("wake"))
            .arg(-1)
            .arg(1)
            .arg("{s}@1")
            .arg("at")
            .arg(now + 60_000)
            .arg(&b"\x80"[..])
            .arg("")
            .arg("s")
            .arg(read)
            .arg(new.to_owned())
            .arg(now + 120_000);
        invocation
    };
    let () = redis::cmd("HSET")
        .arg(key("cron_at"))
        .arg("s")
        .arg("state-1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let state = |conn: &mut support::TestConn| {
        let mut conn = conn.clone();
        async move {
            let s: String = redis::cmd("HGET")
                .arg(key("cron_at"))
                .arg("s")
                .query_async(&mut conn)
                .await
                .unwrap();
            let exists: bool = redis::cmd("HEXISTS")
                .arg(key("jobs"))
                .arg("{s}@1")
                .query_async(&mut conn)
                .await
                .unwrap();
            (s, exists)
        }
    };
    let stale: Vec<i64> = call("state-0", "state-2")
        .invoke_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stale[1..], [-2]);
    assert_eq!(state(&mut conn).await, ("state-1".to_owned(), false));
    let fresh: Vec<i64> = call("state-1", "state-2")
        .invoke_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(fresh[1..], [1], "created");
    assert_eq!(state(&mut conn).await, ("state-2".to_owned(), true));
    let next_pass: Option<u64> = redis::cmd("ZSCORE")
        .arg(key("cron_due"))
        .arg("s")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        next_pass,
        Some(now + 120_000),
        "the next pass time is indexed"
    );
    let again: Vec<i64> = call("state-1", "state-3")
        .invoke_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(again[1..], [-2], "the state read is stale now");
    assert_eq!(state(&mut conn).await, ("state-2".to_owned(), true));
}

/// `examples/weekly_digest.rs`, as the README runs it: it adds the weekly Berlin digest,
/// prints its next fire times in Berlin time and UTC, runs 3 occurrences of its demo
/// schedule and removes the demo before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weekly_digest_example_runs() {
    let redis = RedisServer::start();
    // Built like `cargo run --example` would (a no-op after a whole `cargo test`, which builds
    // the examples), next to the test binaries' directory. Without the variables cargo sets
    // for a test process: ring's build script watches CARGO_MANIFEST_DIR, so a build that saw
    // it made the next `cargo test` rebuild ring, rustls, redis, punctual and every test
    // binary (about 80 s of CI).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = std::process::Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_tests = [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_CRATE_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
        ]
        .contains(&name.as_ref())
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_");
        if set_for_tests {
            build.env_remove(name.as_ref());
        }
    }
    let built = build
        .args(["build", "--quiet", "--example", "weekly_digest"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build --example weekly_digest");
    assert!(
        built.success(),
        "cargo build --example weekly_digest failed"
    );
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join("weekly_digest"))
        .unwrap();
    assert!(example.exists(), "{} was not built", example.display());
    let out = tokio::time::timeout(
        LIMIT,
        tokio::process::Command::new(&example)
            .env("PUNCTUAL_REDIS_URL", redis.url())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the example did not finish")
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("added weekly-digest"), "{text}");
    let berlin = text
        .lines()
        .filter(|l| l.contains("T09:00:00+01:00") || l.contains("T09:00:00+02:00"))
        .count();
    assert_eq!(berlin, 3, "{text}");
    assert_eq!(text.matches("ran {digest-demo}@").count(), 3, "{text}");
    let ns = Namespace::connect(&redis.url(), QueueConfig::default())
        .await
        .unwrap();
    let queue = ns.queue("digests").await.unwrap();
    let ids: Vec<String> = queue
        .list_schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["weekly-digest"]);
}

/// `punctual cron add|ls|next|pause|resume|rm`: a weekly Berlin schedule's next fire times in
/// both zones across the change to summer time, a live one served by `punctual promote`, and
/// bad input refused with one line and nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli() {
    let redis = RedisServer::start();
    for (args, needle) in [
        (vec!["--cron", "61 * * * *"], "cron expression"),
        (
            vec!["--cron", "0 9 * * MON", "--tz", "Mars/Olympus"],
            "time zone",
        ),
        (vec!["--every", "10ms"], "at least 1s"),
        (vec!["--every", "soon"], "--every"),
        (vec!["--every", "1s", "--misfire", "never"], "--misfire"),
        (
            vec!["--every", "1s", "--cron", "* * * * *"],
            "cannot be used with",
        ),
        (
            vec!["--every", "1s", "--expires-at", "2030-01-01T00:00:00Z"],
            "no id, partition key, due time or expiry time",
        ),
        (vec!["--every", "1s", "--data", "{oops"], "--data"),
        (
            vec![
                "--every",
                "1s",
                "--start",
                "2030-01-02T00:00:00Z",
                "--end",
                "2030-01-01T00:00:00Z",
            ],
            "end is before the start",
        ),
    ] {
        let mut all = vec!["cron", "add", "q", "s"];
        all.extend(args.iter());
        fails(&run(&redis, &all, None), 2, needle);
    }
    fails(
        &run(&redis, &["cron", "add", "q", "a{}b", "--every", "1s"], None),
        2,
        "{tag}",
    );
    fails(
        &run(&redis, &["cron", "next", "q", "s"], None),
        1,
        "no queue \"q\"",
    );
    assert_eq!(ok(&redis, &["cron", "ls", "q", "--json"]).trim(), "[]");
    assert!(all_keys(&redis).await.is_empty(), "bad input wrote keys");

    // 09:00 Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
    let out = ok(
        &redis,
        &[
            "cron",
            "add",
            "q",
            "digest",
            "--cron",
            "0 9 * * MON",
            "--tz",
            "Europe/Berlin",
            "--data",
            r#"{"to":"all"}"#,
            "--start",
            "2027-03-15T00:00:00Z",
            "--kind",
            "digest",
        ],
    );
    assert!(
        out.starts_with("added schedule \"digest\": next 2027-03-15T09:00:00+01:00"),
        "{out}"
    );
    let next = ok(&redis, &["cron", "next", "q", "digest", "-n", "3"]);
    let lines: Vec<&str> = next.lines().collect();
    assert_eq!(
        lines,
        [
            "2027-03-15T09:00:00+01:00\t2027-03-15T08:00:00.000Z",
            "2027-03-22T09:00:00+01:00\t2027-03-22T08:00:00.000Z",
            "2027-03-29T09:00:00+02:00\t2027-03-29T07:00:00.000Z",
        ]
    );
    let listed = json(&ok(&redis, &["cron", "ls", "q", "--json"]));
    assert_eq!(listed[0]["id"], "digest");
    assert_eq!(listed[0]["cron"], "0 9 * * MON");
    assert_eq!(listed[0]["tz"], "Europe/Berlin");
    assert_eq!(listed[0]["data"]["to"], "all");
    assert_eq!(listed[0]["misfire"], "once");
    assert_eq!(listed[0]["next_fire"], "2027-03-15T08:00:00.000Z");

    // A live schedule, served by the sidecar.
    let _promote = spawn_promote(&redis, &["q", "--heartbeat", "1s"]);
    ok(
        &redis,
        &[
            "cron",
            "add",
            "q",
            "tick",
            "--every",
            "1s",
            "--misfire",
            "skip",
        ],
    );
    let ls = ok(&redis, &["cron", "ls", "q"]);
    assert!(ls.contains("tick\tevery 1s\tUTC\tmisfire skip"), "{ls}");
    eventually(LIMIT, "the sidecar creates occurrences", || async {
        ok(&redis, &["ls", "q", "--state", "scheduled"]).contains("{tick}@")
    })
    .await;
    assert_eq!(
        ok(&redis, &["cron", "pause", "q", "tick"]).trim(),
        "paused schedule \"tick\""
    );
    assert!(ok(&redis, &["cron", "ls", "q"]).contains("paused"));
    assert_eq!(
        ok(&redis, &["cron", "resume", "q", "tick"]).trim(),
        "resumed schedule \"tick\""
    );
    assert_eq!(
        ok(&redis, &["cron", "rm", "q", "tick"]).trim(),
        "removed schedule \"tick\""
    );
    fails(
        &run(&redis, &["cron", "rm", "q", "tick"], None),
        1,
        "no recurring schedule \"tick\"",
    );
    fails(
        &run(&redis, &["cron", "pause", "q", "nope"], None),
        1,
        "no recurring schedule",
    );
    ok(&redis, &["cron", "rm", "q", "digest"]);
    // A queue whose only content is a schedule is not removed without --force either.
    ok(&redis, &["cron", "add", "only", "d", "--every", "1h"]);
    fails(
        &run(&redis, &["queue", "rm", "only"], None),
        1,
        "holds 0 jobs and 1 recurring schedules",
    );
    ok(&redis, &["queue", "rm", "only", "--force"]);
    drop(_promote);
    ok(&redis, &["queue", "rm", "q", "--force"]);
    let left: Vec<String> = all_keys(&redis)
        .await
        .into_iter()
        .filter(|k| k.contains("{q") || k.contains("{only"))
        .collect();
    assert!(left.is_empty(), "queue rm left {left:?}");
}
