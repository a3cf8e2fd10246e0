//! Workers: take jobs, run them through a tower `Service`, record the
//! outcome; renew leases, recover stalled jobs, shut down gracefully.

use std::collections::{HashMap, VecDeque};
use std::fmt::Display;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ee_core::RedisConn;
use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tower::{Service, ServiceExt};

use crate::config::WorkerConfig;
use crate::job::JobOptions;
use crate::{Queue, QueueError, scripts};

/// A job as a worker's service receives it.
#[derive(Debug)]
pub struct Job<T> {
    /// The job's id.
    pub id: String,
    /// The name given at `add`.
    pub name: String,
    /// The payload, decoded.
    pub data: T,
    /// Which attempt this is (1 for the first).
    pub attempt: u32,
    /// When it was added (ms since the Unix epoch, Redis' clock).
    pub created_ms: u64,
    /// The W3C `traceparent` of the code that added it, if any.
    pub traceparent: Option<String>,
    handle: JobHandle,
}

/// Where a running job's progress and children live.
#[derive(Debug, Clone)]
pub(crate) enum JobHandle {
    /// A Redis queue, and the token the job was taken with.
    Redis { queue: Queue, token: Arc<str> },
    /// An in-process queue.
    Memory(crate::memory::MemoryQueue),
}

impl<T> Job<T> {
    /// The results of this job's completed children (a flow's parent), by
    /// child id.
    pub async fn children<R: DeserializeOwned>(&self) -> Result<HashMap<String, R>, QueueError> {
        match &self.handle {
            JobHandle::Redis { queue, .. } => queue.children_results(&self.id).await,
            // Flows need Redis: an in-process job has no children.
            JobHandle::Memory(_) => Ok(HashMap::new()),
        }
    }

    /// Records the job's progress (any JSON value; a percentage, a step
    /// name) and publishes a `progress` event. Fails with
    /// [`QueueError::WrongState`] when this worker no longer holds the job.
    pub async fn progress<P: Serialize + ?Sized>(&self, progress: &P) -> Result<(), QueueError> {
        let value =
            serde_json::to_string(progress).map_err(|e| QueueError::Serialize(e.to_string()))?;
        let (queue, token) = match &self.handle {
            JobHandle::Redis { queue, token } => (queue, token),
            JobHandle::Memory(q) => return q.set_progress(&self.id, value),
        };
        let q = &queue.inner;
        let mut call = scripts::PROGRESS.call();
        call.key(&q.meta)
            .arg(&q.base)
            .arg(q.config.events_max_len)
            .arg(&**token)
            .arg(&self.id)
            .arg(value);
        let held: u8 = q.conn.invoke(&call).await?;
        if held == 1 {
            Ok(())
        } else {
            Err(QueueError::WrongState {
                id: self.id.clone(),
                state: "no longer held by this worker".into(),
                action: "progress",
                needs: "active with this worker's lease",
            })
        }
    }
}

/// Runs the jobs of one queue through a tower [`Service`].
///
/// The service takes [`Job<T>`]; its response is stored as the job's
/// result (JSON) and its error (`Display`) as the failure reason. Any tower
/// layer can wrap it (timeouts, metrics, tracing, rate limits).
///
/// Delivery is at least once: a job is moved from waiting to active with a
/// lease the worker renews; if the worker dies, the stalled-job checker of
/// any worker moves the job back after the lease runs out.
pub struct Worker<T, S> {
    queue: Queue,
    service: S,
    config: WorkerConfig,
    _job: PhantomData<fn(T)>,
}

impl<T, S> std::fmt::Debug for Worker<T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.queue.name())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What a [`WorkerHandle::shutdown`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Jobs still running at the deadline; they were dropped, and their
    /// leases left to run out so another worker runs them again.
    pub abandoned: usize,
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    pub(crate) stop: watch::Sender<Option<Instant>>,
    pub(crate) task: tokio::task::JoinHandle<ShutdownReport>,
}

