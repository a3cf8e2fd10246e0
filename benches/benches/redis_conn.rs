//! Which Redis connection for request-path commands?
//!
//! 50 concurrent tasks issue GET and EVALSHA against one throwaway
//! `redis-server`, through:
//! - `raw multiplexed`: redis-rs `MultiplexedConnection`, no wrapper (the anchor);
//! - `ee RedisConn`: `ee_core::redis::RedisConn` (ConnectionManager + per-call timeout);
//! - `deadpool-redis (50)`: a pool of 50 connections, one per task;
//! - `bb8-redis (50)`: the same with bb8.
//!
//! Each measurement runs `iters` commands split over the 50 tasks, so the time per
//! element is the amortised cost of one command at concurrency 50 and the
//! throughput is commands per second. Run: `cargo bench -p ee-benches --bench redis_conn`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ee_core::redis::{RedisConfig, RedisConn, Script};
use ee_testing::RedisServer;
use tokio::runtime::Runtime;

const TASKS: u64 = 50;
const POOL: u32 = 50;
const SCRIPT: &str = "return redis.call('GET', KEYS[1])";

/// Splits `iters` commands over `TASKS` tasks, runs them, returns the wall time.
fn run_concurrently<F, Fut>(rt: &Runtime, iters: u64, op: F) -> Duration
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    rt.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let op = op.clone();
                let n = iters / TASKS + u64::from(t < iters % TASKS);
                tokio::spawn(async move {
                    for _ in 0..n {
                        op().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("a benchmark task panicked");
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    let url = server.url();
    server.command(&["SET", "bench:key", "a-short-value-of-32-bytes-------"]);
    let script = Arc::new(Script::new(SCRIPT));

    let (raw, ee, deadpool, bb8) = rt.block_on(async {
        let client = redis::Client::open(url.as_str()).unwrap();
        let raw = client.get_multiplexed_async_connection().await.unwrap();
        let ee = RedisConn::connect(&RedisConfig::standalone(url.clone()))
            .await
            .unwrap();
        let deadpool = deadpool_redis::Config::from_url(url.clone())
            .builder()
            .unwrap()
            .max_size(POOL as usize)
            .runtime(deadpool_redis::Runtime::Tokio1)
            .build()
            .unwrap();
        let bb8 = bb8::Pool::builder()
            .max_size(POOL)
            .build(bb8_redis::RedisConnectionManager::new(url.clone()).unwrap())
            .await
            .unwrap();
        // Load the script once so every variant measures plain EVALSHA.
        let _: Option<String> = ee.invoke(&script.key("bench:key")).await.unwrap();
        (raw, ee, deadpool, bb8)
    });

    for command in ["GET", "EVALSHA"] {
        let mut group = c.benchmark_group(format!("redis_{command}_50_tasks"));
        group.throughput(Throughput::Elements(1));
        group.measurement_time(Duration::from_secs(4));
        group.sample_size(30);
        let evalsha = command == "EVALSHA";

        {
            let conn = raw.clone();
            let script = script.clone();
            group.bench_function("raw multiplexed", |b| {
                b.iter_custom(|iters| {
                    let conn = conn.clone();
                    let script = script.clone();
                    run_concurrently(&rt, iters, move || {
                        let mut conn = conn.clone();
                        let script = script.clone();
                        async move {
                            let v: Option<String> = if evalsha {
                                script.key("bench:key").invoke_async(&mut conn).await
                            } else {
                                redis::cmd("GET").arg("bench:key").query_async(&mut conn).await
                            }
                            .unwrap();
                            assert!(v.is_some());
                        }
                    })
                })
            });
        }
        {
            let conn = ee.clone();
            let script = script.clone();
            group.bench_function("ee RedisConn", |b| {
                b.iter_custom(|iters| {
                    let conn = conn.clone();
                    let script = script.clone();
                    run_concurrently(&rt, iters, move || {
                        let conn = conn.clone();
                        let script = script.clone();
                        async move {
                            let v: Option<String> = if evalsha {
                                conn.invoke(&script.key("bench:key")).await
                            } else {
                                conn.query(redis::cmd("GET").arg("bench:key")).await
                            }
                            .unwrap();
                            assert!(v.is_some());
                        }
                    })
                })
            });
        }
        {
            let pool = deadpool.clone();
            let script = script.clone();
            group.bench_function("deadpool-redis (50)", |b| {
                b.iter_custom(|iters| {
                    let pool = pool.clone();
                    let script = script.clone();
                    run_concurrently(&rt, iters, move || {
                        let pool = pool.clone();
                        let script = script.clone();
                        async move {
                            let mut conn = pool.get().await.unwrap();
                            let v: Option<String> = if evalsha {
                                script.key("bench:key").invoke_async(&mut *conn).await
                            } else {
                                redis::cmd("GET").arg("bench:key").query_async(&mut *conn).await
                            }
                            .unwrap();
                            assert!(v.is_some());
                        }
                    })
                })
            });
        }
        {
            let pool = bb8.clone();
            let script = script.clone();
            group.bench_function("bb8-redis (50)", |b| {
                b.iter_custom(|iters| {
                    let pool = pool.clone();
                    let script = script.clone();
                    run_concurrently(&rt, iters, move || {
                        let pool = pool.clone();
                        let script = script.clone();
                        async move {
                            let mut conn = pool.get().await.unwrap();
                            let v: Option<String> = if evalsha {
                                script.key("bench:key").invoke_async(&mut *conn).await
                            } else {
                                redis::cmd("GET").arg("bench:key").query_async(&mut *conn).await
                            }
                            .unwrap();
                            assert!(v.is_some());
                        }
                    })
                })
            });
        }
        group.finish();
    }
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
