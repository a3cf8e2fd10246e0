//! `FastJson` in and out, compressed request bodies decoded with a limit on
//! their decoded size, and compressed responses: each rejection a
//! problem+json.
//!
//! ```sh
//! cargo run -p ee-serialize --features axum,http --example orders
//! curl -i localhost:3006/orders -H 'content-type: application/json' \
//!   -d '{"sku": "SKU-1", "quantity": 2}'                      # 200, echoed
//! curl -i localhost:3006/orders -H 'content-type: text/plain' -d 'x'   # 415
//! curl -i localhost:3006/orders -H 'content-type: application/json' \
//!   -d '{"sku": "SKU-1", "quantity": -1}'                     # 422, wrong shape
//! printf '{"sku":"SKU-1","quantity":2}' | gzip | curl -i localhost:3006/orders \
//!   -H 'content-type: application/json' -H 'content-encoding: gzip' --data-binary @-
//! ```

use axum::Router;
use axum::routing::post;
use ee_serialize::{DecompressionLayer, FastJson, compression};
use serde::{Deserialize, Serialize};

/// An order line as clients send it.
#[derive(Deserialize, Serialize)]
struct Order {
    sku: String,
    quantity: u32,
}

async fn create(FastJson(order): FastJson<Order>) -> FastJson<Order> {
    FastJson(order)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = Router::new()
        .route("/orders", post(create))
        // A compressed body may inflate to 64 KiB at most: past that, 413.
        .layer(DecompressionLayer::new().max_decoded(64 << 10))
        .layer(compression());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3006").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