impl WorkerHandle {
    /// Stops taking jobs, lets the running ones finish for up to `deadline`,
    /// records their outcomes, then stops.
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        let _ = self.stop.send(Some(Instant::now() + deadline));
        match self.task.await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = %e, "the worker task failed");
                ShutdownReport { abandoned: 0 }
            }
        }
    }

    /// Stops at once, as a crash would: running jobs are dropped without an
    /// outcome and their leases left to run out.
    pub fn abort(self) {
        self.task.abort();
    }
}

impl<T, S> Worker<T, S>
where
    T: DeserializeOwned + Send + 'static,
    S: Service<Job<T>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send,
    S::Error: Display + Send,
{
    /// A worker of `queue` with default settings (10 at once).
    pub fn new(queue: Queue, service: S) -> Self {
        Self {
            queue,
            service,
            config: WorkerConfig::default(),
            _job: PhantomData,
        }
    }

    /// Replaces every setting.
    #[must_use]
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Runs up to `n` jobs at once (at least 1).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n;
        self
    }

    /// At most `max` jobs start per `window` across every worker of the
    /// queue (give each worker the same limit).
    #[must_use]
    pub fn rate_limit(mut self, max: u64, window: Duration) -> Self {
        self.config.rate_limit_max = max;
        self.config.rate_limit_window_ms = crate::job::millis(window).max(1);
        self
    }

    /// Starts the worker on the current tokio runtime.
    pub fn start(self) -> WorkerHandle {
        let (stop, stopped) = watch::channel(None);
        let task = tokio::spawn(self.run(stopped));
        WorkerHandle { stop, task }
    }

    async fn run(mut self, mut stop: watch::Receiver<Option<Instant>>) -> ShutdownReport {
        self.config.concurrency = self.config.concurrency.max(1);
        let shared = Arc::new(Shared {
            id: worker_id(),
            inflight: Mutex::new(HashMap::new()),
            buffer: Mutex::new(VecDeque::new()),
            queue: self.queue.clone(),
            config: self.config.clone(),
        });
        let prefetch = self.config.prefetch();
        let held = self.config.concurrency + prefetch;
        let slots = Arc::new(Semaphore::new(held));
        let running = Arc::new(Semaphore::new(self.config.concurrency));
        let (acks, ack_rx) = mpsc::unbounded_channel();
        let flush_now = Arc::new(Notify::new());
        // Aborted with the worker (`WorkerHandle::abort`, a dropped runtime):
        // a dead worker must not go on renewing its leases.
        let mut helpers = Helpers {
            acker: Some(tokio::spawn(acker(
                shared.clone(),
                ack_rx,
                flush_now.clone(),
            ))),
            keeper: tokio::spawn(keeper(shared.clone())),
            scheduler: self.config.schedule_repeats.then(|| {
                let queue = self.queue.clone();
                tokio::spawn(
                    async move { crate::repeat::run(&queue, Duration::from_secs(1)).await },
                )
            }),
        };
        let mut jobs = tokio::task::JoinSet::new();
        let mut blocker: Option<RedisConn> = None;
        let mut seq = 0u64;
        let mut failures = 0u32;
        loop {
            while jobs.try_join_next().is_some() {}
            let first = tokio::select! {
                biased;
                () = stopped(&mut stop) => break,
                p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            if stop.borrow().is_some() {
                break;
            }
            let mut permits = vec![first];
            while let Ok(p) = slots.clone().try_acquire_owned() {
                permits.push(p);
            }
            seq += 1;
            let token: Arc<str> = format!("{}:{seq}", shared.id).into();
            let taken = shared.take(permits.len(), &token).await;
            let taken = match taken {
                Ok(t) => {
                    failures = 0;
                    t
                }
                Err(e) => {
                    drop(permits);
                    failures += 1;
                    shared.backend_error("take", &e, failures);
                    if sleep_or_stop(&mut stop, backoff(failures)).await {
                        break;
                    }
                    continue;
                }
            };
            if taken.jobs.is_empty() {
                drop(permits);
                let wait = if taken.limited_ms > 0 {
                    Wait::Sleep(Duration::from_millis(taken.limited_ms))
                } else {
                    let block = Duration::from_millis(self.config.block_ms.max(10));
                    Wait::Block(match taken.next_due_ms {
                        Some(due) => block.min(Duration::from_millis(due)),
                        None => block,
                    })
                };
                if shared.wait_for_work(wait, &mut blocker, &mut stop).await {
                    break;
                }
                continue;
            }
            for (raw, slot) in taken.jobs.into_iter().zip(permits) {
                shared
                    .meters()
                    .wait
                    .record(taken.now_ms.saturating_sub(raw.created_ms) as f64 / 1000.0);
                shared
                    .inflight
                    .lock()
                    .expect("not poisoned")
                    .insert(raw.id.clone(), token.clone());
                let taken = Taken1 {
                    raw,
                    token: token.clone(),
                    slot,
                };
                // Run it now if a runner is free, else queue it for the next
                // runner that finishes (decided under the buffer's lock, the
                // same lock a runner holds when it finds the buffer empty).
                let mut buffer = shared.buffer.lock().expect("not poisoned");
                match running.clone().try_acquire_owned() {
                    Ok(runner) => {
                        drop(buffer);
                        jobs.spawn(run_jobs(
                            shared.clone(),
                            taken,
                            runner,
                            self.service.clone(),
                            acks.clone(),
                        ));
                    }
                    Err(_) => buffer.push_back(taken),
                }
            }
        }
        // Shutting down: no more takes; jobs taken but not started go back
        // to the front of the queue; running ones finish until the deadline.
        let unstarted: Vec<Taken1> = shared
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
        drop(helpers);
        ShutdownReport { abandoned }
    }
}

