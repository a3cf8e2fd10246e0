//! ee-cache beside its anchors, in the same groups:
//!
//! - `l1_hit`: `Cache::get` on a `MemoryStore` vs raw `moka::sync::Cache::get`
//!   (u64 keys, and the same full string keys), 1000 keys, `Arc` values.
//! - `l2_hit_50_tasks`: `Cache::get` on a `RedisStore` vs raw redis-rs `GET` +
//!   `serde_json::from_slice` of the same value, 50 concurrent tasks.
//! - `tiered_zipf_50_tasks`: `get_or_load` on a `TieredStore` under a
//!   Zipf(1.0) key distribution over 10 000 keys, L1 of 1 000; the hit ratios
//!   and p50/p99 latency are printed.
//! - `http_2_8_kb`: `ResponseCacheLayer` hits vs the handler (1 ms) alone, and
//!   the layer's own cost on a miss (a handler answering at once, with and
//!   without the layer): a new URL each time, stored (also in the
//!   background); a `no-cache` request, stored again; a `private` response,
//!   not stored.
//!
//! Run: `cargo bench -p ee-cache --features redis,http` (needs redis-server).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ee_cache::{Cache, MemoryStore, RedisStore, ResponseCacheLayer, TieredStore, Variants};
use ee_core::{RedisConfig, RedisConn};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

const KEYS: u64 = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    sku: String,
    name: String,
    price_cents: u64,
    stock: u32,
    tags: Vec<String>,
}

fn product(id: u64) -> Product {
    Product {
        id,
        sku: format!("SKU-{id:08}"),
        name: format!("Product number {id}"),
        price_cents: 1999 + id,
        stock: 42,
        tags: vec!["kitchen".into(), "tea".into()],
    }
}

fn l1_hit(c: &mut Criterion) {
    let mut group = c.benchmark_group("l1_hit");
    let moka_u64: moka::sync::Cache<u64, Arc<Product>> = moka::sync::Cache::new(10_000);
    let moka_str: moka::sync::Cache<String, Arc<Product>> = moka::sync::Cache::new(10_000);
    let cache: Cache<u64, Arc<Product>> = Cache::builder("products")
        .build(MemoryStore::builder().max_entries(10_000).build())
        .unwrap();
    let full: Vec<String> = (0..KEYS).map(|i| cache.full_key(&i).unwrap()).collect();
    for i in 0..KEYS {
        let v = Arc::new(product(i));
        moka_u64.insert(i, v.clone());
        moka_str.insert(full[i as usize].clone(), v.clone());
        cache.set(&i, v).now_or_never().unwrap().unwrap();
    }
    let mut i = 0;
    group.bench_function("raw moka get, u64 keys (anchor)", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            moka_u64.get(&i).unwrap()
        })
    });
    group.bench_function("raw moka get, the same string keys (anchor)", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            moka_str.get(full[i as usize].as_str()).unwrap()
        })
    });
    group.bench_function("ee Cache::get (MemoryStore)", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            cache.get(&i).now_or_never().unwrap().unwrap()
        })
    });
    group.finish();
}

/// `iters` operations over 50 tasks, keys spread over the 1000; the elapsed time.
fn fifty_tasks<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    ee_testing::spread_over_tasks(rt, 50, iters, move |n| op(n % KEYS))
}

fn l2_hit(c: &mut Criterion) {
    let rt = rt();
    let server = ee_testing::RedisServer::start();
    let url = server.url();
    let (cache, raw) = rt.block_on(async {
        let ee_testing::RedisPair { conn, mut raw } = ee_testing::redis_pair(&url).await;
        let cache: Cache<u64, Product, RedisStore> = Cache::builder("products")
            .build(RedisStore::new(conn))
            .unwrap();
        for i in 0..KEYS {
            cache.set(&i, product(i)).await.unwrap();
            let json = serde_json::to_vec(&product(i)).unwrap();
            let _: () = redis::cmd("SET")
                .arg(format!("raw:{i}"))
                .arg(json)
                .query_async(&mut raw)
                .await
                .unwrap();
        }
        (Arc::new(cache), raw)
    });
    let raw_keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("raw:{i}")).collect());

    let mut group = c.benchmark_group("l2_hit_50_tasks");
    group.throughput(Throughput::Elements(1));
    group.sample_size(30);
    {
        let (raw, keys) = (raw.clone(), raw_keys.clone());
        group.bench_function("raw redis-rs GET + serde_json (anchor)", move |b| {
            b.iter_custom(|iters| {
                let (raw, keys) = (raw.clone(), keys.clone());
                fifty_tasks(rt, iters, move |k| {
                    let (mut raw, keys) = (raw.clone(), keys.clone());
                    async move {
                        let bytes: Vec<u8> = redis::cmd("GET")
                            .arg(&keys[k as usize])
                            .query_async(&mut raw)
                            .await
                            .unwrap();
                        let p: Product = serde_json::from_slice(&bytes).unwrap();
                        assert_eq!(p.id, k);
                    }
                })
            })
        });
    }
    {
        let cache = cache.clone();
        group.bench_function("ee Cache::get (RedisStore)", move |b| {
            b.iter_custom(|iters| {
                let cache = cache.clone();
                fifty_tasks(rt, iters, move |k| {
                    let cache = cache.clone();
                    async move {
                        assert_eq!(cache.get(&k).await.unwrap().id, k);
                    }
                })
            })
        });
    }
    group.finish();
    drop(server);
}

