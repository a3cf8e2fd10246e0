//! `MetricsLayer` per request against the bare router and against
//! `axum-prometheus` (the maintained anchor), all recording into the same
//! Prometheus exporter (`cargo bench -p ee-metrics`).

#![allow(missing_docs)]

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use ee_metrics::{MetricsLayer, Prometheus};
use tower::ServiceExt;

fn layers(c: &mut Criterion) {
    let _prometheus = Prometheus::builder()
        .process_metrics(false)
        .install()
        .expect("the benchmark's recorder");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let route = || Router::new().route("/orders/{id}", get(|| async { "an order" }));
    let variants: [(&str, Router); 3] = [
        ("bare", route()),
        (
            "axum_prometheus",
            route().layer(axum_prometheus::PrometheusMetricLayer::new()),
        ),
        ("ee_metrics", route().layer(MetricsLayer::new())),
    ];
    let mut group = c.benchmark_group("red_layer_per_request");
    for (name, app) in &variants {
        group.bench_function(*name, |b| {
            let mut i = 0u32;
            b.iter(|| {
                i = i.wrapping_add(1);
                let req = http::Request::get(format!("/orders/{}", i % 1000))
                    .body(Body::empty())
                    .unwrap();
                rt.block_on(app.clone().oneshot(req)).unwrap().status()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, layers);
criterion_main!(benches);
