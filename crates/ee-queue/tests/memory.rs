//! The queue in memory: the same `Queue` and `Worker` as on Redis, no Redis.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ee_core::Problem;
use ee_queue::{
    Backoff, Counts, FlowJob, Job, JobInfo, JobOptions, JobState, NewJob, Queue, QueueConfig,
    QueueError, Schedule, Worker,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Mail {
    to: String,
}

fn mail(to: &str) -> Mail {
    Mail { to: to.into() }
}

async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn memory(name: &str) -> Queue {
    Queue::memory(name).expect("a valid name")
}

async fn counts(q: &Queue) -> Counts {
    q.counts().await.expect("memory does not fail")
}

async fn job(q: &Queue, id: &str) -> Option<JobInfo> {
    q.job(id).await.expect("memory does not fail")
}

async fn state(q: &Queue, id: &str) -> Option<JobState> {
    job(q, id).await.map(|j| j.state)
}

async fn add(q: &Queue, to: &str, options: JobOptions) -> String {
    q.add("x", &mail(to), options).await.expect("added")
}

type Seen = Arc<Mutex<Vec<String>>>;

fn recorder() -> (
    Seen,
    impl tower::Service<
        Job<Mail>,
        Response = String,
        Error = String,
        Future = std::future::Ready<Result<String, String>>,
    > + Clone
    + Send
    + 'static,
) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let service = tower::service_fn(move |job: Job<Mail>| {
        s.lock().unwrap().push(job.data.to.clone());
        std::future::ready(Ok::<_, String>(format!("sent to {}", job.data.to)))
    });
    (seen, service)
}

#[tokio::test]
async fn jobs_run_and_complete_with_their_results() {
    let q = memory("mail");
    let id = q
        .add("welcome", &mail("ada@example.com"), JobOptions::default())
        .await
        .unwrap();
    assert_eq!(counts(&q).await.waiting, 1);
    let (seen, service) = recorder();
    let worker = Worker::new(q.clone(), service).start();
    until("completed", || async {
        state(&q, &id).await == Some(JobState::Completed)
    })
    .await;
    let report = worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.abandoned, 0);
    let done = job(&q, &id).await.unwrap();
    assert_eq!(done.attempts_made, 1);
    assert_eq!(
        done.return_value,
        Some(serde_json::json!("sent to ada@example.com"))
    );
    assert!(done.finished_ms.unwrap() >= done.created_ms);
    assert_eq!(*seen.lock().unwrap(), ["ada@example.com"]);
    let c = counts(&q).await;
    assert_eq!((c.waiting, c.active, c.completed), (0, 0, 1));

    // A job id de-duplicates; numbered ids go on.
    let a = add(&q, "b", JobOptions::default().job_id("order-1")).await;
    let b = add(&q, "c", JobOptions::default().job_id("order-1")).await;
    assert_eq!((a.as_str(), b.as_str()), ("order-1", "order-1"));
    assert_eq!(
        job(&q, "order-1").await.unwrap().data,
        serde_json::json!({"to": "b"})
    );
    assert_eq!(add(&q, "d", JobOptions::default()).await, "2");
}

#[tokio::test]
async fn priority_order_and_delays_hold() {
    let q = memory("order");
    add(
        &q,
        "late",
        JobOptions::default().delay(Duration::from_millis(300)),
    )
    .await;
    q.add_bulk([
        NewJob::new("x", mail("p3")).options(JobOptions::default().priority(3)),
        NewJob::new("x", mail("p1")).options(JobOptions::default().priority(1)),
        NewJob::new("x", mail("none-a")),
        NewJob::new("x", mail("p2")).options(JobOptions::default().priority(2)),
        NewJob::new("x", mail("none-b")),
    ])
    .await
    .unwrap();
    assert_eq!(counts(&q).await.delayed, 1);
    assert_eq!(counts(&q).await.prioritized, 3);
    let (seen, service) = recorder();
    let started = Instant::now();
    let worker = Worker::new(q.clone(), service).concurrency(1).start();
    until("all six ran", || async { seen.lock().unwrap().len() == 6 }).await;
    assert!(started.elapsed() >= Duration::from_millis(290));
    worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(
        *seen.lock().unwrap(),
        ["none-a", "none-b", "p1", "p2", "p3", "late"]
    );
}

