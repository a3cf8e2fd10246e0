//! Redis and tiered stores against real servers: round trips, compression,
//! corrupt bytes, limits, two instances invalidating each other's L1, tags
//! across levels and instances, a Cluster, and Redis stopped mid-test.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ee_cache::{Cache, CacheError, MemoryStore, RedisStore, TieredStore};
use ee_core::{RedisConfig, RedisConn};
use ee_testing::{RedisCluster, RedisServer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    description: String,
}

fn product(id: u64, name: &str) -> Product {
    Product {
        id,
        name: name.into(),
        description: "a fine product".into(),
    }
}

async fn conn(config: &RedisConfig) -> RedisConn {
    RedisConn::connect(&config.clone().with_timeout(Duration::from_millis(300)))
        .await
        .unwrap()
}

/// A cache name no other test (or earlier run) uses.
fn unique(name: &str) -> String {
    format!("{name}-{:x}", rand_suffix())
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

async fn tiered(config: &RedisConfig) -> TieredStore<Product> {
    let l1 = MemoryStore::builder()
        .max_entries(1000)
        .max_ttl(Duration::from_secs(10))
        .build();
    let store = TieredStore::connect(l1, RedisStore::new(conn(config).await), config)
        .await
        .unwrap();
    assert!(store.is_subscribed());
    store
}

#[tokio::test]
async fn redis_store_round_trips_values_lists_and_tags() {
    let config = RedisConfig::default();
    let cache: Cache<u64, Product, RedisStore> = Cache::builder(unique("products"))
        .build(RedisStore::new(conn(&config).await))
        .unwrap();
    cache
        .set_tagged(&1, product(1, "teapot"), &["shelf"])
        .await
        .unwrap();
    cache.set(&2, product(2, "kettle")).await.unwrap();
    assert_eq!(cache.get(&1).await, Some(product(1, "teapot")));
    let many = cache.get_many(&[&1, &3, &2]).await;
    assert_eq!(
        many,
        vec![Some(product(1, "teapot")), None, Some(product(2, "kettle"))]
    );

    // Every key has a TTL (the TTL plus the stale window).
    let key = cache.full_key(&1).unwrap();
    let ttl: i64 = cache
        .store()
        .conn()
        .query(redis::cmd("PTTL").arg(&key))
        .await
        .unwrap();
    assert!((250_000..=300_000).contains(&ttl), "{ttl}");

    cache.invalidate_tag("shelf").await;
    assert_eq!(cache.get(&1).await, None);
    assert_eq!(cache.get(&2).await, Some(product(2, "kettle")));
    cache.delete(&2).await.unwrap();
    assert_eq!(cache.get(&2).await, None);
}

#[tokio::test]
async fn get_many_is_one_round_trip() {
    // A server of its own, so its command statistics are this test's.
    let server = RedisServer::start();
    let config = RedisConfig::standalone(server.url());
    let cache: Cache<u64, Product, RedisStore> = Cache::builder("many")
        .build(RedisStore::new(conn(&config).await))
        .unwrap();
    for id in 0..20 {
        cache.set(&id, product(id, "p")).await.unwrap();
    }
    let stats = |conn: RedisConn| async move {
        let _: () = conn
            .query(redis::cmd("CONFIG").arg("RESETSTAT"))
            .await
            .unwrap();
        conn
    };
    let conn = stats(cache.store().conn().clone()).await;
    let ids: Vec<u64> = (0..25).collect();
    let keys: Vec<&u64> = ids.iter().collect();
    let found = cache.get_many(&keys).await;
    assert_eq!(found.iter().filter(|f| f.is_some()).count(), 20);
    let info: String = conn
        .query(redis::cmd("INFO").arg("commandstats"))
        .await
        .unwrap();
    let calls = |command: &str| {
        info.lines()
            .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    assert_eq!(calls("mget"), 1, "{info}");
    assert_eq!(calls("get"), 0, "{info}");
}

#[tokio::test]
async fn large_values_are_compressed_and_oversized_ones_refused() {
    let config = RedisConfig::default();
    let store = RedisStore::new(conn(&config).await).max_value_bytes(64 * 1024);
    let cache: Cache<str, Product, RedisStore> =
        Cache::builder(unique("big")).build(store).unwrap();
    let mut big = product(7, "catalogue");
    big.description = "lorem ipsum dolor sit amet ".repeat(1000); // 27 KB of JSON
    cache.set("big", big.clone()).await.unwrap();
    let raw: Vec<u8> = cache
        .store()
        .conn()
        .query(redis::cmd("GET").arg(cache.full_key("big").unwrap()))
        .await
        .unwrap();
    assert!(raw.len() < 2_000, "zstd: {} bytes stored", raw.len());
    assert_eq!(cache.get("big").await, Some(big));

    let mut huge = product(8, "huge");
    // Incompressible: a pseudo-random letter sequence.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    huge.description = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    assert!(matches!(
        cache.set("huge", huge).await,
        Err(CacheError::ValueTooLarge { max: 65_536, .. })
    ));
}

