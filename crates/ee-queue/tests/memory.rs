//! The in-process queue: the same producer and worker API, no Redis.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ee_queue::{
    Backoff, Job, JobOptions, JobState, MemoryQueue, MemoryWorker, NewJob, QueueConfig, QueueError,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Mail {
    to: String,
}

fn mail(to: &str) -> Mail {
    Mail { to: to.into() }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
    let q = MemoryQueue::new("mail");
    let id = q
        .add("welcome", &mail("ada@example.com"), JobOptions::default())
        .unwrap();
    assert_eq!(q.counts().waiting, 1);
    let (seen, service) = recorder();
    let worker = MemoryWorker::new(q.clone(), service).start();
    until("completed", || {
        q.job(&id).is_some_and(|j| j.state == JobState::Completed)
    })
    .await;
    let report = worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.abandoned, 0);
    let job = q.job(&id).unwrap();
    assert_eq!(job.attempts_made, 1);
    assert_eq!(
        job.return_value,
        Some(serde_json::json!("sent to ada@example.com"))
    );
    assert!(job.finished_ms.unwrap() >= job.created_ms);
    assert_eq!(*seen.lock().unwrap(), ["ada@example.com"]);
    let counts = q.counts();
    assert_eq!((counts.waiting, counts.active, counts.completed), (0, 0, 1));

    // A job id de-duplicates; numbered ids go on.
    let a = q
        .add("x", &mail("b"), JobOptions::default().job_id("order-1"))
        .unwrap();
    let b = q
        .add("x", &mail("c"), JobOptions::default().job_id("order-1"))
        .unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("order-1", "order-1"));
    assert_eq!(
        q.job("order-1").unwrap().data,
        serde_json::json!({"to": "b"})
    );
    assert_eq!(q.add("x", &mail("d"), JobOptions::default()).unwrap(), "2");
}

#[tokio::test]
async fn priority_order_and_delays_hold() {
    let q = MemoryQueue::new("order");
    q.add(
        "x",
        &mail("late"),
        JobOptions::default().delay(Duration::from_millis(300)),
    )
    .unwrap();
    q.add_bulk([
        NewJob::new("x", mail("p3")).options(JobOptions::default().priority(3)),
        NewJob::new("x", mail("p1")).options(JobOptions::default().priority(1)),
        NewJob::new("x", mail("none-a")),
        NewJob::new("x", mail("p2")).options(JobOptions::default().priority(2)),
        NewJob::new("x", mail("none-b")),
    ])
    .unwrap();
    assert_eq!(q.counts().delayed, 1);
    assert_eq!(q.counts().prioritized, 3);
    let (seen, service) = recorder();
    let started = Instant::now();
    let worker = MemoryWorker::new(q.clone(), service).concurrency(1).start();
    until("all six ran", || seen.lock().unwrap().len() == 6).await;
    assert!(started.elapsed() >= Duration::from_millis(290));
    worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(
        *seen.lock().unwrap(),
        ["none-a", "none-b", "p1", "p2", "p3", "late"]
    );
}