/// The worker's background tasks, aborted when the worker's task ends or
/// is aborted.
struct Helpers {
    acker: Option<tokio::task::JoinHandle<()>>,
    keeper: tokio::task::JoinHandle<()>,
    scheduler: Option<tokio::task::JoinHandle<()>>,
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

/// What a worker shares with its job tasks, acker and keeper.
struct Shared {
    /// This worker's id; tokens are `<id>:<take number>`.
    id: String,
    queue: Queue,
    config: WorkerConfig,
    /// Jobs taken and not yet finished in Redis, with their tokens.
    inflight: Mutex<HashMap<String, Arc<str>>>,
    /// Jobs taken (prefetched) and waiting for a free runner, in order.
    buffer: Mutex<VecDeque<Taken1>>,
}

/// One taken job with its token and its place among the jobs this worker
/// may hold.
struct Taken1 {
    raw: RawJob,
    token: Arc<str>,
    slot: OwnedSemaphorePermit,
}

pub(crate) struct RawJob {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) data: String,
    pub(crate) attempts_made: u32,
    pub(crate) created_ms: u64,
    pub(crate) traceparent: String,
    pub(crate) options: String,
}

struct Taken {
    jobs: Vec<RawJob>,
    next_due_ms: Option<u64>,
    limited_ms: u64,
    now_ms: u64,
}

enum Wait {
    Sleep(Duration),
    Block(Duration),
}

pub(crate) enum Outcome {
    Completed(String),
    Retry(String, u64),
    Failed(String),
    /// Taken but never started (shutdown): back to the front of the queue,
    /// no attempt counted.
    Release,
}

struct Ack {
    id: String,
    token: Arc<str>,
    outcome: Outcome,
}

type RawReply = (
    Vec<(String, String, String, u32, u64, String, String)>,
    i64,
    i64,
    i64,
    u64,
);

impl Shared {
    fn meters(&self) -> &crate::metrics::Meters {
        &self.queue.inner.meters
    }

