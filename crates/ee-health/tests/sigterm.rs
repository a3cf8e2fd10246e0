//! A real SIGTERM (sent to this test process, which has this one test):
//! readiness fails, in-flight requests finish, `serve` returns.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use ee_health::Health;
use ee_testing::{exchange, raw_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_serve_returns() {
    let health = Health::builder().build();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "done"
            }),
        )
        .merge(health.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(health.clone().serve(listener, app, Duration::from_secs(10)));
    // The signal handler is installed once `serve` runs: wait for an answer.
    assert_eq!(
        exchange(addr, &raw_request("GET", "/readyz", &[], b""))
            .await
            .status,
        200
    );
    let in_flight: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn(
                async move { exchange(addr, &raw_request("GET", "/slow", &[], b"")).await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("the kill command");
    assert!(status.success());
    for r in in_flight {
        let res = r.await.unwrap();
        assert_eq!((res.status.as_u16(), res.text()), (200, "done"));
    }
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns after the drain")
        .unwrap()
        .unwrap();
    assert!(health.is_shutting_down(), "SIGTERM began the shutdown");
}
