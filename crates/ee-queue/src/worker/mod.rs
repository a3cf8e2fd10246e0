//! Workers: take jobs, run them through a tower `Service`, record the
//! outcome; renew leases, recover stalled jobs, shut down gracefully.
//!
//! One [`Worker`] type runs the jobs of either backend of a
//! [`Queue`](crate::Queue):
//!
//! - On Redis, a **fetch loop** (`fetch`) takes jobs in batches under a
//!   lease, up to the free runners plus the prefetch, and blocks on the
//!   queue's marker when there are none; **runners** (`runner`) run them
//!   (`execute`: decode, trace, timeout, panic, backoff); an **acker**
//!   (`acker`) records outcomes in batches; a **keeper** (`keeper`) renews
//!   the leases and looks for stalled jobs. Every worker also schedules the
//!   queue's repeatable jobs unless told not to.
//! - In memory (`memory`), one loop takes a job whenever a runner is free
//!   and records its outcome when it ends; there are no leases to keep.

use std::collections::HashMap;
use std::fmt::Display;
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ee_core::Backoff;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tower::Service;

use crate::config::WorkerConfig;
use crate::queue::{Backend, MemoryQueue, RedisQueue};
use crate::{Queue, QueueError, scripts};

mod acker;
mod execute;
mod fetch;
mod keeper;
mod memory;
mod runner;

pub(crate) use execute::{Outcome, RawJob};

/// How long a worker waits before it calls Redis again after `failures`
/// failed calls in a row: 100 ms, doubling, at most 2 s.
const RETRY_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

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
    Redis { queue: RedisQueue, token: Arc<str> },
    /// An in-process queue.
    Memory(MemoryQueue),
}

impl<T> Job<T> {
    /// The results of this job's completed children (a flow's parent), by
    /// child id. A job in memory has none (flows need Redis).
    ///
    /// # Errors
    /// A result that does not decode as `R` (400); Redis unavailable (503).
    pub async fn children<R: DeserializeOwned>(&self) -> Result<HashMap<String, R>, QueueError> {
        match &self.handle {
            JobHandle::Redis { queue, .. } => queue.children_results(&self.id).await,
            JobHandle::Memory(_) => Ok(HashMap::new()),
        }
    }

    /// Records the job's progress (any JSON value; a percentage, a step
    /// name) and, in Redis, publishes a `progress` event.
    ///
    /// # Errors
    /// [`QueueError::WrongState`] when this worker no longer holds the job;
    /// a value that does not serialize (400); Redis unavailable (503).
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

/// Runs the jobs of one queue, in Redis or in memory, through a tower
/// [`Service`].
///
/// The service takes [`Job<T>`]; its response is stored as the job's
/// result (JSON) and its error (`Display`) as the failure reason. Any tower
/// layer can wrap it (timeouts, metrics, tracing, rate limits).
///
/// On Redis, delivery is at least once: a job is moved from waiting to
/// active with a lease the worker renews; if the worker dies, the
/// stalled-job checker of any worker moves the job back after the lease
/// runs out. In memory the settings about leases, blocking, batches,
/// prefetch and repeats have nothing to act on; `concurrency` and the rate
/// limit apply.
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
    /// Jobs still running at the deadline. On Redis they were dropped and
    /// their leases left to run out, so another worker runs them again; in
    /// memory they went back to the front of the queue.
    pub abandoned: usize,
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<Option<Instant>>,
    task: tokio::task::JoinHandle<ShutdownReport>,
}

impl WorkerHandle {
    /// Stops taking jobs, lets the running ones finish for up to `deadline`,
    /// records their outcomes, then stops. (In memory, queued jobs still run
    /// until none is ready or the deadline passes: they live nowhere else.)
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
    /// outcome (on Redis their leases are left to run out).
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
        crate::metrics::describe_metrics();
        Self {
            queue,
            service,
            config: WorkerConfig::default(),
            _job: PhantomData,
        }
    }

    /// Replaces every setting with `config`.
    ///
    /// # Errors
    /// None today: out-of-range values are raised to their floor as each
    /// field of [`WorkerConfig`] says. The `Result` is the one shape every
    /// ee builder applies its configuration with.
    pub fn config(mut self, config: &WorkerConfig) -> Result<Self, QueueError> {
        self.config = config.clone();
        Ok(self)
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
    pub fn start(mut self) -> WorkerHandle {
        self.config.concurrency = self.config.concurrency.max(1);
        let (stop, stopped) = watch::channel(None);
        let task = match self.queue.backend().clone() {
            Backend::Redis(queue) => tokio::spawn(fetch::run(
                self.queue,
                queue,
                self.service,
                self.config,
                stopped,
            )),
            Backend::Memory(queue) => {
                tokio::spawn(memory::run(queue, self.service, self.config, stopped))
            }
        };
        WorkerHandle { stop, task }
    }
}

/// Sleeps for `d`; `Break` when told to stop meanwhile.
async fn sleep_or_stop(
    stop: &mut watch::Receiver<Option<Instant>>,
    d: Duration,
) -> ControlFlow<()> {
    tokio::select! {
        biased;
        () = stopped(stop) => ControlFlow::Break(()),
        () = tokio::time::sleep(d) => ControlFlow::Continue(()),
    }
}

/// Resolves once a shutdown is asked for; never when the handle was dropped
/// without asking (the worker then runs on, detached).
async fn stopped(stop: &mut watch::Receiver<Option<Instant>>) {
    loop {
        if stop.borrow_and_update().is_some() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
