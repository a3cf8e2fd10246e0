//! Runs N requests through `ResponseCacheLayer` (`miss`: every one a stored
//! miss, the request saying `no-cache`; `miss-bg`: the same, stored in the
//! background; `miss-new`: every one a URL not asked before; `hit`; `none`:
//! the handler alone; `none-new`: alone, on new URLs), for instruction counts under callgrind:
//!
//! ```sh
//! bin=$(cargo bench -p ee-cache --bench http_profile --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*\))/\1/p')
//! valgrind --tool=callgrind --toggle-collect='http_profile::run*' "$bin" miss 10000
//! ```
//!
//! Divide by N: only the requests are counted (not building the app).
//!
//! A profiling harness, not a criterion bench: without arguments (a plain
//! `cargo bench`) it only prints how to run it.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use ee_cache::{Cache, MemoryStore, ResponseCacheLayer, Variants};
use tower::ServiceExt;

const USAGE: &str =
    "http_profile <miss|miss-bg|miss-new|hit|none|none-new> [N]: see the file's docs";

fn main() {
    let Some(args) = ee_testing::profile_args(USAGE) else {
        return;
    };
    let mut args = args.into_iter();
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
        "none" | "none-new" => handler,
        "miss-bg" => handler.layer(ResponseCacheLayer::new(cache).store_in_background()),
        _ => handler.layer(ResponseCacheLayer::new(cache)),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let how = match variant.as_str() {
        "miss-new" | "none-new" => Ask::NewUrl,
        v if v.starts_with("miss") => Ask::Bypass,
        _ => Ask::Same,
    };
    run(&rt, &app, n, how);
}

/// What the requests ask for.
#[derive(Clone, Copy, PartialEq)]
enum Ask {
    /// `/products` each time.
    Same,
    /// `/products` with `Cache-Control: no-cache`: a stored miss each time,
    /// the entry replaced.
    Bypass,
    /// `/products?page=<i>`: a URL not seen before each time (a new entry).
    NewUrl,
}

/// The requests: the one function the profile counts
/// (`--toggle-collect='http_profile::run*'`).
#[inline(never)]
fn run(rt: &tokio::runtime::Runtime, app: &Router, n: usize, how: Ask) {
    rt.block_on(async {
        for i in 0..n {
            let uri = match how {
                Ask::NewUrl => format!("/products?page={i}"),
                _ => "/products".to_owned(),
            };
            let mut req = http::Request::get(uri).header("host", "shop.example");
            if how == Ask::Bypass {
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
