//! Runs N sequential L2 hits (`ee`: `Cache::get` on a `RedisStore`; `raw`:
//! redis-rs `GET` + `serde_json`), against the Redis at `EE_REDIS_URL` or
//! 127.0.0.1:6379, for client-side instruction counts under callgrind:
//!
//! ```sh
//! cargo build --release -p ee-cache --features redis --example l2_profile
//! valgrind --tool=callgrind target/release/examples/l2_profile ee 2000
//! ```

use ee_cache::{Cache, RedisStore};
use ee_core::redis::{RedisConfig, RedisConn};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    sku: String,
    name: String,
    price_cents: u64,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "ee".into());
    let n: u64 = args.next().map_or(2000, |s| s.parse().expect("a count"));
    let url = std::env::var("EE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = RedisConn::connect(&RedisConfig::standalone(url.clone()))
            .await
            .unwrap();
        let cache: Cache<u64, Product, RedisStore> = Cache::builder("l2-profile")
            .build(RedisStore::new(conn))
            .unwrap();
        let mut raw =
            redis::aio::ConnectionManager::new(redis::Client::open(url.as_str()).unwrap())
                .await
                .unwrap();
        for i in 0..100u64 {
            let p = Product {
                id: i,
                sku: format!("SKU-{i}"),
                name: format!("Product {i}"),
                price_cents: i,
            };
            cache.set(&i, p.clone()).await.unwrap();
            let _: () = redis::cmd("SET")
                .arg(format!("l2-raw:{i}"))
                .arg(serde_json::to_vec(&p).unwrap())
                .query_async(&mut raw)
                .await
                .unwrap();
        }
        for j in 0..n {
            let i = j % 100;
            match variant.as_str() {
                "raw" => {
                    let bytes: Vec<u8> = redis::cmd("GET")
                        .arg(format!("l2-raw:{i}"))
                        .query_async(&mut raw)
                        .await
                        .unwrap();
                    let p: Product = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(p.id, i);
                }
                _ => assert_eq!(cache.get(&i).await.unwrap().id, i),
            }
        }
    });
}
