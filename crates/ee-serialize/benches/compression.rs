//! Response compression of a 38 KB product listing through tower-http's
//! `CompressionLayer`: its default as a client asking for gzip gets it
//! (gzip-6, the anchor) against ee's preset as clients of each coding get it;
//! and zstd with and without a trained dictionary on many small documents.
//! Ratios are printed once per variant (`cargo bench -p ee-serialize --bench
//! compression`).

#![allow(missing_docs)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ee_serialize::{Dictionary, ZstdCodec};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_http::compression::{CompressionLayer, CompressionLevel};

mod support;

fn responses(c: &mut Criterion) {
    let listing = bytes::Bytes::from(support::listing(100));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let route = {
        let listing = listing.clone();
        Router::new().route(
            "/",
            get(move || {
                let listing = listing.clone();
                async move { ([("content-type", "application/json")], listing) }
            }),
        )
    };
    let variants: Vec<(&str, &str, Router)> = vec![
        (
            "tower_http_default_gzip6",
            "gzip",
            route.clone().layer(CompressionLayer::new()),
        ),
        (
            "ee_preset_zstd3",
            "zstd",
            route.clone().layer(ee_serialize::compression()),
        ),
        (
            "ee_preset_br4",
            "br",
            route.clone().layer(ee_serialize::compression()),
        ),
        (
            "ee_preset_gzip6",
            "gzip",
            route.clone().layer(ee_serialize::compression()),
        ),
        (
            "zstd1",
            "zstd",
            route
                .clone()
                .layer(CompressionLayer::new().quality(CompressionLevel::Precise(1))),
        ),
        (
            "zstd6",
            "zstd",
            route
                .clone()
                .layer(CompressionLayer::new().quality(CompressionLevel::Precise(6))),
        ),
        (
            "br11",
            "br",
            route
                .clone()
                .layer(CompressionLayer::new().quality(CompressionLevel::Best)),
        ),
    ];
    let fetch = |app: &Router, coding: &str| {
        let req = http::Request::get("/")
            .header("accept-encoding", coding)
            .body(Body::empty())
            .unwrap();
        rt.block_on(async {
            let res = app.clone().oneshot(req).await.unwrap();
            assert_eq!(res.headers()["content-encoding"], coding);
            res.into_body().collect().await.unwrap().to_bytes().len()
        })
    };
    let mut group = c.benchmark_group("compress_38kb_listing");
    group.throughput(Throughput::Bytes(listing.len() as u64));
    for (name, coding, app) in &variants {
        let size = fetch(app, coding);
        eprintln!(
            "{name}: {} -> {size} bytes, ratio {:.1}",
            listing.len(),
            listing.len() as f64 / size as f64
        );
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| fetch(app, coding))
        });
    }
    group.finish();
}

fn dictionary(c: &mut Criterion) {
    let training = support::small_docs(1_000, 1);
    let docs = support::small_docs(1_000, 500_000);
    let total: usize = docs.iter().map(Vec::len).sum();
    let dict = Arc::new(Dictionary::train(&training, 16 * 1024, 3).unwrap());
    let plain = ZstdCodec::new().min_size(0);
    let with_dict = ZstdCodec::new().min_size(0).dictionary(dict);
    let mut group = c.benchmark_group("zstd_1000_small_docs");
    group.throughput(Throughput::Bytes(total as u64));
    for (name, codec) in [("zstd3", &plain), ("zstd3_dictionary", &with_dict)] {
        let compressed: usize = docs
            .iter()
            .map(|d| {
                let mut out = Vec::new();
                codec.compress_into(d, &mut out).unwrap();
                out.len()
            })
            .sum();
        eprintln!(
            "{name}: {} docs, {total} -> {compressed} bytes, ratio {:.2}",
            docs.len(),
            total as f64 / compressed as f64
        );
        group.bench_function(BenchmarkId::new("compress", name), |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(512);
                for d in &docs {
                    out.clear();
                    codec.compress_into(d, &mut out).unwrap();
                }
            })
        });
        let stored: Vec<Vec<u8>> = docs
            .iter()
            .map(|d| {
                let mut out = Vec::new();
                codec.compress_into(d, &mut out).unwrap();
                out
            })
            .collect();
        group.bench_function(BenchmarkId::new("decompress", name), |b| {
            b.iter(|| {
                for s in &stored {
                    codec.decompress(s).unwrap();
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, responses, dictionary);
criterion_main!(benches);
