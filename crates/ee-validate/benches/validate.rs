//! Validation cost (`cargo bench -p ee-validate`):
//! - the registry's compiled schema against compiling the schema per request;
//! - `Valid<T>` as an extractor against the raw work it wraps (serde_json to
//!   a `Value`, `jsonschema` validate, `T` from the value) on the same body.

#![allow(missing_docs)]

use axum::extract::FromRequest;
use criterion::{Criterion, criterion_group, criterion_main};
use ee_validate::{SchemaRegistry, Valid};
use std::hint::black_box;

mod support;
use support::{CreateOrder, body};

fn registry_vs_compile(c: &mut Criterion) {
    let schema = schemars::schema_for!(CreateOrder).to_value();
    let registry = SchemaRegistry::builder()
        .schema("urn:order", schema.clone())
        .build()
        .unwrap();
    let validator = registry.validator("urn:order").unwrap();
    let value: serde_json::Value = serde_json::from_slice(&body()).unwrap();
    let mut group = c.benchmark_group("validate_order");
    group.bench_function("compile_per_request", |b| {
        b.iter(|| {
            let v = jsonschema::validator_for(black_box(&schema)).unwrap();
            assert!(v.is_valid(black_box(&value)));
        })
    });
    group.bench_function("registry_cached", |b| {
        b.iter(|| assert!(validator.is_valid(black_box(&value))))
    });
    group.finish();
}

fn valid_extractor(c: &mut Criterion) {
    let body = body();
    let schema = schemars::schema_for!(CreateOrder).to_value();
    let raw_validator = jsonschema::validator_for(&schema).unwrap();
    let registry = SchemaRegistry::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("valid_create_order");
    group.bench_function("raw_parse_validate_deserialize", |b| {
        b.iter(|| {
            let value: serde_json::Value = serde_json::from_slice(black_box(&body)).unwrap();
            assert!(raw_validator.is_valid(&value));
            let order: CreateOrder = serde_json::from_value(value).unwrap();
            order
        })
    });
    // The request is built outside the measured time (the anchor has none
    // to build); the extractor's own work, the body included, is measured.
    group.bench_function("valid_extractor", |b| {
        b.iter_batched(
            || {
                let mut req = http::Request::post("/orders")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body.clone()))
                    .unwrap();
                req.extensions_mut().insert(registry.clone());
                req
            },
            |req| {
                rt.block_on(Valid::<CreateOrder>::from_request(req, &()))
                    .unwrap()
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, registry_vs_compile, valid_extractor);
criterion_main!(benches);
