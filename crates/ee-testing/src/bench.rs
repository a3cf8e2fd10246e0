//! Driving a benchmark operation from many tasks at once.

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
