//! Two API versions of one resource: v1 deprecated with a sunset date and a
//! successor link, v2 the default, `/health` version-neutral, served in
//! front of axum's routing.
//!
//! ```sh
//! cargo run -p ee-versioning --example versions
//! curl -i localhost:3004/v1/orders/7                  # v1, with Deprecation, Sunset, Link
//! curl -i localhost:3004/orders/7                     # v2, the default
//! curl -i -H 'Api-Version: 1' localhost:3004/orders/7 # v1 by header
//! curl -i localhost:3004/v9/orders/7                  # 400 problem listing v1, v2
//! curl -i localhost:3004/health                       # whatever the version
//! ```

use std::time::{Duration, SystemTime};

use axum::extract::{Path, Request};
use axum::routing::get;
use axum::{Router, ServiceExt};
use ee_versioning::{Lifecycle, VersionRoutes, VersionedRouter};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let v1 = VersionRoutes::new().route(
        "/orders/{id}",
        get(|Path(id): Path<u32>| async move { format!("order {id}, v1 shape\n") }),
    );
    let v2 = VersionRoutes::new().route(
        "/orders/{id}",
        get(|Path(id): Path<u32>| async move { format!("{{\"order\": {id}}}\n") }),
    );
    let now = SystemTime::now();
    let app = VersionedRouter::new()
        .version(1, v1)
        .version(2, v2)
        .default_version(2)
        .lifecycle(
            1,
            Lifecycle::deprecated(now)
                .sunset(now + Duration::from_secs(90 * 86_400))
                .link("https://api.example/deprecations/v1")
                .successor("/v2/orders"),
        )
        .neutral(Router::new().route("/health", get(|| async { "ok\n" })))
        .into_service();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3004").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, ServiceExt::<Request>::into_make_service(app)).await
}
