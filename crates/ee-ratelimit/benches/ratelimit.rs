//! ee-ratelimit beside its anchors, in the same groups:
//!
//! - `layer_memory`: `RateLimitLayer` (memory GCRA) vs `tower_governor` around
//!   the same no-op service, keyed by peer IP over 1000 clients, every request
//!   allowed; ours with no headers (as tower_governor by default) and with the
//!   draft headers.
//! - `decision_memory`: our store's decision vs a raw `governor` keyed check,
//!   1000 keys.
//! - `redis_50_tasks`: decisions per second with 50 concurrent tasks: raw
//!   redis-rs EVALSHA of the same GCRA script on the same kind of connection
//!   vs our `RedisLimiter::check`.
//!
//! Run: `cargo bench -p ee-ratelimit --features redis,axum`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ee_core::Key;
use ee_ratelimit::MemoryLimiter;
use ee_ratelimit::{HeaderConfig, Limiter, RateLimitStore, RedisStore, Rule};
use tower::{Layer, Service, ServiceExt};

mod support;
use support::{BURST, KEYS, ip, noop, request};

fn layer_memory(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("layer_memory");

    let config = support::governor_builder().finish().unwrap();
    // Services are cloned per request, as axum does.
    let governor = tower_governor::GovernorLayer::new(config).layer(noop());
    let mut i = 0;
    group.bench_function("tower_governor (anchor)", |b| {
        b.to_async(&rt).iter(|| {
            i += 1;
            let req = request(i);
            let mut svc = governor.clone();
            async move {
                let res = svc.ready().await.unwrap().call(req).await.unwrap();
                assert_eq!(res.status(), 200);
                res
            }
        })
    });

    // The same with headers on both sides: tower_governor's x-ratelimit-* set
    // (`use_headers`) beside our legacy X-RateLimit-* trio.
    let config = support::governor_builder().use_headers().finish().unwrap();
    let governor_headers = tower_governor::GovernorLayer::new(config).layer(noop());
    let mut i = 0;
    group.bench_function("tower_governor, headers (anchor)", |b| {
        b.to_async(&rt).iter(|| {
            i += 1;
            let req = request(i);
            let mut svc = governor_headers.clone();
            async move {
                let res = svc.ready().await.unwrap().call(req).await.unwrap();
                assert!(res.headers().contains_key("x-ratelimit-remaining"));
                res
            }
        })
    });

    for (name, headers) in [
        (
            "ee RateLimitLayer, no headers",
            HeaderConfig {
                draft: false,
                legacy: false,
            },
        ),
        (
            "ee RateLimitLayer, legacy headers",
            HeaderConfig {
                draft: false,
                legacy: true,
            },
        ),
        ("ee RateLimitLayer, draft headers", HeaderConfig::default()),
    ] {
        let svc = support::ours(headers);
        let mut i = 0;
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                i += 1;
                let req = request(i);
                let mut svc = svc.clone();
                async move {
                    let res = svc.ready().await.unwrap().call(req).await.unwrap();
                    assert_eq!(res.status(), 200);
                    res
                }
            })
        });
    }
    group.finish();
}

fn decision_memory(c: &mut Criterion) {
    let mut group = c.benchmark_group("decision_memory_1000_keys");
    let quota = governor::Quota::per_second(NonZeroU32::new(BURST).unwrap());
    let raw = governor::RateLimiter::keyed(quota);
    let ips: Vec<IpAddr> = (0..KEYS).map(ip).collect();
    let mut i = 0;
    group.bench_function("governor check_key (anchor)", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            raw.check_key(&ips[i]).is_ok()
        })
    });
    let ours: MemoryLimiter =
        ee_ratelimit::MemoryStore::new().limiter("api", &Rule::per_second(BURST));
    let keys: Vec<Key> = ips.iter().map(|ip| Key::Ip(*ip)).collect();
    let mut i = 0;
    group.bench_function("ee MemoryLimiter::decide", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            ours.decide(&keys[i], 1).is_ok_and(|d| d.allowed)
        })
    });
    group.finish();
}

fn redis_50_tasks(c: &mut Criterion) {
    let rt = rt_handle();
    let server = ee_testing::RedisServer::start();
    let url = server.url();
    let ee_testing::RedisPair { conn, raw } = rt.block_on(ee_testing::redis_pair(&url));
    let limiter = Arc::new(
        RedisStore::new(conn).limiter("api", &Rule::gcra(BURST, Duration::from_secs(1), BURST)),
    );
    let script = Arc::new(redis::Script::new(limiter.script().code()));
    let args: Arc<Vec<String>> = Arc::new(limiter.args().to_vec());
    let keys: Arc<Vec<(Key, String)>> = Arc::new(
        (0..KEYS)
            .map(|i| (Key::Ip(ip(i)), limiter.redis_key(&Key::Ip(ip(i)), None)))
            .collect(),
    );

    let mut group = c.benchmark_group("redis_gcra_50_tasks");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(30);

    /// `iters` decisions over 50 tasks, keys spread over the clients.
    fn run<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, op: F) -> Duration
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send,
    {
        ee_testing::spread_over_tasks(rt, 50, iters, move |n| op(n as usize % KEYS))
    }

    {
        let (raw, script, args, keys) = (raw.clone(), script.clone(), args.clone(), keys.clone());
        group.bench_function("raw redis-rs EVALSHA (anchor)", move |b| {
            b.iter_custom(|iters| {
                let (raw, script, args, keys) =
                    (raw.clone(), script.clone(), args.clone(), keys.clone());
                run(rt, iters, move |k| {
                    let (mut raw, script, args, keys) =
                        (raw.clone(), script.clone(), args.clone(), keys.clone());
                    async move {
                        let mut inv = script.key(&keys[k].1);
                        for a in args.iter() {
                            inv.arg(a);
                        }
                        inv.arg(1);
                        let v: Vec<i64> = inv.invoke_async(&mut raw).await.unwrap();
                        assert_eq!(v[0], 1);
                    }
                })
            })
        });
    }
    {
        let (limiter, keys) = (limiter.clone(), keys.clone());
        group.bench_function("ee RedisLimiter::check", move |b| {
            b.iter_custom(|iters| {
                let (limiter, keys) = (limiter.clone(), keys.clone());
                run(rt, iters, move |k| {
                    let (limiter, keys) = (limiter.clone(), keys.clone());
                    async move {
                        assert!(limiter.check(&keys[k].0, 1).await.unwrap().allowed);
                    }
                })
            })
        });
    }
    group.finish();
    drop(server);
}

fn rt_handle() -> &'static tokio::runtime::Runtime {
    ee_testing::bench_runtime()
}

criterion_group!(benches, layer_memory, decision_memory, redis_50_tasks);
criterion_main!(benches);
