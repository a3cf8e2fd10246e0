//! ee-queue against real Redis servers (a throwaway `redis-server` per
//! test, a 3-node Cluster for the Cluster test).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ee_core::RedisConfig;
use ee_queue::{
    Backoff, Job, JobOptions, JobState, Keep, NewJob, Queue, QueueConfig, QueueError, Worker,
    WorkerConfig,
};
use ee_testing::{RedisCluster, RedisServer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Email {
    to: String,
}

fn email(to: &str) -> Email {
    Email { to: to.into() }
}

async fn open(server: &RedisServer, name: &str) -> Queue {
    let config = RedisConfig::standalone(server.url()).with_timeout(Duration::from_secs(2));
    Queue::connect(config, name).await.expect("queue")
}

/// Waits (up to 20 s) until `check` holds.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn state(queue: &Queue, id: &str) -> Option<JobState> {
    queue.job(id).await.unwrap().map(|j| j.state)
}

/// A handler that records the `to` of each job it runs, in order.
#[allow(clippy::type_complexity)] // spelled out once, here, for every test
fn recorder() -> (
    Arc<Mutex<Vec<String>>>,
    impl tower::Service<
        Job<Email>,
        Response = String,
        Error = Infallible,
        Future = impl Future<Output = Result<String, Infallible>> + Send,
    > + Clone
    + Send
    + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let service = tower::service_fn(move |job: Job<Email>| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(job.data.to.clone());
            Ok::<_, Infallible>(format!("sent to {}", job.data.to))
        }
    });
    (seen, service)
}

/// The keys matching `pattern` on one server.
fn keys(server: &RedisServer, pattern: &str) -> Vec<String> {
    match server.command(&["KEYS", pattern]) {
        ee_testing::Reply::Array(Some(items)) => items.iter().filter_map(|r| r.as_text()).collect(),
        other => panic!("KEYS answered {other:?}"),
    }
}

