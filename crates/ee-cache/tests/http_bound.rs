//! The bounds of the HTTP response cache: a memory store of responses is
//! bounded by bytes (64 MiB by default) and by entries, a flood of large
//! responses keeps it under the bound while the pages in use still hit, a
//! response over the body limit (or of unknown size) is served whole and not
//! stored; and the configuration of both.
#![cfg(feature = "http")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use ee_cache::{
    Cache, CacheError, DEFAULT_MAX_BODY_BYTES, DEFAULT_RESPONSE_CACHE_BYTES, MemoryStore,
    MemoryStoreConfig, ResponseCacheConfig, ResponseCacheLayer, Variants,
};
use http_body_util::BodyExt;
use tower::ServiceExt;

const KIB: usize = 1024;

/// The handler's calls, by route.
#[derive(Clone, Default)]
struct Calls {
    page: Arc<AtomicUsize>,
    sized: Arc<AtomicUsize>,
    streamed: Arc<AtomicUsize>,
    plain: Arc<AtomicUsize>,
}

/// A 64 KiB page.
async fn page(State(calls): State<Calls>) -> impl IntoResponse {
    calls.page.fetch_add(1, Ordering::SeqCst);
    ([("cache-control", "max-age=600")], "p".repeat(64 * KIB))
}

/// A small page everyone reads.
async fn hot() -> impl IntoResponse {
    ([("cache-control", "max-age=600")], "hot")
}

/// A response that states no freshness.
async fn plain(State(calls): State<Calls>) -> &'static str {
    calls.plain.fetch_add(1, Ordering::SeqCst);
    "plain"
}

