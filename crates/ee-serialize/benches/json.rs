//! JSON parse and serialise per library and size: serde_json, simd-json and
//! sonic-rs on the same typed order payloads (`cargo bench -p ee-serialize
//! --bench json`).

#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

mod support;
use support::{Order, SIZES, order};

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("json_parse");
    for (label, items) in SIZES {
        let bytes = serde_json::to_vec(&order(items)).unwrap();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::new("serde_json", label), &bytes, |b, bytes| {
            b.iter(|| serde_json::from_slice::<Order>(black_box(bytes)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("simd_json", label), &bytes, |b, bytes| {
            // simd-json parses in place: the copy of the request bytes is part of its cost.
            b.iter(|| {
                let mut owned = black_box(bytes).clone();
                simd_json::serde::from_slice::<Order>(&mut owned).unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("sonic_rs", label), &bytes, |b, bytes| {
            b.iter(|| sonic_rs::from_slice::<Order>(black_box(bytes)).unwrap())
        });
    }
    group.finish();
}

fn serialize(c: &mut Criterion) {
    let mut group = c.benchmark_group("json_serialize");
    for (label, items) in SIZES {
        let value = order(items);
        let len = serde_json::to_vec(&value).unwrap().len();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("serde_json", label), &value, |b, v| {
            b.iter(|| serde_json::to_vec(black_box(v)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("simd_json", label), &value, |b, v| {
            b.iter(|| simd_json::serde::to_vec(black_box(v)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("sonic_rs", label), &value, |b, v| {
            b.iter(|| sonic_rs::to_vec(black_box(v)).unwrap())
        });
    }
    group.finish();
}

/// End to end through an axum router: the handler takes the order and sends
/// it back, with `axum::Json` (the anchor) or `FastJson`.
fn end_to_end(c: &mut Criterion) {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use ee_serialize::FastJson;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let axum_json = Router::new().route(
        "/",
        post(|axum::Json(o): axum::Json<Order>| async move { axum::Json(o) }),
    );
    let fast_json = Router::new().route(
        "/",
        post(|FastJson(o): FastJson<Order>| async move { FastJson(o) }),
    );
    let mut group = c.benchmark_group("json_end_to_end");
    for (label, items) in SIZES {
        let bytes = bytes::Bytes::from(serde_json::to_vec(&order(items)).unwrap());
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        for (name, app) in [("axum_json", &axum_json), ("fast_json", &fast_json)] {
            group.bench_with_input(BenchmarkId::new(name, label), &bytes, |b, bytes| {
                b.iter(|| {
                    rt.block_on(async {
                        let req = http::Request::post("/")
                            .header("content-type", "application/json")
                            .body(Body::from(bytes.clone()))
                            .unwrap();
                        let res = app.clone().oneshot(req).await.unwrap();
                        assert_eq!(res.status(), 200);
                        res.into_body().collect().await.unwrap().to_bytes().len()
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, parse, serialize, end_to_end);
criterion_main!(benches);
