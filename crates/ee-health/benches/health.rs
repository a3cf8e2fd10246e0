//! Probes with cached results (`cargo bench -p ee-health`): the report
//! itself, and `/readyz` through the axum router, in process.

#![allow(missing_docs)]

use std::time::Duration;

use axum::body::Body;
use criterion::{Criterion, criterion_group, criterion_main};
use ee_health::{Health, MemoryCheck, check_fn};
use tower::ServiceExt;

fn probes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let health = Health::builder()
        .critical("db", check_fn(|| async { Ok::<(), std::io::Error>(()) }))
        .non_critical("memory", MemoryCheck::new(1))
        .cache_for(Duration::from_secs(3600))
        .build();
    let router: axum::Router = health.router();
    rt.block_on(health.report());
    let mut group = c.benchmark_group("health_cached");
    group.bench_function("report", |b| b.iter(|| rt.block_on(health.report()).status));
    group.bench_function("readyz_through_router", |b| {
        b.iter(|| {
            let req = http::Request::get("/readyz").body(Body::empty()).unwrap();
            rt.block_on(router.clone().oneshot(req)).unwrap().status()
        })
    });
    group.finish();
}

criterion_group!(benches, probes);
criterion_main!(benches);
