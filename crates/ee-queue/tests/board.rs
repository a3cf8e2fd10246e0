//! The admin API (problem+json on every bad call, job payloads hidden
//! unless asked) and the board in a real headless Chromium.

use std::time::Duration;

use ee_core::{Problem, RedisConfig};
use ee_queue::{
    AdminConfig, AdminRouter, Job, JobOptions, JobState, Queue, ShowData, Worker, WorkerConfig,
};
use ee_testing::{Browser, RedisServer, exchange, raw_request, serve};

/// What every payload, progress and result of the seeded jobs holds (the
/// addresses are the personal data the admin API hides by default).
const SECRET: &str = "example.com";

/// A queue `mail` with one failed job (its reason "smtp down"), two
/// completed (each reported progress) and one delayed; returns the queue
/// and the ids.
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
            job.progress(&format!("rendered for {}", job.data))
                .await
                .map_err(|e| e.to_string())?;
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

    let r = call(
        addr,
        "GET",
        &format!("/admin/api/queues/mail/jobs/{ok}?data=true"),
    )
    .await;
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
        (
            "GET",
            "/admin/api/queues/mail/jobs?state=failed&data=yes",
            400,
            "bad-query",
        ),
        (
            "GET",
            &format!("/admin/api/queues/mail/jobs/{ok}?data=1"),
            400,
            "bad-query",
        ),
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
async fn job_payloads_results_and_progress_are_hidden_unless_a_request_asks() {
    let server = RedisServer::start();
    let (queue, failing, ok, later) = seeded(&server).await;
    let addr =
        serve(axum::Router::new().nest("/admin", ee_queue::admin_router([queue.clone()]))).await;

    // Without `?data=true` (or with `?data=false`) no listing and no job
    // holds a byte of what the jobs carry or returned.
    let hidden = [
        "/admin/api/queues/mail/jobs?state=failed".to_owned(),
        "/admin/api/queues/mail/jobs?state=completed".to_owned(),
        "/admin/api/queues/mail/jobs?state=delayed".to_owned(),
        "/admin/api/queues/mail/jobs?state=completed&data=false".to_owned(),
        format!("/admin/api/queues/mail/jobs/{failing}"),
        format!("/admin/api/queues/mail/jobs/{ok}"),
        format!("/admin/api/queues/mail/jobs/{later}"),
        format!("/admin/api/queues/mail/jobs/{ok}?data=false"),
    ];
    for path in &hidden {
        let r = call(addr, "GET", path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            !r.text().contains(SECRET),
            "{path} shows data: {}",
            r.text()
        );
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
    }
    // What is hidden says so; why a job failed is still there.
    let failed: serde_json::Value = call(addr, "GET", &hidden[0]).await.json();
    assert_eq!(failed[0]["id"], failing.as_str());
    assert_eq!(failed[0]["failed_reason"], "smtp down");
    assert_eq!(failed[0]["attempts_made"], 1);
    assert_eq!(failed[0]["data"], serde_json::Value::Null);
    assert_eq!(failed[0]["data_hidden"], true);
    let done: serde_json::Value = call(addr, "GET", &hidden[5]).await.json();
    assert_eq!(done["state"], "completed");
    assert_eq!(done["data_hidden"], true);
    for field in ["data", "return_value", "progress"] {
        assert_eq!(done[field], serde_json::Value::Null, "{field}");
    }

    // `?data=true` shows them.
    let r = call(
        addr,
        "GET",
        "/admin/api/queues/mail/jobs?state=failed&data=true",
    )
    .await;
    assert!(r.text().contains("bounce@example.com"), "{}", r.text());
    let failed: serde_json::Value = r.json();
    assert_eq!(failed[0]["data"], "bounce@example.com");
    assert_eq!(failed[0]["data_hidden"], false);
    let r = call(
        addr,
        "GET",
        &format!("/admin/api/queues/mail/jobs/{ok}?data=true"),
    )
    .await;
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let done: serde_json::Value = r.json();
    assert_eq!(done["data"], "ada@example.com");
    assert_eq!(done["return_value"], "sent to ada@example.com");
    assert_eq!(done["progress"], "rendered for ada@example.com");
    assert_eq!(done["data_hidden"], false);
    let r = call(
        addr,
        "GET",
        "/admin/api/queues/mail/jobs?state=completed&data=true",
    )
    .await;
    assert!(r.text().contains("sent to bob@example.com"), "{}", r.text());

    // For development, shown unless a request says `?data=false`.
    let config: AdminConfig = serde_json::from_str(r#"{ "show_data": "by_default" }"#).unwrap();
    assert_eq!(config.show_data, ShowData::ByDefault);
    assert!(serde_json::from_str::<AdminConfig>(r#"{ "show_dta": "by_default" }"#).is_err());
    let dev = serve(
        AdminRouter::new([queue.clone()])
            .config(&config)
            .unwrap()
            .into_router(),
    )
    .await;
    let r = call(dev, "GET", &format!("/api/queues/mail/jobs/{ok}")).await;
    assert_eq!(r.json::<serde_json::Value>()["data"], "ada@example.com");
    let r = call(
        dev,
        "GET",
        &format!("/api/queues/mail/jobs/{ok}?data=false"),
    )
    .await;
    assert!(!r.text().contains(SECRET), "{}", r.text());
    assert_eq!(r.json::<serde_json::Value>()["data_hidden"], true);
    // The builder method does the same; the default hides.
    let dev = serve(
        AdminRouter::new([queue.clone()])
            .show_data(ShowData::ByDefault)
            .into_router(),
    )
    .await;
    let r = call(dev, "GET", "/api/queues/mail/jobs?state=failed").await;
    assert!(r.text().contains("bounce@example.com"), "{}", r.text());
    assert_eq!(AdminConfig::default().show_data, ShowData::OnRequest);
}

/// Lets a request through only with `x-operator: yes` (a stand-in for the
/// application's real check).
async fn operators_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, Problem> {
    if request.headers().get("x-operator").map(|v| v.as_bytes()) != Some(b"yes") {
        return Err(Problem::new(http::StatusCode::FORBIDDEN));
    }
    Ok(next.run(request).await)
}

#[tokio::test]
async fn a_route_layer_puts_the_admin_router_behind_the_applications_check() {
    let queue = Queue::memory("mail").unwrap();
    queue
        .add("send", &"ada@example.com", JobOptions::default())
        .await
        .unwrap();
    let admin =
        ee_queue::admin_router([queue]).route_layer(axum::middleware::from_fn(operators_only));
    let addr = serve(axum::Router::new().nest("/admin/queues", admin)).await;
    for path in [
        "/admin/queues",
        "/admin/queues/api/queues",
        "/admin/queues/api/queues/mail/jobs?data=true",
        "/admin/queues/api/queues/mail/jobs/1?data=true",
    ] {
        let r = call(addr, "GET", path).await;
        assert_eq!(r.status, 403, "{path}");
        assert!(!r.text().contains(SECRET), "{path}");
        let r = exchange(
            addr,
            &raw_request("GET", path, &[("x-operator", b"yes")], b""),
        )
        .await;
        assert_eq!(r.status, 200, "{path}");
    }
    let r = call(addr, "POST", "/admin/queues/api/queues/mail/pause").await;
    assert_eq!(r.status, 403);
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

    // The failed job, with its error; its data hidden until asked for.
    browser.click(r#"button[data-state="failed"]"#).await;
    let row = format!(r#"tr[data-job="{failing}"]"#);
    let text = browser.wait_text(&row, |t| t.contains("smtp down")).await;
    assert!(text.contains("send"), "{text}");
    assert!(text.contains("hidden"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    browser.click(&format!("{row} button.reveal")).await;
    let text = browser
        .wait_text(&row, |t| t.contains("bounce@example.com"))
        .await;
    assert!(text.contains("smtp down"), "{text}");
    // It stays shown across the board's refreshes until hidden again.
    let after_refresh = browser
        .eval(&format!(
            "return refresh().then(() => document.querySelector('tr[data-job=\"{failing}\"]').textContent)"
        ))
        .await;
    assert!(
        after_refresh
            .as_str()
            .unwrap()
            .contains("bounce@example.com"),
        "{after_refresh}"
    );
    browser.click(&format!("{row} button.conceal")).await;
    browser.wait_text(&row, |t| !t.contains(SECRET)).await;

    // Retry: back to waiting, and the board's count drops.
    browser.click(&format!("{row} button.retry")).await;
    browser.wait_text(failed_count, |t| t == "0").await;
    assert_eq!(
        queue.job(&failing).await.unwrap().unwrap().state,
        JobState::Waiting
    );

    // A completed job's data and result: hidden, then shown on request.
    browser.click(r#"button[data-state="completed"]"#).await;
    let done = format!(r#"tr[data-job="{ok}"]"#);
    let text = browser.wait_text(&done, |t| t.contains("hidden")).await;
    assert!(!text.contains(SECRET), "{text}");
    browser.click(&format!("{done} button.reveal")).await;
    browser
        .wait_text(&done, |t| t.contains("sent to ada@example.com"))
        .await;

    // Remove a completed job.
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
