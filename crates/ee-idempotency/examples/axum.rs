//! An axum server whose `POST /orders` runs once per `Idempotency-Key`: a
//! retry gets the first answer back, marked `Idempotent-Replayed: true`; the
//! same key with another body is a 422 problem.
//!
//! ```sh
//! cargo run -p ee-idempotency --example axum
//! curl -si -X POST localhost:3000/orders -H 'Idempotency-Key: "order-1"' -d 'two apples'
//! curl -si -X POST localhost:3000/orders -H 'Idempotency-Key: "order-1"' -d 'two apples'  # replayed
//! curl -si -X POST localhost:3000/orders -H 'Idempotency-Key: "order-1"' -d 'three pears' # 422
//! curl -si -X POST localhost:3000/orders -d 'no key'                                       # 400
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::{Router, http::StatusCode, routing::post};
use ee_idempotency::{IdempotencyConfig, IdempotencyLayer, MemoryStore};

async fn place_order(State(next): State<Arc<AtomicU64>>, body: String) -> (StatusCode, String) {
    let number = next.fetch_add(1, Ordering::SeqCst) + 1;
    (StatusCode::CREATED, format!("order {number}: {body}\n"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = IdempotencyConfig {
        required: true,
        ..IdempotencyConfig::default()
    };
    let app = Router::new()
        .route("/orders", post(place_order))
        .layer(IdempotencyLayer::new(MemoryStore::new()).config(&config)?)
        .with_state(Arc::new(AtomicU64::new(0)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