#[tokio::test]
async fn a_trained_dictionary_shrinks_small_values_and_a_store_without_it_reads_a_miss() {
    use ee_serialize::{Dictionary, ZstdCodec};
    let samples: Vec<Vec<u8>> = (0..400)
        .map(|i| serde_json::to_vec(&product(i, &format!("Water bottle {i}, 750 ml"))).unwrap())
        .collect();
    let dict = Arc::new(Dictionary::train(&samples, 8 * 1024, 3).unwrap());
    let config = RedisConfig::default();
    let name = unique("dict");
    let with_dict: Cache<str, Product, RedisStore> = Cache::builder(name.clone())
        .build(
            RedisStore::new(conn(&config).await)
                .codec(ZstdCodec::new().min_size(32).dictionary(dict)),
        )
        .unwrap();
    let plain: Cache<str, Product, RedisStore> = Cache::builder(name)
        .build(RedisStore::new(conn(&config).await).zstd_above(32))
        .unwrap();
    let value = product(4242, "Water bottle 4242, 750 ml");
    let json_len = serde_json::to_vec(&value).unwrap().len();
    with_dict.set("p", value.clone()).await.unwrap();
    let raw: Vec<u8> = with_dict
        .store()
        .conn()
        .query(redis::cmd("GET").arg(with_dict.full_key("p").unwrap()))
        .await
        .unwrap();
    // 18 bytes of entry header + 2 of tag count, then the compressed value.
    assert!(
        raw.len() - 20 < json_len / 2,
        "{} stored for {json_len} of JSON",
        raw.len()
    );
    assert_eq!(with_dict.get("p").await, Some(value));
    // Without the dictionary the entry cannot be read: a miss, not garbage.
    assert_eq!(plain.get("p").await, None);
}

