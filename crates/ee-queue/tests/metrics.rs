//! The queue's metrics: jobs by state, wait and processing histograms, depth.

use std::time::Duration;

use ee_core::{RedisConfig, RedisConn};
use ee_queue::{Job, JobOptions, Queue, QueueConfig, Worker, WorkerConfig};
use ee_testing::RedisServer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_counted_by_state_and_timed() {
    let server = RedisServer::start();
    let config = RedisConfig::standalone(server.url());
    let conn = RedisConn::connect(&config).await.unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let queue = metrics::with_local_recorder(&recorder, || {
        Queue::with_connection(conn, config, "metered", QueueConfig::default())
    })
    .unwrap();
    for to in ["ok", "ok", "fail"] {
        queue.add("x", &to, JobOptions::default()).await.unwrap();
    }
    let service = tower::service_fn(|job: Job<String>| async move {
        if job.data == "fail" {
            Err("no")
        } else {
            Ok(())
        }
    });
    let worker = Worker::new(queue.clone(), service)
        .config(&WorkerConfig {
            block_ms: 100,
            ..WorkerConfig::default()
        })
        .unwrap()
        .start();
    for _ in 0..500 {
        let c = queue.counts().await.unwrap();
        if c.completed == 2 && c.failed == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await;
    queue.counts().await.unwrap();

    // One snapshot for everything (taking one drains it).
    let snapshot = snapshotter.snapshot().into_vec();
    let histogram = |name: &str| {
        snapshot
            .iter()
            .find_map(|(key, _, _, value)| match value {
                DebugValue::Histogram(v) if key.key().name() == name => Some(v.len()),
                _ => None,
            })
            .unwrap_or(0)
    };
    assert_eq!(histogram("ee_queue_wait_seconds"), 3);
    assert_eq!(histogram("ee_queue_processing_seconds"), 3);
    let depth = |state: &str| {
        snapshot.iter().find_map(|(key, _, _, value)| match value {
            DebugValue::Gauge(g)
                if key.key().name() == "ee_queue_depth"
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "state" && l.value() == state) =>
            {
                Some(g.into_inner())
            }
            _ => None,
        })
    };
    assert_eq!(depth("completed"), Some(2.0));
    assert_eq!(depth("failed"), Some(1.0));
    assert_eq!(depth("waiting"), Some(0.0));
    let jobs = |state: &str| {
        snapshot.iter().find_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n)
                if key.key().name() == "ee_queue_jobs_total"
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "state" && l.value() == state) =>
            {
                Some(*n)
            }
            _ => None,
        })
    };
    assert_eq!(jobs("added"), Some(3));
    assert_eq!(jobs("completed"), Some(2));
    assert_eq!(jobs("failed"), Some(1));

    // Every metric is described, with a unit, when the queue is opened.
    // (The worker's counts above went through the handles the queue
    // registered then, inside `with_local_recorder`: a lookup per job would
    // have gone to the global recorder, which records nothing.)
    for name in [
        ee_queue::METRIC_JOBS_TOTAL,
        ee_queue::METRIC_WAIT_SECONDS,
        ee_queue::METRIC_PROCESSING_SECONDS,
        ee_queue::METRIC_DEPTH,
        ee_queue::METRIC_BACKEND_ERRORS_TOTAL,
    ] {
        let described = snapshot
            .iter()
            .filter(|(key, ..)| key.key().name() == name)
            .map(|(_, unit, help, _)| {
                (unit.is_some(), help.as_ref().is_some_and(|h| !h.is_empty()))
            })
            .collect::<Vec<_>>();
        assert!(!described.is_empty(), "{name} was not registered");
        assert!(
            described.iter().all(|d| *d == (true, true)),
            "{name} lacks a unit or help text"
        );
    }
}
