//! The HTTP API of `punctual web` (`/api/v1`), over real HTTP against the binary, on a
//! redis-server the test starts: every route of the OpenAPI document is served and every
//! served route is documented; scheduling with every option, conflicts (409), paging, waiting,
//! cancelling, rescheduling, dead jobs, pause; bad input (400, nothing written); unknown
//! jobs and queues (404); Redis down (503); bearer and basic auth; cross-site writes and
//! read-only mode refused.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use punctual::{JobState, Limit, NewJob, Outcome, Queue, Retention, Schedule, WorkerConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::cli::{run, stderr};
use support::web::{http, Site};
use support::{eventually, RedisServer};
use tokio_util::sync::CancellationToken;

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

async fn get(site: &Site, path: &str) -> (StatusCode, Value) {
    send(http().get(site.api(path))).await
}

async fn post(site: &Site, path: &str, body: Value) -> (StatusCode, Value) {
    send(http().post(site.api(path)).json(&body)).await
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// Asserts that `answer` is a 400 `invalid_input`, naming `what` if it is not.
#[track_caller]
fn bad_input(answer: &(StatusCode, Value), what: &str) {
    assert_eq!(
        (answer.0, code(&answer.1)),
        (StatusCode::BAD_REQUEST, "invalid_input"),
        "{what}: {}",
        answer.1
    );
}

/// Every method and path of the served OpenAPI document answers with its own handler (not
/// the router's 404 or 405), and every answer is JSON: the document and the routes agree
/// from the outside too (a unit test in the binary compares the route table with it).
#[tokio::test]
async fn every_documented_route_is_served() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "q").await.unwrap();
    queue.schedule(NewJob::new(&1).id("x")).await.unwrap();
    let site = Site::web(&redis, &[], &[]).await;
    let (status, doc) = get(&site, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if method == "parameters" {
                continue;
            }
            let url = format!(
                "{}{}",
                site.url,
                path.replace("{queue}", "q").replace("{id}", "nope")
            );
            let request = match method.as_str() {
                "get" => http().get(&url).query(&[("timeout", "10ms")]),
                "post" => http().post(&url).json(&json!({})),
                "delete" => http().delete(&url),
                other => panic!("unexpected method {other}"),
            };
            let request = if path.ends_with("/jobs") && method == "get" {
                http().get(&url)
            } else {
                request
            };
            let (status, body) = send(request).await;
            assert!(
                !matches!(code(&body), "no_route" | "method_not_allowed"),
                "{method} {path}: {status} {body}"
            );
            assert!(body.is_object(), "{method} {path}: not JSON: {body}");
            seen += 1;
        }
    }
    assert!(seen >= 19, "{seen} routes");
    let (status, body) = get(&site, "/nothing/here").await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "no_route"));
    let (status, body) = send(http().put(site.api("/queues/q/jobs/x"))).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

