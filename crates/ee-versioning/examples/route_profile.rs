//! Runs N requests through plain axum or the versioned router, for
//! instruction counts under callgrind:
//! `valgrind --tool=callgrind target/release/examples/route_profile <plain|plain-header|uri|default|header> N`.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use ee_versioning::{VersionRoutes, VersionedRouter};
use tower::ServiceExt;

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "default".into());
    let n: usize = args.next().map_or(10_000, |s| s.parse().expect("a count"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let flat = || VersionRoutes::new().route("/orders/{id}", get(|| async { "an order" }));
    let header = variant == "header" || variant == "plain-header";
    let (app, path) = match variant.as_str() {
        "plain" | "plain-header" => (
            Router::new().route("/orders/{id}", get(|| async { "an order" })),
            "/orders/42",
        ),
        "uri" => (
            VersionedRouter::new()
                .version(1, flat())
                .version(2, flat())
                .default_version(2)
                .into_router(),
            "/v2/orders/42",
        ),
        _ => (
            VersionedRouter::new()
                .version(1, flat())
                .version(2, flat())
                .default_version(2)
                .into_router(),
            "/orders/42",
        ),
    };
    let mut ok = 0;
    for _ in 0..n {
        let mut req = http::Request::get(path);
        if header {
            req = req.header("api-version", "1");
        }
        let req = req.body(Body::empty()).unwrap();
        ok += usize::from(rt.block_on(app.clone().oneshot(req)).unwrap().status() == 200);
    }
    assert_eq!(ok, n);
}
