//! Every version source, malformed versions, lifecycle headers before and
//! after the sunset with a fixed clock, over real TCP.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use ee_core::key::HeaderKey;
use ee_testing::TestResponse;
use ee_testing::wire::{exchange, request, serve};
use ee_versioning::{Lifecycle, Source, VersionRoutes, VersionedRouter};

/// 2026-06-01T00:00:00Z: v1 deprecated; its sunset is 2027-01-01.
const DEPRECATED: u64 = 1_780_272_000;
const SUNSET: u64 = 1_798_761_600;

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn app(now: u64) -> Router {
    // v1 as a finished router (nested), v2 route by route: both kinds.
    let v1 = Router::new().route("/orders/{id}", get(|| async { "v1 order" }));
    let v2 = VersionRoutes::new().route("/orders/{id}", get(|| async { "v2 order" }));
    VersionedRouter::new()
        .version(1, v1)
        .version(2, v2)
        .default_version(2)
        .lifecycle(
            1,
            Lifecycle::deprecated(at(DEPRECATED))
                .sunset(at(SUNSET))
                .link("https://api.example/deprecations/v1")
                .successor("/v2/orders"),
        )
        .neutral(Router::new().route("/health", get(|| async { "ok" })))
        .client_key(HeaderKey::new(http::HeaderName::from_static("x-api-key")))
        .clock(move || at(now))
        .into_router()
}

async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &[u8])]) -> TestResponse {
    exchange(addr, &request("GET", path, headers, b"")).await
}

#[tokio::test]
async fn every_source_picks_the_version() {
    let addr = serve(app(DEPRECATED - 86_400)).await;
    for (path, headers, want) in [
        ("/v1/orders/7", vec![], "v1 order"),
        ("/v2/orders/7", vec![], "v2 order"),
        ("/orders/7", vec![("api-version", &b"1"[..])], "v1 order"),
        (
            "/orders/7",
            vec![("accept", &b"application/vnd.ee.v1+json"[..])],
            "v1 order",
        ),
        (
            "/orders/7",
            vec![(
                "accept",
                &b"text/html, application/vnd.ee.v1+json;q=0.9"[..],
            )],
            "v1 order",
        ),
        ("/orders/7?api-version=1", vec![], "v1 order"),
        ("/orders/7", vec![], "v2 order"),
        // The URI wins over a header (sources are tried in order).
        ("/v2/orders/7", vec![("api-version", &b"1"[..])], "v2 order"),
    ] {
        let res = get_with(addr, path, &headers).await;
        assert_eq!(res.status, 200, "{path} {headers:?}: {}", res.text());
        assert_eq!(res.text(), want, "{path} {headers:?}");
    }
    // Version-neutral routes answer without a version.
    assert_eq!(get_with(addr, "/health", &[]).await.text(), "ok");
    // A header source varies the response.
    let res = get_with(addr, "/orders/7", &[]).await;
    assert_eq!(res.header("vary"), Some("api-version, accept"));
}

#[tokio::test]
async fn malformed_and_unknown_versions_are_400_listing_the_supported_ones() {
    let addr = serve(app(DEPRECATED)).await;
    for (path, headers) in [
        ("/v3/orders/7", vec![]),
        ("/v02/orders/7", vec![]),
        ("/v2x/orders/7", vec![]),
        ("/orders/7", vec![("api-version", &b"two"[..])]),
        ("/orders/7", vec![("api-version", &b"2.1"[..])]),
        (
            "/orders/7",
            vec![("accept", &b"application/vnd.ee.vX+json"[..])],
        ),
        ("/orders/7?api-version=", vec![]),
    ] {
        let res = get_with(addr, path, &headers).await;
        assert_eq!(res.status, 400, "{path} {headers:?}: {}", res.text());
        let problem = res.problem();
        assert_eq!(
            problem.type_uri(),
            "https://ee.rs/problems/versioning/unsupported-version"
        );
        assert_eq!(
            problem.extension("supported"),
            Some(&serde_json::json!(["v1", "v2"]))
        );
    }
}

