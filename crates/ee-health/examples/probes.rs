//! The probe endpoints of a service with one critical check (a flag the
//! service flips) and one non-critical check (available memory), served
//! with a graceful shutdown: Ctrl-C fails readiness at once, then in-flight
//! requests drain for up to 5 s.
//!
//! ```sh
//! cargo run -p ee-health --example probes
//! curl -i localhost:3007/readyz      # 200 application/health+json, the critical checks
//! curl -i localhost:3007/healthz     # every check, with latency and observed values
//! curl -i -X POST localhost:3007/down
//! curl -i localhost:3007/readyz      # 503: the critical check fails
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use ee_health::{Health, MemoryCheck, check_fn};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let up = Arc::new(AtomicBool::new(true));
    let flag = up.clone();
    let health = Health::builder()
        .timeout(Duration::from_millis(500))
        .critical(
            "database",
            check_fn(move || {
                let up = flag.load(Ordering::Relaxed);
                async move {
                    if up {
                        Ok(())
                    } else {
                        Err("the database is down")
                    }
                }
            }),
        )
        .non_critical("memory", MemoryCheck::new(64 << 20))
        .cache_for(Duration::from_millis(200))
        .build();
    let app = Router::new()
        .route(
            "/down",
            post(move || async move {
                up.store(false, Ordering::Relaxed);
                "the database check now fails\n"
            }),
        )
        .merge(health.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3007").await?;
    println!("listening on http://{}", listener.local_addr()?);
    health.serve(listener, app, Duration::from_secs(5)).await
}
