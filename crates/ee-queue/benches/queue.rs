//! ee-queue beside apalis (Redis backend) on one throwaway `redis-server`:
//! bulk enqueue throughput, no-op processing throughput and end-to-end
//! latency at concurrency 1, 10 and 50.
//!
//! `cargo bench -p ee-queue` (add `-- --quick` for a short run). Results go
//! in `docs/benchmarks.md`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_redis::RedisStorage;
use ee_core::RedisConfig;
use ee_queue::{Job, NewJob, Queue, QueueConfig, Worker};
use ee_testing::RedisServer;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Mail {
    seq: u64,
    to: String,
}

fn mail(seq: u64) -> Mail {
    Mail {
        seq,
        to: format!("customer-{seq}@example.com"),
    }
}

/// Jobs handled so far in a throughput phase.
static DONE: AtomicUsize = AtomicUsize::new(0);
/// Latency phases: who waits for which job.
static WAITERS: LazyLock<Mutex<HashMap<u64, oneshot::Sender<()>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
/// Latency jobs' numbers: far above the throughput runs' (0..n), so a late
/// job of an earlier run never answers a latency waiter.
static SEQ: AtomicU64 = AtomicU64::new(1 << 40);
/// Latency jobs that never ran (within 5 s) in the current phase.
static LOST: AtomicUsize = AtomicUsize::new(0);
/// Worker names.
static NAMES: AtomicU64 = AtomicU64::new(0);

fn handled(seq: u64) {
    DONE.fetch_add(1, Ordering::Relaxed);
    if let Some(tx) = WAITERS.lock().unwrap().remove(&seq) {
        let _ = tx.send(());
    }
}

async fn apalis_noop(job: Mail) -> Result<(), BoxDynError> {
    handled(job.seq);
    Ok(())
}

fn ours_noop() -> impl tower::Service<
    Job<Mail>,
    Response = (),
    Error = Infallible,
    Future = std::future::Ready<Result<(), Infallible>>,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|job: Job<Mail>| {
        handled(job.data.seq);
        std::future::ready(Ok(()))
    })
}

struct Bench {
    server: RedisServer,
    quick: bool,
}

impl Bench {
    fn flush(&self) {
        self.server.command(&["FLUSHALL"]);
    }

    async fn ours(&self) -> Queue {
        // Events on, default retention: what a user gets.
        Queue::connect_with(
            RedisConfig::standalone(self.server.url()).with_timeout(Duration::from_secs(10)),
            "bench",
            QueueConfig::default(),
        )
        .await
        .unwrap()
    }

    async fn apalis(&self) -> RedisStorage<Mail> {
        let conn = apalis_redis::connect(self.server.url()).await.unwrap();
        RedisStorage::new(conn)
    }

    fn jobs(&self) -> u64 {
        if self.quick { 20_000 } else { 100_000 }
    }
}

