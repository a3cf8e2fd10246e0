//! Benchmark plumbing shared by the crates' criterion benches: one runtime,
//! an ee and a raw redis-rs connection to the same server (our layer and its
//! anchor), and driving an operation from many tasks at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `iters` calls of `op` spread over `tasks` tasks on `rt`, and returns
/// the time they took: for criterion's `iter_custom` when the figure of
/// interest is throughput under concurrency (a multiplexed Redis connection,
/// a shared limiter). Task `t`'s `j`-th call gets `t * 7919 + j` (spread the
/// keys with it).
pub fn spread<F, Fut>(rt: &tokio::runtime::Runtime, tasks: u64, iters: u64, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    rt.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let op = op.clone();
                let n = iters / tasks + u64::from(t < iters % tasks);
                tokio::spawn(async move {
                    for j in 0..n {
                        op(t * 7919 + j).await;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("a benchmark task panicked");
        }
        start.elapsed()
    })
}

/// One multi-thread runtime for every benchmark of a process, made on first use.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// An ee connection and a raw redis-rs `ConnectionManager` to the Redis at
/// `url`: what a benchmark runs its layer and its anchor on.
pub async fn redis_pair(url: &str) -> (ee_core::redis::RedisConn, ::redis::aio::ConnectionManager) {
    let conn = ee_core::redis::RedisConn::connect(&ee_core::redis::RedisConfig::standalone(url))
        .await
        .expect("connect to Redis");
    let raw =
        ::redis::aio::ConnectionManager::new(::redis::Client::open(url).expect("a Redis URL"))
            .await
            .expect("connect to Redis");
    (conn, raw)
}
