//! At-least-once under real faults: a worker process killed with SIGKILL
//! mid-batch, and Redis (with AOF) killed and restarted under load.

use std::collections::HashSet;
use std::process::{Child, Command};
use std::time::Duration;

use ee_core::RedisConfig;
use ee_example_queue::{Confirmation, QUEUE, SENT};
use ee_queue::{Backoff, JobOptions, JobState, NewJob, Queue};
use ee_testing::{RedisServer, Reply};

fn worker(server: &RedisServer, lease_ms: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_queue-worker"))
        .env("EE_REDIS_URL", server.url())
        .env("WORK_MS", "20")
        .env("CONCURRENCY", "10")
        .env("LEASE_MS", lease_ms.to_string())
        .env("STALLED_MS", "200")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the queue-worker binary runs")
}

fn kill(child: &mut Child) {
    child.kill().expect("SIGKILL"); // Child::kill is SIGKILL on Unix
    child.wait().unwrap();
}

fn terminate(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
}

async fn queue(server: &RedisServer) -> Queue {
    let config = RedisConfig::standalone(server.url()).with_timeout(Duration::from_secs(2));
    Queue::connect(config, QUEUE).await.unwrap()
}

/// Adds `n` confirmations with retries (a send fails while Redis is down).
async fn add(queue: &Queue, n: u64) -> Vec<String> {
    let options = JobOptions::default().attempts(5, Backoff::fixed(Duration::from_millis(200)));
    queue
        .add_bulk((0..n).map(|order_id| {
            NewJob::new(
                "confirm",
                Confirmation {
                    order_id,
                    email: format!("c{order_id}@example.com"),
                },
            )
            .options(options.clone())
        }))
        .await
        .unwrap()
}

async fn completed(queue: &Queue) -> u64 {
    queue.counts().await.map_or(0, |c| c.completed)
}

async fn until(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..secs * 50 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {secs} s waiting until {what}");
}

/// The order ids the worker processes recorded as sent.
fn sent(server: &RedisServer) -> Vec<u64> {
    match server.command(&["LRANGE", SENT, "0", "-1"]) {
        Reply::Array(Some(items)) => items
            .iter()
            .map(|r| r.as_text().unwrap().parse().unwrap())
            .collect(),
        other => panic!("LRANGE answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_no_job() {
    let server = RedisServer::start();
    let queue = queue(&server).await;
    let ids = add(&queue, 300).await;
    let mut first = worker(&server, 1000);
    until("60 jobs completed", 30, async || {
        completed(&queue).await >= 60
    })
    .await;
    kill(&mut first);
    let at_kill = queue.counts().await.unwrap();
    assert!(
        at_kill.completed < 300,
        "the kill came too late to test anything"
    );
    assert!(
        at_kill.active > 0,
        "jobs were in flight at the kill: {at_kill:?}"
    );

    let second = worker(&server, 1000);
    until("all 300 completed", 60, async || {
        completed(&queue).await == 300
    })
    .await;
    terminate(second);

    for id in &ids {
        let job = queue.job(id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Completed, "job {id}");
    }
    let sent = sent(&server);
    let unique: HashSet<u64> = sent.iter().copied().collect();
    assert_eq!(unique.len(), 300, "every confirmation was sent");
    // Only jobs the killed worker held could run twice: at most its
    // concurrency (10) plus its prefetch (10).
    let twice = sent.len() - unique.len();
    assert!(twice <= 20, "{twice} sent twice");
    let stalled = queue.events("0", 100_000).await.unwrap();
    let stalled = stalled.iter().filter(|e| e.event == "stalled").count() as u64;
    assert!(
        stalled >= at_kill.active,
        "{stalled} stalled events, {} were active",
        at_kill.active
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_with_aof_loses_no_acknowledged_job() {
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let queue = queue(&server).await;
    let ids = add(&queue, 200).await;
    let worker = worker(&server, 2000);
    until("50 jobs completed", 30, async || {
        completed(&queue).await >= 50
    })
    .await;
    server.restart(); // SIGKILL, then the same port and directory: the AOF is replayed
    let after_restart = queue_counts_eventually(&queue).await;
    assert!(
        after_restart.completed >= 50,
        "completions acknowledged before the kill survive: {after_restart:?}"
    );
    until("all 200 completed", 60, async || {
        completed(&queue).await == 200
    })
    .await;
    terminate(worker);
    for id in &ids {
        assert_eq!(
            queue.job(id).await.unwrap().map(|j| j.state),
            Some(JobState::Completed),
            "job {id}"
        );
    }
    let unique: HashSet<u64> = sent(&server).into_iter().collect();
    assert_eq!(unique.len(), 200);
}

async fn queue_counts_eventually(queue: &Queue) -> ee_queue::Counts {
    for _ in 0..250 {
        if let Ok(c) = queue.counts().await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("Redis did not come back within 5 s");
}
