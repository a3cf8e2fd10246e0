//! Every version source, malformed versions, lifecycle headers before and
//! after the sunset with a fixed clock, over real TCP; each test on both
//! builds, `into_router` and `into_service`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use ee_core::{Clock, HeaderKey};
use ee_testing::{ManualClock, TestResponse, exchange, raw_request, serve};
use ee_versioning::{
    Lifecycle, Source, VersionRoutes, VersionedRouter, VersioningConfig, VersioningError,
};

/// 2026-06-01T00:00:00Z: v1 deprecated; its sunset is 2027-01-01.
const DEPRECATED: u64 = 1_780_272_000;
const SUNSET: u64 = 1_798_761_600;

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// A clock whose wall time stands at a fixed second (its instants are the
/// real ones: the router reads only the wall time).
#[derive(Debug, Clone, Copy)]
struct At(u64);

impl Clock for At {
    fn now(&self) -> std::time::Instant {
        std::time::Instant::now()
    }

    fn unix_ms(&self) -> u64 {
        self.0 * 1000
    }
}

/// The two ways to build the versions, as a `Router` the test can serve.
#[derive(Debug, Clone, Copy)]
enum Build {
    Router,
    Service,
}

const BUILDS: [Build; 2] = [Build::Router, Build::Service];

impl Build {
    fn of(self, versions: VersionedRouter) -> Router {
        match self {
            Build::Router => versions.into_router(),
            // In front of everything, as it is meant to be served.
            Build::Service => Router::new().fallback_service(versions.into_service()),
        }
    }
}

fn app(now: u64, build: Build) -> Router {
    build.of(versions(now))
}

fn versions(now: u64) -> VersionedRouter {
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
        .clock(At(now))
}

async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &[u8])]) -> TestResponse {
    exchange(addr, &raw_request("GET", path, headers, b"")).await
}

#[tokio::test]
async fn every_source_picks_the_version() {
    for build in BUILDS {
        every_source_picks_the_version_in(build).await;
    }
}

async fn every_source_picks_the_version_in(build: Build) {
    let addr = serve(app(DEPRECATED - 86_400, build)).await;
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
        assert_eq!(
            res.status,
            200,
            "{build:?} {path} {headers:?}: {}",
            res.text()
        );
        assert_eq!(res.text(), want, "{build:?} {path} {headers:?}");
    }
    // Version-neutral routes answer without a version, and whatever
    // version the request names, even a wrong one.
    for headers in [
        vec![],
        vec![("api-version", &b"1"[..])],
        vec![("api-version", &b"two"[..])],
        vec![("api-version", &b"7"[..])],
    ] {
        let res = get_with(addr, "/health", &headers).await;
        assert_eq!(res.text(), "ok", "{build:?} {headers:?}");
    }
    // A header source varies the response.
    let res = get_with(addr, "/orders/7", &[]).await;
    assert_eq!(res.header("vary"), Some("api-version, accept"), "{build:?}");
    let res = get_with(addr, "/orders/7", &[("api-version", b"1")]).await;
    assert_eq!(res.header("vary"), Some("api-version, accept"), "{build:?}");
    // A URI version does not vary by the other sources.
    let res = get_with(addr, "/v2/orders/7", &[]).await;
    assert_eq!(res.header("vary"), None, "{build:?}");
}

#[tokio::test]
async fn malformed_and_unknown_versions_are_400_listing_the_supported_ones() {
    for build in BUILDS {
        let addr = serve(app(DEPRECATED, build)).await;
        malformed_and_unknown_in(addr, build).await;
    }
}

async fn malformed_and_unknown_in(addr: SocketAddr, build: Build) {
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
        assert_eq!(
            res.status,
            400,
            "{build:?} {path} {headers:?}: {}",
            res.text()
        );
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
    for build in BUILDS {
        let app =
            build
                .of(VersionedRouter::new()
                    .version(1, Router::new().route("/x", get(|| async { "x" }))));
        let addr = serve(app).await;
        let res = get_with(addr, "/x", &[]).await;
        assert_eq!(res.status, 400, "{build:?}");
        assert!(
            res.problem()
                .detail()
                .unwrap()
                .contains("names no API version")
        );
        assert_eq!(get_with(addr, "/v1/x", &[]).await.text(), "x", "{build:?}");
    }
}

#[tokio::test]
async fn deprecated_versions_carry_the_lifecycle_headers_then_go() {
    for build in BUILDS {
        lifecycle_in(build).await;
    }
}

