//! The catalogue example: HTTP hits without the handler, one source read for
//! a burst of cold requests, remembered 404s, and writes that reach every
//! cache, in memory and across two instances sharing Redis.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use ee_cache::{Cache, MemoryStore, RedisStore, ResponseCacheLayer, TieredStore, Variants};
use ee_core::{RedisConfig, RedisConn};
use ee_example_catalog::{Catalog, Product, Source, app};
use http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

fn memory_app(source: &Source) -> Router {
    let http: Cache<str, Variants> = Cache::builder("catalog-http")
        .build(MemoryStore::new())
        .unwrap();
    app(Catalog {
        source: source.clone(),
        products: Cache::builder("products")
            .negative_ttl(Duration::from_secs(5))
            .build(MemoryStore::new())
            .unwrap(),
        http: ResponseCacheLayer::new(http),
    })
}

async fn redis_app(source: &Source, name: &str) -> Router {
    let config = RedisConfig::default();
    let conn = RedisConn::connect(&config).await.unwrap();
    let l1 = MemoryStore::builder()
        .max_ttl(Duration::from_secs(10))
        .build();
    let tiered: TieredStore<Product> =
        TieredStore::connect(l1, RedisStore::new(conn.clone()), &config)
            .await
            .unwrap();
    let http: Cache<str, Variants, RedisStore> = Cache::builder(format!("{name}-http"))
        .build(RedisStore::new(conn))
        .unwrap();
    app(Catalog {
        source: source.clone(),
        products: Cache::builder(name).build(tiered).unwrap(),
        http: ResponseCacheLayer::new(http),
    })
}

struct Reply {
    status: u16,
    x_cache: String,
    body: Value,
}

async fn send(app: &Router, method: &str, uri: &str, body: Option<Value>) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "shop.test");
    let body = match body {
        Some(json) => {
            req = req.header("content-type", "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let res = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let x_cache = res
        .headers()
        .get("x-cache")
        .map_or("", |v| v.to_str().unwrap())
        .to_owned();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        x_cache,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_catalogue_answers_repeats_from_its_caches() {
    let source = Source::demo(20, Duration::from_millis(50));
    let app = memory_app(&source);

    // The list: a miss reaches the source, the repeat is a hit without it.
    let first = send(&app, "GET", "/products", None).await;
    assert_eq!((first.status, first.x_cache.as_str()), (200, "MISS"));
    assert_eq!(first.body.as_array().unwrap().len(), 20);
    let started = Instant::now();
    let again = send(&app, "GET", "/products", None).await;
    assert_eq!(again.x_cache, "HIT");
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(source.reads(), 1);

    // 100 concurrent requests for a cold product: one source read.
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app, "GET", "/products/7", None).await })
        })
        .collect();
    for t in tasks {
        let reply = t.await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["name"], "Product 7");
    }
    assert_eq!(source.reads(), 2);

    // An unknown product: a 404 problem, remembered.
    for _ in 0..3 {
        let missing = send(&app, "GET", "/products/999", None).await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.body["status"], 404);
    }
    assert_eq!(source.reads(), 3);

    // A change reaches the product and the list.
    let change = serde_json::json!({ "name": "Teapot", "price_cents": 2500 });
    assert_eq!(
        send(&app, "PUT", "/products/7", Some(change)).await.status,
        204
    );
    let product = send(&app, "GET", "/products/7", None).await;
    assert_eq!(
        (product.x_cache.as_str(), &product.body["name"]),
        ("MISS", &Value::from("Teapot"))
    );
    let list = send(&app, "GET", "/products", None).await;
    assert_eq!(list.x_cache, "MISS");
    assert_eq!(list.body[6]["name"], "Teapot");
    assert_eq!(
        send(
            &app,
            "PUT",
            "/products/999",
            Some(serde_json::json!({"name": "x", "price_cents": 1}))
        )
        .await
        .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_redis_agree_after_a_change() {
    let source = Source::demo(5, Duration::from_millis(5));
    let name = format!("catalog-test-{}", std::process::id());
    let a = redis_app(&source, &name).await;
    let b = redis_app(&source, &name).await;
    assert_eq!(
        send(&a, "GET", "/products/3", None).await.body["name"],
        "Product 3"
    );
    assert_eq!(
        send(&b, "GET", "/products/3", None).await.body["name"],
        "Product 3"
    );
    let reads = source.reads();

    let change = serde_json::json!({ "name": "Kettle", "price_cents": 3100 });
    assert_eq!(
        send(&a, "PUT", "/products/3", Some(change)).await.status,
        204
    );
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let seen = send(&b, "GET", "/products/3", None).await;
        if seen.body["name"] == "Kettle" {
            break;
        }
        assert!(Instant::now() < deadline, "B still serves {:?}", seen.body);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(source.reads() > reads);
}
