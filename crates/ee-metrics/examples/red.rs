//! RED metrics for an axum app: `MetricsLayer` on the routes, the Prometheus
//! exporter installed once, `GET /metrics` merged into the router.
//!
//! ```sh
//! cargo run -p ee-metrics --features axum --example red
//! ```
//!
//! It sends a few requests through the app and prints the request counters
//! of the scrape, labelled by route template (never the raw path).

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use ee_metrics::{MetricsLayer, Prometheus};
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prometheus = Prometheus::builder()
        .global_label("service", "orders")
        .install()?;
    let app: Router = Router::new()
        .route("/orders/{id}", get(|| async { "an order" }))
        .layer(MetricsLayer::new())
        .merge(prometheus.router());

    for path in ["/orders/1", "/orders/2", "/orders/3", "/nowhere"] {
        let request = http::Request::get(path).body(Body::empty())?;
        let response = app.clone().oneshot(request).await?;
        println!("GET {path}: {}", response.status());
    }

    let request = http::Request::get("/metrics").body(Body::empty())?;
    let response = app.oneshot(request).await?;
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    for line in String::from_utf8_lossy(&body).lines() {
        if line.contains(ee_metrics::METRIC_HTTP_REQUESTS_TOTAL) {
            println!("{line}");
        }
    }
    Ok(())
}