#[tokio::test]
async fn failures_retry_with_backoff_then_fail_and_can_be_retried_by_hand() {
    let q = memory("flaky");
    let runs = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let r = runs.clone();
    let service = tower::service_fn(move |_job: Job<Mail>| {
        r.lock().unwrap().push(Instant::now());
        std::future::ready(Err::<(), _>("smtp refused"))
    });
    let id = add(
        &q,
        "a",
        JobOptions::default().attempts(3, Backoff::fixed(Duration::from_millis(100))),
    )
    .await;
    let worker = Worker::new(q.clone(), service).start();
    until("failed", || async {
        state(&q, &id).await == Some(JobState::Failed)
    })
    .await;
    let failed = job(&q, &id).await.unwrap();
    assert_eq!(failed.attempts_made, 3);
    assert_eq!(failed.failed_reason.as_deref(), Some("smtp refused"));
    let times = runs.lock().unwrap().clone();
    assert_eq!(times.len(), 3);
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(95),
            "{:?}",
            w[1] - w[0]
        );
    }
    assert_eq!(counts(&q).await.failed, 1);

    // By hand: runs again (three more attempts), then removed.
    q.retry(&id).await.unwrap();
    until("failed again", || async {
        runs.lock().unwrap().len() == 6 && counts(&q).await.failed == 1
    })
    .await;
    assert!(matches!(
        q.retry("nope").await,
        Err(QueueError::NotFound(_))
    ));
    q.remove(&id).await.unwrap();
    assert!(job(&q, &id).await.is_none());
    worker.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn bad_payloads_panics_and_timeouts_fail_the_job_not_the_worker() {
    let q = memory("bad");
    let service = tower::service_fn(|job: Job<Mail>| async move {
        match job.data.to.as_str() {
            "panic" => panic!("handler bug"),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, String>(())
            }
            _ => Ok(()),
        }
    });
    let undecodable = q
        .add("x", &serde_json::json!({"too": 1}), JobOptions::default())
        .await
        .unwrap();
    let panics = add(&q, "panic", JobOptions::default()).await;
    let slow = add(
        &q,
        "slow",
        JobOptions::default().timeout(Duration::from_millis(50)),
    )
    .await;
    let fine = add(&q, "fine", JobOptions::default()).await;
    let worker = Worker::new(q.clone(), service).start();
    until("all settled", || async {
        let c = counts(&q).await;
        c.failed == 3 && c.completed == 1
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    let mut reasons = Vec::new();
    for id in [&undecodable, &panics, &slow] {
        reasons.push(job(&q, id).await.unwrap().failed_reason.unwrap());
    }
    assert!(reasons[0].contains("does not decode"), "{}", reasons[0]);
    assert!(reasons[1].contains("handler bug"), "{}", reasons[1]);
    assert!(reasons[2].contains("timed out"), "{}", reasons[2]);
    assert_eq!(state(&q, &fine).await, Some(JobState::Completed));

    // Oversized payloads are refused at add.
    let small = Queue::memory_with(
        "small",
        &QueueConfig {
            max_payload_bytes: 10,
            ..QueueConfig::default()
        },
    )
    .unwrap();
    let err = small
        .add("x", &mail("someone@example.com"), JobOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn pause_progress_and_shutdown_put_cut_off_jobs_back() {
    let q = memory("long");
    q.pause().await.unwrap();
    let id = add(&q, "long", JobOptions::default()).await;
    let service = tower::service_fn(|job: Job<Mail>| async move {
        job.progress(&50).await.map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<_, String>(())
    });
    let worker = Worker::new(q.clone(), service).start();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        state(&q, &id).await,
        Some(JobState::Waiting),
        "paused: not taken"
    );
    q.resume().await.unwrap();
    until("progress", || async {
        job(&q, &id)
            .await
            .is_some_and(|j| j.progress == Some(serde_json::json!(50)))
    })
    .await;
    assert_eq!(counts(&q).await.active, 1);
    let report = worker.shutdown(Duration::from_millis(50)).await;
    assert_eq!(report.abandoned, 1);
    assert_eq!(
        state(&q, &id).await,
        Some(JobState::Waiting),
        "back in the queue"
    );
    assert_eq!(counts(&q).await.active, 0);
}

#[tokio::test]
async fn shutdown_runs_the_queued_jobs_and_a_dropped_handle_leaves_the_worker_running() {
    let q = memory("drain");
    let done = Arc::new(Mutex::new(0_u32));
    let d = done.clone();
    let service = tower::service_fn(move |_job: Job<Mail>| {
        let d = d.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            *d.lock().unwrap() += 1;
            Ok::<_, String>(())
        }
    });
    for i in 0..20 {
        add(&q, &format!("{i}"), JobOptions::default()).await;
    }
    let worker = Worker::new(q.clone(), service.clone())
        .concurrency(2)
        .start();
    // Shut down at once: the queue lives only here, so its jobs still run.
    let report = worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.abandoned, 0);
    assert_eq!(*done.lock().unwrap(), 20);
    assert_eq!(counts(&q).await.completed, 20);

    // A handle dropped without `shutdown`: the worker goes on, detached.
    drop(Worker::new(q.clone(), service).start());
    add(&q, "late", JobOptions::default()).await;
    until("the detached worker ran it", || async {
        *done.lock().unwrap() == 21
    })
    .await;
}

