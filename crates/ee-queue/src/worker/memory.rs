//! The worker of a queue in memory: whenever a runner is free, take the
//! next ready job and run it; record its outcome when it ends. At shutdown
//! the queue's jobs still run (they live only in this process) until none
//! is ready or the deadline passes; runs cut off then go back to the front.

use std::fmt::Display;
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::futures::Notified;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tower::Service;

use super::execute::{Outcome, RawJob, execute};
use super::{Job, JobHandle, ShutdownReport, stopped};
use crate::config::WorkerConfig;
use crate::queue::{MemoryQueue, RateLimit};

/// Runs a worker of the in-memory `queue` until told to stop and drained,
/// or until the deadline.
pub(super) async fn run<T, S>(
    queue: MemoryQueue,
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
    let mut runs = MemoryLoop::new(queue, service, &config);
    loop {
        // After `shutdown`: the queue's jobs still run until none is ready
        // or the deadline passes.
        let draining = *stop.borrow();
        if draining.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let permit = match runs.free_runner(draining, &mut stop).await {
            Free::Runner(p) => p,
            Free::LookAgain => continue,
            Free::Deadline => break,
        };
        // Register for a wake-up before looking, so none is missed.
        let queue = runs.queue.clone();
        let mut ready = std::pin::pin!(queue.ready().notified());
        ready.as_mut().enable();
        let look = queue.look(runs.limit);
        let Some(raw) = look.job else {
            drop(permit);
            if runs
                .idle(ready, look.wake_in_ms, draining, &mut stop)
                .await
                .is_break()
            {
                break;
            }
            continue;
        };
        runs.start(raw, permit);
    }
    runs.shut_down(&stop).await
}

/// What waiting for a free runner gave.
enum Free {
    Runner(OwnedSemaphorePermit),
    /// A shutdown was asked for meanwhile: look at the deadline again.
    LookAgain,
    /// The shutdown's deadline passed.
    Deadline,
}

/// The loop's state.
struct MemoryLoop<T, S> {
    queue: MemoryQueue,
    service: S,
    /// Places for running jobs (`concurrency`).
    slots: Arc<Semaphore>,
    running: JoinSet<()>,
    /// The ids of the jobs running, to put back if cut off.
    inflight: Arc<Mutex<Vec<String>>>,
    limit: Option<RateLimit>,
    _job: PhantomData<fn(T)>,
}

impl<T, S> MemoryLoop<T, S>
where
    T: DeserializeOwned + Send + 'static,
    S: Service<Job<T>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send,
    S::Error: Display + Send,
{
    fn new(queue: MemoryQueue, service: S, config: &WorkerConfig) -> Self {
        Self {
            queue,
            service,
            slots: Arc::new(Semaphore::new(config.concurrency)),
            running: JoinSet::new(),
            inflight: Arc::default(),
            limit: (config.rate_limit_max > 0).then(|| RateLimit {
                max: config.rate_limit_max,
                window_ms: config.rate_limit_window_ms.max(1),
            }),
            _job: PhantomData,
        }
    }

    /// Waits for a free runner.
    async fn free_runner(
        &mut self,
        draining: Option<Instant>,
        stop: &mut watch::Receiver<Option<Instant>>,
    ) -> Free {
        let slot = self.slots.clone().acquire_owned();
        match draining {
            None => tokio::select! {
                p = slot => Free::Runner(p.expect("never closed")),
                () = stopped(stop) => Free::LookAgain,
            },
            Some(d) => tokio::select! {
                p = slot => Free::Runner(p.expect("never closed")),
                () = tokio::time::sleep_until(d.into()) => Free::Deadline,
            },
        }
    }

    /// Nothing to take: waits for a job to become ready, for `wake_in_ms`
    /// (a delayed job due, the rate limit lifting) or for a shutdown.
    /// While draining, breaks once nothing is running and nothing will be
    /// ready before the deadline.
    async fn idle(
        &mut self,
        ready: Pin<&mut Notified<'_>>,
        wake_in_ms: Option<u64>,
        draining: Option<Instant>,
        stop: &mut watch::Receiver<Option<Instant>>,
    ) -> ControlFlow<()> {
        let nap = Duration::from_millis(wake_in_ms.unwrap_or(1_000).max(1));
        let Some(deadline) = draining else {
            tokio::select! {
                () = ready => {}
                () = tokio::time::sleep(nap) => {}
                () = stopped(stop) => {}
            }
            return ControlFlow::Continue(());
        };
        // A running job may still queue a retry, or a delayed one fall due
        // before the deadline.
        while self.running.try_join_next().is_some() {}
        let due_in_time =
            wake_in_ms.is_some_and(|ms| Instant::now() + Duration::from_millis(ms) < deadline);
        if self.running.is_empty() && !due_in_time {
            return ControlFlow::Break(());
        }
        tokio::select! {
            () = ready => {}
            () = tokio::time::sleep(nap) => {}
            () = tokio::time::sleep_until(deadline.into()) => {}
        }
        ControlFlow::Continue(())
    }

    /// Runs `raw` on the runner `permit` holds.
    fn start(&mut self, raw: RawJob, permit: OwnedSemaphorePermit) {
        // Reap finished runs.
        while self.running.try_join_next().is_some() {}
        let id = raw.id.clone();
        lock(&self.inflight).push(id.clone());
        let mine = self.inflight.clone();
        self.queue
            .meters()
            .wait
            .record(ee_core::unix_ms().saturating_sub(raw.created_ms) as f64 / 1000.0);
        let service = self.service.clone();
        let queue = self.queue.clone();
        self.running.spawn(async move {
            let outcome = execute(
                raw,
                JobHandle::Memory(queue.clone()),
                service,
                queue.meters(),
            )
            .await;
            queue.finish(&id, outcome);
            lock(&mine).retain(|r| *r != id);
            drop(permit);
        });
    }

    /// Lets the running jobs finish until the deadline; those cut off go
    /// back to the front of the queue, for the next worker of this process.
    async fn shut_down(mut self, stop: &watch::Receiver<Option<Instant>>) -> ShutdownReport {
        let deadline = stop.borrow().unwrap_or_else(Instant::now);
        let left = self.queue.queued();
        if left > 0 {
            tracing::warn!(queue = %self.queue.name(), jobs = left, "jobs still queued at the shutdown deadline stay in memory: lost if the process exits");
        }
        let drained = tokio::time::timeout_at(deadline.into(), async {
            while self.running.join_next().await.is_some() {}
        })
        .await;
        self.running.abort_all();
        while self.running.join_next().await.is_some() {}
        let cut: Vec<String> = std::mem::take(&mut *lock(&self.inflight));
        if drained.is_err() {
            tracing::warn!(queue = %self.queue.name(), jobs = cut.len(), "jobs still running at the shutdown deadline were stopped and put back");
        }
        for id in &cut {
            self.queue.finish(id, Outcome::Release);
        }
        ShutdownReport {
            abandoned: cut.len(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
