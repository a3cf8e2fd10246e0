//! `ResponseCacheLayer` semantics: each Cache-Control directive, Vary, 304s,
//! purge after writes, private and cookie responses never shared, stale
//! responses refreshed once, body limit, HEAD, tags; and sharing through Redis.
#![cfg(all(feature = "http", feature = "redis"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use ee_cache::{Cache, CacheTags, MemoryStore, RedisStore, ResponseCacheLayer, Variants};
use ee_core::{RedisConfig, RedisConn};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// The handler's answer: headers from the `x-respond` request header
/// (`name: value; name: value`), a body naming the call number.
async fn handler(State(calls): State<Arc<AtomicUsize>>, headers: HeaderMap) -> impl IntoResponse {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    let mut out = HeaderMap::new();
    if let Some(spec) = headers.get("x-respond").and_then(|v| v.to_str().ok()) {
        for pair in spec.split(';').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair.split_once(':').unwrap();
            out.append(
                axum::http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                v.trim().parse().unwrap(),
            );
        }
    }
    let lang = headers
        .get("accept-language")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    (out, format!("call {n} lang {lang}"))
}

async fn write(State(calls): State<Arc<AtomicUsize>>) -> &'static str {
    calls.fetch_add(1, Ordering::SeqCst);
    "written"
}

async fn fail() -> StatusCode {
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn tagged(State(calls): State<Arc<AtomicUsize>>) -> impl IntoResponse {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    (
        [("cache-control", "max-age=60")],
        axum::Extension(CacheTags(vec!["product:42".into(), "catalog".into()])),
        format!("product 42, call {n}"),
    )
}

async fn big(State(calls): State<Arc<AtomicUsize>>) -> impl IntoResponse {
    calls.fetch_add(1, Ordering::SeqCst);
    ([("cache-control", "max-age=60")], "x".repeat(10_000))
}

fn app(
    layer: ResponseCacheLayer<impl ee_cache::CacheStore<Variants>>,
) -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/r",
            get(handler)
                .post(write)
                .put(write)
                .patch(write)
                .delete(write),
        )
        .route("/fail", get(handler).post(fail))
        .route("/tagged", get(tagged))
        .route("/big", get(big))
        .with_state(calls.clone())
        .layer(layer);
    (router, calls)
}

fn memory_layer() -> ResponseCacheLayer<MemoryStore<Variants>> {
    ResponseCacheLayer::new(Cache::builder("http").build(MemoryStore::new()).unwrap())
        .max_body_bytes(4096)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn x_cache(&self) -> &str {
        self.header("x-cache").unwrap_or("none")
    }
}

async fn send(app: &Router, method: &str, uri: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn each_cache_control_directive_is_honoured() {
    // (response Cache-Control, stored?)
    let cases = [
        ("max-age=60", true),
        ("public, max-age=60", true),
        ("s-maxage=60", true),
        ("max-age=0, s-maxage=60", true),
        ("s-maxage=0, max-age=60", false),
        ("max-age=0", false),
        ("no-store, max-age=60", false),
        ("private, max-age=60", false),
        ("no-cache", false),
        ("no-cache, max-age=60", false),
    ];
    for (directive, stored) in cases {
        let (app, calls) = app(memory_layer());
        let respond = format!("cache-control: {directive}");
        let first = send(&app, "GET", "/r", &[("x-respond", &respond)]).await;
        assert_eq!(first.x_cache(), "MISS", "{directive}");
        let second = send(&app, "GET", "/r", &[("x-respond", &respond)]).await;
        let want = if stored { "HIT" } else { "MISS" };
        assert_eq!(second.x_cache(), want, "{directive}");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            if stored { 1 } else { 2 },
            "{directive}"
        );
        if stored {
            assert_eq!(second.body, first.body);
            assert_eq!(second.header("age"), Some("0"));
        }
    }
}