/// Scheduling with every option, conflicts, bulk requests, reading, paging, rescheduling and
/// cancelling; bad input is a 400 that writes nothing.
#[tokio::test]
async fn jobs_are_scheduled_read_paged_rescheduled_and_cancelled() {
    let redis = RedisServer::start();
    let site = Site::web(&redis, &[], &[]).await;
    let queue = Queue::connect(&redis.url(), "mail").await.unwrap();

    let job = json!({
        "id": "welcome-42", "in": "1h", "data": {"to": "a@example.com"}, "kind": "email",
        "priority": 3, "max_lateness": "10m", "limit_key": "smtp", "max_attempts": 5,
        "timeout": "30s",
    });
    let (status, body) = post(&site, "/queues/mail/jobs", job.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["outcome"], "created");
    let (status, body) = post(&site, "/queues/mail/jobs", job.clone()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "job_exists"),
        "{body}"
    );
    assert_eq!(body["outcome"], "rejected");
    let mut replace = job.clone();
    replace["on_conflict"] = "replace".into();
    replace["in"] = "2h".into();
    let (status, body) = post(&site, "/queues/mail/jobs", replace).await;
    assert_eq!(
        (status, &body["outcome"]),
        (StatusCode::OK, &json!("replaced"))
    );

    let (status, got) = get(&site, "/queues/mail/jobs/welcome-42").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["state"], "scheduled");
    assert_eq!(got["priority"], 3);
    assert_eq!(got["limit_key"], "smtp");
    assert_eq!(got["max_attempts"], 5);
    assert_eq!(got["data"]["to"], "a@example.com");
    assert!(got["expires_at"].is_string(), "{got}");
    let info = queue.get("welcome-42").await.unwrap().unwrap();
    assert_eq!(info.timeout, Some(Duration::from_secs(30)));

    // Bulk: one bad job refuses the whole request, naming it; nothing is written.
    let before = queue.counts().await.unwrap().scheduled;
    let (status, body) = post(
        &site,
        "/queues/mail/jobs",
        json!({"jobs": [{"in": "1m"}, {"in": "soon"}, {"in": "2m"}]}),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_input")
    );
    assert_eq!(body["index"], 1, "{body}");
    assert_eq!(queue.counts().await.unwrap().scheduled, before);
    for bad in [
        json!({"in": "1m", "at": "2026-01-01T00:00:00Z"}),
        json!({"in": "1m", "priority": 10}),
        json!({"in": "1m", "surprise": true}),
        json!({"in": "1m", "id": ""}),
        json!({"in": "1m", "on_conflict": "sometimes"}),
        json!({"at": "tomorrow"}),
        json!({"jobs": []}),
        json!([1, 2]),
    ] {
        bad_input(
            &post(&site, "/queues/mail/jobs", bad.clone()).await,
            &bad.to_string(),
        );
    }
    let (status, body) = send(
        http()
            .post(site.api("/queues/mail/jobs"))
            .header("content-type", "text/plain")
            .body("{}"),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    let (status, body) = send(
        http()
            .post(site.api("/queues/mail/jobs"))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_input")
    );
    assert_eq!(queue.counts().await.unwrap().scheduled, before);

    // A bulk request says how each job went; a due time is not needed (due now).
    let jobs: Vec<Value> = (0..120)
        .map(|i| json!({"id": format!("b{i:03}"), "in": format!("{}s", 60 + i)}))
        .chain([
            json!({"id": "welcome-42", "in": "1m"}),
            json!({"id": "now"}),
        ])
        .collect();
    let (status, body) = post(&site, "/queues/mail/jobs", json!({ "jobs": jobs })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 122);
    assert_eq!(results[0]["outcome"], "created");
    assert_eq!(results[120]["outcome"], "rejected");
    assert_eq!(results[121]["outcome"], "created");

    // Paging: 122 scheduled jobs in pages of 50, each once, in due order.
    let mut ids = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let (status, page) = get(
            &site,
            &format!("/queues/mail/jobs?state=scheduled&limit=50&cursor={cursor}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 122);
        pages += 1;
        ids.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids.len(), 122);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        122,
        "no job twice"
    );
    assert_eq!(ids[0], "now");
    assert_eq!(ids[1], "b000");
    assert_eq!(ids[121], "welcome-42");
    for bad in [
        "state=gone",
        "limit=0",
        "limit=5000",
        "cursor=x.y",
        "cursor=1.2.3",
        "color=red",
    ] {
        bad_input(&get(&site, &format!("/queues/mail/jobs?{bad}")).await, bad);
    }

    // Reschedule, and "run now".
    let (status, body) = post(
        &site,
        "/queues/mail/jobs/b000/reschedule",
        json!({"in": "3h"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["from"], "scheduled");
    let (_, got) = get(&site, "/queues/mail/jobs/b000").await;
    assert_eq!(got["due_at"], body["due_at"]);
    let (status, _) = post(
        &site,
        "/queues/mail/jobs/b001/reschedule",
        json!({"in": "0s"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for bad in [
        json!({}),
        json!({"in": "1m", "at": "2030-01-01T00:00:00Z"}),
        json!({"in": "x"}),
    ] {
        let (status, body) = post(&site, "/queues/mail/jobs/b001/reschedule", bad).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_input")
        );
    }
    let (status, body) = post(
        &site,
        "/queues/mail/jobs/nope/reschedule",
        json!({"in": "1m"}),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "job_not_found")
    );

    // Cancel, then it is gone.
    let (status, body) = send(http().delete(site.api("/queues/mail/jobs/b002"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["cancelled"], &body["from"]),
        (&json!("removed"), &json!("scheduled"))
    );
    let (status, body) = send(http().delete(site.api("/queues/mail/jobs/b002"))).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "job_not_found")
    );
    let (status, body) = get(&site, "/queues/mail/jobs/b002").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "job_not_found")
    );
    let (status, body) = send(http().delete(site.api("/queues/mail/jobs/b003?wait=2h"))).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_input")
    );

    // Reads of a queue that does not exist are 404 and create nothing.
    let (status, body) = get(&site, "/queues/ghost").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "unknown_queue")
    );
    let (status, body) = get(&site, "/queues/ghost/jobs/x").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "unknown_queue")
    );
    assert!(
        !support::all_keys(&redis)
            .await
            .iter()
            .any(|k| k.contains("ghost")),
        "a read wrote"
    );
    let (status, body) = get(&site, "/queues/bad%20name/jobs").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_input"),
        "{body}"
    );

    // The queue's summary and its due-time counts.
    let (status, stats) = get(&site, "/queues/mail").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["scheduled"], 121);
    let (status, timeline) = get(&site, "/queues/mail/timeline?span=4h&buckets=4").await;
    assert_eq!(status, StatusCode::OK, "{timeline}");
    let in_buckets: u64 = timeline["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    let total =
        in_buckets + timeline["overdue"].as_u64().unwrap() + timeline["later"].as_u64().unwrap();
    assert_eq!(total, 121, "{timeline}");
    assert!(
        timeline["buckets"][0]["count"].as_u64().unwrap() >= 117,
        "{timeline}"
    );
    for bad in ["buckets=0", "buckets=100000", "span=forever"] {
        let (status, _) = get(&site, &format!("/queues/mail/timeline?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// `wait` long-polls until the job ends, with its result; dead jobs are retried and purged;
/// pause and resume; schedules, limits, events and the queue list read what is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_dead_jobs_pause_and_the_queue_pages_data() {
    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "hooks").await.unwrap();
    queue
        .set_completed_retention(Some(Retention::new(Duration::from_secs(600), 100).unwrap()))
        .await
        .unwrap();
    queue.set_event_log(Some(100)).await.unwrap();
    queue
        .upsert_schedule(Schedule::every(
            "tick",
            Duration::from_secs(3600),
            NewJob::new(&1),
        ))
        .await
        .unwrap();
    queue.set_limit("api", Limit::concurrency(2)).await.unwrap();
    let site = Site::promoter(&redis, &[], &[]).await;

    let stop = CancellationToken::new();
    let worker = support::spawn_worker(
        &queue,
        WorkerConfig::default(),
        &stop,
        |job: punctual::Job<Value>, _| async move {
            if job.data["fail"] == true {
                Outcome::Fail("refused".into())
            } else {
                Outcome::DoneWith(rmp_serde::to_vec_named(&json!({"echo": job.data})).unwrap())
            }
        },
    );

    // A wait that is answered when the job completes, with its result.
    let (status, _) = post(
        &site,
        "/queues/hooks/jobs",
        json!({"id": "w1", "in": "1s", "data": {"n": 7}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = get(&site, "/queues/hooks/jobs/w1/wait?timeout=20s").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["state"], &body["ended"]),
        (&json!("completed"), &json!(true))
    );
    assert_eq!(body["job"]["result"]["echo"]["n"], 7);
    let (_, body) = post(
        &site,
        "/queues/hooks/jobs",
        json!({"id": "later", "in": "1h"}),
    )
    .await;
    assert_eq!(body["outcome"], "created");
    let (status, body) = get(&site, "/queues/hooks/jobs/later/wait?timeout=100ms").await;
    assert_eq!(
        (status, &body["state"]),
        (StatusCode::OK, &json!("pending"))
    );
    assert_eq!(body["job"]["state"], "scheduled");
    let (status, body) = get(&site, "/queues/hooks/jobs/nope/wait?timeout=100ms").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "job_not_found")
    );
    let (status, _) = get(&site, "/queues/hooks/jobs/later/wait?timeout=5m").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Dead jobs: retried by id, purged.
    for i in 0..3 {
        post(
            &site,
            "/queues/hooks/jobs",
            json!({"id": format!("d{i}"), "data": {"fail": true}, "max_attempts": 1}),
        )
        .await;
    }
    eventually(Duration::from_secs(20), "three dead jobs", || async {
        queue.counts().await.unwrap().dead == 3
    })
    .await;
    let (_, dead) = get(&site, "/queues/hooks/jobs?state=dead").await;
    assert_eq!(dead["total"], 3);
    assert_eq!(dead["jobs"][0]["last_error"]["message"], "refused");
    let (_, events) = get(&site, "/queues/hooks/jobs/d0/events").await;
    let changes: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["change"].as_str().unwrap())
        .collect();
    assert_eq!(
        changes,
        ["scheduled", "promoted", "claimed", "dead"],
        "{events}"
    );
    let (status, body) = post(
        &site,
        "/queues/hooks/dead/retry",
        json!({"ids": ["d0", "nope"]}),
    )
    .await;
    assert_eq!((status, &body["ids"]), (StatusCode::OK, &json!(["d0"])));
    let (status, body) = post(&site, "/queues/hooks/dead/purge", json!({"ids": ["d1"]})).await;
    assert_eq!((status, &body["purged"]), (StatusCode::OK, &json!(1)));
    eventually(Duration::from_secs(20), "d0 dies again", || async {
        queue.get("d0").await.unwrap().map(|j| j.state) == Some(JobState::Dead)
    })
    .await;
    let (_, body) = post(&site, "/queues/hooks/dead/purge", json!({"all": true})).await;
    assert_eq!(body["purged"], 2);
    for bad in [
        json!({}),
        json!({"ids": ["a"], "all": true}),
        json!({"older_than": "soon"}),
    ] {
        bad_input(
            &post(&site, "/queues/hooks/dead/purge", bad.clone()).await,
            &bad.to_string(),
        );
    }
    let (status, body) = post(
        &site,
        "/queues/hooks/dead/retry",
        json!({"older_than": "1h"}),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_input")
    );

    // Pause and resume.
    let (status, body) = post(&site, "/queues/hooks/pause", json!({})).await;
    assert_eq!((status, &body["changed"]), (StatusCode::OK, &json!(true)));
    assert!(queue.is_paused().await.unwrap());
    let (_, stats) = get(&site, "/queues/hooks").await;
    assert_eq!(stats["paused"], true);
    let (_, body) = post(&site, "/queues/hooks/pause", json!({})).await;
    assert_eq!(body["changed"], false);
    post(&site, "/queues/hooks/resume", json!({})).await;
    assert!(!queue.is_paused().await.unwrap());

    // What the queue page reads.
    let (_, schedules) = get(&site, "/queues/hooks/schedules").await;
    assert_eq!(schedules["schedules"][0]["id"], "tick");
    assert_eq!(
        schedules["schedules"][0]["next_fires"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let (_, limits) = get(&site, "/queues/hooks/limits").await;
    assert_eq!(limits["rules"][0]["key"], "api");
    assert_eq!(limits["rules"][0]["concurrency"], 2);
    let (_, all) = get(&site, "/queues").await;
    let hooks = &all["queues"][0];
    assert_eq!(hooks["queue"], "hooks");
    assert!(
        hooks["lag"]["count"].as_u64().unwrap() >= 4,
        "this promoter's lags: {hooks}"
    );
    let (_, meta) = get(&site, "/meta").await;
    assert_eq!(
        (&meta["promoter"], &meta["read_only"]),
        (&json!(true), &json!(false))
    );
    let (_, history) = get(&site, "/queues/hooks/history").await;
    assert!(
        !history["samples"].as_array().unwrap().is_empty(),
        "{history}"
    );

    stop.cancel();
    worker.await.unwrap().unwrap();
}

/// Bearer and basic auth, the open health check, cross-site writes and read-only mode; no
/// server on a public address without credentials.
#[tokio::test]
async fn credentials_cross_site_writes_and_read_only() {
    let redis = RedisServer::start();
    let bearer = Site::web(
        &redis,
        &["--token-env", "WEB_TOKEN"],
        &[("WEB_TOKEN", "t0ken")],
    )
    .await;
    let (status, body) = get(&bearer, "/queues").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let response = http().get(bearer.api("/queues")).send().await.unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"punctual\""
    );
    let (status, _) = send(http().get(bearer.api("/queues")).bearer_auth("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(http().get(bearer.api("/queues")).bearer_auth("t0ken")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(http().get(format!("{}/metrics", bearer.url))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, metrics) = send(
        http()
            .get(format!("{}/metrics", bearer.url))
            .bearer_auth("t0ken"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.as_str().unwrap().contains("punctual_up 1"),
        "{metrics}"
    );
    for open in ["/healthz", "/", "/assets/app.js", "/assets/app.css"] {
        let response = http()
            .get(format!("{}{open}", bearer.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{open}");
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
    }
    let (status, _) = send(http().post(bearer.api("/queues/q/jobs")).json(&json!({}))).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a write without the token"
    );

    let basic = Site::web(
        &redis,
        &["--basic-auth-env", "WEB_BASIC"],
        &[("WEB_BASIC", "ops:pa55")],
    )
    .await;
    let response = http().get(format!("{}/", basic.url)).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "basic auth guards the page too"
    );
    assert!(response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let (status, _) = send(
        http()
            .get(format!("{}/", basic.url))
            .basic_auth("ops", Some("pa55")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(
        http()
            .get(basic.api("/queues"))
            .basic_auth("ops", Some("nope")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(http().get(format!("{}/healthz", basic.url))).await;
    assert_eq!(status, StatusCode::OK);

    // A write a browser sends from another site is refused, whatever the credentials.
    let open = Site::web(&redis, &[], &[]).await;
    let write = |headers: &[(&str, &str)]| {
        let mut r = http()
            .post(open.api("/queues/q/jobs"))
            .json(&json!({"id": "x"}));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r
    };
    let (status, body) = send(write(&[("origin", "https://evil.example")])).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "cross_site"));
    let (status, body) = send(write(&[("sec-fetch-site", "cross-site")])).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "cross_site"));
    let host = open.url.trim_start_matches("http://").to_owned();
    let (status, body) = send(write(&[
        ("sec-fetch-site", "same-origin"),
        ("origin", &open.url),
    ]))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body} ({host})");
    let queue = Queue::connect(&redis.url(), "q").await.unwrap();
    assert_eq!(
        queue.counts().await.unwrap().ready + queue.counts().await.unwrap().scheduled,
        1
    );

    let read_only = Site::web(&redis, &["--read-only"], &[]).await;
    let (status, body) = post(&read_only, "/queues/q/jobs", json!({"id": "y"})).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "read_only"));
    let (status, body) = send(http().delete(read_only.api("/queues/q/jobs/x"))).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "read_only"));
    let (status, _) = get(&read_only, "/queues/q/jobs/x").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        queue.get("x").await.unwrap().is_some(),
        "the job is still there"
    );

    // Start-up refusals: one line, exit status 2.
    for (args, env, needle) in [
        (
            vec!["web", "--addr", "0.0.0.0:0"],
            None,
            "without authentication",
        ),
        (
            vec!["web", "--token-env", "NOT_SET_ANYWHERE"],
            None,
            "NOT_SET_ANYWHERE is not set",
        ),
        (
            vec!["web", "--basic-auth-env", "WEB_BASIC"],
            Some(("WEB_BASIC", "nopassword")),
            "user:password",
        ),
        (
            vec!["promote", "--web-addr", "0.0.0.0:0"],
            None,
            "without authentication",
        ),
    ] {
        let mut cmd = support::cli::punctual(&redis);
        cmd.args(&args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        support::cli::fails(&out, 2, needle);
    }
    let out = run(&redis, &["web", "--addr", "nonsense"], None);
    assert_eq!(out.status.code(), Some(2));
}