async fn enqueue_ours(b: &Bench, n: u64, batch: u64) -> f64 {
    b.flush();
    let q = b.ours().await;
    let start = Instant::now();
    for chunk in 0..n / batch {
        let jobs = (0..batch).map(|i| NewJob::new("mail", mail(chunk * batch + i)));
        q.add_bulk(jobs).await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn enqueue_apalis(b: &Bench, n: u64, batch: u64) -> f64 {
    b.flush();
    let mut s = b.apalis().await;
    let start = Instant::now();
    for chunk in 0..n / batch {
        let jobs = (0..batch).map(|i| mail(chunk * batch + i)).collect();
        s.push_bulk(jobs).await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn wait_done<E: std::fmt::Debug>(
    n: u64,
    apalis: Option<&tokio::task::JoinHandle<Result<(), E>>>,
) -> Duration {
    let start = Instant::now();
    let mut last = (0, Instant::now());
    while (DONE.load(Ordering::Relaxed) as u64) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let done = DONE.load(Ordering::Relaxed);
        assert!(
            !apalis.is_some_and(tokio::task::JoinHandle::is_finished),
            "the apalis worker stopped after {done} jobs"
        );
        if done != last.0 {
            last = (done, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(30),
            "no job finished for 30 s ({done} of {n} done)"
        );
    }
    start.elapsed()
}

async fn process_ours(b: &Bench, n: u64, concurrency: usize) -> f64 {
    b.flush();
    let q = b.ours().await;
    for chunk in 0..n / 1000 {
        q.add_bulk((0..1000).map(|i| NewJob::new("mail", mail(chunk * 1000 + i))))
            .await
            .unwrap();
    }
    DONE.store(0, Ordering::Relaxed);
    let worker = Worker::new(q, ours_noop()).concurrency(concurrency).start();
    let took = wait_done::<()>(n, None).await;
    worker.shutdown(Duration::from_secs(10)).await;
    n as f64 / took.as_secs_f64()
}

async fn process_apalis(b: &Bench, n: u64, concurrency: usize) -> f64 {
    b.flush();
    let mut s = b.apalis().await;
    for chunk in 0..n / 1000 {
        s.push_bulk((0..1000).map(|i| mail(chunk * 1000 + i)).collect())
            .await
            .unwrap();
    }
    promote_apalis_backlog(&s).await;
    DONE.store(0, Ordering::Relaxed);
    let worker = WorkerBuilder::new(format!(
        "bench-{concurrency}-{}",
        NAMES.fetch_add(1, Ordering::Relaxed)
    ))
    .backend(s)
    .concurrency(concurrency)
    .build(apalis_noop);
    let running = tokio::spawn(worker.run());
    let took = wait_done(n, Some(&running)).await;
    running.abort();
    n as f64 / took.as_secs_f64()
}

/// apalis-redis 1.0.0 pushes every job to its scheduled set, and its
/// fetch script moves all due jobs to the active list with one
/// `unpack(...)`, which fails past about 8 000 values (Lua's stack): a
/// worker started on a 100 000-job backlog stops with "too many results to
/// unpack". This does that move in chunks of 1 000 before the clock starts,
/// the way the fetch script would.
async fn promote_apalis_backlog(s: &RedisStorage<Mail>) {
    const PROMOTE: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], 0, ARGV[1], 'LIMIT', 0, 1000)
if #ids > 0 then
  redis.call('RPUSH', KEYS[2], unpack(ids))
  redis.call('ZREM', KEYS[1], unpack(ids))
  redis.call('DEL', KEYS[3])
  redis.call('LPUSH', KEYS[3], 1)
end
return #ids";
    let config = s.get_config().clone();
    let mut conn = s.clone().get_connection().clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    loop {
        let moved: u64 = redis::Script::new(PROMOTE)
            .key(config.scheduled_jobs_set())
            .key(config.active_jobs_list())
            .key(config.signal_list())
            .arg(now)
            .invoke_async(&mut conn)
            .await
            .unwrap();
        if moved == 0 {
            break;
        }
    }
}

/// `concurrency` tasks, each adding one job and waiting until the handler
/// has run it, for `per_task` jobs; returns p50 and p99 in µs.
async fn latency<F, Fut>(
    side: &'static str,
    concurrency: usize,
    per_task: usize,
    add: F,
) -> (f64, f64)
where
    F: Fn(Mail) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    LOST.store(0, Ordering::Relaxed);
    let all = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let add = add.clone();
            let all = all.clone();
            tokio::spawn(async move {
                let mut mine = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
                    let (tx, rx) = oneshot::channel();
                    WAITERS.lock().unwrap().insert(seq, tx);
                    let start = Instant::now();
                    add(mail(seq)).await;
                    if tokio::time::timeout(Duration::from_secs(5), rx)
                        .await
                        .is_err()
                    {
                        // Counted, not measured: ee-queue must lose none (checked
                        // below); the anchor's losses are reported.
                        WAITERS.lock().unwrap().remove(&seq);
                        LOST.fetch_add(1, Ordering::Relaxed);
                        eprintln!("{side}: job {seq} did not run within 5 s");
                        continue;
                    }
                    mine.push(start.elapsed().as_secs_f64() * 1e6);
                }
                all.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let lost = LOST.load(Ordering::Relaxed);
    assert!(side != "ee-queue" || lost == 0, "ee-queue lost {lost} jobs");
    if lost > 0 {
        println!(
            "| ({side} lost {lost} of {} latency jobs at concurrency {concurrency}) | | | |",
            concurrency * per_task
        );
    }
    let mut v = all.lock().unwrap().clone();
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    (at(0.50), at(0.99))
}

async fn latency_ours(b: &Bench, concurrency: usize, per_task: usize) -> (f64, f64) {
    b.flush();
    let q = b.ours().await;
    let worker = Worker::new(q.clone(), ours_noop())
        .concurrency(concurrency)
        .start();
    let r = latency("ee-queue", concurrency, per_task, move |m| {
        let q = q.clone();
        async move {
            q.add("mail", &m, ee_queue::JobOptions::default())
                .await
                .unwrap();
        }
    })
    .await;
    worker.shutdown(Duration::from_secs(10)).await;
    r
}

async fn latency_apalis(b: &Bench, concurrency: usize, per_task: usize) -> (f64, f64) {
    b.flush();
    let s = b.apalis().await;
    let worker = WorkerBuilder::new(format!(
        "lat-{concurrency}-{}",
        NAMES.fetch_add(1, Ordering::Relaxed)
    ))
    .backend(s.clone())
    .concurrency(concurrency)
    .build(apalis_noop);
    let running = tokio::spawn(worker.run());
    let r = latency("apalis", concurrency, per_task, move |m| {
        let mut s = s.clone();
        async move {
            s.push(m).await.unwrap();
        }
    })
    .await;
    running.abort();
    r
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let b = Bench {
        server: RedisServer::start(),
        quick,
    };
    let n = b.jobs();
    rt.block_on(async {
        println!("ee-queue vs apalis-redis 1.0, one redis-server on loopback, {n} jobs per throughput run\n");
        println!("| measure | ee-queue | apalis | ratio |");
        println!("|---|---|---|---|");
        // A warm-up of each, not reported.
        enqueue_ours(&b, 10_000, 1000).await;
        enqueue_apalis(&b, 10_000, 1000).await;
        let ours = enqueue_ours(&b, n, 1000).await;
        let theirs = enqueue_apalis(&b, n, 1000).await;
        println!("| bulk enqueue (batches of 1 000), jobs/s | {ours:.0} | {theirs:.0} | {:.2}× |", ours / theirs);
        let only: Option<usize> = std::env::var("EE_QUEUE_BENCH_ONLY").ok().map(|v| v.parse().unwrap());
        for c in [1usize, 10, 50].into_iter().filter(|c| only.is_none_or(|o| o == *c)) {
            let jobs = if c == 1 { n / 5 } else { n };
            eprintln!("processing at concurrency {c}: ee-queue");
            let ours = process_ours(&b, jobs, c).await;
            eprintln!("processing at concurrency {c}: apalis");
            let theirs = process_apalis(&b, jobs, c).await;
            println!("| no-op processing, concurrency {c}, jobs/s | {ours:.0} | {theirs:.0} | {:.2}× |", ours / theirs);
        }
        for c in [1usize, 10, 50].into_iter().filter(|c| only.is_none_or(|o| o == *c)) {
            let per = if quick { 2000 / c } else { 10_000 / c };
            eprintln!("latency at concurrency {c}: ee-queue");
            let (o50, o99) = latency_ours(&b, c, per).await;
            eprintln!("latency at concurrency {c}: apalis");
            let (a50, a99) = latency_apalis(&b, c, per).await;
            println!("| add → handled latency, concurrency {c}, p50 / p99 µs | {o50:.0} / {o99:.0} | {a50:.0} / {a99:.0} | {:.2}× / {:.2}× |", a50 / o50, a99 / o99);
        }
    });
}
