//! The dashboard in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven over WebDriver against `punctual promote --web-addr`, on a
//! redis-server the test starts. An operator signs in with the token, sees the queues, reads
//! the due-time chart, opens a dead job, retries it and sees it complete; a read-only
//! dashboard offers no action and its API refuses one; no request leaves the machine; the
//! browser leaves no process behind. Screenshots of the main pages are saved under
//! `target/screenshots/` (and into `docs/screenshots/` with `PUNCTUAL_SCREENSHOTS_TO_DOCS=1`).

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use punctual::{JobState, Limit, NewJob, Outcome, Queue, Retention, Schedule, WorkerConfig};
use serde_json::{json, Value};
use support::web::{processes_mentioning, Browser, Site};
use support::{eventually, RedisServer};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "s3cret-for-the-test";
/// Jobs of `emails`, one every 30 s from 10 minutes on (all due within the hour).
const EMAILS: u64 = 100;

async fn shot(browser: &Browser, name: &str) {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let path = target.join(format!("{name}.png"));
    browser.screenshot(&path).await;
    if std::env::var_os("PUNCTUAL_SCREENSHOTS_TO_DOCS").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&path, docs.join(format!("{name}.png"))).unwrap();
    }
}

async fn state_of(queue: &Queue, id: &str) -> Option<JobState> {
    queue.get(id).await.unwrap().map(|j| j.state)
}

