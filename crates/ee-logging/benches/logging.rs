//! `RequestLogLayer` per request, JSON lines written to a sink: with INFO on,
//! with the filter at WARN (the span and event filtered off), and the bare
//! router (`cargo bench -p ee-logging`).

#![allow(missing_docs)]

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use ee_logging::{LogConfig, LogFormat, RequestLogLayer};
use tower::ServiceExt;

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let route = || Router::new().route("/orders/{id}", get(|| async { "an order" }));
    let logged = route().layer(RequestLogLayer::new());
    let mut group = c.benchmark_group("request_log_per_request");
    let mut run = |name: &str, app: &Router, filter: Option<&str>| {
        let _guard = filter.map(|f| {
            let config = LogConfig {
                format: LogFormat::Json,
                filter: f.into(),
                ..LogConfig::default()
            };
            tracing::subscriber::set_default(config.subscriber(std::io::sink).unwrap())
        });
        group.bench_function(name, |b| {
            let mut i = 0u32;
            b.iter(|| {
                i = i.wrapping_add(1);
                let req = http::Request::get(format!("/orders/{}", i % 1000))
                    .body(Body::empty())
                    .unwrap();
                rt.block_on(app.clone().oneshot(req)).unwrap().status()
            })
        });
    };
    run("bare", &route(), None);
    run("json_info_on", &logged, Some("info"));
    run("json_filtered_off", &logged, Some("warn"));
    group.finish();
}

criterion_group!(benches, layer);
criterion_main!(benches);
