//! `cargo run -p ee-example-orders`: the order intake API on 127.0.0.1:3002
//! (`/v1/...`), JSON logs on standard output (`RUST_LOG` filters), metrics on
//! `/metrics`, probes on `/livez`, `/readyz`, `/healthz`; SIGTERM or Ctrl-C
//! drains in-flight requests for up to 10 s.

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _logs = ee_logging::LogConfig::default().init()?;
    let prometheus = ee_metrics::Prometheus::builder()
        .global_label("service", "orders")
        .global_label("version", env!("CARGO_PKG_VERSION"))
        .install()?;
    let health = ee_health::Health::builder()
        .non_critical("memory", ee_health::MemoryCheck::new(64 << 20))
        .non_critical(
            "disk",
            ee_health::DiskCheck::new(std::env::temp_dir(), 256 << 20),
        )
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3002").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tracing::info!(%url, "orders listening");
    eprintln!("orders: {url}/v1  (metrics: {url}/metrics, health: {url}/healthz)");
    eprintln!(
        "try: curl -si -H 'content-type: application/json' -d '{{\"email\":\"x\",\"currency\":\"eur\",\"lines\":[]}}' {url}/v1/orders"
    );
    let app = ee_example_orders::deployed_app(&prometheus, &health);
    health.serve(listener, app, Duration::from_secs(10)).await?;
    Ok(())
}