#[tokio::test]
async fn a_version_without_default_must_be_named() {
    let app = VersionedRouter::new()
        .version(1, Router::new().route("/x", get(|| async { "x" })))
        .into_router();
    let addr = serve(app).await;
    let res = get_with(addr, "/x", &[]).await;
    assert_eq!(res.status, 400);
    assert!(
        res.problem()
            .detail()
            .unwrap()
            .contains("names no API version")
    );
}

#[tokio::test]
async fn deprecated_versions_carry_the_lifecycle_headers_then_go() {
    // Before the deprecation date: announced already (RFC 9745 allows a future date).
    let before = serve(app(DEPRECATED - 86_400)).await;
    let res = get_with(before, "/v1/orders/1", &[]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("deprecation"), Some("@1780272000"));
    assert_eq!(res.header("sunset"), Some("Fri, 01 Jan 2027 00:00:00 GMT"));
    assert_eq!(
        res.header("link"),
        Some(
            r#"<https://api.example/deprecations/v1>; rel="deprecation"; type="text/html", </v2/orders>; rel="successor-version""#
        )
    );
    // v2 has no lifecycle headers.
    let res = get_with(before, "/v2/orders/1", &[]).await;
    assert_eq!(
        (
            res.header("deprecation"),
            res.header("sunset"),
            res.header("link")
        ),
        (None, None, None)
    );

    // After the sunset: 410 with the same headers.
    let after = serve(app(SUNSET)).await;
    let res = get_with(after, "/v1/orders/1", &[]).await;
    assert_eq!(res.status, 410);
    let problem = res.problem();
    assert_eq!(
        problem.type_uri(),
        "https://ee.rs/problems/versioning/sunset"
    );
    assert!(
        problem
            .detail()
            .unwrap()
            .contains("Fri, 01 Jan 2027 00:00:00 GMT")
    );
    assert_eq!(res.header("sunset"), Some("Fri, 01 Jan 2027 00:00:00 GMT"));
    assert_eq!(get_with(after, "/v2/orders/1", &[]).await.status, 200);
}

#[test]
fn deprecated_use_is_counted_per_client() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let app = app(DEPRECATED + 1);
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for (path, key) in [
                ("/v1/orders/1", "team-a"),
                ("/v1/orders/2", "team-a"),
                ("/v1/orders/3", "team-b"),
                ("/v2/orders/4", "team-c"),
            ] {
                let req = http::Request::get(path)
                    .header("x-api-key", key)
                    .body(axum::body::Body::empty())
                    .unwrap();
                assert_eq!(ee_testing::send(app.clone(), req).await.status, 200);
            }
        });
    });
    let counters = ee_testing::counters(&snapshotter);
    assert_eq!(
        counters.get("ee_versioning_deprecated_requests_total{version=v1,client=team-a}"),
        Some(2)
    );
    assert_eq!(
        counters.get("ee_versioning_deprecated_requests_total{version=v1,client=team-b}"),
        Some(1)
    );
    assert_eq!(counters.sum("ee_versioning_deprecated_requests_total"), 3);
}

#[tokio::test]
async fn sources_can_be_narrowed() {
    let app = VersionedRouter::new()
        .sources(vec![Source::MediaType {
            vendor: "shop".into(),
        }])
        .version(1, Router::new().route("/x", get(|| async { "one" })))
        .version(2, Router::new().route("/x", get(|| async { "two" })))
        .default_version(1)
        .into_router();
    let addr = serve(app).await;
    // The URI is not a source now: `/v2/x` is a plain path that no route has.
    assert_eq!(
        get_with(addr, "/x", &[("accept", b"application/vnd.shop.v2+json")])
            .await
            .text(),
        "two"
    );
    assert_eq!(
        get_with(addr, "/x", &[("api-version", b"2")]).await.text(),
        "one"
    );
}
