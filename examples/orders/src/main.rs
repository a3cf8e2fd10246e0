//! `cargo run -p ee-example-orders`: the order intake API on 127.0.0.1:3002,
//! JSON logs on standard output (`RUST_LOG` filters), metrics on `/metrics`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _logs = ee_logging::LogConfig::default().init()?;
    let prometheus = ee_metrics::Prometheus::builder()
        .global_label("service", "orders")
        .global_label("version", env!("CARGO_PKG_VERSION"))
        .install()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3002").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tracing::info!(%url, metrics = %format!("{url}/metrics"), "orders listening");
    eprintln!("orders: {url}  (metrics: {url}/metrics)");
    eprintln!(
        "try: curl -si -H 'content-type: application/json' -d '{{\"email\":\"x\",\"currency\":\"eur\",\"lines\":[]}}' {url}/orders"
    );
    axum::serve(listener, ee_example_orders::observed_app(&prometheus)).await?;
    Ok(())
}