async fn lifecycle_in(build: Build) {
    // Before the deprecation date: announced already (RFC 9745 allows a future date).
    let before = serve(app(DEPRECATED - 86_400, build)).await;
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

    // By header too.
    let res = get_with(before, "/orders/1", &[("api-version", b"1")]).await;
    assert_eq!(res.header("deprecation"), Some("@1780272000"), "{build:?}");

    // After the sunset: 410 with the same headers.
    let after = serve(app(SUNSET, build)).await;
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
    let res = get_with(after, "/orders/1", &[("api-version", b"1")]).await;
    assert_eq!(res.status, 410, "{build:?}");
}

#[test]
fn deprecated_use_is_counted_per_client() {
    for build in BUILDS {
        deprecated_use_counted_in(build);
    }
}

/// Builds the app `build` makes and sends `GET path` (with `X-Api-Key` when
/// given) through it for each request, each answered 200, and returns the
/// counters they recorded (the app is built under the recorder, as a
/// service installs its recorder first: the handles are registered then).
fn counted(
    build: impl FnOnce() -> Router,
    requests: &[(&str, Option<&str>)],
) -> ee_testing::Counters {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let app = build();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for (path, key) in requests {
                let mut req = http::Request::get(*path);
                if let Some(key) = key {
                    req = req.header("x-api-key", *key);
                }
                let req = req.body(axum::body::Body::empty()).unwrap();
                assert_eq!(ee_testing::send(app.clone(), req).await.status, 200);
            }
        });
    });
    ee_testing::counters(&snapshotter)
}

fn deprecated_use_counted_in(build: Build) {
    let counters = counted(
        || app(DEPRECATED + 1, build),
        &[
            ("/v1/orders/1", Some("team-a")),
            ("/v1/orders/2", Some("team-a")),
            ("/v1/orders/3", Some("team-b")),
            ("/v2/orders/4", Some("team-c")),
        ],
    );
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
    for build in BUILDS {
        narrowed_in(build).await;
    }
}

async fn narrowed_in(build: Build) {
    let app = build.of(VersionedRouter::new()
        .sources(vec![Source::MediaType {
            vendor: "shop".into(),
        }])
        .version(1, Router::new().route("/x", get(|| async { "one" })))
        .version(2, VersionRoutes::new().route("/x", get(|| async { "two" })))
        .default_version(1));
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
    assert_eq!(get_with(addr, "/x", &[]).await.text(), "one", "{build:?}");
    assert_eq!(get_with(addr, "/v2/x", &[]).await.status, 404, "{build:?}");
}

#[tokio::test]
async fn a_config_sets_the_default_the_sources_and_the_lifecycles() {
    let config: VersioningConfig = serde_json::from_value(serde_json::json!({
        "default_version": 2,
        "sources": ["header:x-api-version", "uri"],
        "lifecycle": { "v1": {
            "deprecated_at": "Mon, 01 Jun 2026 00:00:00 GMT",
            "sunset_at": SUNSET,
            "link": "https://api.example/deprecations/v1",
            "successor": "/v2/orders"
        } }
    }))
    .unwrap();
    let two = || {
        VersionedRouter::new()
            .version(
                1,
                VersionRoutes::new().route("/orders/{id}", get(|| async { "v1 order" })),
            )
            .version(
                2,
                VersionRoutes::new().route("/orders/{id}", get(|| async { "v2 order" })),
            )
    };
    for build in BUILDS {
        let versions = two().clock(At(DEPRECATED + 1)).config(&config).unwrap();
        let addr = serve(build.of(versions)).await;
        assert_eq!(
            get_with(addr, "/orders/7", &[]).await.text(),
            "v2 order",
            "{build:?}"
        );
        // The configured header picks; the default one is not a source now.
        let res = get_with(addr, "/orders/7", &[("x-api-version", b"1")]).await;
        assert_eq!(res.text(), "v1 order", "{build:?}");
        assert_eq!(res.header("deprecation"), Some("@1780272000"), "{build:?}");
        assert_eq!(res.header("sunset"), Some("Fri, 01 Jan 2027 00:00:00 GMT"));
        let res = get_with(addr, "/orders/7", &[("api-version", b"1")]).await;
        assert_eq!(res.text(), "v2 order", "{build:?}");
        assert_eq!(
            get_with(addr, "/v1/orders/7", &[]).await.text(),
            "v1 order",
            "{build:?}"
        );
    }
    // Every problem at once.
    let bad: VersioningConfig = serde_json::from_value(serde_json::json!({
        "sources": ["uri", "cookie:v"],
        "lifecycle": {
            "v3": {},
            "v1": { "sunset_at": "next tuesday", "deprecated_at": u64::MAX, "link": "a b, <c>" }
        }
    }))
    .unwrap();
    let err = two().config(&bad).unwrap_err();
    let VersioningError::Config { problems } = &err else {
        panic!("not a configuration error: {err:?}");
    };
    assert_eq!(problems.len(), 5, "{problems:?}");
    let err = err.to_string();
    for part in [
        "cookie:v",
        "v3, which has no routes",
        "lifecycle.v1.sunset_at",
        "next tuesday",
        "lifecycle.v1.deprecated_at",
        "after the year 9999",
        "lifecycle.v1.link",
    ] {
        assert!(err.contains(part), "{part} missing from: {err}");
    }
}

