//! Runs N sequential L2 hits (`ee`: `Cache::get` on a `RedisStore`; `raw`:
//! redis-rs `GET` + `serde_json`), against the Redis at `EE_REDIS_URL` or
//! 127.0.0.1:6379, for client-side instruction counts under callgrind:
//!
//! ```sh
//! bin=$(cargo bench -p ee-cache --bench l2_profile --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*\))/\1/p')
//! valgrind --tool=callgrind "$bin" ee 2000
//! ```
//!
//! `interleaved N` starts a throwaway `redis-server` and times raw redis-rs
//! `GET` + `serde_json` and `Cache::get` from 50 tasks in turns of N hits,
//! 60 rounds, for a wall-clock ratio the machine's drift affects equally;
//! `interleaved-timeout N` bounds each raw call by the same per-call timeout
//! (1 s) every `RedisConn` call has, so both sides pay for a timer
//! (`cargo bench -p ee-cache --bench l2_profile -- interleaved 20000`).
//!
//! A profiling harness, not a criterion bench: without arguments (a plain
//! `cargo bench`) it only prints how to run it.

use ee_cache::{Cache, RedisStore};
use ee_core::{RedisConfig, RedisConn};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    sku: String,
    name: String,
    price_cents: u64,
}

const USAGE: &str = "l2_profile <ee|raw|interleaved|interleaved-timeout> [N]: see the file's docs";

fn main() {
    let Some(args) = ee_testing::profile_args(USAGE) else {
        return;
    };
    let mut args = args.into_iter();
    let variant = args.next().unwrap_or_else(|| "ee".into());
    let n: u64 = args.next().map_or(2000, |s| s.parse().expect("a count"));
    if let Some(rest) = variant.strip_prefix("interleaved") {
        interleaved(n, rest == "-timeout");
        return;
    }
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

fn product(i: u64) -> Product {
    Product {
        id: i,
        sku: format!("SKU-{i}"),
        name: format!("Product {i}"),
        price_cents: i,
    }
}

/// Raw redis-rs and `Cache::get` on a throwaway server, 50 tasks each, in
/// turns of `batch` hits; prints the time per hit (the tasks' wall clock over
/// the hits) and the ratios.
fn interleaved(batch: u64, bounded: bool) {
    use std::sync::Arc;

    const KEYS: u64 = 1000;
    let server = ee_testing::RedisServer::start();
    let rt = ee_testing::bench_runtime();
    let (cache, raw) = rt.block_on(async {
        let ee_testing::RedisPair { conn, mut raw } = ee_testing::redis_pair(&server.url()).await;
        let cache: Cache<u64, Product, RedisStore> = Cache::builder("products")
            .build(RedisStore::new(conn))
            .unwrap();
        for i in 0..KEYS {
            cache.set(&i, product(i)).await.unwrap();
            let _: () = redis::cmd("SET")
                .arg(format!("raw:{i}"))
                .arg(serde_json::to_vec(&product(i)).unwrap())
                .query_async(&mut raw)
                .await
                .unwrap();
        }
        (Arc::new(cache), raw)
    });
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("raw:{i}")).collect());
    let per_hit = |d: std::time::Duration| d.as_nanos() as f64 / batch as f64;
    let raw_round = || {
        let (raw, keys) = (raw.clone(), keys.clone());
        per_hit(ee_testing::spread_over_tasks(rt, 50, batch, move |n| {
            let (mut raw, keys) = (raw.clone(), keys.clone());
            async move {
                let k = n % KEYS;
                let cmd = redis::cmd("GET").arg(&keys[k as usize]).to_owned();
                let bytes: Vec<u8> = if bounded {
                    // The per-call timeout every `RedisConn` call has (1 s).
                    tokio::time::timeout(
                        std::time::Duration::from_secs(1),
                        cmd.query_async(&mut raw),
                    )
                    .await
                    .unwrap()
                    .unwrap()
                } else {
                    cmd.query_async(&mut raw).await.unwrap()
                };
                let p: Product = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(p.id, k);
            }
        }))
    };
    let ee_round = || {
        let cache = cache.clone();
        per_hit(ee_testing::spread_over_tasks(rt, 50, batch, move |n| {
            let cache = cache.clone();
            async move {
                let k = n % KEYS;
                assert_eq!(cache.get(&k).await.unwrap().id, k);
            }
        }))
    };
    ee_testing::take_turns(60, raw_round, ee_round).print(
        "raw redis-rs GET + serde_json",
        "ee Cache::get (RedisStore)",
        "ns per hit",
    );
}
