//! `max_stalled` is a worker setting: how many times a job may stall (its
//! worker died holding it) before it fails for good.

use std::convert::Infallible;
use std::time::Duration;

use ee_core::RedisConfig;
use ee_queue::{Job, JobOptions, JobState, Queue, Worker, WorkerConfig};
use ee_testing::RedisServer;

/// Waits (up to 20 s) until `check` holds.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..1000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_max_stalled_3_a_job_fails_at_its_fourth_stall() {
    let server = RedisServer::start();
    let redis = RedisConfig::standalone(server.url()).with_timeout(Duration::from_secs(2));
    let queue = Queue::connect(redis, "charges").await.unwrap();
    let id = queue
        .add("charge", &"order-7", JobOptions::default())
        .await
        .unwrap();
    // As a configuration file would set it.
    let config: WorkerConfig = serde_json::from_str(
        r#"{ "max_stalled": 3, "lease_ms": 400, "stalled_interval_ms": 100, "block_ms": 100 }"#,
    )
    .unwrap();
    assert_eq!(config.max_stalled, 3);
    let stuck = tower::service_fn(|_job: Job<String>| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, Infallible>(())
    });

    // Three times a worker takes the job and dies holding it; each time
    // the next worker's checker puts it back and it runs again.
    for stalls in 0..=3 {
        let worker = Worker::new(queue.clone(), stuck)
            .config(&config)
            .unwrap()
            .start();
        until("the job runs", || async {
            let job = queue.job(&id).await.unwrap().unwrap();
            job.state == JobState::Active && job.stalled == stalls
        })
        .await;
        worker.abort();
        // Past the dead worker's lease, on the queue's clock.
        queue.advance_clock(Duration::from_secs(1)).await.unwrap();
    }
    // The fourth stall is one too many.
    let checker = Worker::new(queue.clone(), stuck)
        .config(&config)
        .unwrap()
        .start();
    until("the job failed", || async {
        queue.job(&id).await.unwrap().unwrap().state == JobState::Failed
    })
    .await;
    checker.abort();
    let job = queue.job(&id).await.unwrap().unwrap();
    assert_eq!(job.stalled, 4);
    assert_eq!(
        job.failed_reason.as_deref(),
        Some("job stalled more than the allowed 3 times")
    );
}
