//! API key verification beside the raw work it is built on, in the same run:
//!
//! - `apikey_verify_memory`: `ApiKeys<MemoryApiKeys>` (10 000 keys; with its
//!   verified-key cache, the default, and without) vs the raw work — split
//!   the key, SHA-256 the secret (sha2), look the id up in a `HashMap` of
//!   10 000 hashes, compare with `subtle`.
//! - `apikey_verify_redis`: `ApiKeys<RedisApiKeys>` without its cache (one
//!   `HGETALL` per verification) vs a raw redis-rs `HGETALL` of the same
//!   record on a `ConnectionManager`; and with the cache (a hot key).
//!
//! Each group ends with a ratio from rounds taken in turns
//! (`ee_testing::take_turns`), so both sides see the same machine drift.
//!
//! Run: `cargo bench -p ee-auth --bench apikeys -- --warm-up-time 1 --measurement-time 3`
//! (Redis at 127.0.0.1:6379).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ee_auth::{ApiKeyConfig, ApiKeyStore, ApiKeys, MemoryApiKeys, NewApiKey, RedisApiKeys};
use ee_core::KeySpace;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const KEYS: usize = 10_000;
const SECRET_LEN: usize = 43;
const ID_LEN: usize = 12;

fn no_cache() -> ApiKeyConfig {
    ApiKeyConfig {
        cache_ttl_ms: 0,
        ..ApiKeyConfig::default()
    }
}

/// `n` keys in `keys`; returns the plaintext of each.
async fn fill<S: ApiKeyStore>(keys: &ApiKeys<S>, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let created = keys
            .create(NewApiKey {
                owner: format!("user:{i}"),
                scopes: vec!["orders:read".into(), "orders:write".into()],
                roles: vec!["admin".into()],
                tenant: Some("acme".into()),
                ..NewApiKey::default()
            })
            .await
            .expect("create a key");
        out.push(created.key.expose().clone());
    }
    // Let the first verification's background `last_used` write land, so
    // the measured ones find it fresh.
    for key in &out[..1] {
        keys.verify(key).await.expect("verify");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    out
}

/// The raw work: split, SHA-256, map lookup, constant-time compare.
fn raw_verify(map: &HashMap<String, [u8; 32]>, key: &str) -> bool {
    let secret = &key[key.len() - SECRET_LEN..];
    let id = &key[key.len() - SECRET_LEN - 1 - ID_LEN..key.len() - SECRET_LEN - 1];
    let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    map.get(id)
        .is_some_and(|stored| bool::from(stored.ct_eq(&hash)))
}

/// `iters` verifications of `key` awaited one after another, timed.
fn time_verify<S: ApiKeyStore>(
    rt: &tokio::runtime::Runtime,
    keys: &ApiKeys<S>,
    key: &str,
    iters: u64,
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(keys.verify(black_box(key)).await.expect("verifies"));
        }
        start.elapsed()
    })
}

fn memory(c: &mut Criterion) {
    let rt = ee_testing::bench_runtime();
    let cached = ApiKeys::new(MemoryApiKeys::new());
    let plaintexts = rt.block_on(fill(&cached, KEYS));
    let uncached = ApiKeys::new(cached.store().clone())
        .config(&no_cache())
        .unwrap();
    let key = plaintexts[KEYS / 2].clone();
    let map: HashMap<String, [u8; 32]> = plaintexts
        .iter()
        .map(|k| {
            let id = k[k.len() - SECRET_LEN - 1 - ID_LEN..k.len() - SECRET_LEN - 1].to_owned();
            (id, Sha256::digest(&k[k.len() - SECRET_LEN..]).into())
        })
        .collect();
    assert!(raw_verify(&map, &key));

    let mut group = c.benchmark_group("apikey_verify_memory");
    group.bench_function("raw sha256 + HashMap + subtle (anchor)", |b| {
        b.iter(|| black_box(raw_verify(&map, black_box(&key))))
    });
    group.bench_function("ApiKeys<MemoryApiKeys> cached (default)", |b| {
        b.iter_custom(|iters| time_verify(rt, &cached, &key, iters))
    });
    group.bench_function("ApiKeys<MemoryApiKeys> no cache", |b| {
        b.iter_custom(|iters| time_verify(rt, &uncached, &key, iters))
    });
    group.finish();

    let batch = 20_000;
    let raw_round = || {
        ee_testing::ns_per_op(batch, || {
            for _ in 0..batch {
                black_box(raw_verify(&map, black_box(&key)));
            }
        })
    };
    for (label, keys) in [("cached", &cached), ("no cache", &uncached)] {
        let turns = ee_testing::take_turns(60, raw_round, || {
            time_verify(rt, keys, &key, batch as u64).as_nanos() as f64 / batch as f64
        });
        println!("-- memory, {label}:");
        turns.print(
            "raw sha256 + HashMap + subtle",
            "ApiKeys<MemoryApiKeys>",
            "ns per verification",
        );
    }
}

fn redis(c: &mut Criterion) {
    let rt = ee_testing::bench_runtime();
    let pair = rt.block_on(ee_testing::redis_pair("redis://127.0.0.1:6379"));
    let store = RedisApiKeys::new(pair.conn.clone())
        .with_key_space(KeySpace::new(&format!("auth-bench-{}", std::process::id())));
    let uncached = ApiKeys::new(store.clone()).config(&no_cache()).unwrap();
    let cached = ApiKeys::new(store.clone());
    let plaintexts = rt.block_on(fill(&uncached, 100));
    let key = plaintexts[50].clone();
    let id = key[key.len() - SECRET_LEN - 1 - ID_LEN..key.len() - SECRET_LEN - 1].to_owned();
    let record_key = store.record_key(&id);
    let raw_get = |iters: u64| {
        let mut raw = pair.raw.clone();
        let record_key = record_key.clone();
        rt.block_on(async move {
            let start = Instant::now();
            for _ in 0..iters {
                let fields: HashMap<String, String> = redis::cmd("HGETALL")
                    .arg(&record_key)
                    .query_async(&mut raw)
                    .await
                    .expect("HGETALL");
                black_box(fields);
            }
            start.elapsed()
        })
    };

    let mut group = c.benchmark_group("apikey_verify_redis");
    group.bench_function("raw redis-rs HGETALL of the record (anchor)", |b| {
        b.iter_custom(&raw_get)
    });
    group.bench_function("ApiKeys<RedisApiKeys> no cache", |b| {
        b.iter_custom(|iters| time_verify(rt, &uncached, &key, iters))
    });
    group.bench_function("ApiKeys<RedisApiKeys> cached (default)", |b| {
        b.iter_custom(|iters| time_verify(rt, &cached, &key, iters))
    });
    group.finish();

    let batch = 500;
    let turns = ee_testing::take_turns(
        30,
        || raw_get(batch).as_nanos() as f64 / batch as f64,
        || time_verify(rt, &uncached, &key, batch).as_nanos() as f64 / batch as f64,
    );
    println!("-- redis, no cache:");
    turns.print(
        "raw redis-rs HGETALL",
        "ApiKeys<RedisApiKeys>",
        "ns per verification",
    );

    // Clean up the bench's keys.
    rt.block_on(async {
        let keys: Vec<String> = pair
            .conn
            .query(redis::cmd("KEYS").arg(format!("ee:auth-bench-{}:*", std::process::id())))
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = pair.conn.query(redis::cmd("DEL").arg(&keys)).await;
        }
    });
}

criterion_group!(benches, memory, redis);
criterion_main!(benches);
