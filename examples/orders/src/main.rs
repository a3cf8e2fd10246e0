//! `cargo run -p ee-example-orders`: the order intake API on 127.0.0.1:3002
//! (`/v1/...`), JSON logs on standard output (`RUST_LOG` filters), metrics on
//! `/metrics`, probes on `/livez`, `/readyz`, `/healthz`; SIGTERM or Ctrl-C
//! drains in-flight requests for up to 10 s. Configured by `orders.toml` and
//! `EE_*` variables through ee-config.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The service's configuration: `orders.toml` if present, then `EE_*`
/// variables (`EE_LISTEN=0.0.0.0:8080`, `EE_LOGGING__FORMAT=pretty`).
#[derive(Debug, Serialize, Deserialize)]
struct Config {
    listen: String,
    drain_ms: u64,
    logging: ee_logging::LogConfig,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ee_config::Loader::new(Config {
        listen: "127.0.0.1:3002".into(),
        drain_ms: 10_000,
        logging: ee_logging::LogConfig::default(),
    })
    .file("orders.toml")
    .load_or_exit();
    let _logs = config.logging.init()?;
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
    let listener = tokio::net::TcpListener::bind(&config.listen).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tracing::info!(%url, "orders listening");
    eprintln!("orders: {url}/v1  (metrics: {url}/metrics, health: {url}/healthz)");
    eprintln!(
        "try: curl -si -H 'content-type: application/json' -d '{{\"email\":\"x\",\"currency\":\"eur\",\"lines\":[]}}' {url}/v1/orders"
    );
    let app = ee_example_orders::deployed_app(&prometheus, &health);
    health
        .serve(listener, app, Duration::from_millis(config.drain_ms))
        .await?;
    Ok(())
}
