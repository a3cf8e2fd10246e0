//! Sends order confirmations until SIGTERM / Ctrl-C, then drains for up to
//! 10 s. Settings from the environment: `EE_REDIS_URL`, `WORK_MS` (time
//! per job, default 5), `CONCURRENCY` (10), `LEASE_MS` (30 000),
//! `STALLED_MS` (30 000).

use std::time::Duration;

use ee_example_queue::{Confirmation, QUEUE, SENT, env_number, redis_config};
use ee_queue::{Job, Queue, Worker, WorkerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = redis_config();
    let queue = Queue::connect(config.clone(), QUEUE).await?;
    let redis = ee_core::RedisConn::connect(&config).await?;
    let work = Duration::from_millis(env_number("WORK_MS", 5));
    let send = tower::service_fn(move |job: Job<Confirmation>| {
        let redis = redis.clone();
        async move {
            tokio::time::sleep(work).await;
            // "Sent": the order id goes on a list the tests read.
            let mut push = redis::cmd("RPUSH");
            push.arg(SENT).arg(job.data.order_id);
            match redis.query::<u64>(&push).await {
                Ok(_) => Ok::<_, String>(format!("sent to {}", job.data.email)),
                Err(e) => Err(e.to_string()),
            }
        }
    });
    let settings = WorkerConfig {
        concurrency: usize::try_from(env_number("CONCURRENCY", 10))?,
        lease_ms: env_number("LEASE_MS", 30_000),
        stalled_interval_ms: env_number("STALLED_MS", 30_000),
        ..WorkerConfig::default()
    };
    let worker = Worker::new(queue, send).config(&settings)?.start();
    println!("worker running on `{QUEUE}`");
    shutdown_signal().await;
    let report = worker.shutdown(Duration::from_secs(10)).await;
    println!("worker stopped ({} jobs abandoned)", report.abandoned);
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
