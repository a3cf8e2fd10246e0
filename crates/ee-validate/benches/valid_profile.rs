//! Runs `Valid<T>` (or the raw work it wraps) N times, for instruction counts
//! under callgrind (wall-clock ratios on the shared 2-core machine move by
//! up to 30 % between runs; a profiling harness, not a usage example:
//! `examples/orders.rs` is that):
//!
//! ```sh
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="valgrind --tool=callgrind" \
//!   cargo bench -p ee-validate --features axum --bench valid_profile -- valid 20000
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="valgrind --tool=callgrind" \
//!   cargo bench -p ee-validate --features axum --bench valid_profile -- raw 20000
//! ```
//!
//! `build` only builds the requests (the harness cost both variants share
//! with `valid`, subtracted from it).

use axum::extract::FromRequest;
use ee_validate::{SchemaRegistry, Valid};

mod support;
use support::{CreateOrder, body};

fn main() {
    // `cargo bench` adds `--bench`: only the harness's own arguments count.
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let variant = args.next().unwrap_or_else(|| "valid".into());
    let n: usize = args.next().map_or(10_000, |s| s.parse().expect("a count"));
    let body = body();
    let schema = schemars::schema_for!(CreateOrder).to_value();
    let raw = jsonschema::validator_for(&schema).unwrap();
    let registry = SchemaRegistry::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let request = || {
        let mut req = http::Request::post("/orders")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.clone()))
            .unwrap();
        req.extensions_mut().insert(registry.clone());
        req
    };
    let mut sum = 0usize;
    for _ in 0..n {
        match variant.as_str() {
            "raw" => {
                let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert!(raw.is_valid(&value));
                let order: CreateOrder = serde_json::from_value(value).unwrap();
                sum += order.lines.len();
            }
            "build" => {
                let req = request();
                sum += rt.block_on(async { req.headers().len() });
            }
            _ => {
                let req = request();
                let Valid(order) = rt
                    .block_on(Valid::<CreateOrder>::from_request(req, &()))
                    .unwrap();
                sum += order.lines.len();
            }
        }
    }
    println!("{sum}");
}
