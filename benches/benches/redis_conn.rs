//! Which Redis connection for request-path commands?
//!
//! 50 concurrent tasks issue GET and EVALSHA against one throwaway
//! `redis-server`, through:
//! - `raw multiplexed`: redis-rs `MultiplexedConnection`, no wrapper (the anchor);
//! - `raw ConnectionManager`: redis-rs' reconnecting wrapper of it;
//! - `ee RedisConn`: `ee_core::RedisConn` (ConnectionManager + per-call timeout);
//! - `deadpool-redis (50)`: a pool of 50 connections, one per task (its
//!   recycle check sends `UNWATCH`+`PING` on every checkout, as it always does);
//! - `bb8-redis (50)`: the same with bb8 (default: `PING` on checkout), and
//!   with that test turned off.
//!
//! Each measurement runs `iters` commands split over the 50 tasks, so the time per
//! element is the amortised cost of one command at concurrency 50 and the
//! throughput is commands per second. Run: `cargo bench -p ee-benches --bench redis_conn`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ee_core::{RedisConfig, RedisConn, Script};

/// The same script for the raw redis-rs variants.
type RawScript = redis::Script;
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
    let script = Arc::new(RawScript::new(SCRIPT));
    let ee_script = Arc::new(Script::new(SCRIPT));

    let (raw, manager, ee, deadpool, bb8, bb8_unchecked) = rt.block_on(async {
        let client = redis::Client::open(url.as_str()).unwrap();
        let raw = client.get_multiplexed_async_connection().await.unwrap();
        let manager = redis::aio::ConnectionManager::new(client.clone())
            .await
            .unwrap();
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
        let bb8_unchecked = bb8::Pool::builder()
            .max_size(POOL)
            .test_on_check_out(false)
            .build(bb8_redis::RedisConnectionManager::new(url.clone()).unwrap())
            .await
            .unwrap();
        // Load the script once so every variant measures plain EVALSHA.
        let _: Option<String> = ee.invoke(&ee_script.key("bench:key")).await.unwrap();
        (raw, manager, ee, deadpool, bb8, bb8_unchecked)
    });

    for command in ["GET", "EVALSHA"] {
        let mut group = c.benchmark_group(format!("redis_{command}_50_tasks"));
        group.throughput(Throughput::Elements(1));
        group.measurement_time(Duration::from_secs(4));
        group.sample_size(30);
        let evalsha = command == "EVALSHA";

        // One redis-rs command on any connection, the way each variant sends it.
        async fn raw_call<C: redis::aio::ConnectionLike>(
            conn: &mut C,
            script: &RawScript,
            evalsha: bool,
        ) {
            let v: Option<String> = if evalsha {
                script.key("bench:key").invoke_async(conn).await
            } else {
                redis::cmd("GET").arg("bench:key").query_async(conn).await
            }
            .unwrap();
            assert!(v.is_some());
        }

        macro_rules! variant {
            ($name:expr, $handle:expr, $shared_script:expr, |$h:ident, $script:ident| $call:expr) => {{
                let handle = $handle;
                let script = $shared_script.clone();
                group.bench_function($name, |b| {
                    b.iter_custom(|iters| {
                        let handle = handle.clone();
                        let script = script.clone();
                        run_concurrently(&rt, iters, move || {
                            let $h = handle.clone();
                            let $script = script.clone();
                            async move { $call }
                        })
                    })
                });
            }};
        }

        variant!("raw multiplexed", raw.clone(), script, |conn, script| {
            let mut conn = conn;
            raw_call(&mut conn, &script, evalsha).await
        });
        variant!(
            "raw ConnectionManager",
            manager.clone(),
            script,
            |conn, script| {
                let mut conn = conn;
                raw_call(&mut conn, &script, evalsha).await
            }
        );
        variant!("ee RedisConn", ee.clone(), ee_script, |conn, script| {
            let v: Option<String> = if evalsha {
                conn.invoke(&script.key("bench:key")).await
            } else {
                conn.query(redis::cmd("GET").arg("bench:key")).await
            }
            .unwrap();
            assert!(v.is_some());
        });
        variant!(
            "deadpool-redis (50)",
            deadpool.clone(),
            script,
            |pool, script| {
                let mut conn = pool.get().await.unwrap();
                raw_call(&mut *conn, &script, evalsha).await
            }
        );
        variant!("bb8-redis (50)", bb8.clone(), script, |pool, script| {
            let mut conn = pool.get().await.unwrap();
            raw_call(&mut *conn, &script, evalsha).await
        });
        variant!(
            "bb8-redis (50, no check-out PING)",
            bb8_unchecked.clone(),
            script,
            |pool, script| {
                let mut conn = pool.get().await.unwrap();
                raw_call(&mut *conn, &script, evalsha).await
            }
        );
        group.finish();
    }
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