    async fn take(&self, n: usize, token: &str) -> Result<Taken, QueueError> {
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
        let (jobs, next, limited, _paused, now): RawReply = q.conn.invoke(&call).await?;
        Ok(Taken {
            jobs: jobs
                .into_iter()
                .map(
                    |(id, name, data, attempts_made, created_ms, traceparent, options)| RawJob {
                        id,
                        name,
                        data,
                        attempts_made,
                        created_ms,
                        traceparent,
                        options,
                    },
                )
                .collect(),
            next_due_ms: u64::try_from(next).ok(),
            limited_ms: u64::try_from(limited).unwrap_or(0),
            now_ms: now,
        })
    }

    /// Waits for a job to be added (blocking on the queue's marker with a
    /// connection of its own), or sleeps. True when told to stop.
    async fn wait_for_work(
        &self,
        wait: Wait,
        blocker: &mut Option<RedisConn>,
        stop: &mut watch::Receiver<Option<Instant>>,
    ) -> bool {
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
            () = stopped(stop) => true,
            r = conn.query::<redis::Value>(&cmd) => {
                if let Err(e) = r {
                    // A dropped blocking connection is made again next time.
                    *blocker = None;
                    self.backend_error("block", &e.into(), 1);
                    return sleep_or_stop(stop, Duration::from_millis(200)).await;
                }
                false
            }
        }
    }

    fn backend_error(&self, what: &'static str, e: &QueueError, failures: u32) {
        self.meters().backend_errors.increment(1);
        // Logged once per outage (first failure), then every 30th.
        if failures == 1 || failures.is_multiple_of(30) {
            tracing::warn!(queue = %self.queue.name(), error = %e, failures, "queue worker: {what} failed");
        }
    }

    async fn finish(&self, batch: &[Ack]) -> Result<Vec<String>, QueueError> {
        let q = &self.queue.inner;
        let mut call = scripts::FINISH.call();
        call.key(&q.meta)
            .arg(&q.base)
            .arg(q.config.events_max_len)
            .arg(batch.len())
            .arg(&q.keep_completed)
            .arg(&q.keep_failed);
        for ack in batch {
            call.arg(&ack.id).arg(&*ack.token);
            match &ack.outcome {
                Outcome::Completed(v) => call.arg("c").arg(v).arg(0),
                Outcome::Retry(e, delay) => call.arg("r").arg(e).arg(*delay),
                Outcome::Failed(e) => call.arg("f").arg(e).arg(0),
                Outcome::Release => call.arg("l").arg("").arg(0),
            };
        }
        Ok(q.conn.invoke(&call).await?)
    }
}

/// A runner: runs `first`, then whatever the fetch loop queued meanwhile,
/// and gives its place back when the queue is empty.
async fn run_jobs<T, S>(
    shared: Arc<Shared>,
    first: Taken1,
    runner: OwnedSemaphorePermit,
    service: S,
    acks: mpsc::UnboundedSender<Ack>,
) where
    T: DeserializeOwned + Send + 'static,
    S: Service<Job<T>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send,
    S::Error: Display + Send,
{
    let mut runner = Some(runner);
    let mut next = Some(first);
    while let Some(taken) = next {
        process(&shared, taken, service.clone(), &acks).await;
        let mut buffer = shared.buffer.lock().expect("not poisoned");
        next = buffer.pop_front();
        if next.is_none() {
            drop(runner.take());
        }
    }
}

/// Runs one job and hands its outcome to the acker.
async fn process<T, S>(
    shared: &Arc<Shared>,
    taken: Taken1,
    service: S,
    acks: &mpsc::UnboundedSender<Ack>,
) where
    T: DeserializeOwned + Send + 'static,
    S: Service<Job<T>> + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send,
    S::Error: Display + Send,
{
    let Taken1 {
        raw,
        token,
        slot: permit,
    } = taken;
    let id = raw.id.clone();
    let handle = JobHandle::Redis {
        queue: shared.queue.clone(),
        token: token.clone(),
    };
    let outcome = execute(raw, handle, service, shared.meters()).await;
    send(acks, id, token, outcome);
    drop(permit);
}

