//! The Redis worker's fetch loop: reserve places for jobs, take that many
//! in one script call under one lease token, hand them to runners (or to
//! the prefetch buffer), and wait for work when there is none; at shutdown,
//! put the unstarted ones back and let the running ones finish.

use std::collections::{HashMap, VecDeque};
use std::fmt::Display;
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ee_core::RedisConn;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tower::Service;

use super::acker::{Ack, acker, send};
use super::execute::{Outcome, RawJob};
use super::keeper::keeper;
use super::runner::run_jobs;
use super::{Job, RETRY_BACKOFF, ShutdownReport, sleep_or_stop, stopped};
use crate::config::WorkerConfig;
use crate::metrics::Meters;
use crate::queue::RedisQueue;
use crate::{Queue, QueueError, scripts};

/// Runs a worker of the Redis queue `redis` (which `queue` is) until told
/// to stop, then shuts it down.
pub(super) async fn run<T, S>(
    queue: Queue,
    redis: RedisQueue,
    service: S,
    config: WorkerConfig,
    mut stop: watch::Receiver<Option<Instant>>,
) -> ShutdownReport
where
    T: DeserializeOwned + Send + 'static,
    S: Service<Job<T>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send,
    S::Error: Display + Send,
{
    let mut fetch = FetchLoop::new(&queue, redis, service, config);
    while let Some(places) = fetch.reserve(&mut stop).await {
        if fetch.take_and_start(places, &mut stop).await.is_break() {
            break;
        }
    }
    fetch.shut_down(&stop).await
}

/// What a worker shares with its runners, acker and keeper.
pub(super) struct Shared {
    /// This worker's id; tokens are `<id>:<take number>`.
    pub(super) id: String,
    pub(super) queue: RedisQueue,
    pub(super) config: WorkerConfig,
    /// Jobs taken and not yet finished in Redis, with their tokens.
    pub(super) inflight: Mutex<HashMap<String, Arc<str>>>,
    /// Jobs taken (prefetched) and waiting for a free runner, in order.
    pub(super) buffer: Mutex<VecDeque<TakenJob>>,
}

/// One taken job with its token and its place among the jobs this worker
/// may hold.
pub(super) struct TakenJob {
    pub(super) raw: RawJob,
    pub(super) token: Arc<str>,
    pub(super) slot: OwnedSemaphorePermit,
}

/// TAKE's reply.
struct TakeReply {
    /// The jobs taken (as many as asked, or fewer).
    jobs: Vec<RawJob>,
    /// When none was taken: the ms until the next delayed job is due, if
    /// one is.
    next_due_ms: Option<u64>,
    /// The ms until the rate limit lets more jobs start (0: not limited).
    limited_ms: u64,
    /// The queue's clock (Redis' time plus any shift), in ms.
    now_ms: u64,
}

impl redis::FromRedisValue for TakeReply {
    /// `{jobs, next due ms (-1: none), limited ms, paused (1/0), now ms}`.
    fn from_redis_value(v: redis::Value) -> Result<Self, redis::ParsingError> {
        let (jobs, next_due, limited, _paused, now_ms): (Vec<RawJob>, i64, i64, i64, u64) =
            redis::FromRedisValue::from_redis_value(v)?;
        Ok(Self {
            jobs,
            next_due_ms: u64::try_from(next_due).ok(),
            limited_ms: u64::try_from(limited).unwrap_or(0),
            now_ms,
        })
    }
}

/// How a worker with nothing to run waits.
enum Wait {
    /// The rate limit is used up: sleep this long.
    Sleep(Duration),
    /// Block on the queue's marker for at most this long.
    Block(Duration),
}

/// The worker's background tasks, aborted when the worker's task ends or
/// is aborted (`WorkerHandle::abort`, a dropped runtime): a dead worker
/// must not go on renewing its leases.
struct Helpers {
    acker: Option<JoinHandle<()>>,
    keeper: JoinHandle<()>,
    scheduler: Option<JoinHandle<()>>,
}

impl Drop for Helpers {
    fn drop(&mut self) {
        self.keeper.abort();
        if let Some(s) = &self.scheduler {
            s.abort();
        }
        if let Some(acker) = &self.acker {
            acker.abort();
        }
    }
}

/// The fetch loop's state.
struct FetchLoop<T, S> {
    shared: Arc<Shared>,
    service: S,
    /// Places for the jobs this worker holds, running or prefetched.
    slots: Arc<Semaphore>,
    /// How many places `slots` has.
    held: usize,
    /// Places for running jobs (`concurrency`).
    runners: Arc<Semaphore>,
    acks: mpsc::UnboundedSender<Ack>,
    /// Tells the acker to record what it has and stop.
    flush_now: Arc<Notify>,
    helpers: Helpers,
    jobs: JoinSet<()>,
    /// The connection that blocks on the queue's marker, opened when first
    /// needed.
    blocker: Option<RedisConn>,
    takes: u64,
    /// Failed takes in a row.
    failures: u32,
    _job: PhantomData<fn(T)>,
}

