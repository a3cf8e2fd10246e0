//! Retention of finished jobs, whose payloads may hold personal data: the
//! failed set (the dead letters) and the completed set are bounded by
//! default, and past a bound the oldest go, payload and all, on both
//! backends.

use std::time::Duration;

use ee_core::RedisConfig;
use ee_queue::{Job, JobOptions, JobState, Keep, NewJob, Queue, QueueConfig, Worker, WorkerConfig};
use ee_testing::RedisServer;
use serde::{Deserialize, Serialize};

/// A payload with personal data in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Charge {
    email: String,
    card_token: String,
    /// Whether the handler declines it (fails the job).
    decline: bool,
}

fn charge(i: usize, decline: bool) -> Charge {
    Charge {
        email: format!("customer{i}@example.com"),
        card_token: format!("tok_{i}"),
        decline,
    }
}

/// A worker that fails the declined charges and completes the others;
/// with `concurrency` 1 jobs finish in the order they were added.
fn start_worker(queue: &Queue, concurrency: usize) -> ee_queue::WorkerHandle {
    let service = tower::service_fn(|job: Job<Charge>| async move {
        if job.data.decline {
            Err(format!("card declined for job {}", job.id))
        } else {
            Ok(())
        }
    });
    Worker::new(queue.clone(), service)
        .config(&WorkerConfig {
            concurrency,
            block_ms: 100,
            ..WorkerConfig::default()
        })
        .unwrap()
        .start()
}

/// Waits (up to 60 s) until `check` holds.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..3000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn redis_queue(server: &RedisServer, name: &str, config: QueueConfig) -> Queue {
    let redis = RedisConfig::standalone(server.url()).with_timeout(Duration::from_secs(5));
    Queue::connect_with(redis, name, config)
        .await
        .expect("queue")
}

async fn state(queue: &Queue, id: &str) -> Option<JobState> {
    queue.job(id).await.unwrap().map(|j| j.state)
}

/// Adds `n` declined charges one by one, each after the previous one
/// failed; on Redis the queue's clock moves on `tick` after each, so every
/// failure has its own time. Returns the ids, oldest first.
async fn fail_one_by_one(queue: &Queue, n: usize, tick: Option<Duration>) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let id = queue
            .add("charge", &charge(i, true), JobOptions::default())
            .await
            .unwrap();
        until("the charge failed", || async {
            state(queue, &id).await == Some(JobState::Failed)
        })
        .await;
        if let Some(tick) = tick {
            queue.advance_clock(tick).await.unwrap();
        }
        ids.push(id);
    }
    ids
}

