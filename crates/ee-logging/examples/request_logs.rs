//! JSON request logs for an axum app: the subscriber set up from a
//! `LogConfig` (as loaded from `[logging]` in `ee.toml`), one span per
//! request with its request id, W3C trace id and route template, and secret
//! fields redacted.
//!
//! ```sh
//! cargo run -p ee-logging --features axum --example request_logs
//! ```
//!
//! It sends two requests through the app (one continuing a caller's trace)
//! and the JSON lines appear on standard output; `RUST_LOG=debug` overrides
//! the filter.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use ee_logging::{LogConfig, RequestLogLayer};
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config: LogConfig = serde_json::from_str(r#"{ "format": "json", "filter": "info" }"#)?;
    // Keep the guard: dropping it flushes the buffered lines.
    let _guard = config.init()?;

    let app: Router = Router::new()
        .route(
            "/orders/{id}",
            get(|| async {
                // `password` is written as "[redacted]".
                tracing::info!(password = "hunter2", "order read");
                "an order"
            }),
        )
        .layer(RequestLogLayer::new().log_headers(true));

    let plain = http::Request::get("/orders/42")
        .header("authorization", "Bearer secret")
        .body(Body::empty())?;
    let continued = http::Request::get("/orders/43")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Body::empty())?;
    for request in [plain, continued] {
        let response = app.clone().oneshot(request).await?;
        let traceparent = response.headers()["traceparent"].to_str()?;
        tracing::info!(status = %response.status(), traceparent, "answered");
    }
    Ok(())
}