/// Zipf(s = 1.0) over `n` ranks, by inverse CDF on a table.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for rank in 1..=n {
            sum += 1.0 / rank as f64;
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Self { cdf }
    }

    fn sample(&self, u: f64) -> u64 {
        self.cdf.partition_point(|&c| c < u) as u64
    }
}

fn tiered_zipf(c: &mut Criterion) {
    let rt = rt();
    let server = ee_testing::RedisServer::start();
    let config = RedisConfig::standalone(server.url());
    let cache: Cache<u64, Product, TieredStore<Product>> = rt.block_on(async {
        let l1 = MemoryStore::builder()
            .max_entries(1000)
            .max_ttl(Duration::from_secs(10))
            .build();
        let conn = RedisConn::connect(&config).await.unwrap();
        let store = TieredStore::connect(l1, RedisStore::new(conn), &config)
            .await
            .unwrap();
        Cache::builder("zipf").build(store).unwrap()
    });
    let zipf = Arc::new(Zipf::new(10_000));
    let loads = Arc::new(AtomicU64::new(0));

    // One measured pass for the ratios and percentiles.
    let (latencies, ops) = {
        let (cache, zipf, loads) = (cache.clone(), zipf.clone(), loads.clone());
        rt.block_on(async move {
            let tasks: Vec<_> = (0..50)
                .map(|t| {
                    let (cache, zipf, loads) = (cache.clone(), zipf.clone(), loads.clone());
                    tokio::spawn(async move {
                        let mut lat = Vec::with_capacity(2000);
                        let mut x: u64 = 0x9E37_79B9 + t;
                        for _ in 0..2000 {
                            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                            let k = zipf.sample((x >> 11) as f64 / (1u64 << 53) as f64);
                            let loads = loads.clone();
                            let started = Instant::now();
                            cache
                                .get_or_load(&k, move || async move {
                                    loads.fetch_add(1, Ordering::Relaxed);
                                    Ok::<_, std::io::Error>(Some(product(k)))
                                })
                                .await
                                .unwrap();
                            lat.push(started.elapsed());
                        }
                        lat
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            let n = all.len();
            (all, n)
        })
    };
    let mut latencies = latencies;
    latencies.sort();
    let l1_entries = cache.store().l1().len();
    println!(
        "tiered_zipf: {ops} get_or_load over 50 tasks, Zipf(1.0) on 10 000 keys, L1 1 000: \
         overall hit ratio {:.1} % (loads {}), p50 {:?}, p99 {:?}, L1 entries {l1_entries}",
        100.0 * (1.0 - loads.load(Ordering::Relaxed) as f64 / ops as f64),
        loads.load(Ordering::Relaxed),
        latencies[ops / 2],
        latencies[ops * 99 / 100],
    );

    let mut group = c.benchmark_group("tiered_zipf_50_tasks");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.bench_function("ee Cache::get_or_load (TieredStore)", move |b| {
        b.iter_custom(|iters| {
            let (cache, zipf) = (cache.clone(), zipf.clone());
            fifty_tasks(rt, iters, move |j| {
                let (cache, zipf) = (cache.clone(), zipf.clone());
                async move {
                    let u = ((j * 2_654_435_761) % 1_000_003) as f64 / 1_000_003.0;
                    let k = zipf.sample(u);
                    cache
                        .get_or_load(&k, move || async move {
                            Ok::<_, std::io::Error>(Some(product(k)))
                        })
                        .await
                        .unwrap();
                }
            })
        })
    });
    group.finish();
    drop(server);
}

/// A 2.8 KB JSON list of products.
fn body_2_8_kb() -> String {
    let mut list: Vec<Product> = Vec::new();
    loop {
        let json = serde_json::to_string(&list).unwrap();
        if json.len() >= 2_800 {
            return json;
        }
        list.push(product(list.len() as u64));
    }
}

fn http(c: &mut Criterion) {
    let rt = rt();
    let body = Arc::new(body_2_8_kb());
    let slow = {
        let body = body.clone();
        Router::new().route(
            "/products",
            get(move || {
                let body = body.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    (
                        [
                            ("cache-control", "max-age=600"),
                            ("content-type", "application/json"),
                        ],
                        body.as_str().to_owned(),
                    )
                }
            }),
        )
    };
    let answering_at_once = |cache_control: &'static str| {
        let body = body.clone();
        Router::new().route(
            "/products",
            get(move || {
                let body = body.clone();
                async move {
                    (
                        [
                            ("cache-control", cache_control),
                            ("content-type", "application/json"),
                        ],
                        body.as_str().to_owned(),
                    )
                }
            }),
        )
    };
    let fast = answering_at_once("max-age=600");
    let private = answering_at_once("private, max-age=600");
    let layer = || {
        let cache: Cache<str, Variants> = Cache::builder("http").build(MemoryStore::new()).unwrap();
        ResponseCacheLayer::new(cache)
    };
    let cached_slow = slow.clone().layer(layer());
    let cached_fast = fast.clone().layer(layer());
    let cached_fast_bg = fast.clone().layer(layer().store_in_background());
    let cached_private = private.clone().layer(layer());
    // A URL not asked before on every request (`?page=<n>`): the miss a
    // cache sees in use (its store full after the first 10 000, so inserts
    // evict too).
    let page = AtomicU64::new(0);
    let request = |ask: Ask| {
        let uri = match ask {
            Ask::New => {
                let n = page.fetch_add(1, Ordering::Relaxed);
                format!("/products?page={n}")
            }
            _ => "/products".to_owned(),
        };
        let mut req = http::Request::get(uri).header("host", "shop.example");
        if ask == Ask::Bypass {
            // Bypass the stored copy: every request is a miss, stored again.
            req = req.header("cache-control", "no-cache");
        }
        req.body(Body::empty()).unwrap()
    };
    async fn call(app: &Router, req: http::Request<Body>) -> usize {
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes()
            .len()
    }
    rt.block_on(call(&cached_slow, request(Ask::Same)));

    let mut group = c.benchmark_group("http_2_8_kb");
    group.sample_size(20);
    group.bench_function("handler taking 1 ms, no layer (anchor)", |b| {
        b.to_async(rt).iter(|| call(&slow, request(Ask::Same)))
    });
    group.bench_function("ResponseCacheLayer hit", |b| {
        b.to_async(rt)
            .iter(|| call(&cached_slow, request(Ask::Same)))
    });
    group.bench_function(
        "handler answering at once, new URLs, no layer (anchor)",
        |b| b.to_async(rt).iter(|| call(&fast, request(Ask::New))),
    );
    group.bench_function("ResponseCacheLayer miss, new URL, stored", |b| {
        b.to_async(rt)
            .iter(|| call(&cached_fast, request(Ask::New)))
    });
    group.bench_function(
        "ResponseCacheLayer miss, new URL, stored in the background",
        |b| {
            b.to_async(rt)
                .iter(|| call(&cached_fast_bg, request(Ask::New)))
        },
    );
    group.bench_function(
        "handler answering at once, no-cache request, no layer (anchor)",
        |b| b.to_async(rt).iter(|| call(&fast, request(Ask::Bypass))),
    );
    group.bench_function(
        "ResponseCacheLayer miss, no-cache request, stored again",
        |b| {
            b.to_async(rt)
                .iter(|| call(&cached_fast, request(Ask::Bypass)))
        },
    );
    group.bench_function("private handler, new URLs, no layer (anchor)", |b| {
        b.to_async(rt).iter(|| call(&private, request(Ask::New)))
    });
    group.bench_function(
        "ResponseCacheLayer miss, new URL, private: not stored",
        |b| {
            b.to_async(rt)
                .iter(|| call(&cached_private, request(Ask::New)))
        },
    );
    group.finish();
}

/// What an HTTP benchmark request asks for.
#[derive(Clone, Copy, PartialEq)]
enum Ask {
    /// `/products`.
    Same,
    /// `/products` with `Cache-Control: no-cache`.
    Bypass,
    /// A URL not asked before.
    New,
}

fn rt() -> &'static tokio::runtime::Runtime {
    ee_testing::bench_runtime()
}

criterion_group!(benches, l1_hit, l2_hit, tiered_zipf, http);
criterion_main!(benches);