/// With `keep_failed` at 3, five failures leave the newest three; the two
/// oldest are gone with their payloads.
async fn the_failed_set_keeps_its_bound(queue: &Queue, tick: Option<Duration>) {
    let worker = start_worker(queue, 1);
    let ids = fail_one_by_one(queue, 5, tick).await;
    worker.shutdown(Duration::from_secs(5)).await;

    assert_eq!(queue.counts().await.unwrap().failed, 3);
    let kept: Vec<String> = queue
        .jobs(JobState::Failed, 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    // Newest first.
    assert_eq!(kept, [ids[4].clone(), ids[3].clone(), ids[2].clone()]);
    for old in &ids[..2] {
        assert_eq!(queue.job(old).await.unwrap(), None, "job {old} is kept");
    }
    let newest = queue.job(&ids[4]).await.unwrap().unwrap();
    assert_eq!(newest.data["card_token"], "tok_4");
}

fn keep_three_failed() -> QueueConfig {
    QueueConfig {
        keep_failed: Keep::last(3),
        ..QueueConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_failed_bound_the_oldest_failed_jobs_go_in_memory() {
    let queue = Queue::memory_with("charges", &keep_three_failed()).unwrap();
    the_failed_set_keeps_its_bound(&queue, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_failed_bound_the_oldest_failed_jobs_go_on_redis() {
    let server = RedisServer::start();
    let queue = redis_queue(&server, "charges", keep_three_failed()).await;
    the_failed_set_keeps_its_bound(&queue, Some(Duration::from_secs(1))).await;
}

#[test]
fn the_default_retention_is_bounded() {
    let config = QueueConfig::default();
    assert_eq!(
        config.keep_failed,
        Keep {
            count: Some(10_000),
            age_secs: Some(7 * 24 * 3600),
        }
    );
    assert_eq!(config.keep_failed, Keep::FAILED);
    assert_eq!(
        config.keep_completed,
        Keep {
            count: Some(1000),
            age_secs: Some(24 * 3600),
        }
    );
    assert_eq!(config.keep_completed, Keep::COMPLETED);
}

/// Floods a default queue with 10 003 failures and 1 003 completions:
/// 10 000 and 1 000 are left. Returns the ids of the failed and of the
/// completed jobs, in the order they were added.
async fn flood(queue: &Queue, concurrency: usize) -> (Vec<String>, Vec<String>) {
    let worker = start_worker(queue, concurrency);
    let mut failed = Vec::new();
    let mut completed = Vec::new();
    // In batches, so each batch is taken after the previous one finished
    // (on Redis the failures of one batch share a finish time).
    for (n, decline) in [(10_003, true), (1003, false)] {
        let ids = queue
            .add_bulk((0..n).map(|i| NewJob::new("charge", charge(i, decline))))
            .await
            .unwrap();
        let last = ids.last().unwrap().clone();
        let done = if decline {
            JobState::Failed
        } else {
            JobState::Completed
        };
        until("the batch ran", || async {
            let c = queue.counts().await.unwrap();
            c.waiting == 0 && c.active == 0 && state(queue, &last).await == Some(done)
        })
        .await;
        if decline {
            failed = ids;
        } else {
            completed = ids;
        }
    }
    worker.shutdown(Duration::from_secs(5)).await;
    let counts = queue.counts().await.unwrap();
    assert_eq!((counts.failed, counts.completed), (10_000, 1000));
    (failed, completed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_memory_keeps_the_newest_10_000_failed_and_1_000_completed_jobs() {
    let queue = Queue::memory("charges").unwrap();
    let (failed, completed) = flood(&queue, 1).await;
    for gone in failed[..3].iter().chain(&completed[..3]) {
        assert_eq!(queue.job(gone).await.unwrap(), None, "job {gone} is kept");
    }
    for kept in [&failed[3], &failed[10_002], &completed[3], &completed[1002]] {
        assert!(
            queue.job(kept).await.unwrap().is_some(),
            "job {kept} is gone"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_redis_keeps_the_newest_10_000_failed_and_1_000_completed_jobs() {
    let server = RedisServer::start();
    let queue = redis_queue(&server, "charges", QueueConfig::default()).await;
    let (failed, completed) = flood(&queue, 10).await;
    // The newest of each are kept. (Jobs that finished in the same
    // millisecond are dropped in the order of their ids as strings, so
    // which of the first ones went is not asserted here; the bounded test
    // above pins the order down.)
    for kept in [failed.last().unwrap(), completed.last().unwrap()] {
        assert!(
            queue.job(kept).await.unwrap().is_some(),
            "job {kept} is gone"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_failed_jobs_older_than_7_days_go_on_redis() {
    let server = RedisServer::start();
    let queue = redis_queue(&server, "charges", QueueConfig::default()).await;
    let worker = start_worker(&queue, 1);
    let hour = Duration::from_secs(3600);
    let fail = async |then: Option<Duration>| fail_one_by_one(&queue, 1, then).await.remove(0);

    // A fails; B fails 6 days 23 h later: A is kept.
    let a = fail(Some(6 * 24 * hour + 23 * hour)).await;
    let b = fail(Some(2 * hour)).await;
    assert_eq!(state(&queue, &a).await, Some(JobState::Failed));
    // C fails 7 days 1 h after A: A is gone.
    let c = fail(None).await;
    worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(queue.job(&a).await.unwrap(), None);
    assert_eq!(state(&queue, &b).await, Some(JobState::Failed));
    assert_eq!(state(&queue, &c).await, Some(JobState::Failed));
    assert_eq!(queue.counts().await.unwrap().failed, 2);
}
