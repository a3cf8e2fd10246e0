//! `cargo run -p ee-example-catalog`: the catalogue on 127.0.0.1:3001, caches
//! in memory, or tiered over Redis when `EE_REDIS_URL` is set.

use std::time::Duration;

use ee_cache::{Cache, MemoryStore, RedisStore, ResponseCacheLayer, TieredStore, Variants};
use ee_core::{RedisConfig, RedisConn};
use ee_example_catalog::{Catalog, Product, Source, app};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let source = Source::demo(100, Duration::from_millis(50));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let products = Cache::builder("products")
        .ttl(Duration::from_secs(60))
        .negative_ttl(Duration::from_secs(5));
    let router = match std::env::var("EE_REDIS_URL") {
        Ok(redis_url) => {
            let config = RedisConfig::standalone(redis_url);
            let conn = RedisConn::connect(&config).await?;
            let l1 = MemoryStore::builder()
                .max_entries(10_000)
                .max_ttl(Duration::from_secs(10))
                .name("products")
                .build();
            let tiered: TieredStore<Product> =
                TieredStore::connect(l1, RedisStore::new(conn.clone()), &config).await?;
            let http: Cache<str, Variants, RedisStore> =
                Cache::builder("catalog-http").build(RedisStore::new(conn))?;
            println!("caches: tiered over {}", config.url);
            app(Catalog {
                source,
                products: products.build(tiered)?,
                http: ResponseCacheLayer::new(http),
            })
        }
        Err(_) => {
            let http: Cache<str, Variants> =
                Cache::builder("catalog-http").build(MemoryStore::new())?;
            println!("caches: in memory (set EE_REDIS_URL for Redis)");
            app(Catalog {
                source,
                products: products.build(MemoryStore::builder().name("products").build())?,
                http: ResponseCacheLayer::new(http),
            })
        }
    };
    println!("catalogue on {url}: try `curl -i {url}/products` twice (X-Cache: MISS, then HIT)");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