#[tokio::test]
async fn failures_retry_with_backoff_then_fail_and_can_be_retried_by_hand() {
    let q = MemoryQueue::new("flaky");
    let runs = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let r = runs.clone();
    let service = tower::service_fn(move |_job: Job<Mail>| {
        r.lock().unwrap().push(Instant::now());
        std::future::ready(Err::<(), _>("smtp refused"))
    });
    let id = q
        .add(
            "x",
            &mail("a"),
            JobOptions::default().attempts(3, Backoff::fixed(Duration::from_millis(100))),
        )
        .unwrap();
    let worker = MemoryWorker::new(q.clone(), service).start();
    until("failed", || {
        q.job(&id).is_some_and(|j| j.state == JobState::Failed)
    })
    .await;
    let job = q.job(&id).unwrap();
    assert_eq!(job.attempts_made, 3);
    assert_eq!(job.failed_reason.as_deref(), Some("smtp refused"));
    let times = runs.lock().unwrap().clone();
    assert_eq!(times.len(), 3);
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(95),
            "{:?}",
            w[1] - w[0]
        );
    }
    assert_eq!(q.counts().failed, 1);

    // By hand: runs again (three more attempts), then removed.
    q.retry(&id).unwrap();
    until("failed again", || {
        runs.lock().unwrap().len() == 6 && q.counts().failed == 1
    })
    .await;
    assert!(matches!(q.retry("nope"), Err(QueueError::NotFound(_))));
    q.remove(&id).unwrap();
    assert!(q.job(&id).is_none());
    worker.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn bad_payloads_panics_and_timeouts_fail_the_job_not_the_worker() {
    let q = MemoryQueue::new("bad");
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
        .unwrap();
    let panics = q.add("x", &mail("panic"), JobOptions::default()).unwrap();
    let slow = q
        .add(
            "x",
            &mail("slow"),
            JobOptions::default().timeout(Duration::from_millis(50)),
        )
        .unwrap();
    let fine = q.add("x", &mail("fine"), JobOptions::default()).unwrap();
    let worker = MemoryWorker::new(q.clone(), service).start();
    until("all settled", || {
        q.counts().failed == 3 && q.counts().completed == 1
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    let reason = |id: &str| q.job(id).unwrap().failed_reason.unwrap();
    assert!(
        reason(&undecodable).contains("does not decode"),
        "{}",
        reason(&undecodable)
    );
    assert!(reason(&panics).contains("handler bug"));
    assert!(reason(&slow).contains("timed out"));
    assert_eq!(q.job(&fine).unwrap().state, JobState::Completed);

    // Oversized payloads are refused at add.
    let small = MemoryQueue::with_config(
        "small",
        QueueConfig {
            max_payload_bytes: 10,
            ..QueueConfig::default()
        },
    );
    let err = small
        .add("x", &mail("someone@example.com"), JobOptions::default())
        .unwrap_err();
    assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn pause_progress_and_shutdown_put_cut_off_jobs_back() {
    let q = MemoryQueue::new("long");
    q.pause();
    let id = q.add("x", &mail("long"), JobOptions::default()).unwrap();
    let service = tower::service_fn(|job: Job<Mail>| async move {
        job.progress(&50).await.map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<_, String>(())
    });
    let worker = MemoryWorker::new(q.clone(), service).start();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        q.job(&id).unwrap().state,
        JobState::Waiting,
        "paused: not taken"
    );
    q.resume();
    until("progress", || {
        q.job(&id)
            .is_some_and(|j| j.progress == Some(serde_json::json!(50)))
    })
    .await;
    assert_eq!(q.counts().active, 1);
    let report = worker.shutdown(Duration::from_millis(50)).await;
    assert_eq!(report.abandoned, 1);
    let job = q.job(&id).unwrap();
    assert_eq!(job.state, JobState::Waiting, "back in the queue");
    assert_eq!(q.counts().active, 0);
}

#[tokio::test]
async fn shutdown_runs_the_queued_jobs_and_a_dropped_handle_leaves_the_worker_running() {
    let q = MemoryQueue::new("drain");
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
        q.add("x", &mail(&format!("{i}")), JobOptions::default())
            .unwrap();
    }
    let worker = MemoryWorker::new(q.clone(), service.clone())
        .concurrency(2)
        .start();
    // Shut down at once: the queue lives only here, so its jobs still run.
    let report = worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.abandoned, 0);
    assert_eq!(*done.lock().unwrap(), 20);
    assert_eq!(q.counts().completed, 20);

    // A handle dropped without `shutdown`: the worker goes on, detached.
    drop(MemoryWorker::new(q.clone(), service).start());
    q.add("x", &mail("late"), JobOptions::default()).unwrap();
    until("the detached worker ran it", || *done.lock().unwrap() == 21).await;
}