#[tokio::test]
async fn the_rate_limit_holds_in_memory_too() {
    let q = memory("limited");
    let starts = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let s = starts.clone();
    let service = tower::service_fn(move |_job: Job<Mail>| {
        s.lock().unwrap().push(Instant::now());
        std::future::ready(Ok::<_, String>(()))
    });
    for i in 0..6 {
        add(&q, &format!("{i}"), JobOptions::default()).await;
    }
    // Two per 200 ms, however many runners are free.
    let worker = Worker::new(q.clone(), service)
        .rate_limit(2, Duration::from_millis(200))
        .start();
    until("all six ran", || async { counts(&q).await.completed == 6 }).await;
    worker.shutdown(Duration::from_secs(1)).await;
    let starts = starts.lock().unwrap().clone();
    let after = |i: usize| starts[i] - starts[0];
    assert!(after(2) >= Duration::from_millis(190), "{:?}", after(2));
    assert!(after(4) >= Duration::from_millis(390), "{:?}", after(4));
}

#[tokio::test]
async fn listing_promoting_and_obliterating_work_as_on_redis() {
    let q = memory("admin");
    let first = add(&q, "first", JobOptions::default()).await;
    let second = add(&q, "second", JobOptions::default()).await;
    let later = add(
        &q,
        "later",
        JobOptions::default().delay(Duration::from_secs(3600)),
    )
    .await;
    let ids = |jobs: Vec<JobInfo>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(
        ids(q.jobs(JobState::Waiting, 0, 10).await.unwrap()),
        [first.clone(), second.clone()],
        "in the order workers take them"
    );
    assert_eq!(
        ids(q.jobs(JobState::Waiting, 1, 10).await.unwrap()),
        vec![second.clone()]
    );
    assert_eq!(
        ids(q.jobs(JobState::Delayed, 0, 10).await.unwrap()),
        vec![later.clone()]
    );
    let refused = q.promote(&first).await.unwrap_err();
    assert!(
        matches!(
            refused,
            QueueError::WrongState {
                action: "promote",
                ..
            }
        ),
        "{refused}"
    );
    q.promote(&later).await.unwrap();
    assert_eq!(state(&q, &later).await, Some(JobState::Waiting));

    let (seen, service) = recorder();
    let worker = Worker::new(q.clone(), service).concurrency(1).start();
    until("all three ran", || async {
        counts(&q).await.completed == 3
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(*seen.lock().unwrap(), ["first", "second", "later"]);
    assert_eq!(
        ids(q.jobs(JobState::Completed, 0, 10).await.unwrap()),
        [later, second, first],
        "newest first"
    );

    q.obliterate().await.unwrap();
    assert_eq!(counts(&q).await, Counts::default());
    assert_eq!(add(&q, "again", JobOptions::default()).await, "1");
}

#[tokio::test]
async fn what_needs_redis_is_a_typed_error_in_memory() {
    let q = memory("plain");
    let id = add(&q, "a", JobOptions::default()).await;
    let flow = FlowJob::new("parent", &1).unwrap();
    let every = Schedule::every(Duration::from_secs(60)).unwrap();
    let refused = [
        q.events("0", 10).await.map(drop).unwrap_err(),
        q.add_flow(flow).await.map(drop).unwrap_err(),
        q.repeat("tick", every, "x", &1, JobOptions::default())
            .await
            .unwrap_err(),
        q.repeats().await.map(drop).unwrap_err(),
        q.remove_repeat("tick").await.map(drop).unwrap_err(),
        q.schedule_repeats().await.map(drop).unwrap_err(),
        q.advance_clock(Duration::from_secs(1)).await.unwrap_err(),
        q.children_results::<u32>(&id).await.map(drop).unwrap_err(),
    ];
    let operations: Vec<&str> = refused
        .iter()
        .map(|e| match e {
            QueueError::Unsupported { operation } => *operation,
            other => panic!("not Unsupported: {other}"),
        })
        .collect();
    assert_eq!(
        operations,
        [
            "events",
            "add_flow",
            "repeat",
            "repeats",
            "remove_repeat",
            "schedule_repeats",
            "advance_clock",
            "children_results"
        ]
    );
    // As a problem: a set-up error (500) whose detail says what to use.
    let problem = Problem::from(refused.into_iter().next().unwrap());
    assert_eq!(problem.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        problem.type_uri(),
        "https://ee.rs/problems/queue/unsupported"
    );
    assert!(
        problem.detail().unwrap().contains("Queue::connect"),
        "{problem:?}"
    );
    // What memory does have still works.
    assert_eq!(counts(&q).await.waiting, 1);
}

#[tokio::test]
async fn names_follow_the_redis_queue_rules() {
    for bad in ["", "a\nb", &"q".repeat(201)] {
        assert!(
            matches!(Queue::memory(bad), Err(QueueError::InvalidOption(_))),
            "{bad:?}"
        );
    }
    let q = memory("emails");
    assert_eq!((q.name(), q.key_prefix()), ("emails", ""));
}