impl<T, S> FetchLoop<T, S>
where
    T: DeserializeOwned + Send + 'static,
    S: Service<Job<T>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send,
    S::Error: Display + Send,
{
    /// The loop's state, with its acker, keeper and (unless configured
    /// not to) repeat scheduler running.
    fn new(queue: &Queue, redis: RedisQueue, service: S, config: WorkerConfig) -> Self {
        let held = config.concurrency + config.prefetch();
        let runners = Arc::new(Semaphore::new(config.concurrency));
        let schedule_repeats = config.schedule_repeats;
        let shared = Arc::new(Shared {
            id: worker_id(),
            inflight: Mutex::new(HashMap::new()),
            buffer: Mutex::new(VecDeque::new()),
            queue: redis,
            config,
        });
        let (acks, ack_rx) = mpsc::unbounded_channel();
        let flush_now = Arc::new(Notify::new());
        let helpers = Helpers {
            acker: Some(tokio::spawn(acker(
                shared.clone(),
                ack_rx,
                flush_now.clone(),
            ))),
            keeper: tokio::spawn(keeper(shared.clone())),
            scheduler: schedule_repeats.then(|| {
                let queue = queue.clone();
                tokio::spawn(
                    async move { crate::repeat::run(&queue, Duration::from_secs(1)).await },
                )
            }),
        };
        Self {
            shared,
            service,
            slots: Arc::new(Semaphore::new(held)),
            held,
            runners,
            acks,
            flush_now,
            helpers,
            jobs: JoinSet::new(),
            blocker: None,
            takes: 0,
            failures: 0,
            _job: PhantomData,
        }
    }

    /// Waits for at least one free place and reserves every free one;
    /// `None` once a shutdown is asked for.
    async fn reserve(
        &mut self,
        stop: &mut watch::Receiver<Option<Instant>>,
    ) -> Option<Vec<OwnedSemaphorePermit>> {
        while self.jobs.try_join_next().is_some() {}
        let first = tokio::select! {
            biased;
            () = stopped(stop) => return None,
            p = self.slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        if stop.borrow().is_some() {
            return None;
        }
        let mut places = vec![first];
        while let Ok(p) = self.slots.clone().try_acquire_owned() {
            places.push(p);
        }
        Some(places)
    }

    /// Takes up to one job per place and starts them; with none to take,
    /// waits for work (or backs off after a failure). Breaks when told to
    /// stop meanwhile.
    async fn take_and_start(
        &mut self,
        places: Vec<OwnedSemaphorePermit>,
        stop: &mut watch::Receiver<Option<Instant>>,
    ) -> ControlFlow<()> {
        self.takes += 1;
        let token: Arc<str> = format!("{}:{}", self.shared.id, self.takes).into();
        let taken = match self.shared.take(places.len(), &token).await {
            Ok(t) => {
                self.failures = 0;
                t
            }
            Err(e) => {
                drop(places);
                self.failures = self.failures.saturating_add(1);
                self.shared.backend_error("take", &e, self.failures);
                return sleep_or_stop(stop, RETRY_BACKOFF.delay(self.failures)).await;
            }
        };
        if taken.jobs.is_empty() {
            drop(places);
            let wait = self.idle_wait(&taken);
            return self
                .shared
                .wait_for_work(wait, &mut self.blocker, stop)
                .await;
        }
        self.start(taken, places, &token);
        ControlFlow::Continue(())
    }

    /// How to wait after a take that found nothing.
    fn idle_wait(&self, taken: &TakeReply) -> Wait {
        if taken.limited_ms > 0 {
            return Wait::Sleep(Duration::from_millis(taken.limited_ms));
        }
        let block = Duration::from_millis(self.shared.config.block_ms.max(10));
        Wait::Block(match taken.next_due_ms {
            Some(due) => block.min(Duration::from_millis(due)),
            None => block,
        })
    }

    /// Starts each taken job on a free runner, or queues it for the next
    /// runner that finishes.
    fn start(&mut self, taken: TakeReply, places: Vec<OwnedSemaphorePermit>, token: &Arc<str>) {
        for (raw, slot) in taken.jobs.into_iter().zip(places) {
            self.shared
                .meters()
                .wait
                .record(taken.now_ms.saturating_sub(raw.created_ms) as f64 / 1000.0);
            self.shared
                .inflight
                .lock()
                .expect("not poisoned")
                .insert(raw.id.clone(), token.clone());
            let job = TakenJob {
                raw,
                token: token.clone(),
                slot,
            };
            // Run it now if a runner is free, else queue it for the next
            // runner that finishes (decided under the buffer's lock, the
            // same lock a runner holds when it finds the buffer empty).
            let mut buffer = self.shared.buffer.lock().expect("not poisoned");
            match self.runners.clone().try_acquire_owned() {
                Ok(runner) => {
                    drop(buffer);
                    self.jobs.spawn(run_jobs(
                        self.shared.clone(),
                        job,
                        runner,
                        self.service.clone(),
                        self.acks.clone(),
                    ));
                }
                Err(_) => buffer.push_back(job),
            }
        }
    }

    /// No more takes: jobs taken but not started go back to the front of
    /// the queue; running ones finish until the deadline; the acker records
    /// every outcome, then stops.
    async fn shut_down(self, stop: &watch::Receiver<Option<Instant>>) -> ShutdownReport {
        let Self {
            shared,
            slots,
            held,
            acks,
            flush_now,
            mut helpers,
            mut jobs,
            ..
        } = self;
        let unstarted: Vec<TakenJob> = shared
            .buffer
            .lock()
            .expect("not poisoned")
            .drain(..)
            .collect();
        // Each goes back to the front: the last first, so the first is next.
        for t in unstarted.into_iter().rev() {
            send(&acks, t.raw.id, t.token, Outcome::Release);
            drop(t.slot);
        }
        let deadline = stop.borrow().unwrap_or_else(Instant::now);
        let all = u32::try_from(held).unwrap_or(u32::MAX);
        let finished = tokio::time::timeout_at(deadline.into(), slots.acquire_many(all)).await;
        let abandoned = if finished.is_ok() {
            0
        } else {
            let n = jobs.len();
            jobs.abort_all();
            n
        };
        drop(acks);
        flush_now.notify_one();
        if let Some(acker) = helpers.acker.take() {
            let _ = acker.await;
        }
        ShutdownReport { abandoned }
    }
}

impl Shared {
    pub(super) fn meters(&self) -> &Meters {
        &self.queue.inner.meters
    }

    /// Takes up to `n` ready jobs under lease `token` (one script call).
    async fn take(&self, n: usize, token: &str) -> Result<TakeReply, QueueError> {
        let q = &self.queue.inner;
        let mut call = scripts::TAKE.call();
        call.key(&q.meta)
            .arg(&q.base)
            .arg(n)
            .arg(self.config.lease_ms.max(100))
            .arg(token)
            .arg(q.config.events_max_len)
            .arg(self.config.rate_limit_max)
            .arg(self.config.rate_limit_window_ms.max(1));
        Ok(q.conn.invoke(&call).await?)
    }

    /// Waits for a job to be added (blocking on the queue's marker with a
    /// connection of its own), or sleeps. `Break` when told to stop.
    async fn wait_for_work(
        &self,
        wait: Wait,
        blocker: &mut Option<RedisConn>,
        stop: &mut watch::Receiver<Option<Instant>>,
    ) -> ControlFlow<()> {
        let block = match wait {
            Wait::Sleep(d) => return sleep_or_stop(stop, d).await,
            Wait::Block(d) => d,
        };
        if blocker.is_none() {
            let q = &self.queue.inner;
            let patience =
                Duration::from_millis(self.config.block_ms.max(10)) + Duration::from_secs(2);
            match RedisConn::connect(&q.redis).await {
                Ok(c) => *blocker = Some(c.with_timeout(patience)),
                Err(e) => {
                    self.backend_error("connect", &e.into(), 1);
                    return sleep_or_stop(stop, Duration::from_millis(500)).await;
                }
            }
        }
        let conn = blocker.as_ref().expect("just set");
        let mut cmd = redis::cmd("BZPOPMIN");
        cmd.arg(format!("{}marker", self.queue.inner.base))
            .arg(block.as_secs_f64().max(0.01));
        tokio::select! {
            biased;
            () = stopped(stop) => ControlFlow::Break(()),
            r = conn.query::<redis::Value>(&cmd) => {
                if let Err(e) = r {
                    // A dropped blocking connection is made again next time.
                    *blocker = None;
                    self.backend_error("block", &e.into(), 1);
                    return sleep_or_stop(stop, Duration::from_millis(200)).await;
                }
                ControlFlow::Continue(())
            }
        }
    }

    /// Counts a failed Redis call; logs the first of an outage, then every
    /// 30th.
    pub(super) fn backend_error(&self, what: &'static str, e: &QueueError, failures: u32) {
        self.meters().backend_errors.increment(1);
        if failures == 1 || failures.is_multiple_of(30) {
            tracing::warn!(queue = %self.queue.name(), error = %e, failures, "queue worker: {what} failed");
        }
    }
}

fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let r: u64 = rand::random();
    format!("{host}:{}:{r:016x}", std::process::id())
}
