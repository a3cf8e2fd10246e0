//! A rate-limited axum server: 5 requests per 10 s per client, each answer
//! with `RateLimit-Policy`/`RateLimit` headers, the sixth a 429 problem.
//!
//! ```sh
//! cargo run -p ee-ratelimit --features axum --example axum
//! for i in 1 2 3 4 5 6; do curl -si localhost:3000/ | head -5; done
//! ```
//!
//! Served with `into_make_service_with_connect_info`, so the layer knows each
//! client's address; the `axum` feature reads it from axum's `ConnectInfo`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::{Router, routing::get};
use ee_ratelimit::{MemoryStore, Policy, RateLimitLayer, Rule};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limits = RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::new(
            "per-client",
            Rule::fixed_window(5, Duration::from_secs(10)),
        ))
        .build()?;
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .layer(limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
