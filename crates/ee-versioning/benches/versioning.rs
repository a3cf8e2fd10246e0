//! The versions, built with `into_router` and with `into_service`, against
//! plain axum routing of the same route (`cargo bench -p ee-versioning`).

#![allow(missing_docs)]

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use ee_versioning::{VersionRoutes, VersionedRouter};
use tower::ServiceExt;

fn routing(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let route = || Router::new().route("/orders/{id}", get(|| async { "an order" }));
    let plain = route();
    let flat = || VersionRoutes::new().route("/orders/{id}", get(|| async { "an order" }));
    let versions = || {
        VersionedRouter::new()
            .version(1, flat())
            .version(2, flat())
            .default_version(2)
    };
    let versioned = versions().into_router();
    let service = versions().into_service();
    let nested = VersionedRouter::new()
        .version(1, route())
        .version(2, route())
        .default_version(2)
        .into_router();
    let mut group = c.benchmark_group("versioning_per_request");
    for (name, app, path, header) in [
        ("plain_axum", &plain, "/orders/42", false),
        // The anchor of the header row: the same request, header included.
        ("plain_axum_with_header", &plain, "/orders/42", true),
        ("versioned_uri", &versioned, "/v2/orders/42", false),
        ("versioned_default", &versioned, "/orders/42", false),
        ("versioned_header", &versioned, "/orders/42", true),
        ("nested_router_uri", &nested, "/v2/orders/42", false),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(app.clone().oneshot(request(path, header)))
                    .unwrap()
                    .status()
            })
        });
    }
    for (name, path, header) in [
        ("service_uri", "/v2/orders/42", false),
        ("service_default", "/orders/42", false),
        ("service_header", "/orders/42", true),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(service.clone().oneshot(request(path, header)))
                    .unwrap()
                    .status()
            })
        });
    }
    group.finish();
}

/// `GET path`, with `Api-Version: 1` when `header`.
fn request(path: &str, header: bool) -> http::Request<Body> {
    let mut req = http::Request::get(path);
    if header {
        req = req.header("api-version", "1");
    }
    req.body(Body::empty()).unwrap()
}

criterion_group!(benches, routing);
criterion_main!(benches);
