//! Runs one layer variant N times, for instruction counts under callgrind (a
//! shared 2-core machine makes wall-clock ratios noisy; instruction counts
//! are repeatable):
//!
//! ```sh
//! cargo build --release -p ee-ratelimit --features axum --example instructions
//! for v in none governor governor-headers ee ee-legacy ee-headers; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$v target/release/examples/instructions $v 100000
//! done
//! ```
//!
//! `none` is the no-op service alone (the baseline to subtract).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use ee_ratelimit::{HeaderConfig, MemoryStore, Policy, RateLimitLayer, Rule};
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt};

#[path = "../benches/support/mod.rs"]
mod support;
use support::{BURST, noop, request};

async fn drive<S>(svc: S, n: usize)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    for i in 0..n {
        let res = svc
            .clone()
            .ready()
            .await
            .unwrap()
            .call(request(i))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "ee".into());
    let n: usize = args.next().map_or(100_000, |s| s.parse().expect("a count"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ee = |headers| {
        RateLimitLayer::builder(MemoryStore::new())
            .policy(Policy::new(
                "api",
                Rule::gcra(BURST, Duration::from_secs(1), BURST),
            ))
            .headers(headers)
            .build()
            .unwrap()
    };
    rt.block_on(async {
        match variant.as_str() {
            "none" => drive(noop(), n).await,
            "governor" => {
                let config = tower_governor::governor::GovernorConfigBuilder::default()
                    .per_nanosecond(1)
                    .burst_size(BURST)
                    .finish()
                    .unwrap();
                drive(tower_governor::GovernorLayer::new(config).layer(noop()), n).await
            }
            "governor-headers" => {
                let config = tower_governor::governor::GovernorConfigBuilder::default()
                    .per_nanosecond(1)
                    .burst_size(BURST)
                    .use_headers()
                    .finish()
                    .unwrap();
                drive(tower_governor::GovernorLayer::new(config).layer(noop()), n).await
            }
            "ee-legacy" => {
                let headers = HeaderConfig {
                    draft: false,
                    legacy: true,
                };
                drive(ee(headers).layer(noop()), n).await
            }
            "ee" => {
                drive(
                    ee(HeaderConfig {
                        draft: false,
                        legacy: false,
                    })
                    .layer(noop()),
                    n,
                )
                .await
            }
            "ee-headers" => drive(ee(HeaderConfig::default()).layer(noop()), n).await,
            other => panic!("unknown variant {other}"),
        }
    });
}
