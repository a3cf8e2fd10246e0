//! The admin API (problem+json on every bad call) and the board in a real
//! headless Chromium.

use std::time::Duration;

use ee_core::RedisConfig;
use ee_queue::{Job, JobOptions, JobState, Queue, Worker, WorkerConfig};
use ee_testing::{Browser, RedisServer, exchange, raw_request, serve};

/// A queue `mail` with one failed job (its reason "smtp down"), two
/// completed and one delayed; returns the queue and the ids.
async fn seeded(server: &RedisServer) -> (Queue, String, String, String) {
    let config = RedisConfig::standalone(server.url()).with_timeout(Duration::from_secs(2));
    let queue = Queue::connect(config, "mail").await.unwrap();
    let failing = queue
        .add("send", &"bounce@example.com", JobOptions::default())
        .await
        .unwrap();
    let ok = queue
        .add("send", &"ada@example.com", JobOptions::default())
        .await
        .unwrap();
    queue
        .add("send", &"bob@example.com", JobOptions::default())
        .await
        .unwrap();
    let later = queue
        .add(
            "send",
            &"later@example.com",
            JobOptions::default().delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let service = tower::service_fn(|job: Job<String>| async move {
        if job.data.starts_with("bounce") {
            Err("smtp down".to_owned())
        } else {
            Ok(format!("sent to {}", job.data))
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
        if c.failed == 1 && c.completed == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await;
    (queue, failing, ok, later)
}

async fn call(addr: std::net::SocketAddr, method: &str, path: &str) -> ee_testing::TestResponse {
    exchange(addr, &raw_request(method, path, &[], b"")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_and_refuses_with_problems() {
    let server = RedisServer::start();
    let (queue, failing, ok, later) = seeded(&server).await;
    let addr =
        serve(axum::Router::new().nest("/admin", ee_queue::admin_router([queue.clone()]))).await;

    let r = call(addr, "GET", "/admin/api/queues").await;
    assert_eq!(r.status, 200);
    let list: serde_json::Value = r.json();
    assert_eq!(list[0]["name"], "mail");
    assert_eq!(list[0]["counts"]["failed"], 1);
    assert_eq!(list[0]["counts"]["completed"], 2);

    let r = call(addr, "GET", "/admin/api/queues/mail/jobs?state=failed").await;
    let jobs: serde_json::Value = r.json();
    assert_eq!(jobs[0]["id"], failing.as_str());
    assert_eq!(jobs[0]["failed_reason"], "smtp down");

    let r = call(addr, "GET", &format!("/admin/api/queues/mail/jobs/{ok}")).await;
    let job: serde_json::Value = r.json();
    assert_eq!(job["return_value"], "sent to ada@example.com");

    // Each malformed or impossible call: the right status, as problem+json.
    for (method, path, status, kind) in [
        ("GET", "/admin/api/queues/nope", 404, "queue-not-found"),
        (
            "GET",
            "/admin/api/queues/mail/jobs?state=dead",
            400,
            "bad-query",
        ),
        (
            "GET",
            "/admin/api/queues/mail/jobs?limit=100000",
            400,
            "bad-query",
        ),
        (
            "GET",
            "/admin/api/queues/mail/jobs?offset=-1",
            400,
            "bad-query",
        ),
        (
            "GET",
            "/admin/api/queues/mail/jobs/999",
            404,
            "job-not-found",
        ),
        (
            "POST",
            "/admin/api/queues/mail/jobs/999/retry",
            404,
            "job-not-found",
        ),
        (
            "POST",
            &format!("/admin/api/queues/mail/jobs/{later}/retry"),
            409,
            "wrong-state",
        ),
        (
            "POST",
            &format!("/admin/api/queues/mail/jobs/{ok}/promote"),
            409,
            "wrong-state",
        ),
        (
            "POST",
            &format!("/admin/api/queues/mail/jobs/{ok}/explode"),
            404,
            "not-found",
        ),
        ("POST", "/admin/api/queues/mail/explode", 404, "not-found"),
        ("GET", "/admin/nothing/here", 404, "not-found"),
    ] {
        let r = call(addr, method, path).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{method} {path}"
        );
        let p = r.problem();
        assert_eq!(
            p.type_uri(),
            format!("https://ee.rs/problems/queue/{kind}"),
            "{method} {path}"
        );
    }

    // And the calls that change things do.
    assert_eq!(
        call(addr, "POST", "/admin/api/queues/mail/pause")
            .await
            .status,
        204
    );
    assert!(queue.counts().await.unwrap().paused);
    assert_eq!(
        call(addr, "POST", "/admin/api/queues/mail/resume")
            .await
            .status,
        204
    );
    assert_eq!(
        call(
            addr,
            "POST",
            &format!("/admin/api/queues/mail/jobs/{later}/promote")
        )
        .await
        .status,
        204
    );
    assert_eq!(
        queue.job(&later).await.unwrap().unwrap().state,
        JobState::Waiting
    );
    assert_eq!(
        call(addr, "DELETE", &format!("/admin/api/queues/mail/jobs/{ok}"))
            .await
            .status,
        204
    );
    assert!(queue.job(&ok).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_failures_and_its_buttons_work_in_chromium() {
    let server = RedisServer::start();
    let (queue, failing, ok, _later) = seeded(&server).await;
    let addr =
        serve(axum::Router::new().nest("/admin/queues", ee_queue::admin_router([queue.clone()])))
            .await;
    let browser = Browser::start().await;
    // The board lives at the mount path itself.
    browser.goto(&format!("http://{addr}/admin/queues")).await;

    let failed_count = r#"tr[data-queue="mail"] button[data-state="failed"] .count"#;
    assert_eq!(browser.wait_text(failed_count, |t| t == "1").await, "1");
    assert_eq!(
        browser
            .text(r#"tr[data-queue="mail"] button[data-state="completed"] .count"#)
            .await,
        "2"
    );

    // The failed job, with its error.
    browser.click(r#"button[data-state="failed"]"#).await;
    let row = format!(r#"tr[data-job="{failing}"]"#);
    let text = browser.wait_text(&row, |t| t.contains("smtp down")).await;
    assert!(text.contains("send"), "{text}");

    // Retry: back to waiting, and the board's count drops.
    browser.click(&format!("{row} button.retry")).await;
    browser.wait_text(failed_count, |t| t == "0").await;
    assert_eq!(
        queue.job(&failing).await.unwrap().unwrap().state,
        JobState::Waiting
    );

    // Remove a completed job.
    browser.click(r#"button[data-state="completed"]"#).await;
    browser
        .click(&format!(r#"tr[data-job="{ok}"] button.remove"#))
        .await;
    browser
        .wait_text(
            r#"tr[data-queue="mail"] button[data-state="completed"] .count"#,
            |t| t == "1",
        )
        .await;
    assert!(queue.job(&ok).await.unwrap().is_none());

    // Pause from the board.
    browser.click(r#"tr[data-queue="mail"] button.pause"#).await;
    browser
        .wait_text(r#"tr[data-queue="mail"] td"#, |t| t.contains("paused"))
        .await;
    assert!(queue.counts().await.unwrap().paused);

    // The API's problem details reach the page's script (which shows them).
    queue.obliterate().await.unwrap();
    let error = browser
        .eval("return fetch(location.pathname + '/api/queues/mail/jobs/1/retry', {method: 'POST'}).then(r => r.json()).then(p => p.detail)")
        .await;
    assert_eq!(error, "no job `1` in this queue");
}
