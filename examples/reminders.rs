//! Schedule reminders at chosen times and run them, printing how late each one started.
//!
//! ```text
//! cargo run --example reminders                 # three reminders, due in 1 s, 2.5 s and 4 s
//! cargo run --example reminders -- 500ms 3s 1m  # your own delays (humantime)
//! ```
//!
//! Needs a Redis at `PUNCTUAL_REDIS_URL` (default `redis://127.0.0.1:6379/`). The promoter and
//! the worker run in this process; the example exits once every reminder has run.

use std::time::{Duration, SystemTime};

use punctual::{Job, NewJob, Outcome, Promoter, PromoterConfig, Queue, Worker, WorkerConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Serialize, Deserialize)]
struct Reminder {
    text: String,
    /// When the producer wanted it, for the lateness printout.
    due_ms: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let delays: Vec<Duration> = if args.is_empty() {
        vec![
            Duration::from_millis(1000),
            Duration::from_millis(2500),
            Duration::from_millis(4000),
        ]
    } else {
        args.iter()
            .map(|a| humantime::parse_duration(a).map_err(|e| format!("bad delay {a:?}: {e}")))
            .collect::<Result<_, _>>()?
    };

    let queue = Queue::connect(&url, "reminders").await?;
    for (i, delay) in delays.iter().enumerate() {
        let at = SystemTime::now() + *delay;
        let reminder = Reminder {
            text: format!(
                "reminder #{} ({})",
                i + 1,
                humantime::format_duration(*delay)
            ),
            due_ms: unix_ms(at),
        };
        let job = queue.schedule(NewJob::new(&reminder).at(at)).await?;
        println!("scheduled {} as job {}", reminder.text, job.id);
    }

    let stop = CancellationToken::new();
    let promoter = Promoter::new([queue.clone()], PromoterConfig::default())?;
    let promoter = tokio::spawn(promoter.run(stop.clone().cancelled_owned()));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let worker = Worker::new(queue.clone(), WorkerConfig::default())?;
    let worker = tokio::spawn(worker.run(
        move |job: Job<Reminder>, _ctx| {
            let done = done_tx.clone();
            async move {
                let late = unix_ms(SystemTime::now()) as i64 - job.data.due_ms as i64;
                println!("ran {} ({late} ms after its due time)", job.data.text);
                let _ = done.send(());
                Outcome::Done
            }
        },
        stop.clone().cancelled_owned(),
    ));

    for _ in 0..delays.len() {
        done_rx.recv().await;
    }
    stop.cancel();
    promoter.await??;
    worker.await??;
    println!("all {} reminders ran", delays.len());
    Ok(())
}
