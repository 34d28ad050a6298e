//! A flaky webhook recovering through exponential backoff, and one that never recovers and
//! ends in the dead set with its last error.
//!
//! ```text
//! cargo run --example retry_backoff
//! ```
//!
//! Needs a Redis at `PUNCTUAL_REDIS_URL` (default `redis://127.0.0.1:6379/`).

use std::time::{Duration, Instant};

use punctual::{
    Exponential, Job, JobState, NewJob, Outcome, Promoter, PromoterConfig, Queue, Worker,
    WorkerConfig,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Serialize, Deserialize)]
struct Webhook {
    url: String,
    /// How many attempts fail before it works; `u32::MAX` never works.
    failures: u32,
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
    let queue = Queue::connect(&url, "webhooks").await?;

    let flaky = queue
        .schedule(NewJob::new(&Webhook {
            url: "https://flaky.example/hook".into(),
            failures: 3,
        }))
        .await?
        .id;
    let broken = queue
        .schedule(
            NewJob::new(&Webhook {
                url: "https://broken.example/hook".into(),
                failures: u32::MAX,
            })
            .max_attempts(4),
        )
        .await?
        .id;
    println!("scheduled flaky={flaky} broken={broken}");

    // Fast backoff for the demo: retries wait up to 200 ms, 400 ms, 800 ms, ... (full jitter).
    let policy = Exponential::new(Duration::from_millis(200), Duration::from_secs(5))?;
    let stop = CancellationToken::new();
    let promoter = Promoter::new([queue.clone()], PromoterConfig::default())?;
    let promoter = tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    let (events, mut events_rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let worker = Worker::new(queue.clone(), WorkerConfig::default().set_backoff(policy))?;
    let worker = tokio::spawn(worker.run(
        move |job: Job<Webhook>, _ctx| {
            let events = events.clone();
            async move {
                let at = started.elapsed().as_millis();
                let outcome = if job.attempt <= job.data.failures {
                    Outcome::Fail(format!("POST {}: 503 Service Unavailable", job.data.url))
                } else {
                    Outcome::Done
                };
                println!(
                    "{at:>6} ms  {}  attempt {}/{}  -> {}",
                    job.data.url,
                    job.attempt,
                    job.max_attempts,
                    if outcome == Outcome::Done {
                        "ok"
                    } else {
                        "failed"
                    }
                );
                let _ = events.send(());
                outcome
            }
        },
        stop.clone().cancelled_owned(),
    ));

    // Wait until the flaky job is done and the broken one is dead. A handler signals before its
    // outcome is stored, so each wait is bounded and the states are read again.
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(200), events_rx.recv()).await;
        let flaky_state = queue.get(&flaky).await?.map(|j| j.state);
        let broken_state = queue.get(&broken).await?.map(|j| j.state);
        // The flaky job is gone (done), the broken one dead.
        if flaky_state.is_none() && broken_state == Some(JobState::Dead) {
            break;
        }
    }
    let Some(dead) = queue.get(&broken).await? else {
        return Ok(());
    };
    if let Some(error) = &dead.last_error {
        println!(
            "job {broken} is dead after {} attempts: {} ({})",
            dead.attempts, error.message, error.reason
        );
    }
    println!("flaky job {flaky} succeeded and was deleted");

    // Leave the queue as we found it.
    queue.cancel(&broken).await?;
    stop.cancel();
    promoter.await??;
    worker.await??;
    Ok(())
}