/// Runs one taken job through `service` (decoded, in its producer's trace,
/// under its timeout, a panic caught) and says what to record: completed,
/// retried after the backoff, or failed for good.
pub(crate) async fn execute<T, S>(
    raw: RawJob,
    handle: JobHandle,
    service: S,
    meters: &crate::metrics::Meters,
) -> Outcome
where
    T: DeserializeOwned + Send + 'static,
    S: Service<Job<T>> + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send,
    S::Error: Display + Send,
{
    let options: JobOptions = if raw.options.is_empty() {
        JobOptions::default()
    } else {
        serde_json::from_str(&raw.options).unwrap_or_default()
    };
    let attempt = raw.attempts_made.saturating_add(1);
    let started = Instant::now();
    let result: Result<String, String> = match serde_json::from_str::<T>(&raw.data) {
        Err(e) => {
            // Decoding will not succeed on a retry: fail for good.
            return Outcome::Failed(format!(
                "the payload does not decode as this worker's job type: {e}"
            ));
        }
        Ok(data) => {
            let traceparent = (!raw.traceparent.is_empty()).then_some(raw.traceparent);
            let trace = traceparent
                .as_deref()
                .and_then(|tp| ee_logging::TraceContext::parse(tp, None))
                .map(|c| c.child());
            let job = Job {
                id: raw.id,
                name: raw.name,
                data,
                attempt,
                created_ms: raw.created_ms,
                traceparent,
                handle,
            };
            let call = async move {
                let mut service = service;
                let ready = service.ready().await.map_err(|e| e.to_string())?;
                ready.call(job).await.map_err(|e| e.to_string())
            };
            let call = AssertUnwindSafe(call).catch_unwind();
            let run = async move {
                match trace {
                    Some(ctx) => ctx.scope(None, call).await,
                    None => call.await,
                }
            };
            let run = async move {
                match options.timeout {
                    Some(limit) => tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
                        Ok(Err(format!(
                            "the job timed out after {} ms",
                            limit.as_millis()
                        )))
                    }),
                    None => run.await,
                }
            };
            match run.await {
                Ok(Ok(value)) => serde_json::to_string(&value)
                    .map_err(|e| format!("the handler's result does not serialize: {e}")),
                Ok(Err(e)) => Err(e),
                Err(panic) => Err(format!("the handler panicked: {}", panic_message(&*panic))),
            }
        }
    };
    meters.processing.record(started.elapsed().as_secs_f64());
    match result {
        Ok(value) => Outcome::Completed(value),
        Err(reason) if attempt < options.attempts.unwrap_or(1) => {
            let delay = options.backoff.map_or(0, |b| {
                crate::job::millis(b.delay(attempt, rand::random::<f64>()))
            });
            Outcome::Retry(reason, delay)
        }
        Err(reason) => Outcome::Failed(reason),
    }
}

