//! A recurring job: "every Monday at 09:00 Europe/Berlin", plus a fast schedule to watch
//! occurrences run.
//!
//! ```text
//! cargo run --example weekly_digest            # adds the weekly digest, prints its next fire
//!                                              # times, then runs 3 occurrences of a 1 s demo
//! cargo run --example weekly_digest -- 5       # 5 demo occurrences
//! ```
//!
//! Needs a Redis at `PUNCTUAL_REDIS_URL` (default `redis://127.0.0.1:6379/`). The promoter,
//! which creates each occurrence exactly once (run as many as you like), and the worker run in
//! this process. The demo schedule is removed before the example exits; the weekly one stays
//! (`punctual cron rm digests weekly-digest` removes it).

use std::time::{Duration, SystemTime};

use punctual::{
    Job, Misfire, NewJob, Outcome, Promoter, PromoterConfig, Queue, Schedule, Worker, WorkerConfig,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Serialize, Deserialize)]
struct Digest {
    list: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let url = std::env::var("PUNCTUAL_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let runs: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().map_err(|_| format!("bad count {n:?}"))?,
        None => 3,
    };
    let queue = Queue::connect(&url, "digests").await?;

    // The real thing: 09:00 Berlin time every Monday, whatever the season; a digest missed in
    // an outage is sent once, not once per missed week.
    let weekly = NewJob::new(&Digest {
        list: "weekly".to_owned(),
    })
    .kind("digest")
    .max_lateness(Duration::from_secs(6 * 3600));
    let added = queue
        .upsert_schedule(
            Schedule::cron("weekly-digest", "0 9 * * MON", weekly)
                .tz("Europe/Berlin")
                .misfire(Misfire::Once),
        )
        .await?;
    let info = queue
        .get_schedule("weekly-digest")
        .await?
        .ok_or("the schedule is gone")?;
    println!(
        "{} weekly-digest; next fire times (Berlin, UTC):",
        if added { "added" } else { "kept" }
    );
    for (utc, berlin) in info.fires_after(SystemTime::now(), 3) {
        println!("  {berlin}  {}", humantime::format_rfc3339_millis(utc));
    }

    // A demo every second, to watch occurrences run.
    let demo = NewJob::new(&Digest {
        list: "demo".to_owned(),
    })
    .kind("digest");
    queue
        .upsert_schedule(Schedule::every("digest-demo", Duration::from_secs(1), demo))
        .await?;
    let stop = CancellationToken::new();
    let config = PromoterConfig::default().set_heartbeat(Duration::from_secs(1));
    let promoter =
        tokio::spawn(Promoter::new([queue.clone()], config)?.run(stop.clone().cancelled_owned()));
    let (tx, mut ran) = mpsc::unbounded_channel();
    let worker = Worker::new(queue.clone(), WorkerConfig::default())?;
    let worker = tokio::spawn(worker.run(
        move |job: Job<Digest>, _| {
            let late = job
                .due_at
                .and_then(|due| SystemTime::now().duration_since(due).ok())
                .unwrap_or_default();
            let _ = tx.send((job.id.clone(), job.data.list, late));
            async { Outcome::Done }
        },
        stop.clone().cancelled_owned(),
    ));
    let mut seen = 0;
    while seen < runs {
        let Some((id, list, late)) = ran.recv().await else {
            break;
        };
        if list == "demo" {
            seen += 1;
            println!("ran {id} ({} ms after its fire time)", late.as_millis());
        }
    }
    queue.remove_schedule("digest-demo").await?;
    stop.cancel();
    promoter.await??;
    worker.await??;
    Ok(())
}