#[test]
fn the_deprecation_metric_caps_its_clients_and_counts_the_unknown() {
    for build in BUILDS {
        deprecation_metric_bound_in(build);
    }
}

fn deprecation_metric_bound_in(build: Build) {
    // The bound from a configuration, as a service would set it.
    let config = VersioningConfig {
        max_clients: Some(2),
        ..VersioningConfig::default()
    };
    let app = || build.of(versions(DEPRECATED + 1).config(&config).unwrap());
    let path = "/v1/orders/1";
    let counters = counted(
        app,
        &[
            (path, Some("team-a")),
            (path, Some("team-b")),
            (path, Some("team-c")),
            (path, Some("team-a")),
            (path, None),
        ],
    );
    let count = |client: &str| {
        counters.get(&format!(
            "ee_versioning_deprecated_requests_total{{version=v1,client={client}}}"
        ))
    };
    // Two distinct clients are named; the third is "other"; no key is "unknown".
    assert_eq!(count("team-a"), Some(2));
    assert_eq!(count("team-b"), Some(1));
    assert_eq!(count("team-c"), None);
    assert_eq!(count("other"), Some(1));
    assert_eq!(count("unknown"), Some(1), "{build:?} {counters:?}");
}

#[tokio::test]
async fn a_day_after_the_sunset_the_version_is_gone_and_a_second_before_it_is_not() {
    for build in BUILDS {
        let before = serve(app(SUNSET - 1, build)).await;
        assert_eq!(
            get_with(before, "/v1/orders/1", &[]).await.status,
            200,
            "{build:?}"
        );
        let after = serve(app(SUNSET + 86_400, build)).await;
        assert_eq!(
            get_with(after, "/v1/orders/1", &[]).await.status,
            410,
            "{build:?}"
        );
        let res = get_with(after, "/orders/1", &[("api-version", b"1")]).await;
        assert_eq!(res.status, 410, "{build:?}");
    }
}

#[tokio::test]
async fn a_manual_clock_moved_past_the_sunset_retires_the_version() {
    for build in BUILDS {
        let clock = ManualClock::new();
        let sunset = clock.system_time() + Duration::from_secs(86_400);
        let app = build.of(VersionedRouter::new()
            .version(1, VersionRoutes::new().route("/x", get(|| async { "one" })))
            .version(2, VersionRoutes::new().route("/x", get(|| async { "two" })))
            .default_version(2)
            .lifecycle(1, Lifecycle::deprecated(clock.system_time()).sunset(sunset))
            .clock(clock.clone()));
        let addr = serve(app).await;
        let res = get_with(addr, "/v1/x", &[]).await;
        assert_eq!(res.status, 200, "{build:?}");
        assert_eq!(res.text(), "one", "{build:?}");
        clock.advance(Duration::from_secs(86_400));
        let res = get_with(addr, "/v1/x", &[]).await;
        assert_eq!(res.status, 410, "{build:?}");
        let res = get_with(addr, "/x", &[("api-version", b"1")]).await;
        assert_eq!(res.status, 410, "{build:?}");
        assert_eq!(get_with(addr, "/x", &[]).await.text(), "two", "{build:?}");
    }
}

#[test]
fn the_deprecation_metric_is_described() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let _app = app(DEPRECATED + 1, Build::Router);
    });
    let described: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == ee_versioning::METRIC_DEPRECATED_REQUESTS_TOTAL)
        .map(|(key, unit, help, _)| {
            (
                key.key()
                    .labels()
                    .map(|l| l.value().to_owned())
                    .collect::<Vec<_>>(),
                unit,
                help.is_some(),
            )
        })
        .collect();
    // v1 (deprecated) has its fixed clients registered when it is built,
    // with a unit and help text; v2 (not deprecated) has none.
    for client in ["unknown", "other"] {
        assert!(
            described.contains(&(
                vec!["v1".to_owned(), client.to_owned()],
                Some(metrics::Unit::Count),
                true
            )),
            "{client}: {described:?}"
        );
    }
    assert_eq!(described.len(), 2, "{described:?}");
}