#[tokio::test]
async fn request_directives_bypass_the_stored_copy() {
    let (app, calls) = app(memory_layer());
    let respond = ("x-respond", "cache-control: max-age=60");
    send(&app, "GET", "/r", &[respond]).await;
    for bypass in [
        ("cache-control", "no-cache"),
        ("cache-control", "max-age=0"),
        ("pragma", "no-cache"),
    ] {
        let res = send(&app, "GET", "/r", &[respond, bypass]).await;
        assert_eq!(res.x_cache(), "MISS", "{bypass:?}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // The bypassing requests refreshed the entry.
    let res = send(&app, "GET", "/r", &[respond]).await;
    assert_eq!((res.x_cache(), res.body.as_str()), ("HIT", "call 4 lang -"));
    // no-store: neither served nor stored.
    let res = send(&app, "GET", "/r", &[respond, ("cache-control", "no-store")]).await;
    assert_eq!(res.x_cache(), "MISS");
    let res = send(&app, "GET", "/r", &[respond]).await;
    assert_eq!(res.body, "call 4 lang -");
}

#[tokio::test]
async fn vary_keeps_one_variant_per_named_header_value() {
    let (app, calls) = app(memory_layer());
    let respond = (
        "x-respond",
        "cache-control: max-age=60; vary: accept-language",
    );
    let en = send(&app, "GET", "/r", &[respond, ("accept-language", "en")]).await;
    let fr = send(&app, "GET", "/r", &[respond, ("accept-language", "fr")]).await;
    assert_eq!((en.x_cache(), fr.x_cache()), ("MISS", "MISS"));
    let en2 = send(&app, "GET", "/r", &[respond, ("accept-language", "en")]).await;
    let fr2 = send(&app, "GET", "/r", &[respond, ("accept-language", "fr")]).await;
    assert_eq!((en2.x_cache(), fr2.x_cache()), ("HIT", "HIT"));
    assert_eq!(en2.body, "call 1 lang en");
    assert_eq!(fr2.body, "call 2 lang fr");
    let none = send(&app, "GET", "/r", &[respond]).await;
    assert_eq!(
        none.x_cache(),
        "MISS",
        "no Accept-Language is another variant"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn validators_answer_304() {
    let (app, _) = app(memory_layer());
    let respond = (
        "x-respond",
        "cache-control: max-age=60; etag: \"v1\"; last-modified: Wed, 25 Nov 2026 10:00:00 GMT",
    );
    // On the miss that stores it, and on hits.
    let miss = send(&app, "GET", "/r", &[respond, ("if-none-match", "\"v1\"")]).await;
    assert_eq!(
        (miss.status, miss.x_cache()),
        (StatusCode::NOT_MODIFIED, "MISS")
    );
    assert_eq!(miss.body, "");
    assert_eq!(miss.header("etag"), Some("\"v1\""));
    for (name, value, want) in [
        ("if-none-match", "\"v1\"", 304),
        ("if-none-match", "W/\"v1\"", 304),
        ("if-none-match", "\"v0\", \"v1\"", 304),
        ("if-none-match", "*", 304),
        ("if-none-match", "\"v2\"", 200),
        ("if-modified-since", "Wed, 25 Nov 2026 10:00:00 GMT", 304),
        ("if-modified-since", "Thu, 26 Nov 2026 10:00:00 GMT", 304),
        ("if-modified-since", "Tue, 24 Nov 2026 10:00:00 GMT", 200),
        ("if-modified-since", "not a date", 200),
    ] {
        let res = send(&app, "GET", "/r", &[respond, (name, value)]).await;
        assert_eq!(res.status.as_u16(), want, "{name}: {value}");
        assert_eq!(res.x_cache(), "HIT");
    }
}

#[tokio::test]
async fn a_successful_write_purges_every_query_of_its_path() {
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let (app, _) = app(memory_layer());
        let respond = ("x-respond", "cache-control: max-age=60");
        send(&app, "GET", "/r?page=1", &[respond]).await;
        send(&app, "GET", "/r?page=2", &[respond]).await;
        assert_eq!(
            send(&app, "GET", "/r?page=1", &[respond]).await.x_cache(),
            "HIT"
        );
        let write = send(&app, method, "/r", &[]).await;
        assert_eq!(write.status, StatusCode::OK);
        assert_eq!(
            send(&app, "GET", "/r?page=1", &[respond]).await.x_cache(),
            "MISS",
            "{method}"
        );
        assert_eq!(
            send(&app, "GET", "/r?page=2", &[respond]).await.x_cache(),
            "MISS",
            "{method}"
        );
    }
}

#[tokio::test]
async fn a_failed_write_purges_nothing() {
    let (app, calls) = app(memory_layer());
    let respond = ("x-respond", "cache-control: max-age=60");
    send(&app, "GET", "/fail", &[respond]).await;
    assert_eq!(
        send(&app, "GET", "/fail", &[respond]).await.x_cache(),
        "HIT"
    );
    let write = send(&app, "POST", "/fail", &[]).await;
    assert_eq!(write.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        send(&app, "GET", "/fail", &[respond]).await.x_cache(),
        "HIT"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn private_and_personal_responses_are_never_shared() {
    let (app, calls) = app(memory_layer());
    // Authorization without public/s-maxage: not stored.
    let respond = ("x-respond", "cache-control: max-age=60");
    let alice = send(
        &app,
        "GET",
        "/r",
        &[respond, ("authorization", "Bearer alice")],
    )
    .await;
    let bob = send(
        &app,
        "GET",
        "/r",
        &[respond, ("authorization", "Bearer bob")],
    )
    .await;
    assert_eq!((alice.x_cache(), bob.x_cache()), ("MISS", "MISS"));
    assert_ne!(alice.body, bob.body);
    // private: not stored whoever asks.
    let respond = ("x-respond", "cache-control: private, max-age=60");
    send(&app, "GET", "/r", &[respond]).await;
    assert_eq!(send(&app, "GET", "/r", &[respond]).await.x_cache(), "MISS");
    // Set-Cookie: not stored.
    let respond = (
        "x-respond",
        "cache-control: max-age=60; set-cookie: session=alice",
    );
    send(&app, "GET", "/r", &[respond]).await;
    let other = send(&app, "GET", "/r", &[respond]).await;
    assert_eq!(other.x_cache(), "MISS");
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_response_is_served_and_refreshed_once() {
    let (app, calls) = app(memory_layer());
    let respond = (
        "x-respond",
        "cache-control: max-age=1, stale-while-revalidate=30",
    );
    send(&app, "GET", "/r", &[respond]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let res = send(&app, "GET", "/r", &[respond]).await;
    assert_eq!(
        (res.x_cache(), res.body.as_str()),
        ("STALE", "call 1 lang -")
    );
    // Ten more at once: stale (or already refreshed), never a second refresh.
    let headers = [respond];
    let answers =
        futures_util::future::join_all((0..10).map(|_| send(&app, "GET", "/r", &headers))).await;
    for res in answers {
        let got = (res.x_cache(), res.body.as_str());
        assert!(
            got == ("STALE", "call 1 lang -") || got == ("HIT", "call 2 lang -"),
            "{got:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one background refresh");
    let res = send(&app, "GET", "/r", &[respond]).await;
    assert_eq!((res.x_cache(), res.body.as_str()), ("HIT", "call 2 lang -"));
}

#[tokio::test]
async fn a_crafted_host_cannot_write_under_another_paths_key() {
    let (app, calls) = app(memory_layer());
    let respond = ("x-respond", "cache-control: max-age=60");
    // `Host: shop.test/admin` + `GET /r` would be `shop.test/admin/r` if hosts
    // were taken as they come: such requests are not cached at all.
    let crafted = send(&app, "GET", "/r", &[respond, ("host", "shop.test/r")]).await;
    assert_eq!(crafted.x_cache(), "MISS");
    let crafted = send(&app, "GET", "/r", &[respond, ("host", "shop.test/r")]).await;
    assert_eq!(crafted.x_cache(), "MISS", "not stored");
    let real = send(&app, "GET", "/r/r", &[respond, ("host", "shop.test")]).await;
    assert_eq!(real.status, StatusCode::NOT_FOUND);
    // Host case does not split the cache.
    send(&app, "GET", "/r", &[respond, ("host", "Shop.Test")]).await;
    let lower = send(&app, "GET", "/r", &[respond, ("host", "shop.test")]).await;
    assert_eq!(lower.x_cache(), "HIT");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn bodies_over_the_limit_pass_through_unstored() {
    let (app, calls) = app(memory_layer());
    for _ in 0..2 {
        let res = send(&app, "GET", "/big", &[]).await;
        assert_eq!((res.x_cache(), res.body.len()), ("MISS", 10_000));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn head_is_answered_from_the_get_entry_without_a_body() {
    let (app, calls) = app(memory_layer());
    let respond = (
        "x-respond",
        "cache-control: max-age=60; content-type: text/plain",
    );
    send(&app, "GET", "/r", &[respond]).await;
    let head = send(&app, "HEAD", "/r", &[respond]).await;
    assert_eq!((head.x_cache(), head.body.as_str()), ("HIT", ""));
    assert_eq!(head.header("content-type"), Some("text/plain"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A HEAD miss goes to the handler and stores nothing (it has no body).
    let miss = send(&app, "HEAD", "/r?fresh", &[respond]).await;
    assert_eq!(
        (miss.status, miss.x_cache(), miss.body.as_str()),
        (StatusCode::OK, "MISS", "")
    );
    assert_eq!(
        send(&app, "GET", "/r?fresh", &[respond]).await.x_cache(),
        "MISS"
    );
    assert_eq!(
        send(&app, "HEAD", "/r?fresh", &[respond]).await.x_cache(),
        "HIT"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn tags_reach_cdns_and_purge_by_tag() {
    let purged = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let hook = purged.clone();
    let layer = memory_layer().on_purge(move |tag| hook.lock().unwrap().push(tag.to_owned()));
    let (app, calls) = app(layer.clone());
    let first = send(&app, "GET", "/tagged", &[]).await;
    assert_eq!(first.header("surrogate-key"), Some("product:42 catalog"));
    assert_eq!(first.header("cache-tag"), Some("product:42,catalog"));
    let hit = send(&app, "GET", "/tagged", &[]).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("surrogate-key"), Some("product:42 catalog"));

    layer.purge_tag("product:42").await;
    assert_eq!(purged.lock().unwrap().as_slice(), ["product:42"]);
    let after = send(&app, "GET", "/tagged", &[]).await;
    assert_eq!(after.x_cache(), "MISS");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(ee_cache::immutable(), "public, max-age=31536000, immutable");
}

#[tokio::test]
async fn two_instances_share_responses_through_redis() {
    let config = RedisConfig::default();
    let conn = RedisConn::connect(&config).await.unwrap();
    let name = format!("http-{}", std::process::id());
    let layer = |conn: RedisConn| {
        ResponseCacheLayer::new(Cache::builder(&name).build(RedisStore::new(conn)).unwrap())
    };
    let (a, a_calls) = app(layer(conn.clone()));
    let (b, b_calls) = app(layer(conn));
    let respond = (
        "x-respond",
        "cache-control: max-age=60; etag: \"x\"; vary: accept-language",
    );
    let uri = format!("/r?run={}", std::process::id());
    let first = send(&a, "GET", &uri, &[respond, ("accept-language", "de")]).await;
    assert_eq!(first.x_cache(), "MISS");
    let from_b = send(&b, "GET", &uri, &[respond, ("accept-language", "de")]).await;
    assert_eq!(
        (from_b.x_cache(), from_b.body.as_str()),
        ("HIT", "call 1 lang de")
    );
    assert_eq!(from_b.header("etag"), Some("\"x\""));
    assert_eq!(b_calls.load(Ordering::SeqCst), 0);
    // A write through B purges A's view too (one store).
    send(&b, "POST", "/r", &[]).await;
    assert_eq!(
        send(&a, "GET", &uri, &[respond, ("accept-language", "de")])
            .await
            .x_cache(),
        "MISS"
    );
    assert_eq!(a_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_requests_max_age_and_min_fresh_bound_what_it_is_served() {
    let (app, calls) = app(memory_layer());
    let respond = ("x-respond", "cache-control: max-age=60");
    assert_eq!(send(&app, "GET", "/r", &[respond]).await.x_cache(), "MISS");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    // Stored 2.1 s ago: `Age: 2` (whole seconds, as the directives count).
    let hit = send(&app, "GET", "/r", &[respond]).await;
    assert_eq!((hit.x_cache(), hit.header("age")), ("HIT", Some("2")));
    for (directive, want) in [
        ("max-age=2", "HIT"),
        ("max-age=1", "MISS"), // stores a new copy, age 0, fresh for 60 s
        ("min-fresh=59", "HIT"),
        ("min-fresh=61", "MISS"),
    ] {
        let res = send(&app, "GET", "/r", &[respond, ("cache-control", directive)]).await;
        assert_eq!(res.x_cache(), want, "{directive}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_every_request_still_gets_its_answer() {
    let mut redis = ee_testing::RedisServer::start();
    let config = RedisConfig::standalone(redis.url()).with_timeout(Duration::from_millis(200));
    let conn = RedisConn::connect(&config).await.unwrap();
    let cache = Cache::builder("http-outage")
        .build(RedisStore::new(conn))
        .unwrap();
    let (app, calls) = app(ResponseCacheLayer::new(cache));
    let respond = ("x-respond", "cache-control: max-age=60");
    assert_eq!(send(&app, "GET", "/r", &[respond]).await.x_cache(), "MISS");
    assert_eq!(send(&app, "GET", "/r", &[respond]).await.x_cache(), "HIT");

    redis.stop();
    // The stored copy is out of reach: a miss, answered by the handler
    // within the Redis timeout, never a 5xx; writes and purges too.
    for uri in ["/r", "/r?page=2", "/r"] {
        let started = std::time::Instant::now();
        let res = send(&app, "GET", uri, &[respond]).await;
        assert_eq!(
            (res.status, res.x_cache()),
            (StatusCode::OK, "MISS"),
            "{uri}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    let written = send(&app, "POST", "/r", &[]).await;
    assert_eq!(
        (written.status, written.body.as_str()),
        (StatusCode::OK, "written")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);

    redis.restart();
    // Back: a response is stored again and served from Redis.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let uri = "/r?after=restart";
        send(&app, "GET", uri, &[respond]).await;
        if send(&app, "GET", uri, &[respond]).await.x_cache() == "HIT" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no HIT after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_can_be_stored_in_the_background() {
    let (service, _) = app(memory_layer().store_in_background());
    let respond = ("x-respond", "cache-control: max-age=60; etag: \"b\"");
    let first = send(&service, "GET", "/r", &[respond]).await;
    assert_eq!(
        (first.x_cache(), first.body.as_str()),
        ("MISS", "call 1 lang -")
    );
    // The write lands shortly after the answer; until then repeats miss.
    let mut misses = vec![first.body];
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let again = send(&service, "GET", "/r", &[respond]).await;
        if again.x_cache() == "HIT" {
            assert!(
                misses.contains(&again.body),
                "{} not among {misses:?}",
                again.body
            );
            break;
        }
        misses.push(again.body);
        assert!(std::time::Instant::now() < deadline, "never stored");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Validators on a miss still get their 304.
    let (fresh, _) = app(memory_layer().store_in_background());
    let miss = send(&fresh, "GET", "/r", &[respond, ("if-none-match", "\"b\"")]).await;
    assert_eq!(
        (miss.status, miss.x_cache()),
        (StatusCode::NOT_MODIFIED, "MISS")
    );
}