/// The queues the dashboard shows: `emails` with jobs due over the next hour, `reports`
/// with a recurring schedule and a limit, `webhooks` with a job that dies once and then
/// succeeds, and one that always dies.
async fn fill(redis: &RedisServer) -> (Queue, Queue) {
    let emails = Queue::connect(&redis.url(), "emails").await.unwrap();
    let jobs: Vec<NewJob> = (0..EMAILS)
        .map(|i| {
            NewJob::new(&json!({"to": format!("user{i}@example.com"), "template": "reminder"}))
                .kind("email")
                .delay(Duration::from_secs(30 * i + 600))
        })
        .collect();
    emails.schedule_many(jobs).await.unwrap();
    let reports = emails.sibling("reports").await.unwrap();
    reports
        .upsert_schedule(
            Schedule::cron(
                "weekly-digest",
                "0 9 * * MON",
                NewJob::new(&json!({"digest": true})),
            )
            .tz("Europe/Paris"),
        )
        .await
        .unwrap();
    reports
        .set_limit("smtp", Limit::rate(10, Duration::from_secs(1)))
        .await
        .unwrap();
    reports
        .schedule(NewJob::new(&json!({"report": "daily"})).delay(Duration::from_secs(7200)))
        .await
        .unwrap();
    let webhooks = emails.sibling("webhooks").await.unwrap();
    webhooks
        .set_completed_retention(Some(
            Retention::new(Duration::from_secs(3600), 1000).unwrap(),
        ))
        .await
        .unwrap();
    webhooks.set_event_log(Some(1000)).await.unwrap();
    for id in ["hook-1", "doomed-1"] {
        webhooks
            .schedule(
                NewJob::new(&json!({"url": "https://example.invalid/hook", "event": "paid"}))
                    .id(id)
                    .kind("webhook")
                    .max_attempts(1),
            )
            .await
            .unwrap();
    }
    (emails, webhooks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_retries_a_dead_job_and_a_read_only_dashboard_cannot() {
    let redis = RedisServer::start();
    let (_emails, webhooks) = fill(&redis).await;
    let site = Site::promoter(
        &redis,
        &["--token-env", "PUNCTUAL_TEST_TOKEN"],
        &[("PUNCTUAL_TEST_TOKEN", TOKEN)],
    )
    .await;
    // The worker: `hook-1` fails its first run only; `doomed-1` always fails.
    let stop = CancellationToken::new();
    let first = Arc::new(AtomicBool::new(true));
    let worker = support::spawn_worker(
        &webhooks,
        WorkerConfig::default(),
        &stop,
        move |job: punctual::Job<Value>, _| {
            let fail =
                job.id == "doomed-1" || (job.id == "hook-1" && first.swap(false, Ordering::SeqCst));
            async move {
                if fail {
                    Outcome::Fail("boom: the endpoint answered 502".into())
                } else {
                    Outcome::DoneWith(rmp_serde::to_vec_named(&json!({"status": 200})).unwrap())
                }
            }
        },
    );
    for id in ["hook-1", "doomed-1"] {
        eventually(Duration::from_secs(20), "the webhook dies", || async {
            state_of(&webhooks, id).await == Some(JobState::Dead)
        })
        .await;
    }

    let browser = Browser::start().await;
    let profile = browser.profile.to_string_lossy().into_owned();

    // Sign in with the token, see every queue.
    browser.goto(&format!("{}/", site.url)).await;
    let token = browser.find("#token").await;
    browser.type_into(&token, TOKEN).await;
    browser.click(&browser.find("#login button").await).await;
    let queues = browser
        .wait_for_text("#queues", "webhooks", Duration::from_secs(30))
        .await;
    assert!(
        queues.contains("emails") && queues.contains("reports"),
        "{queues}"
    );
    let emails_row = browser.find("tr[data-queue=emails]").await;
    assert!(browser
        .text(&emails_row)
        .await
        .contains(&EMAILS.to_string()));
    shot(&browser, "overview").await;

    // A queue: the due-time chart has a bar per 5 minutes holding every job.
    browser.goto(&format!("{}/#/queues/emails", site.url)).await;
    browser.find("svg.timeline rect.bar").await;
    let bars = browser
        .run(
            "return Array.from(document.querySelectorAll('svg.timeline rect.bar'))
                .map(b => [Number(b.getAttribute('data-count')), Number(b.getAttribute('height'))]);",
            json!([]),
        )
        .await;
    let bars: Vec<(u64, f64)> = serde_json::from_value(bars).unwrap();
    assert_eq!(
        bars.len(),
        13,
        "the overdue bar and 12 of 5 minutes: {bars:?}"
    );
    assert_eq!(bars.iter().map(|b| b.0).sum::<u64>(), EMAILS, "{bars:?}");
    assert!(
        bars.iter().filter(|b| b.0 > 0).all(|b| b.1 > 0.0),
        "drawn: {bars:?}"
    );
    assert!(
        bars.iter().skip(1).filter(|b| b.0 > 0).count() >= 9,
        "{bars:?}"
    );
    let rows = browser.find_all("#jobs tbody tr[data-job]").await;
    assert_eq!(rows.len(), 50, "a page of 50");
    let pager = browser
        .wait_for_text(".pager", "of 100", Duration::from_secs(5))
        .await;
    assert!(pager.contains("1–50"), "{pager}");
    shot(&browser, "queue").await;
    // While the operator types, the page does not rebuild itself under them.
    let search = browser.find("form.search input").await;
    browser.type_into(&search, "half-typed-id").await;
    browser
        .wait_for_text("#status", "paused while you type", Duration::from_secs(15))
        .await;
    let kept = browser
        .run(
            "return document.querySelector('form.search input').value;",
            json!([]),
        )
        .await;
    assert_eq!(kept, json!("half-typed-id"));

    // The dead job: its error, then Retry, then it completes.
    browser
        .goto(&format!("{}/#/queues/webhooks/jobs/hook-1", site.url))
        .await;
    browser
        .wait_for_text("#state", "dead", Duration::from_secs(10))
        .await;
    browser
        .wait_for_text(
            "#last-error",
            "boom: the endpoint answered 502",
            Duration::from_secs(5),
        )
        .await;
    browser
        .wait_for_text("main", "example.invalid", Duration::from_secs(5))
        .await;
    let events = browser
        .wait_for_text("#events", "claimed", Duration::from_secs(5))
        .await;
    assert!(events.contains("dead"), "the job's events: {events}");
    shot(&browser, "job-dead").await;
    browser
        .click(&browser.find("button[data-action=retry]").await)
        .await;
    browser
        .wait_for_text("#state", "completed", Duration::from_secs(30))
        .await;
    let result = browser
        .wait_for_text("main", "\"status\": 200", Duration::from_secs(10))
        .await;
    assert!(result.contains("Result"), "{result}");
    assert_eq!(
        state_of(&webhooks, "hook-1").await,
        Some(JobState::Completed)
    );
    shot(&browser, "job-completed").await;

    // Nothing was loaded from anywhere but this server.
    let urls = browser
        .run(
            "return performance.getEntriesByType('resource').map(e => e.name)
               .concat(Array.from(document.querySelectorAll('[src],link[href]')).map(e => e.src || e.href))
               .concat([location.href]);",
            json!([]),
        )
        .await;
    let urls: Vec<String> = serde_json::from_value(urls).unwrap();
    assert!(urls.len() >= 4, "{urls:?}");
    for url in &urls {
        assert!(
            url.starts_with(&format!("{}/", site.url)) || url.starts_with("data:"),
            "a request left the machine: {url}"
        );
    }

    // A read-only dashboard: no action on a dead job, and the API refuses one.
    let read_only = Site::web(&redis, &["--read-only"], &[]).await;
    browser
        .goto(&format!(
            "{}/#/queues/webhooks/jobs/doomed-1",
            read_only.url
        ))
        .await;
    browser
        .wait_for_text("#state", "dead", Duration::from_secs(10))
        .await;
    browser
        .wait_for_text("#mode", "read-only", Duration::from_secs(5))
        .await;
    let actions = browser
        .run(
            "return document.querySelectorAll('button[data-action], form.inline').length;",
            json!([]),
        )
        .await;
    assert_eq!(actions, json!(0), "a read-only page offers no action");
    let status = browser
        .run_async(
            "const done = arguments[arguments.length - 1];
             fetch('api/v1/queues/webhooks/dead/retry', {method: 'POST',
               headers: {'Content-Type': 'application/json'}, body: JSON.stringify({ids: ['doomed-1']})})
               .then(r => done(r.status), e => done(String(e)));",
        )
        .await;
    assert_eq!(status, json!(403));
    assert_eq!(state_of(&webhooks, "doomed-1").await, Some(JobState::Dead));
    shot(&browser, "read-only").await;

    browser.quit().await;
    eventually(
        Duration::from_secs(10),
        "the browser's processes exit",
        || {
            let profile = profile.clone();
            async move { processes_mentioning(&profile).is_empty() }
        },
    )
    .await;
    stop.cancel();
    worker.await.unwrap().unwrap();
}