fn send(acks: &mpsc::UnboundedSender<Ack>, id: String, token: Arc<str>, outcome: Outcome) {
    // The acker lives until every sender is gone.
    let _ = acks.send(Ack { id, token, outcome });
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Records outcomes in batches: whatever arrived while the previous batch
/// was in flight goes in the next call.
async fn acker(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Ack>, flush_now: Arc<Notify>) {
    let cap = shared.config.finish_batch.max(1);
    let mut closing = false;
    loop {
        let first = if closing {
            match rx.try_recv() {
                Ok(a) => a,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                a = rx.recv() => match a {
                    Some(a) => a,
                    None => return,
                },
                () = flush_now.notified() => {
                    closing = true;
                    continue;
                }
            }
        };
        let mut batch = vec![first];
        while batch.len() < cap {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        let mut failures = 0;
        let lost = loop {
            match shared.finish(&batch).await {
                Ok(lost) => break Some(lost),
                Err(e) => {
                    failures += 1;
                    shared.backend_error("finish", &e, failures);
                    if failures >= 10 {
                        // Left active: the stalled-job checker runs them again.
                        break None;
                    }
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        };
        let meters = shared.meters();
        {
            let mut inflight = shared.inflight.lock().expect("not poisoned");
            for ack in &batch {
                if inflight.get(&ack.id).is_some_and(|t| *t == ack.token) {
                    inflight.remove(&ack.id);
                }
            }
        }
        let Some(lost) = lost else { continue };
        for ack in &batch {
            if lost.contains(&ack.id) {
                continue;
            }
            match ack.outcome {
                Outcome::Completed(_) => meters.completed.increment(1),
                Outcome::Retry(..) => meters.retried.increment(1),
                Outcome::Failed(_) => meters.failed.increment(1),
                Outcome::Release => {}
            }
        }
        if !lost.is_empty() {
            meters.lost.increment(lost.len() as u64);
            tracing::warn!(queue = %shared.queue.name(), jobs = ?lost, "finished jobs whose lease was lost (another worker runs them)");
        }
    }
}

/// Renews this worker's leases at half the lease, and looks for stalled
/// jobs (and publishes the queue depth) every stalled interval.
async fn keeper(shared: Arc<Shared>) {
    let lease = shared.config.lease();
    let mut renew = tokio::time::interval(lease / 2);
    let mut check = tokio::time::interval(Duration::from_millis(
        shared.config.stalled_interval_ms.max(100),
    ));
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0;
    loop {
        let result = tokio::select! {
            _ = renew.tick() => shared.renew().await,
            _ = check.tick() => shared.check_stalled().await,
        };
        match result {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                shared.backend_error("lease upkeep", &e, failures);
            }
        }
    }
}

impl Shared {
    async fn renew(&self) -> Result<(), QueueError> {
        let held: Vec<(String, Arc<str>)> = self
            .inflight
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(id, t)| (id.clone(), t.clone()))
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        let q = &self.queue.inner;
        let mut call = scripts::RENEW.call();
        call.key(&q.meta)
            .arg(&q.base)
            .arg(self.config.lease_ms.max(100));
        for (id, token) in &held {
            call.arg(id).arg(&**token);
        }
        let lost: Vec<String> = q.conn.invoke(&call).await?;
        if !lost.is_empty() {
            tracing::warn!(queue = %self.queue.name(), jobs = ?lost, "leases lost while the jobs run (they stalled and another worker may run them)");
        }
        Ok(())
    }

    async fn check_stalled(&self) -> Result<(), QueueError> {
        let q = &self.queue.inner;
        let mut call = scripts::STALLED.call();
        call.key(&q.meta)
            .arg(&q.base)
            .arg(q.config.events_max_len)
            .arg(self.config.max_stalled);
        let (back, failed): (Vec<String>, Vec<String>) = q.conn.invoke(&call).await?;
        if !back.is_empty() || !failed.is_empty() {
            self.meters()
                .stalled
                .increment((back.len() + failed.len()) as u64);
            self.meters().failed.increment(failed.len() as u64);
            tracing::warn!(queue = %self.queue.name(), requeued = ?back, failed = ?failed, "stalled jobs found");
        }
        self.queue.counts().await?;
        Ok(())
    }
}

/// Sleeps for `d`; true when told to stop meanwhile.
async fn sleep_or_stop(stop: &mut watch::Receiver<Option<Instant>>, d: Duration) -> bool {
    tokio::select! {
        biased;
        () = stopped(stop) => true,
        () = tokio::time::sleep(d) => false,
    }
}

/// Resolves once a shutdown is asked for; never when the handle was dropped
/// without asking (the worker then runs on, detached).
pub(crate) async fn stopped(stop: &mut watch::Receiver<Option<Instant>>) {
    loop {
        if stop.borrow_and_update().is_some() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << failures.min(6)).min(2000))
}

fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let r: u64 = rand::random();
    format!("{host}:{}:{r:016x}", std::process::id())
}