fn quick() -> WorkerConfig {
    WorkerConfig {
        block_ms: 200,
        ..WorkerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_once_and_its_result_and_events_are_kept() {
    let server = RedisServer::start();
    let queue = open(&server, "mail").await;
    let id = queue
        .add("welcome", &email("ada@example.com"), JobOptions::default())
        .await
        .unwrap();
    assert_eq!(state(&queue, &id).await, Some(JobState::Waiting));

    let (seen, service) = recorder();
    let worker = Worker::new(queue.clone(), service)
        .config(&quick())
        .unwrap()
        .start();
    until("the job completed", || async {
        state(&queue, &id).await == Some(JobState::Completed)
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;

    assert_eq!(*seen.lock().unwrap(), ["ada@example.com"]);
    let job = queue.job(&id).await.unwrap().unwrap();
    assert_eq!(job.name, "welcome");
    assert_eq!(job.attempts_made, 1);
    assert_eq!(job.data, serde_json::json!({ "to": "ada@example.com" }));
    assert_eq!(
        job.return_value,
        Some(serde_json::json!("sent to ada@example.com"))
    );
    assert!(job.processed_ms.unwrap() >= job.created_ms);
    assert!(job.finished_ms.unwrap() >= job.processed_ms.unwrap());

    let events: Vec<String> = queue
        .events("0", 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.job_id == id)
        .map(|e| e.event)
        .collect();
    assert_eq!(events, ["waiting", "active", "completed"]);

    // Every key the queue wrote shares its hash tag.
    let keys = keys(&server, "*");
    assert!(!keys.is_empty());
    assert!(
        keys.iter().all(|k| k.starts_with("ee:queue:{mail}:")),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_add_keeps_order_and_a_job_id_deduplicates() {
    let server = RedisServer::start();
    let queue = open(&server, "bulk").await;
    let ids = queue
        .add_bulk((0..100).map(|i| NewJob::new("n", i)))
        .await
        .unwrap();
    assert_eq!(ids.len(), 100);
    let numbers: Vec<u64> = ids.iter().map(|id| id.parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert_eq!(queue.counts().await.unwrap().waiting, 100);
    // One stream entry holds the batch's 100 `waiting` events, in order; a
    // mixed batch keeps each job's event in place.
    let events = queue.events("0", 1).await.unwrap();
    assert_eq!(events.len(), 100);
    assert!(
        events
            .iter()
            .all(|e| e.event == "waiting" && e.stream_id == events[0].stream_id)
    );
    assert_eq!(
        events.iter().map(|e| e.job_id.clone()).collect::<Vec<_>>(),
        ids
    );
    let mixed = queue
        .add_bulk([
            NewJob::new("n", 1),
            NewJob::new("n", 2).options(JobOptions::default().delay(Duration::from_secs(60))),
            NewJob::new("n", 3),
            NewJob::new("n", 4),
        ])
        .await
        .unwrap();
    let events = queue.events(&events[0].stream_id, 10).await.unwrap();
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.event.as_str(), e.job_id.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("waiting", mixed[0].as_str()),
            ("delayed", mixed[1].as_str()),
            ("waiting", mixed[2].as_str()),
            ("waiting", mixed[3].as_str()),
        ]
    );
    assert_eq!(events[2].stream_id, events[3].stream_id);
    assert_ne!(events[0].stream_id, events[2].stream_id);
    queue.remove(&mixed[1]).await.unwrap();
    for id in [&mixed[0], &mixed[2], &mixed[3]] {
        queue.remove(id).await.unwrap();
    }

    let first = queue
        .add("charge", &1, JobOptions::default().job_id("order-7"))
        .await
        .unwrap();
    let again = queue
        .add("charge", &2, JobOptions::default().job_id("order-7"))
        .await
        .unwrap();
    assert_eq!((first.as_str(), again.as_str()), ("order-7", "order-7"));
    assert_eq!(queue.counts().await.unwrap().waiting, 101);
    let job = queue.job("order-7").await.unwrap().unwrap();
    assert_eq!(job.data, serde_json::json!(1), "the first payload stays");

    // The next numbered id is still free of the custom one.
    let next = queue.add("n", &0, JobOptions::default()).await.unwrap();
    assert_eq!(next, "105");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_by_priority_after_unprioritized_ones_and_delays_hold() {
    let server = RedisServer::start();
    let queue = open(&server, "order").await;
    queue
        .add(
            "x",
            &email("late"),
            JobOptions::default().delay(Duration::from_millis(600)),
        )
        .await
        .unwrap();
    for (to, priority) in [
        ("p3", 3),
        ("p1", 1),
        ("none-a", 0),
        ("p2", 2),
        ("none-b", 0),
    ] {
        queue
            .add("x", &email(to), JobOptions::default().priority(priority))
            .await
            .unwrap();
    }
    let counts = queue.counts().await.unwrap();
    assert_eq!(
        (counts.waiting, counts.prioritized, counts.delayed),
        (2, 3, 1)
    );
    let (seen, service) = recorder();
    let worker = Worker::new(queue.clone(), service)
        .config(&quick())
        .unwrap()
        .concurrency(1)
        .start();
    until("all six ran", || async { seen.lock().unwrap().len() == 6 }).await;
    worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        *seen.lock().unwrap(),
        ["none-a", "none-b", "p1", "p2", "p3", "late"]
    );
    let late = queue
        .jobs(JobState::Completed, 0, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.data["to"] == "late")
        .unwrap();
    assert!(
        late.processed_ms.unwrap() >= late.created_ms + 600,
        "taken {} ms after it was added",
        late.processed_ms.unwrap() - late.created_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_with_backoff_then_go_to_the_failed_set() {
    let server = RedisServer::start();
    let queue = open(&server, "retry").await;
    let runs = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let counted = runs.clone();
    // `flaky` succeeds on its third attempt; `doomed` never does.
    let service = tower::service_fn(move |job: Job<Email>| {
        let counted = counted.clone();
        async move {
            *counted
                .lock()
                .unwrap()
                .entry(job.data.to.clone())
                .or_default() += 1;
            if job.data.to == "flaky" && job.attempt >= 3 {
                Ok(job.attempt)
            } else {
                Err(format!("smtp refused (attempt {})", job.attempt))
            }
        }
    });
    let backoff = Backoff::fixed(Duration::from_millis(150));
    let flaky = queue
        .add(
            "x",
            &email("flaky"),
            JobOptions::default().attempts(3, backoff),
        )
        .await
        .unwrap();
    let doomed = queue
        .add(
            "x",
            &email("doomed"),
            JobOptions::default().attempts(2, backoff),
        )
        .await
        .unwrap();
    let worker = Worker::new(queue.clone(), service)
        .config(&quick())
        .unwrap()
        .start();
    until("both finished", || async {
        state(&queue, &flaky).await == Some(JobState::Completed)
            && state(&queue, &doomed).await == Some(JobState::Failed)
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;

    assert_eq!(runs.lock().unwrap()["flaky"], 3);
    assert_eq!(runs.lock().unwrap()["doomed"], 2);
    let f = queue.job(&flaky).await.unwrap().unwrap();
    assert_eq!(
        (f.attempts_made, f.return_value),
        (3, Some(serde_json::json!(3)))
    );
    let d = queue.job(&doomed).await.unwrap().unwrap();
    assert_eq!(d.attempts_made, 2);
    assert_eq!(d.failed_reason.as_deref(), Some("smtp refused (attempt 2)"));
    assert_eq!(queue.jobs(JobState::Failed, 0, 10).await.unwrap().len(), 1);

    // Each retry waited in `delayed`, and the events say so.
    let events = queue.events("0", 1000).await.unwrap();
    let of_flaky: Vec<(String, Option<String>)> = events
        .iter()
        .filter(|e| e.job_id == flaky)
        .map(|e| (e.event.clone(), e.fields.get("retry").cloned()))
        .collect();
    let failed_then_delayed = of_flaky
        .windows(2)
        .filter(|w| w[0] == ("failed".into(), Some("1".into())) && w[1].0 == "delayed")
        .count();
    assert_eq!(failed_then_delayed, 2, "{of_flaky:?}");
    let last = events.iter().rfind(|e| e.job_id == doomed).unwrap();
    assert_eq!(
        (
            last.event.as_str(),
            last.fields.get("retry").map(String::as_str)
        ),
        ("failed", Some("0"))
    );

    // A failed job (the dead-letter set) can be retried by hand.
    let fixed = tower::service_fn(|_job: Job<Email>| async { Ok::<_, Infallible>("ok") });
    queue.retry(&doomed).await.unwrap();
    let worker = Worker::new(queue.clone(), fixed)
        .config(&quick())
        .unwrap()
        .start();
    until("the retried job completed", || async {
        state(&queue, &doomed).await == Some(JobState::Completed)
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;
    assert!(matches!(
        queue.retry("nope").await,
        Err(QueueError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_panics_and_timeouts_fail_the_job_not_the_worker() {
    let server = RedisServer::start();
    let queue = open(&server, "bad").await;
    let wrong = queue
        .add(
            "x",
            &serde_json::json!({ "recipient": 42 }),
            JobOptions::default().attempts(5, Backoff::fixed(Duration::ZERO)),
        )
        .await
        .unwrap();
    let panics = queue
        .add("x", &email("panic"), JobOptions::default())
        .await
        .unwrap();
    let slow = queue
        .add(
            "x",
            &email("slow"),
            JobOptions::default().timeout(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    let fine = queue
        .add("x", &email("fine"), JobOptions::default())
        .await
        .unwrap();
    let service = tower::service_fn(|job: Job<Email>| async move {
        match job.data.to.as_str() {
            "panic" => panic!("boom"),
            "slow" => tokio::time::sleep(Duration::from_secs(30)).await,
            _ => {}
        }
        Ok::<_, Infallible>(())
    });
    let worker = Worker::new(queue.clone(), service)
        .config(&quick())
        .unwrap()
        .start();
    until("all four finished", || async {
        let c = queue.counts().await.unwrap();
        c.failed == 3 && c.completed == 1
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;
    let reason = |id: String| {
        let queue = queue.clone();
        async move {
            queue
                .job(&id)
                .await
                .unwrap()
                .unwrap()
                .failed_reason
                .unwrap()
        }
    };
    let decode = reason(wrong.clone()).await;
    assert!(
        decode.contains("does not decode") && decode.contains("missing field `to`"),
        "{decode}"
    );
    assert_eq!(
        queue.job(&wrong).await.unwrap().unwrap().attempts_made,
        1,
        "a payload that does not decode is not retried"
    );
    assert_eq!(reason(panics).await, "the handler panicked: boom");
    assert_eq!(reason(slow).await, "the job timed out after 100 ms");
    assert_eq!(state(&queue, &fine).await, Some(JobState::Completed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_at_add_is_refused_and_nothing_is_added() {
    let server = RedisServer::start();
    let config = QueueConfig {
        max_payload_bytes: 1024,
        ..QueueConfig::default()
    };
    let queue = Queue::connect_with(RedisConfig::standalone(server.url()), "limits", config)
        .await
        .unwrap();
    let big = "x".repeat(2000);
    let err = queue
        .add("x", &big, JobOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            QueueError::PayloadTooLarge {
                size: 2002,
                limit: 1024
            }
        ),
        "{err}"
    );
    let problem = ee_core::Problem::from(err);
    assert_eq!(problem.status(), 413);
    assert_eq!(
        problem.type_uri(),
        "https://ee.rs/problems/queue/payload-too-large"
    );

    // One bad job spoils the whole batch.
    let batch = vec![NewJob::new("x", "small".to_owned()), NewJob::new("x", big)];
    assert!(queue.add_bulk(batch).await.is_err());
    for (name, options) in [
        ("", JobOptions::default()),
        (
            "x",
            JobOptions::default().priority(ee_queue::MAX_PRIORITY + 1),
        ),
        ("x", JobOptions::default().job_id("123")),
        ("x", JobOptions::default().job_id("{slot}")),
        (
            "x",
            JobOptions {
                attempts: Some(0),
                ..JobOptions::default()
            },
        ),
    ] {
        let err = queue.add(name, &1, options).await.unwrap_err();
        let text = err.to_string();
        assert_eq!(ee_core::Problem::from(err).status(), 400, "{text}");
    }
    assert_eq!(queue.counts().await.unwrap(), ee_queue::Counts::default());
    assert!(
        Queue::connect(RedisConfig::standalone(server.url()), "")
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_job_is_run_again_by_another_after_its_lease() {
    let server = RedisServer::start();
    let queue = open(&server, "stall").await;
    let id = queue
        .add("x", &email("once"), JobOptions::default())
        .await
        .unwrap();
    let stuck = tower::service_fn(|_job: Job<Email>| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, Infallible>(())
    });
    let short = WorkerConfig {
        lease_ms: 400,
        stalled_interval_ms: 100,
        ..quick()
    };
    let dying = Worker::new(queue.clone(), stuck)
        .config(&short)
        .unwrap()
        .start();
    until("the job is active", || async {
        state(&queue, &id).await == Some(JobState::Active)
    })
    .await;
    dying.abort(); // as a SIGKILL would: no outcome, no more renewals

    let (seen, service) = recorder();
    let rescuer = Worker::new(queue.clone(), service)
        .config(&short)
        .unwrap()
        .start();
    until("the job completed", || async {
        state(&queue, &id).await == Some(JobState::Completed)
    })
    .await;
    rescuer.shutdown(Duration::from_secs(5)).await;
    assert_eq!(*seen.lock().unwrap(), ["once"]);
    let job = queue.job(&id).await.unwrap().unwrap();
    assert_eq!((job.stalled, job.attempts_made), (1, 1));
    assert!(
        queue
            .events("0", 100)
            .await
            .unwrap()
            .iter()
            .any(|e| e.event == "stalled")
    );

    // A job that keeps stalling fails once it passes `max_stalled` (1).
    let id = queue
        .add("x", &email("cursed"), JobOptions::default())
        .await
        .unwrap();
    let stuck = tower::service_fn(|_job: Job<Email>| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, Infallible>(())
    });
    let first = Worker::new(queue.clone(), stuck)
        .config(&short)
        .unwrap()
        .start();
    until("the job is active", || async {
        state(&queue, &id).await == Some(JobState::Active)
    })
    .await;
    first.abort();
    let second = Worker::new(queue.clone(), stuck)
        .config(&short)
        .unwrap()
        .start();
    until("the job stalled once and is active again", || async {
        let job = queue.job(&id).await.unwrap().unwrap();
        job.stalled == 1 && job.state == JobState::Active
    })
    .await;
    second.abort();
    let third = Worker::new(queue.clone(), stuck)
        .config(&short)
        .unwrap()
        .start();
    until("the job failed", || async {
        state(&queue, &id).await == Some(JobState::Failed)
    })
    .await;
    third.abort();
    let job = queue.job(&id).await.unwrap().unwrap();
    assert_eq!(job.stalled, 2);
    assert_eq!(
        job.failed_reason.as_deref(),
        Some("job stalled more than the allowed 1 times")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_run_each_of_200_jobs_exactly_once() {
    let server = RedisServer::start();
    let queue = open(&server, "many").await;
    let ids = queue
        .add_bulk((0..200).map(|i| NewJob::new("n", email(&i.to_string()))))
        .await
        .unwrap();
    let (seen, service) = recorder();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            Worker::new(queue.clone(), service.clone())
                .config(&quick())
                .unwrap()
                .concurrency(8)
                .start()
        })
        .collect();
    until("200 completed", || async {
        queue.counts().await.unwrap().completed == 200
    })
    .await;
    for w in workers {
        assert_eq!(w.shutdown(Duration::from_secs(5)).await.abandoned, 0);
    }
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|s| s.parse::<u32>().unwrap());
    let expected: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    assert_eq!(seen, expected);
    assert_eq!(ids.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_across_four_workers() {
    let server = RedisServer::start();
    let queue = open(&server, "limited").await;
    queue
        .add_bulk((0..30).map(|i| NewJob::new("n", email(&i.to_string()))))
        .await
        .unwrap();
    let (_, service) = recorder();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            Worker::new(queue.clone(), service.clone())
                .config(&quick())
                .unwrap()
                .concurrency(5)
                .rate_limit(10, Duration::from_millis(1000))
                .start()
        })
        .collect();
    until("30 completed", || async {
        queue.counts().await.unwrap().completed == 30
    })
    .await;
    for w in workers {
        w.shutdown(Duration::from_secs(5)).await;
    }
    let mut started: Vec<u64> = queue
        .jobs(JobState::Completed, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|j| j.processed_ms.unwrap())
        .collect();
    started.sort_unstable();
    // Fixed windows of 1 s, each opened by the first job after the last
    // closed: exactly 10 start in each, so the 30 span three windows.
    for w in 0..3 {
        let opened = started[w * 10];
        let in_window = started
            .iter()
            .filter(|t| **t >= opened && **t < opened + 1000)
            .count();
        assert_eq!(in_window, 10, "window {w}: {started:?}");
    }
    assert!(started[29] - started[0] >= 2000, "{started:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_keeps_its_jobs_until_resumed() {
    let server = RedisServer::start();
    let queue = open(&server, "paused").await;
    queue.pause().await.unwrap();
    let id = queue
        .add("x", &email("later"), JobOptions::default())
        .await
        .unwrap();
    let (seen, service) = recorder();
    let worker = Worker::new(queue.clone(), service)
        .config(&quick())
        .unwrap()
        .start();
    // Several take attempts happen in this time (the worker blocks 200 ms at most).
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(seen.lock().unwrap().is_empty());
    let counts = queue.counts().await.unwrap();
    assert!(counts.paused && counts.waiting == 1);
    queue.resume().await.unwrap();
    until("the job completed", || async {
        state(&queue, &id).await == Some(JobState::Completed)
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_jobs_finish_up_to_the_deadline() {
    let server = RedisServer::start();
    let queue = open(&server, "drain").await;
    let service = tower::service_fn(|job: Job<u64>| async move {
        tokio::time::sleep(Duration::from_millis(job.data)).await;
        Ok::<_, Infallible>(())
    });
    // Adds a job sleeping `ms`, starts a worker, and shuts it down with
    // `deadline` once the job runs.
    let run = |ms: u64, deadline: Duration| {
        let queue = queue.clone();
        async move {
            let id = queue.add("x", &ms, JobOptions::default()).await.unwrap();
            let worker = Worker::new(queue.clone(), service)
                .config(&quick())
                .unwrap()
                .start();
            until("active", || async {
                state(&queue, &id).await == Some(JobState::Active)
            })
            .await;
            (id, worker.shutdown(deadline).await)
        }
    };
    let (short, report) = run(300, Duration::from_secs(5)).await;
    assert_eq!(report.abandoned, 0);
    assert_eq!(state(&queue, &short).await, Some(JobState::Completed));

    let (long, report) = run(60_000, Duration::from_millis(200)).await;
    assert_eq!(report.abandoned, 1);
    // Left active with its lease, for the stalled-job checker.
    assert_eq!(state(&queue, &long).await, Some(JobState::Active));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetched_jobs_go_back_to_the_front_of_the_queue_on_shutdown() {
    let server = RedisServer::start();
    let queue = open(&server, "prefetch").await;
    let ids = queue
        .add_bulk((0..4).map(|_| NewJob::new("x", 400u64)))
        .await
        .unwrap();
    let service = tower::service_fn(|job: Job<u64>| async move {
        tokio::time::sleep(Duration::from_millis(job.data)).await;
        Ok::<_, Infallible>(())
    });
    let config = WorkerConfig {
        concurrency: 1,
        prefetch: Some(3),
        ..quick()
    };
    let worker = Worker::new(queue.clone(), service)
        .config(&config)
        .unwrap()
        .start();
    until("all four are taken", || async {
        queue.counts().await.unwrap().active == 4
    })
    .await;
    let report = worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.abandoned, 0);
    assert_eq!(state(&queue, &ids[0]).await, Some(JobState::Completed));
    for id in &ids[1..] {
        let job = queue.job(id).await.unwrap().unwrap();
        assert_eq!(
            (job.state, job.attempts_made),
            (JobState::Waiting, 0),
            "{id}"
        );
    }
    // Back in their order, at the front: the next worker takes them first.
    let next = queue.jobs(JobState::Waiting, 0, 10).await.unwrap();
    let next: Vec<&str> = next.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(next, [&ids[1], &ids[2], &ids[3]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_promote_remove_and_retention() {
    let server = RedisServer::start();
    let queue = open(&server, "admin").await;
    let service = tower::service_fn(|job: Job<Email>| async move {
        job.progress(&serde_json::json!({ "step": "rendered" }))
            .await
            .unwrap();
        Ok::<_, Infallible>(())
    });
    let delayed = queue
        .add(
            "x",
            &email("d"),
            JobOptions::default().delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let doomed = queue
        .add(
            "x",
            &email("r"),
            JobOptions::default().delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert!(matches!(
        queue.retry(&delayed).await,
        Err(QueueError::WrongState { ref state, .. }) if state == "delayed"
    ));
    queue.remove(&doomed).await.unwrap();
    assert_eq!(queue.job(&doomed).await.unwrap(), None);
    queue.promote(&delayed).await.unwrap();
    assert_eq!(state(&queue, &delayed).await, Some(JobState::Waiting));
    let gone = queue
        .add(
            "x",
            &email("g"),
            JobOptions::default().remove_on_complete(Keep::NONE),
        )
        .await
        .unwrap();
    let worker = Worker::new(queue.clone(), service)
        .config(&quick())
        .unwrap()
        .start();
    until("the promoted job completed", || async {
        state(&queue, &delayed).await == Some(JobState::Completed)
    })
    .await;
    until("the Keep::NONE job is gone", || async {
        queue.job(&gone).await.unwrap().is_none()
    })
    .await;
    let job = queue.job(&delayed).await.unwrap().unwrap();
    assert_eq!(
        job.progress,
        Some(serde_json::json!({ "step": "rendered" }))
    );
    assert!(
        queue
            .events("0", 100)
            .await
            .unwrap()
            .iter()
            .any(|e| e.event == "progress"
                && e.job_id == delayed
                && e.fields.get("progress").map(String::as_str) == Some(r#"{"step":"rendered"}"#))
    );

    // Keep the newest two completed jobs.
    let ids = queue
        .add_bulk((0..5).map(|i| {
            NewJob::new("n", email(&i.to_string()))
                .options(JobOptions::default().remove_on_complete(Keep::last(2)))
        }))
        .await
        .unwrap();
    until("all five ran", || async {
        let mut done = 0;
        for id in &ids {
            if !matches!(
                state(&queue, id).await,
                Some(JobState::Waiting | JobState::Active)
            ) {
                done += 1;
            }
        }
        done == 5
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(queue.counts().await.unwrap().completed, 2);
    queue.obliterate().await.unwrap();
    assert!(matches!(
        server.command(&["DBSIZE"]),
        ee_testing::Reply::Integer(0)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producers_trace_context_travels_with_the_job() {
    let server = RedisServer::start();
    let queue = open(&server, "traced").await;
    let root = ee_logging::TraceContext::new_root();
    let trace_id = root.trace_id();
    let id = root
        .clone()
        .scope(None, queue.add("x", &email("t"), JobOptions::default()))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(None));
    let log = seen.clone();
    let service = tower::service_fn(move |job: Job<Email>| {
        let log = log.clone();
        async move {
            let current = ee_logging::TraceContext::current().map(|c| c.trace_id());
            *log.lock().unwrap() = Some((job.traceparent.clone(), current));
            Ok::<_, Infallible>(())
        }
    });
    let worker = Worker::new(queue.clone(), service)
        .config(&quick())
        .unwrap()
        .start();
    until("ran", || async { seen.lock().unwrap().is_some() }).await;
    worker.shutdown(Duration::from_secs(5)).await;
    let (traceparent, current) = seen.lock().unwrap().clone().unwrap();
    assert!(traceparent.unwrap().contains(&trace_id));
    assert_eq!(current, Some(trace_id));
    assert!(queue.job(&id).await.unwrap().unwrap().traceparent.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_an_error_not_a_crash_and_work_resumes_after() {
    let mut server = RedisServer::start();
    let config = RedisConfig::standalone(server.url()).with_timeout(Duration::from_millis(500));
    let queue = Queue::connect(config, "outage").await.unwrap();
    let (seen, service) = recorder();
    let worker = Worker::new(queue.clone(), service)
        .config(&quick())
        .unwrap()
        .start();
    server.stop();
    let err = queue
        .add("x", &email("lost?"), JobOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Unavailable(_)), "{err}");
    assert_eq!(ee_core::Problem::from(err).status(), 503);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart();
    let mut id = None;
    for _ in 0..200 {
        if let Ok(added) = queue.add("x", &email("after"), JobOptions::default()).await {
            id = Some(added);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = id.expect("Redis is back within 10 s");
    until("the job added after the restart completed", || async {
        queue.job(&id).await.ok().flatten().map(|j| j.state) == Some(JobState::Completed)
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(*seen.lock().unwrap(), ["after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_works_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3);
    let config = RedisConfig::cluster(cluster.urls()).with_timeout(Duration::from_secs(2));
    let queue = Queue::connect(config, "clustered").await.unwrap();
    let ids = queue
        .add_bulk((0..50).map(|i| NewJob::new("n", email(&i.to_string()))))
        .await
        .unwrap();
    let delayed = queue
        .add(
            "x",
            &email("d"),
            JobOptions::default().delay(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    let (seen, service) = recorder();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            Worker::new(queue.clone(), service.clone())
                .config(&quick())
                .unwrap()
                .start()
        })
        .collect();
    until("51 completed", || async {
        queue.counts().await.unwrap().completed == 51
    })
    .await;
    for w in workers {
        w.shutdown(Duration::from_secs(5)).await;
    }
    assert_eq!(seen.lock().unwrap().len(), 51);
    assert_eq!(state(&queue, &delayed).await, Some(JobState::Completed));
    // Every key of the queue is on the node that owns `{clustered}`.
    let owner = cluster.node_for_key("{clustered}");
    let on_owner = keys(owner, "ee:queue:*");
    assert!(
        on_owner.contains(&format!("ee:queue:{{clustered}}:job:{}", ids[0])),
        "{on_owner:?}"
    );
    for node in cluster.nodes() {
        if node.port() != owner.port() {
            assert!(keys(node, "ee:queue:*").is_empty());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_add_one_job_per_tick() {
    let server = RedisServer::start();
    let queue = open(&server, "cron").await;
    queue
        .repeat(
            "digest",
            ee_queue::Schedule::every(Duration::from_secs(1)).unwrap(),
            "send-digest",
            &email("ops@example.com"),
            JobOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(queue.repeats().await.unwrap().len(), 1);
    let schedulers: Vec<_> = (0..3)
        .map(|_| ee_queue::Scheduler::start(queue.clone()))
        .collect();
    let (seen, service) = recorder();
    let worker = Worker::new(queue.clone(), service)
        .config(&WorkerConfig {
            schedule_repeats: false,
            ..quick()
        })
        .unwrap()
        .start();
    until("four ticks ran", || async {
        seen.lock().unwrap().len() >= 4
    })
    .await;
    assert!(queue.remove_repeat("digest").await.unwrap());
    for s in schedulers {
        s.stop();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.shutdown(Duration::from_secs(5)).await;

    let done = queue.jobs(JobState::Completed, 0, 100).await.unwrap();
    let mut ticks: Vec<u64> = done
        .iter()
        .map(|j| j.id.strip_prefix("rpt:digest:").unwrap().parse().unwrap())
        .collect();
    ticks.sort_unstable();
    assert_eq!(
        seen.lock().unwrap().len(),
        ticks.len(),
        "each tick ran once"
    );
    assert!(
        ticks.windows(2).all(|w| w[1] - w[0] == 1000),
        "one job per tick: {ticks:?}"
    );
    assert!(ticks.iter().all(|t| t % 1000 == 0));
    // Removed: no pending tick is left, and no scheduler adds one.
    assert_eq!(queue.counts().await.unwrap().delayed, 0);
    assert!(queue.repeats().await.unwrap().is_empty());
    let bad = queue
        .repeat(
            "x",
            ee_queue::Schedule::Cron {
                pattern: "nonsense".into(),
                tz: "UTC".into(),
            },
            "x",
            &1,
            JobOptions::default(),
        )
        .await
        .unwrap_err();
    let text = bad.to_string();
    assert_eq!(ee_core::Problem::from(bad).status(), 400, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_parent_runs_after_its_children_with_their_results() {
    use ee_queue::FlowJob;
    let server = RedisServer::start();
    let queue = open(&server, "flow").await;
    // ship ← (pick ← label), invoice
    let flow = FlowJob::new("ship", &email("ship"))
        .unwrap()
        .child(
            FlowJob::new("pick", &email("pick"))
                .unwrap()
                .child(FlowJob::new("label", &email("label")).unwrap()),
        )
        .child(FlowJob::new("invoice", &email("invoice")).unwrap());
    let ids = queue.add_flow(flow).await.unwrap();
    assert_eq!(ids.children.len(), 2);
    assert_eq!(ids.children[0].children.len(), 1);
    assert_eq!(
        state(&queue, &ids.id).await,
        Some(JobState::WaitingChildren)
    );
    assert_eq!(
        state(&queue, &ids.children[0].id).await,
        Some(JobState::WaitingChildren)
    );
    assert_eq!(queue.counts().await.unwrap().waiting_children, 2);

    let order = Arc::new(Mutex::new(Vec::new()));
    let log = order.clone();
    let service = tower::service_fn(move |job: Job<Email>| {
        let log = log.clone();
        async move {
            let kids: HashMap<String, String> = job.children().await.unwrap();
            let mut kids: Vec<String> = kids.into_values().collect();
            kids.sort();
            log.lock().unwrap().push((job.data.to.clone(), kids));
            Ok::<_, Infallible>(format!("{} done", job.data.to))
        }
    });
    let worker = Worker::new(queue.clone(), service)
        .config(&quick())
        .unwrap()
        .concurrency(4)
        .start();
    until("the parent completed", || async {
        state(&queue, &ids.id).await == Some(JobState::Completed)
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;
    let order = order.lock().unwrap().clone();
    let at = |name: &str| order.iter().position(|(n, _)| n == name).unwrap();
    assert!(at("label") < at("pick") && at("pick") < at("ship") && at("invoice") < at("ship"));
    let ship = &order[at("ship")].1;
    assert_eq!(ship, &["invoice done", "pick done"]);

    // A child that fails for good fails its parent.
    let flow = FlowJob::new("ship", &email("ship"))
        .unwrap()
        .child(FlowJob::new("pick", &email("broken")).unwrap());
    let ids = queue.add_flow(flow).await.unwrap();
    let failing = tower::service_fn(|job: Job<Email>| async move {
        if job.data.to == "broken" {
            Err("out of stock")
        } else {
            Ok(())
        }
    });
    let worker = Worker::new(queue.clone(), failing)
        .config(&quick())
        .unwrap()
        .start();
    until("the parent failed", || async {
        state(&queue, &ids.id).await == Some(JobState::Failed)
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;
    let parent = queue.job(&ids.id).await.unwrap().unwrap();
    assert_eq!(
        parent.failed_reason.unwrap(),
        format!("child {} failed: out of stock", ids.children[0].id)
    );
    let bad = FlowJob::new("x", &1).unwrap().child(
        FlowJob::new("y", &2)
            .unwrap()
            .options(JobOptions::default().job_id("mine")),
    );
    assert_eq!(
        ee_core::Problem::from(queue.add_flow(bad).await.unwrap_err()).status(),
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_waits_exactly_its_delay_on_the_queues_clock() {
    let server = RedisServer::start();
    let queue = open(&server, "backoff").await;
    let runs = Arc::new(Mutex::new(0u32));
    let counted = runs.clone();
    let service = tower::service_fn(move |_job: Job<Email>| {
        let counted = counted.clone();
        async move {
            *counted.lock().unwrap() += 1;
            Err::<(), _>("still down")
        }
    });
    let hour = Duration::from_secs(3600);
    let id = queue
        .add(
            "x",
            &email("b"),
            JobOptions::default().attempts(3, Backoff::exponential(hour)),
        )
        .await
        .unwrap();
    let worker = Worker::new(queue.clone(), service)
        .config(&quick())
        .unwrap()
        .start();
    let ran = |n: u32| {
        let runs = runs.clone();
        let queue = queue.clone();
        let id = id.clone();
        async move {
            *runs.lock().unwrap() == n && queue.job(&id).await.unwrap().unwrap().attempts_made == n
        }
    };
    until("the first attempt failed", || ran(1)).await;
    assert_eq!(state(&queue, &id).await, Some(JobState::Delayed));

    // 59 minutes later the retry is not due; at 61 it runs.
    queue
        .advance_clock(Duration::from_secs(59 * 60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(*runs.lock().unwrap(), 1);
    queue
        .advance_clock(Duration::from_secs(2 * 60))
        .await
        .unwrap();
    until("the second attempt failed", || ran(2)).await;
    // The next backoff is two hours.
    queue
        .advance_clock(hour + Duration::from_secs(59 * 60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(*runs.lock().unwrap(), 2);
    queue
        .advance_clock(Duration::from_secs(2 * 60))
        .await
        .unwrap();
    until("the job failed for good", || async {
        state(&queue, &id).await == Some(JobState::Failed)
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(*runs.lock().unwrap(), 3);
    let delays: Vec<String> = queue
        .events("0", 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "delayed")
        .filter_map(|e| e.fields.get("delay").cloned())
        .collect();
    assert_eq!(delays, ["3600000", "7200000"]);
}