/// A body of `?len=N` bytes.
async fn sized(State(calls): State<Calls>, uri: axum::http::Uri) -> impl IntoResponse {
    calls.sized.fetch_add(1, Ordering::SeqCst);
    let len = uri
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("len=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    ([("cache-control", "max-age=600")], "s".repeat(len))
}

/// A body of unknown size (streamed in two chunks).
async fn streamed(State(calls): State<Calls>) -> impl IntoResponse {
    calls.streamed.fetch_add(1, Ordering::SeqCst);
    let chunks = ["stream", "ed"].map(|c| Ok::<_, std::io::Error>(c.to_owned()));
    (
        [("cache-control", "max-age=600")],
        Body::from_stream(futures_util::stream::iter(chunks)),
    )
}

fn app(layer: ResponseCacheLayer<MemoryStore<Variants>>) -> (Router, Calls) {
    let calls = Calls::default();
    let router = Router::new()
        .route("/page", get(page))
        .route("/hot", get(hot))
        .route("/sized", get(sized))
        .route("/streamed", get(streamed))
        .route("/plain", get(plain))
        .with_state(calls.clone())
        .layer(layer);
    (router, calls)
}

/// A layer on `store` (which it shares, so the test can read its size).
fn layer(store: &MemoryStore<Variants>) -> ResponseCacheLayer<MemoryStore<Variants>> {
    ResponseCacheLayer::new(Cache::builder("http").build(store.clone()).unwrap())
}

/// `X-Cache` and the body of a GET.
async fn get_page(app: &Router, uri: &str) -> (String, Vec<u8>) {
    let req = Request::get(uri)
        .header("host", "shop.example")
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{uri}");
    let x_cache = res.headers()["x-cache"].to_str().unwrap().to_owned();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    (x_cache, body)
}

#[tokio::test]
async fn a_flood_of_large_responses_stays_under_the_byte_bound_and_pages_in_use_still_hit() {
    // The default store: 64 MiB, 10 000 entries.
    let store: MemoryStore<Variants> = MemoryStore::new();
    let (app, calls) = app(layer(&store));
    for _ in 0..5 {
        get_page(&app, "/hot").await;
    }
    // 2 000 distinct 64 KiB responses: 125 MiB, twice the bound.
    let mut highest = 0;
    for i in 0..2_000 {
        let (x_cache, body) = get_page(&app, &format!("/page?n={i}")).await;
        assert_eq!((x_cache.as_str(), body.len()), ("MISS", 64 * KIB));
        if i % 50 == 0 {
            // A page in use keeps hitting through the flood.
            assert_eq!(
                get_page(&app, "/hot").await,
                ("HIT".into(), b"hot".to_vec())
            );
            let held = store.weighted_size();
            assert!(held <= DEFAULT_RESPONSE_CACHE_BYTES, "{held} bytes held");
            highest = highest.max(held);
        }
    }
    assert_eq!(calls.page.load(Ordering::SeqCst), 2_000);
    let held = store.weighted_size();
    assert!(held <= DEFAULT_RESPONSE_CACHE_BYTES, "{held} bytes held");
    // The store was used up to its bound, not emptied: ~1 000 pages of 64 KiB.
    assert!(
        highest > DEFAULT_RESPONSE_CACHE_BYTES * 9 / 10,
        "{highest} bytes at most"
    );
    let entries = store.len();
    assert!((800..=1_024).contains(&entries), "{entries} entries held");

    // A page asked for again after the flood is admitted and hits: TinyLFU
    // admits an entry once it is asked for more often than those it would
    // evict (by its frequency sketch, an estimate: 2 to 6 asks in 400 runs).
    let mut answers = Vec::new();
    for _ in 0..12 {
        let (x_cache, body) = get_page(&app, "/page?n=again").await;
        assert_eq!(body.len(), 64 * KIB);
        answers.push(x_cache);
        store.weighted_size(); // moka's upkeep: admission or rejection
    }
    assert_eq!(answers[0], "MISS");
    assert!(answers.iter().any(|a| a == "HIT"), "{answers:?}");
    assert!(store.weighted_size() <= DEFAULT_RESPONSE_CACHE_BYTES);
}

#[tokio::test]
async fn a_response_store_is_bounded_by_entries_too() {
    let store: MemoryStore<Variants> = MemoryStore::builder().max_entries(100).build();
    let (app, _) = app(layer(&store));
    for i in 0..300 {
        get_page(&app, &format!("/sized?len=10&n={i}")).await;
    }
    let entries = store.len();
    assert!((50..=100).contains(&entries), "{entries} entries held");
    // Each counts as at least its share of the bytes (64 MiB / 100).
    assert!(store.weighted_size() <= DEFAULT_RESPONSE_CACHE_BYTES);
}

#[tokio::test]
async fn a_response_over_the_body_limit_is_served_whole_and_not_stored() {
    let store: MemoryStore<Variants> = MemoryStore::new();
    let (app, calls) = app(layer(&store));
    let over = format!("/sized?len={}", DEFAULT_MAX_BODY_BYTES + 1);
    for _ in 0..2 {
        let (x_cache, body) = get_page(&app, &over).await;
        assert_eq!(x_cache, "MISS");
        assert_eq!(body.len(), DEFAULT_MAX_BODY_BYTES + 1);
        assert!(body.iter().all(|&b| b == b's'));
    }
    assert_eq!(calls.sized.load(Ordering::SeqCst), 2);
    assert_eq!((store.len(), store.weighted_size()), (0, 0));

    // At the limit it is stored.
    let at = format!("/sized?len={DEFAULT_MAX_BODY_BYTES}");
    assert_eq!(get_page(&app, &at).await.0, "MISS");
    let (x_cache, body) = get_page(&app, &at).await;
    assert_eq!(
        (x_cache.as_str(), body.len()),
        ("HIT", DEFAULT_MAX_BODY_BYTES)
    );
    assert_eq!(calls.sized.load(Ordering::SeqCst), 3);
    let held = store.weighted_size();
    let one = DEFAULT_MAX_BODY_BYTES as u64;
    assert!(
        held > one && held < one + 64 * KIB as u64,
        "{held} bytes held"
    );
}

#[tokio::test]
async fn a_body_of_unknown_size_is_served_whole_and_not_stored() {
    let store: MemoryStore<Variants> = MemoryStore::new();
    let (app, calls) = app(layer(&store));
    for _ in 0..2 {
        assert_eq!(
            get_page(&app, "/streamed").await,
            ("MISS".into(), b"streamed".to_vec())
        );
    }
    assert_eq!(calls.streamed.load(Ordering::SeqCst), 2);
    assert_eq!(store.len(), 0);
}

#[tokio::test]
async fn the_byte_bound_comes_from_the_builder_or_the_config() {
    let from_config: MemoryStoreConfig =
        serde_json::from_str(r#"{ "max_bytes": 1048576 }"#).unwrap();
    let stores = [
        MemoryStore::builder().max_bytes(1 << 20).build(),
        MemoryStore::builder().config(&from_config).unwrap().build(),
    ];
    for store in stores {
        let (app, _) = app(layer(&store));
        for i in 0..50 {
            get_page(&app, &format!("/page?n={i}")).await;
        }
        let held = store.weighted_size();
        assert!(held <= 1 << 20, "{held} bytes held");
        let entries = store.len();
        assert!(
            (8..=16).contains(&entries),
            "{entries} pages of 64 KiB held"
        );
    }
}

#[test]
fn max_bytes_is_refused_for_values_of_unknown_size() {
    let config = MemoryStoreConfig {
        max_bytes: Some(1 << 20),
        ..MemoryStoreConfig::default()
    };
    let err = MemoryStore::<String>::builder()
        .config(&config)
        .unwrap_err();
    assert!(
        matches!(&err, CacheError::Config(why) if why.contains("max_weight")),
        "{err}"
    );
    // Without it, the same config bounds any store.
    assert!(
        MemoryStore::<String>::builder()
            .config(&MemoryStoreConfig::default())
            .is_ok()
    );
}

#[test]
fn memory_store_config_refuses_zeroes_and_unknown_fields() {
    for json in [
        r#"{ "max_entries": 0 }"#,
        r#"{ "max_bytes": 0 }"#,
        r#"{ "max_ttl_ms": 0 }"#,
        r#"{ "time_to_idle_ms": 0 }"#,
    ] {
        let config: MemoryStoreConfig = serde_json::from_str(json).unwrap();
        let err = MemoryStore::<Variants>::builder()
            .config(&config)
            .unwrap_err();
        assert!(matches!(err, CacheError::Config(_)), "{json}: {err}");
    }
    let unknown = serde_json::from_str::<MemoryStoreConfig>(r#"{ "max_byte": 1 }"#);
    assert!(unknown.unwrap_err().to_string().contains("unknown field"));
}

#[tokio::test]
async fn the_layer_takes_its_limits_from_config() {
    let config: ResponseCacheConfig =
        serde_json::from_str(r#"{ "max_body_bytes": 100, "default_ttl_ms": 60000 }"#).unwrap();
    let store: MemoryStore<Variants> = MemoryStore::new();
    let (app, calls) = app(layer(&store).config(&config).unwrap());
    for _ in 0..2 {
        assert_eq!(get_page(&app, "/sized?len=101").await.0, "MISS");
    }
    assert_eq!(get_page(&app, "/sized?len=100").await.0, "MISS");
    assert_eq!(get_page(&app, "/sized?len=100").await.0, "HIT");
    assert_eq!(calls.sized.load(Ordering::SeqCst), 3);
    // `default_ttl_ms`: a response stating no freshness is stored for it.
    assert_eq!(get_page(&app, "/plain").await.0, "MISS");
    assert_eq!(
        get_page(&app, "/plain").await,
        ("HIT".into(), b"plain".to_vec())
    );
    assert_eq!(calls.plain.load(Ordering::SeqCst), 1);

    for json in [r#"{ "max_variants": 0 }"#, r#"{ "default_ttl_ms": 0 }"#] {
        let config: ResponseCacheConfig = serde_json::from_str(json).unwrap();
        let err = layer(&store).config(&config).unwrap_err();
        assert!(matches!(err, CacheError::Config(_)), "{json}: {err}");
    }
    let unknown = serde_json::from_str::<ResponseCacheConfig>(r#"{ "max_body": 1 }"#);
    assert!(unknown.unwrap_err().to_string().contains("unknown field"));
}
