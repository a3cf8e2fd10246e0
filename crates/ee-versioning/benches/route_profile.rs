//! Runs N requests through plain axum or the versioned router, for
//! instruction counts under callgrind (a profiling harness, not a usage
//! example: `examples/versions.rs` is that):
//!
//! ```sh
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="valgrind --tool=callgrind --toggle-collect=route_profile::run*" \
//!   cargo bench -p ee-versioning --bench route_profile -- <variant> 100000
//! ```
//!
//! Variants: `plain` and `plain-header` (axum alone; the second sends
//! `Api-Version: 1` too), `uri`, `default`, `header` (`into_router`), and
//! `service-uri`, `service-default`, `service-header` (`into_service`).
//! Divide by N: only the requests are counted. `interleaved N` (or
//! `interleaved-service N`) times plain axum and the versions in turns of N
//! requests (300 rounds), the default, header and URI rows each beside its
//! own anchor, for wall-clock ratios the machine's drift affects equally.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use ee_versioning::{VersionRoutes, VersionedRouter};
use tower::ServiceExt;

fn plain() -> Router {
    Router::new().route("/orders/{id}", get(|| async { "an order" }))
}

fn versions() -> VersionedRouter {
    let flat = || VersionRoutes::new().route("/orders/{id}", get(|| async { "an order" }));
    VersionedRouter::new()
        .version(1, flat())
        .version(2, flat())
        .default_version(2)
}

fn versioned() -> Router {
    versions().into_router()
}

fn main() {
    // `cargo bench` adds `--bench`: only the harness's own arguments count.
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let variant = args.next().unwrap_or_else(|| "default".into());
    let n: usize = args.next().map_or(10_000, |s| s.parse().expect("a count"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    if let Some(build) = variant.strip_prefix("interleaved") {
        use ee_testing::{ns_per_op, take_turns};
        for (path, header, what) in [
            ("/orders/42", false, "/orders/42, default version"),
            ("/orders/42", true, "Api-Version: 1"),
            ("/v2/orders/42", false, "/v2/orders/42; anchor /orders/42"),
        ] {
            let anchor = plain();
            let turns = if build == "-service" {
                let ours = versions().into_service();
                take_turns(
                    300,
                    || ns_per_op(n, || run(&rt, &anchor, "/orders/42", header, n)),
                    || ns_per_op(n, || run(&rt, &ours, path, header, n)),
                )
            } else {
                let ours = versioned();
                take_turns(
                    300,
                    || ns_per_op(n, || run(&rt, &anchor, "/orders/42", header, n)),
                    || ns_per_op(n, || run(&rt, &ours, path, header, n)),
                )
            };
            turns.print(
                &format!("plain axum ({what})"),
                &format!("versions{build} ({what})"),
                "ns per request",
            );
        }
        return;
    }
    let header = variant.ends_with("header");
    let path = if variant.ends_with("uri") {
        "/v2/orders/42"
    } else {
        "/orders/42"
    };
    match variant.as_str() {
        "plain" | "plain-header" => run(&rt, &plain(), path, header, n),
        v if v.starts_with("service-") => run(&rt, &versions().into_service(), path, header, n),
        _ => run(&rt, &versioned(), path, header, n),
    }
}

/// `n` requests for `path` (with `Api-Version: 1` when `header`), each
/// answered 200: the one function the profile counts.
#[inline(never)]
fn run<S>(rt: &tokio::runtime::Runtime, app: &S, path: &str, header: bool, n: usize)
where
    S: tower::Service<http::Request<Body>, Response = axum::response::Response> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut ok = 0;
    for _ in 0..n {
        let mut req = http::Request::get(path);
        if header {
            req = req.header("api-version", "1");
        }
        let req = req.body(Body::empty()).unwrap();
        ok += usize::from(rt.block_on(app.clone().oneshot(req)).unwrap().status() == 200);
    }
    assert_eq!(ok, n);
}