#[tokio::test]
async fn corrupt_bytes_read_as_a_miss_and_are_deleted() {
    let config = RedisConfig::default();
    let cache: Cache<str, Product, RedisStore> = Cache::builder(unique("corrupt"))
        .build(RedisStore::new(conn(&config).await))
        .unwrap();
    let key = cache.full_key("k").unwrap();
    let conn = cache.store().conn().clone();
    conn.query::<()>(redis::cmd("SET").arg(&key).arg("not an entry"))
        .await
        .unwrap();
    let capture = ee_testing::capture_logs();
    assert_eq!(cache.get("k").await, None);
    let logs = capture.stop();
    assert!(
        logs.contains("WARN") && logs.contains(&key),
        "a warning naming the key: {}",
        logs.text()
    );
    let exists: i64 = conn.query(redis::cmd("EXISTS").arg(&key)).await.unwrap();
    assert_eq!(exists, 0, "the corrupt entry was deleted");
    // The loader fills it again.
    let v = cache
        .get_or_load("k", || async {
            Ok::<_, std::io::Error>(Some(product(1, "fresh")))
        })
        .await
        .unwrap();
    assert_eq!(v, Some(product(1, "fresh")));
    assert_eq!(cache.get("k").await, Some(product(1, "fresh")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_misses_on_redis_run_the_loader_once() {
    let config = RedisConfig::default();
    let cache: Cache<str, Product, TieredStore<Product>> = Cache::builder(unique("flight"))
        .build(tiered(&config).await)
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let cache = cache.clone();
            let calls = calls.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load("cold", move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, std::io::Error>(Some(product(1, "teapot")))
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), Some(product(1, "teapot")));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Polls `read` until it returns `want` or `within` has passed; how long it took.
async fn converges<F, Fut>(within: Duration, want: Option<Product>, mut read: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<Product>>,
{
    let started = Instant::now();
    loop {
        if read().await == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "not converged to {want:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads `id` through `cache` until its L1 keeps a copy (a fill that races
/// the invalidation message of the write itself is dropped, so it may take a
/// second read); fails after a second.
async fn holds_in_l1(cache: &Cache<u64, Product, TieredStore<Product>>, id: u64, want: &Product) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while cache
        .store()
        .l1()
        .lookup(&cache.full_key(&id).unwrap())
        .is_none()
    {
        assert!(Instant::now() < deadline, "no L1 copy of {id}");
        assert_eq!(cache.get(&id).await.as_ref(), Some(want));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_instance_is_not_served_stale_by_another_past_200_ms() {
    let config = RedisConfig::default();
    let name = unique("shared");
    let a: Cache<u64, Product, TieredStore<Product>> =
        Cache::builder(&name).build(tiered(&config).await).unwrap();
    let b: Cache<u64, Product, TieredStore<Product>> =
        Cache::builder(&name).build(tiered(&config).await).unwrap();

    a.set(&1, product(1, "v1")).await.unwrap();
    // B fills its L1 from L2 ...
    holds_in_l1(&b, 1, &product(1, "v1")).await;
    // ... A writes v2: B must stop serving v1 from its L1 within the bound.
    a.set(&1, product(1, "v2")).await.unwrap();
    let took = converges(Duration::from_millis(200), Some(product(1, "v2")), || {
        b.get(&1)
    })
    .await;
    println!("B saw A's write after {took:?}");

    // A delete (L2's UNLINK and the invalidation in one pipeline) takes it
    // out of B's L1 too, and B does not fill it again from L2.
    holds_in_l1(&b, 1, &product(1, "v2")).await;
    a.delete(&1).await.unwrap();
    converges(Duration::from_millis(200), None, || b.get(&1)).await;
    assert_eq!(b.get(&1).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_invalidation_reaches_both_levels_of_both_instances() {
    let config = RedisConfig::default();
    let name = unique("tags");
    let a: Cache<u64, Product, TieredStore<Product>> =
        Cache::builder(&name).build(tiered(&config).await).unwrap();
    let b: Cache<u64, Product, TieredStore<Product>> =
        Cache::builder(&name).build(tiered(&config).await).unwrap();
    a.set_tagged(&42, product(42, "teapot"), &["product:42"])
        .await
        .unwrap();
    a.set_tagged(&43, product(43, "kettle"), &["product:43"])
        .await
        .unwrap();
    // Both in both L1s (B's filled from L2, tags included).
    for cache in [&a, &b] {
        holds_in_l1(cache, 42, &product(42, "teapot")).await;
        holds_in_l1(cache, 43, &product(43, "kettle")).await;
    }

    b.invalidate_tag("product:42").await;
    let l1_has = |cache: &Cache<u64, Product, TieredStore<Product>>, id: u64| {
        cache
            .store()
            .l1()
            .lookup(&cache.full_key(&id).unwrap())
            .is_some()
    };
    assert!(!l1_has(&b, 42), "B's L1");
    assert_eq!(b.get(&42).await, None, "B: both levels");
    // A's L1 copy goes within the bound, by the invalidation message.
    let deadline = Instant::now() + Duration::from_millis(200);
    while l1_has(&a, 42) {
        assert!(Instant::now() < deadline, "A's L1 kept the tagged entry");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(a.get(&42).await, None, "A: both levels");
    assert!(l1_has(&a, 43) && l1_has(&b, 43), "other tags untouched");
    let l2_key = a.full_key(&42).unwrap();
    let exists: i64 = a
        .store()
        .l2()
        .conn()
        .query(redis::cmd("EXISTS").arg(l2_key))
        .await
        .unwrap();
    assert_eq!(exists, 0, "gone from L2");
    assert_eq!(a.get(&43).await, Some(product(43, "kettle")));
    assert_eq!(b.get(&43).await, Some(product(43, "kettle")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stores_work_on_a_three_node_cluster() {
    let cluster = RedisCluster::start(3);
    let config = RedisConfig::cluster(cluster.urls());
    let name = unique("cluster");
    let a: Cache<u64, Product, TieredStore<Product>> =
        Cache::builder(&name).build(tiered(&config).await).unwrap();
    let b: Cache<u64, Product, TieredStore<Product>> =
        Cache::builder(&name).build(tiered(&config).await).unwrap();
    for id in 0..30 {
        a.set_tagged(&id, product(id, "p"), &["all"]).await.unwrap();
    }
    // Keys spread over the nodes.
    let owners: std::collections::HashSet<u16> = (0..30)
        .map(|id| cluster.node_for_key(&a.full_key(&id).unwrap()).port())
        .collect();
    assert_eq!(owners.len(), 3, "entries on every node");
    let keys: Vec<u64> = (0..30).collect();
    let refs: Vec<&u64> = keys.iter().collect();
    let many = b.get_many(&refs).await;
    assert!(many.iter().all(Option::is_some));

    a.set(&5, product(5, "changed")).await.unwrap();
    converges(
        Duration::from_millis(500),
        Some(product(5, "changed")),
        || b.get(&5),
    )
    .await;
    b.invalidate_tag("all").await;
    for id in [0u64, 7, 29] {
        converges(Duration::from_millis(500), None, || a.get(&id)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_requests_still_succeed_and_recover_after_restart() {
    let mut redis = RedisServer::start();
    let config = RedisConfig::standalone(redis.url());
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let name = unique("outage");
    let store = tiered(&config).await;
    let cache: Cache<u64, Product, TieredStore<Product>> =
        metrics::with_local_recorder(&recorder, || Cache::builder(&name).build(store)).unwrap();
    cache.set(&1, product(1, "cached")).await.unwrap();

    redis.stop();
    // L1 still answers what it has.
    assert_eq!(cache.get(&1).await, Some(product(1, "cached")));
    // The store knows it no longer hears invalidations.
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.store().is_subscribed() {
        assert!(
            Instant::now() < deadline,
            "the lost subscription went unnoticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A miss goes to the loader within the Redis timeout; the write is dropped.
    let started = Instant::now();
    let v = cache
        .get_or_load(&2, || async {
            Ok::<_, std::io::Error>(Some(product(2, "loaded")))
        })
        .await
        .unwrap();
    assert_eq!(v, Some(product(2, "loaded")));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    cache.set(&3, product(3, "dropped")).await.unwrap();
    assert_eq!(
        cache.get(&3).await,
        None,
        "a dropped write is not served locally either"
    );

    let counters = ee_testing::counters(&snapshotter);
    let dropped = counters.sum("ee_cache_dropped_writes_total");
    assert!(dropped >= 2, "{counters:?}");
    let key = cache.full_key(&1).unwrap();
    assert!(
        cache.store().l1().lookup(&key).is_some(),
        "L1 keeps its entries while Redis is away"
    );

    redis.restart();
    // Back: writes land, the subscription returns (and clears L1).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cache.store().is_subscribed() {
        assert!(Instant::now() < deadline, "no resubscription after restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Invalidations sent while it was away are lost: its L1 was cleared.
    assert!(
        cache.store().l1().lookup(&key).is_none(),
        "L1 kept an entry across the outage"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        cache.set(&4, product(4, "after")).await.unwrap();
        if cache
            .store()
            .l2()
            .conn()
            .query::<Option<Vec<u8>>>(redis::cmd("GET").arg(cache.full_key(&4).unwrap()))
            .await
            .ok()
            .flatten()
            .is_some()
        {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cache.get(&4).await, Some(product(4, "after")));
}

/// A store picked by configuration is one type (`AnyStore`): the same code
/// caches in memory, on Redis or tiered, and the tiered one still keeps two
/// instances' L1s coherent.
#[tokio::test]
async fn any_store_is_one_cache_type_over_every_backend() {
    use ee_cache::AnyStore;
    let redis = RedisServer::start();
    let config = RedisConfig::standalone(redis.url());
    let name = unique("any");
    let build = |store: AnyStore<Product>| -> Cache<str, Product, AnyStore<Product>> {
        Cache::builder(name.as_str())
            .ttl(Duration::from_secs(60))
            .build(store)
            .unwrap()
    };
    let memory = build(MemoryStore::new().into());
    let shared = build(RedisStore::new(conn(&config).await).into());
    let a = build(tiered(&config).await.into());
    let b = build(tiered(&config).await.into());
    let loads = Arc::new(AtomicUsize::new(0));
    for cache in [&memory, &shared, &a] {
        let loads = loads.clone();
        let got = cache
            .get_or_load("p1", move || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, CacheError>(Some(product(1, "first")))
            })
            .await
            .unwrap();
        assert_eq!(got, Some(product(1, "first")));
    }
    // Memory loaded its own; Redis and the tiered store share one L2, so the
    // tiered cache found the Redis cache's entry without loading.
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    // b reads through its L1 from L2; a's delete reaches b's L1.
    assert_eq!(b.get("p1").await, Some(product(1, "first")));
    a.delete("p1").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.get("p1").await.is_some() {
        assert!(
            Instant::now() < deadline,
            "b still serves the deleted entry"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(memory.get("p1").await, Some(product(1, "first")));
}
