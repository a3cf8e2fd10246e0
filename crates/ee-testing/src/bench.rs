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
pub fn spread_over_tasks<F, Fut>(
    rt: &tokio::runtime::Runtime,
    tasks: u64,
    iters: u64,
    op: F,
) -> Duration
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
pub fn bench_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// Two connections to one Redis: what a benchmark runs its layer and its
/// anchor on.
#[derive(Clone)]
pub struct RedisPair {
    /// ee's connection (the layer under test).
    pub conn: ee_core::RedisConn,
    /// A raw redis-rs `ConnectionManager` (the anchor).
    pub raw: ::redis::aio::ConnectionManager,
}

impl std::fmt::Debug for RedisPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPair")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

/// An ee connection and a raw redis-rs `ConnectionManager` to the Redis at
/// `url`.
///
/// # Panics
///
/// If either cannot connect.
pub async fn redis_pair(url: &str) -> RedisPair {
    let conn = ee_core::RedisConn::connect(&ee_core::RedisConfig::standalone(url))
        .await
        .expect("connect to Redis");
    let raw =
        ::redis::aio::ConnectionManager::new(::redis::Client::open(url).expect("a Redis URL"))
            .await
            .expect("connect to Redis");
    RedisPair { conn, raw }
}

/// Wall-clock measurements of an anchor and of our layer taken in turns (see
/// [`take_turns`]): on a shared machine whose speed drifts by tens of percent
/// from one second to the next, both sides see the same drift, so the ratio
/// of their medians is fairer than two criterion groups run one after the
/// other.
#[derive(Debug, Clone, Default)]
pub struct Turns {
    /// The anchor's measurement of each round.
    pub anchor: Vec<f64>,
    /// Ours, of each round.
    pub ours: Vec<f64>,
}

/// The middle value of `values` (the upper middle for an even count).
///
/// # Panics
///
/// If `values` is empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

impl Turns {
    /// The median of the anchor's rounds.
    pub fn anchor_median(&self) -> f64 {
        median(&self.anchor)
    }

    /// The median of our rounds.
    pub fn ours_median(&self) -> f64 {
        median(&self.ours)
    }

    /// Ours over the anchor, of the medians (for times: above 1 is slower).
    pub fn median_ratio(&self) -> f64 {
        self.ours_median() / self.anchor_median()
    }

    /// The median of the per-round ratios ours / anchor: each pair measured
    /// back to back, so a slow second affects both sides of one ratio.
    pub fn paired_ratio(&self) -> f64 {
        let ratios: Vec<f64> = self
            .anchor
            .iter()
            .zip(&self.ours)
            .map(|(a, o)| o / a)
            .collect();
        median(&ratios)
    }

    /// Prints both medians, the fastest round of each (`unit` names what the
    /// figures are, e.g. "ns per get") and both ratios.
    pub fn print(&self, anchor: &str, ours: &str, unit: &str) {
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "{anchor}: median {:.1} {unit}, fastest {:.1}",
            self.anchor_median(),
            min(&self.anchor)
        );
        println!(
            "{ours}: median {:.1} {unit}, fastest {:.1}",
            self.ours_median(),
            min(&self.ours)
        );
        println!(
            "ratio (ours / anchor): of the medians {:.3}, median of the paired rounds {:.3}, of the fastest {:.3}",
            self.median_ratio(),
            self.paired_ratio(),
            min(&self.ours) / min(&self.anchor)
        );
    }
}

/// `rounds` measurements of `anchor` and of `ours`, taking turns (and
/// alternating which goes first, so neither always follows the other).
pub fn take_turns(
    rounds: usize,
    mut anchor: impl FnMut() -> f64,
    mut ours: impl FnMut() -> f64,
) -> Turns {
    let mut turns = Turns::default();
    for round in 0..rounds {
        if round % 2 == 0 {
            turns.anchor.push(anchor());
            turns.ours.push(ours());
        } else {
            turns.ours.push(ours());
            turns.anchor.push(anchor());
        }
    }
    turns
}

/// Nanoseconds per operation of `batch` operations run by `f`.
pub fn ns_per_op(batch: usize, f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_nanos() as f64 / batch as f64
}

/// The arguments of a profiling harness (a `harness = false` bench run by
/// hand or under callgrind): those after its name, without the `--bench`
/// cargo adds. `None`, after printing `usage`, when there are none, as
/// under a plain `cargo bench`, which should not start a profile run.
pub fn profile_args(usage: &str) -> Option<Vec<String>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.is_empty() {
        println!("{usage}");
        return None;
    }
    Some(args)
}