/// With Redis gone the API answers 503 `redis_unavailable`, and the health check says why.
#[tokio::test]
async fn redis_down_is_a_503() {
    let mut redis = RedisServer::start_standalone();
    Queue::connect(&redis.url(), "q").await.unwrap();
    let site = Site::web(&redis, &[], &[]).await;
    let (status, _) = get(&site, "/queues/q").await;
    assert_eq!(status, StatusCode::OK);
    redis.kill();
    let (status, body) = get(&site, "/queues").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "redis_unavailable"),
        "{body}"
    );
    let (status, body) = post(&site, "/queues/q/jobs", json!({})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let response = http()
        .get(format!("{}/healthz", site.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// The README's curl example of the API, run as it is written against a promoter serving the
/// API and a worker: the job is created, read, run now, waited for until it completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_curl_example_runs() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("<!-- api-example")
        .expect("the README marks its API example");
    let block = &readme[start..];
    let body_start = block.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let script = &block[body_start..body_start + block[body_start..].find("```").unwrap()];

    let redis = RedisServer::start();
    let queue = Queue::connect(&redis.url(), "emails").await.unwrap();
    queue
        .set_completed_retention(Some(Retention::new(Duration::from_secs(600), 100).unwrap()))
        .await
        .unwrap();
    let site = Site::promoter(&redis, &[], &[]).await;
    let stop = CancellationToken::new();
    let worker = support::spawn_worker(
        &queue,
        WorkerConfig::default(),
        &stop,
        |_: punctual::Job<Value>, _| async { Outcome::Done },
    );
    let (url, script) = (site.url.clone(), script.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .env("PUNCTUAL_WEB", url)
            .output()
            .expect("run bash")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""outcome":"created""#), "{stdout}");
    assert!(stdout.contains(r#""priority":5"#), "{stdout}");
    assert!(
        stdout.contains(r#""state":"completed""#),
        "the wait saw it complete: {stdout}"
    );
    assert!(stdout.contains(r#""retried":0"#), "{stdout}");
    assert!(stdout.contains(r#""queue":"emails""#), "{stdout}");
    assert_eq!(
        queue.get("welcome-42").await.unwrap().map(|j| j.state),
        Some(JobState::Completed)
    );
    stop.cancel();
    worker.await.unwrap().unwrap();
}
