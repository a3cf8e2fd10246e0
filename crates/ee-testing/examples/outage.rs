//! The test kit outside a test: a throwaway `redis-server`, an outage and a
//! recovery, and a request sent through a tower service, as your tests would
//! use them (there, inside `#[tokio::test]`).
//!
//! ```sh
//! cargo run -p ee-testing --example outage
//! ```
//!
//! Needs `redis-server` on the `PATH` (the workspace's `./scripts/test`
//! installs it); the server is killed and its directory removed on exit.

use axum::Router;
use axum::routing::get;
use ee_testing::{RedisServer, Reply, send};

#[tokio::main]
async fn main() {
    let mut redis = RedisServer::start();
    println!("redis-server at {}", redis.url());
    assert_eq!(
        redis.command(&["SET", "k", "v"]),
        Reply::Status("OK".into())
    );

    redis.stop(); // an outage: connections are refused
    let refused = ee_testing::redis_command(redis.port(), &["PING"]);
    println!("while stopped, PING: {}", refused.unwrap_err());

    redis.restart(); // back on the same port, empty
    println!("after restart, GET k: {:?}", redis.command(&["GET", "k"]));

    let app: Router = Router::new().route("/health", get(|| async { "ok" }));
    let response = send(
        app,
        http::Request::get("/health")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    println!("GET /health: {} {}", response.status, response.text());
}
