//! A product catalogue behind ee-cache: products read through a single-flight
//! `get_or_load` over a slow source, invalidated by tag when one changes, and
//! the HTTP responses of the product route cached by `ResponseCacheLayer`.
//!
//! ```sh
//! cargo run -p ee-cache --features http --example products
//! ```
//!
//! It prints what each step did and exits. For Redis (shared across
//! instances), build the caches on a `RedisStore` or a `TieredStore` instead
//! of a `MemoryStore` (feature `redis`); the rest is the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use ee_cache::{Cache, CacheConfig, MemoryStore, ResponseCacheLayer, Variants};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
}

/// The slow source of truth (a database): counts how often it is asked.
#[derive(Clone, Default)]
struct Source {
    reads: Arc<AtomicUsize>,
}

impl Source {
    async fn product(&self, id: u64) -> Result<Option<Product>, std::io::Error> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok((id < 100).then(|| Product {
            id,
            name: format!("Product {id}"),
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Options as they would come from a config file (`[cache]` in ee.toml).
    let config: CacheConfig =
        serde_json::from_str(r#"{ "ttl_ms": 60000, "negative_ttl_ms": 5000 }"#)?;
    let products: Cache<u64, Product> = Cache::builder("products")
        .config(&config)?
        .build(MemoryStore::new())?;
    let source = Source::default();

    // 100 concurrent misses of one product: the source is read once.
    let loads = (0..100).map(|_| {
        let (products, source) = (products.clone(), source.clone());
        tokio::spawn(async move {
            products
                .get_or_load(&42, move || async move { source.product(42).await })
                .await
        })
    });
    for load in futures_util::future::join_all(loads).await {
        assert_eq!(load?.map_err(|e| e.to_string())?.map(|p| p.id), Some(42));
    }
    println!(
        "100 concurrent reads of product 42: the source was read {} time(s)",
        source.reads.load(Ordering::SeqCst)
    );

    // A write tags the entry; invalidating the tag removes it.
    let renamed = Product {
        id: 7,
        name: "Teapot".into(),
    };
    products.set_tagged(&7, renamed, &["product:7"]).await?;
    println!(
        "product 7 cached: {:?}",
        products.get(&7).await.map(|p| p.name)
    );
    products.invalidate_tag("product:7").await;
    println!(
        "after invalidate_tag(\"product:7\"): {:?}",
        products.get(&7).await
    );

    // HTTP responses: the second GET is answered from the cache.
    let http: Cache<str, Variants> = Cache::builder("products-http").build(MemoryStore::new())?;
    let app = Router::new()
        .route(
            "/products/{id}",
            get(|Path(id): Path<u64>| async move {
                ([("cache-control", "max-age=60")], format!("product {id}"))
            }),
        )
        .layer(ResponseCacheLayer::new(http));
    for _ in 0..2 {
        let request = http::Request::get("/products/42")
            .header("host", "shop.example")
            .body(axum::body::Body::empty())?;
        let response = app.clone().oneshot(request).await?;
        println!(
            "GET /products/42: {} X-Cache: {:?}",
            response.status(),
            response.headers()["x-cache"]
        );
    }
    Ok(())
}
