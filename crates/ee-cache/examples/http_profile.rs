//! Runs N requests through `ResponseCacheLayer` (`miss`: every one a stored
//! miss; `miss-bg`: the same, stored in the background; `hit`; `none`: the
//! handler alone), for instruction counts under callgrind:
//!
//! ```sh
//! cargo build --release -p ee-cache --features http --example http_profile
//! valgrind --tool=callgrind target/release/examples/http_profile miss 10000
//! ```

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use ee_cache::http::{ResponseCacheLayer, Variants};
use ee_cache::{Cache, MemoryStore};
use tower::ServiceExt;

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "miss".into());
    let n: usize = args.next().map_or(10_000, |s| s.parse().expect("a count"));
    let body = "x".repeat(2800);
    let handler = Router::new().route(
        "/products",
        get(move || {
            let body = body.clone();
            async move {
                (
                    [
                        ("cache-control", "max-age=600"),
                        ("content-type", "application/json"),
                    ],
                    body,
                )
            }
        }),
    );
    let cache: Cache<str, Variants> = Cache::builder("http").build(MemoryStore::new()).unwrap();
    let app = match variant.as_str() {
        "none" => handler,
        "miss-bg" => handler.layer(ResponseCacheLayer::new(cache).store_in_background()),
        _ => handler.layer(ResponseCacheLayer::new(cache)),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..n {
            let mut req = http::Request::get("/products").header("host", "shop.example");
            if variant.starts_with("miss") {
                req = req.header("cache-control", "no-cache");
            }
            let res = app
                .clone()
                .oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            let bytes = http_body_util::BodyExt::collect(res.into_body())
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(bytes.len(), 2800);
        }
    });
}
