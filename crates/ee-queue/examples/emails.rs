//! Welcome e-mails through a queue: a producer adds three jobs (one address
//! bounces once and is retried), a worker runs them through a tower
//! service, and after a graceful shutdown each job's outcome is printed.
//!
//! Run it without Redis (the queue lives in this process's memory):
//!
//! ```text
//! cargo run -p ee-queue --example emails
//! ```
//!
//! or on Redis, with the same code (only the queue is opened differently):
//!
//! ```text
//! EE_REDIS_URL=redis://127.0.0.1:6379 cargo run -p ee-queue --example emails
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ee_queue::{Backoff, Job, JobOptions, JobState, Queue, QueueError, Worker, WorkerConfig};

#[tokio::main]
async fn main() -> Result<(), QueueError> {
    // Configuration picks the backend; nothing below branches on it.
    let queue = match std::env::var("EE_REDIS_URL") {
        Ok(url) => Queue::connect(ee_core::RedisConfig::standalone(url), "emails").await?,
        Err(_) => Queue::memory("emails")?,
    };

    // Producer: three welcome e-mails, each tried up to 3 times.
    let retries = JobOptions::default().attempts(3, Backoff::fixed(Duration::from_millis(100)));
    let mut ids = Vec::new();
    for to in ["ada@example.com", "bounce@example.com", "grace@example.com"] {
        ids.push(queue.add("welcome", &to, retries.clone()).await?);
    }

    // Worker: any tower `Service<Job<T>>`; its response is the job's result,
    // its error the failure reason. The bouncing address fails once.
    let bounced = Arc::new(AtomicBool::new(false));
    let send = tower::service_fn(move |job: Job<String>| {
        let bounced = bounced.clone();
        async move {
            if job.data.starts_with("bounce") && !bounced.swap(true, Ordering::SeqCst) {
                return Err(format!("{} bounced (attempt {})", job.data, job.attempt));
            }
            Ok::<_, String>(format!("sent to {}", job.data))
        }
    });
    let settings = WorkerConfig {
        concurrency: 2,
        block_ms: 100,
        ..WorkerConfig::default()
    };
    let worker = Worker::new(queue.clone(), send).config(&settings)?.start();

    // Wait until every job is done, then shut down (on SIGTERM in a service).
    while queue.counts().await?.completed < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await;

    for id in &ids {
        if let Some(job) = queue.job(id).await? {
            assert_eq!(job.state, JobState::Completed);
            println!(
                "job {id}: {} after {} attempt(s): {}",
                job.state,
                job.attempts_made,
                job.return_value.unwrap_or_default()
            );
        }
    }
    queue.obliterate().await?;
    Ok(())
}
