//! `cargo run -p ee-example-quickstart`: serves the quickstart app on
//! `EE_ADDR` (default 127.0.0.1:3000).
//!
//! - `EE_TRUSTED_PROXIES`: comma-separated networks whose `X-Forwarded-For` is
//!   believed (default `127.0.0.1/32,::1/128`, so you can try it with curl).
//! - `EE_REDIS_URL`: keep visit counts in Redis instead of memory.

use std::net::SocketAddr;

use ee_core::ClientIp;
use ee_core::{RedisConfig, RedisConn};
use ee_example_quickstart::{AppState, Visits, app};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("EE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let proxies =
        std::env::var("EE_TRUSTED_PROXIES").unwrap_or_else(|_| "127.0.0.1/32,::1/128".into());
    let trusted = proxies
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("EE_TRUSTED_PROXIES `{proxies}`: {e}"))?;

    let (visits, store) = match std::env::var("EE_REDIS_URL") {
        Ok(url) => {
            let conn = RedisConn::connect(&RedisConfig::standalone(url.clone()))
                .await
                .map_err(|e| format!("EE_REDIS_URL `{url}`: {e}"))?;
            (Visits::redis(conn), format!("redis ({url})"))
        }
        Err(_) => (Visits::memory(), "memory".to_owned()),
    };

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("ee quickstart on http://{local}  (visits in {store})");
    println!("  curl http://{local}/whoami -H 'x-forwarded-for: 203.0.113.7'");
    println!("  curl -X POST http://{local}/visits");
    println!("  curl -i http://{local}/nope        # a problem+json 404");
    println!(
        "  curl -i -X POST http://{local}/orders -H 'idempotency-key: \"k1\"' -d '{{\"sku\":1}}'  # twice: replayed"
    );

    let service = app(AppState::new(ClientIp::trusting(trusted), visits))
        .into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
