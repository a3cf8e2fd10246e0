//! An in-process queue: the producer and worker API of [`Queue`](crate::Queue)
//! and [`Worker`](crate::Worker) without Redis, for development, tests and a
//! service's single-process (embedded) mode.
//!
//! What it keeps from the Redis queue: ids and de-duplication by job id,
//! delays, priorities (BullMQ order), attempts with backoff, per-attempt
//! timeouts, undecodable payloads / panics / timeouts failing the job (never
//! the worker), retention of completed and failed jobs, the failed set with
//! `retry` and `remove`, pause/resume, progress, the producer's trace
//! context, the `ee_queue_*` metrics, and a graceful shutdown suited to a
//! queue that lives in the process: queued jobs still run until none is
//! ready or the deadline passes, and runs cut off at the deadline go back to
//! the front of the queue. Dropping the [`WorkerHandle`] leaves the worker
//! running, detached; [`WorkerHandle::abort`] stops it at once and leaves its
//! running jobs `active` (there is no stalled-job checker to take them back).
//!
//! What it does not have: durability (jobs live in this process's memory and
//! are gone when it exits), other processes (only workers of this process
//! see the jobs, so there is no lease or stalled-job checker), events,
//! repeatable jobs, flows and the queue-wide rate limit. Use the Redis
//! [`Queue`](crate::Queue) for those.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Display;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, Semaphore, watch};
use tower::Service;

use crate::job::{JobOptions, JobState, Keep, check_name};
use crate::metrics::Meters;
use crate::worker::{JobHandle, Outcome, RawJob, ShutdownReport, WorkerHandle, execute};
use crate::{Counts, Job, JobInfo, NewJob, QueueConfig, QueueError};

/// An in-process job queue (see the [module docs](self)). Cheap to clone;
/// clones share the jobs.
#[derive(Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

struct Inner {
    name: String,
    config: QueueConfig,
    state: Mutex<State>,
    /// Woken when a job becomes ready or the queue is resumed.
    ready: Notify,
    meters: Meters,
}

#[derive(Default)]
struct State {
    next_id: u64,
    seq: u64,
    jobs: HashMap<String, Entry>,
    wait: VecDeque<String>,
    prio: BTreeMap<(u32, u64), String>,
    /// By (due ms, seq).
    delayed: BTreeMap<(u64, u64), String>,
    /// By finish time, oldest first.
    completed: VecDeque<(u64, String)>,
    failed: VecDeque<(u64, String)>,
    active: usize,
    paused: bool,
}

struct Entry {
    name: String,
    data: String,
    options: JobOptions,
    state: JobState,
    attempts_made: u32,
    created_ms: u64,
    processed_ms: Option<u64>,
    finished_ms: Option<u64>,
    failed_reason: Option<String>,
    return_value: Option<String>,
    progress: Option<String>,
    traceparent: String,
    /// Where it sits in `delayed` while delayed.
    due: Option<(u64, u64)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl State {
    fn ready(&mut self, id: String, priority: u32) {
        self.seq += 1;
        if priority > 0 {
            self.prio.insert((priority, self.seq), id);
        } else {
            self.wait.push_back(id);
        }
    }

    fn delay(&mut self, id: &str, due: u64) {
        self.seq += 1;
        let at = (due, self.seq);
        self.delayed.insert(at, id.to_owned());
        if let Some(e) = self.jobs.get_mut(id) {
            e.state = JobState::Delayed;
            e.due = Some(at);
        }
    }

    /// Moves due delayed jobs to ready; the ms until the next is due.
    fn promote(&mut self, now: u64) -> Option<u64> {
        while let Some((&(due, seq), _)) = self.delayed.first_key_value() {
            if due > now {
                return Some(due - now);
            }
            let id = self.delayed.remove(&(due, seq)).expect("just seen");
            if let Some(e) = self.jobs.get_mut(&id) {
                e.due = None;
                e.state = if e.options.priority > 0 {
                    JobState::Prioritized
                } else {
                    JobState::Waiting
                };
                let p = e.options.priority;
                self.ready(id, p);
            }
        }
        None
    }

    fn take(&mut self, now: u64) -> Option<RawJob> {
        let id = self
            .wait
            .pop_front()
            .or_else(|| self.prio.pop_first().map(|(_, id)| id))?;
        let e = self.jobs.get_mut(&id)?;
        e.state = JobState::Active;
        e.processed_ms = Some(now);
        self.active += 1;
        Some(RawJob {
            id,
            name: e.name.clone(),
            data: e.data.clone(),
            attempts_made: e.attempts_made,
            created_ms: e.created_ms,
            traceparent: e.traceparent.clone(),
            options: serde_json::to_string(&e.options).unwrap_or_default(),
        })
    }

    /// Drops the oldest finished jobs past `keep`.
    fn trim(&mut self, failed: bool, keep: Keep, now: u64) {
        let set = if failed {
            &mut self.failed
        } else {
            &mut self.completed
        };
        let mut gone = Vec::new();
        if let Some(age) = keep.age_secs {
            let oldest = now.saturating_sub(age.saturating_mul(1000));
            while set.front().is_some_and(|(t, _)| *t < oldest) {
                gone.extend(set.pop_front().map(|(_, id)| id));
            }
        }
        if let Some(count) = keep.count {
            while set.len() as u64 > count {
                gone.extend(set.pop_front().map(|(_, id)| id));
            }
        }
        for id in gone {
            self.jobs.remove(&id);
        }
    }
}

impl MemoryQueue {
    /// An empty queue with the default configuration.
    pub fn new(name: &str) -> Self {
        Self::with_config(name, QueueConfig::default())
    }

    /// An empty queue (`events_max_len` does not apply: no events).
    pub fn with_config(name: &str, config: QueueConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                config,
                state: Mutex::new(State::default()),
                ready: Notify::new(),
                meters: Meters::new(name),
            }),
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// Adds a job; returns its id. With a `job_id` that exists, nothing is
    /// added and the id is returned.
    ///
    /// # Errors
    /// An invalid name or option (400), a payload that does not serialize
    /// (400) or is over `max_payload_bytes` (413).
    pub fn add<T: Serialize + ?Sized>(
        &self,
        name: &str,
        data: &T,
        options: JobOptions,
    ) -> Result<String, QueueError> {
        let traceparent = crate::queue::current_traceparent();
        let entry = self.entry(name, data, options, traceparent)?;
        let mut state = self.state();
        let id = self.insert(&mut state, entry);
        drop(state);
        self.inner.ready.notify_waiters();
        Ok(id)
    }

    /// Adds many jobs at once; nothing is added when any is invalid.
    ///
    /// # Errors
    /// As [`add`](Self::add).
    pub fn add_bulk<T: Serialize>(
        &self,
        jobs: impl IntoIterator<Item = NewJob<T>>,
    ) -> Result<Vec<String>, QueueError> {
        let traceparent = crate::queue::current_traceparent();
        let entries = jobs
            .into_iter()
            .map(|j| self.entry(&j.name, &j.data, j.options, traceparent.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut state = self.state();
        let ids = entries
            .into_iter()
            .map(|e| self.insert(&mut state, e))
            .collect();
        drop(state);
        self.inner.ready.notify_waiters();
        Ok(ids)
    }

    fn entry<T: Serialize + ?Sized>(
        &self,
        name: &str,
        data: &T,
        options: JobOptions,
        traceparent: String,
    ) -> Result<Entry, QueueError> {
        check_name(name)?;
        options.check()?;
        let data = serde_json::to_string(data).map_err(|e| QueueError::Serialize(e.to_string()))?;
        let limit = self.inner.config.max_payload_bytes;
        if data.len() > limit {
            return Err(QueueError::PayloadTooLarge {
                size: data.len(),
                limit,
            });
        }
        Ok(Entry {
            name: name.to_owned(),
            data,
            options,
            state: JobState::Waiting,
            attempts_made: 0,
            created_ms: now_ms(),
            processed_ms: None,
            finished_ms: None,
            failed_reason: None,
            return_value: None,
            progress: None,
            traceparent,
            due: None,
        })
    }

    fn insert(&self, state: &mut State, mut e: Entry) -> String {
        let id = match &e.options.job_id {
            Some(id) if state.jobs.contains_key(id) => return id.clone(),
            Some(id) => id.clone(),
            None => {
                state.next_id += 1;
                state.next_id.to_string()
            }
        };
        self.inner.meters.added.increment(1);
        let delay = e.options.delay.map_or(0, crate::job::millis);
        let priority = e.options.priority;
        if delay > 0 {
            let due = e.created_ms + delay;
            e.state = JobState::Delayed;
            state.jobs.insert(id.clone(), e);
            state.delay(&id, due);
        } else {
            e.state = if priority > 0 {
                JobState::Prioritized
            } else {
                JobState::Waiting
            };
            state.jobs.insert(id.clone(), e);
            state.ready(id.clone(), priority);
        }
        id
    }

    /// How many jobs are in each state.
    pub fn counts(&self) -> Counts {
        let state = self.state();
        Counts {
            waiting: state.wait.len() as u64,
            prioritized: state.prio.len() as u64,
            delayed: state.delayed.len() as u64,
            active: state.active as u64,
            completed: state.completed.len() as u64,
            failed: state.failed.len() as u64,
            waiting_children: 0,
            paused: state.paused,
        }
    }

    /// Everything known about job `id`, if it is kept.
    pub fn job(&self, id: &str) -> Option<JobInfo> {
        let state = self.state();
        let e = state.jobs.get(id)?;
        let json = |v: &Option<String>| {
            v.as_deref()
                .map(|s| serde_json::from_str(s).unwrap_or(serde_json::Value::String(s.to_owned())))
        };
        Some(JobInfo {
            id: id.to_owned(),
            name: e.name.clone(),
            state: e.state,
            data: serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null),
            options: e.options.clone(),
            attempts_made: e.attempts_made,
            stalled: 0,
            created_ms: e.created_ms,
            processed_ms: e.processed_ms,
            finished_ms: e.finished_ms,
            failed_reason: e.failed_reason.clone(),
            return_value: json(&e.return_value),
            progress: json(&e.progress),
            traceparent: (!e.traceparent.is_empty()).then(|| e.traceparent.clone()),
        })
    }

    /// Runs a failed job again (attempts start over).
    ///
    /// # Errors
    /// [`QueueError::NotFound`], or [`QueueError::WrongState`] when it has
    /// not failed.
    pub fn retry(&self, id: &str) -> Result<(), QueueError> {
        let mut state = self.state();
        let e = state
            .jobs
            .get_mut(id)
            .ok_or_else(|| QueueError::NotFound(id.to_owned()))?;
        if e.state != JobState::Failed {
            return Err(QueueError::WrongState {
                id: id.to_owned(),
                state: e.state.as_str().to_owned(),
                action: "retry",
                needs: "failed",
            });
        }
        e.attempts_made = 0;
        e.failed_reason = None;
        e.finished_ms = None;
        e.state = if e.options.priority > 0 {
            JobState::Prioritized
        } else {
            JobState::Waiting
        };
        let p = e.options.priority;
        state.failed.retain(|(_, f)| f != id);
        state.ready(id.to_owned(), p);
        drop(state);
        self.inner.ready.notify_waiters();
        Ok(())
    }

    /// Removes a job that is not running.
    ///
    /// # Errors
    /// [`QueueError::NotFound`], or [`QueueError::WrongState`] when active.
    pub fn remove(&self, id: &str) -> Result<(), QueueError> {
        let mut state = self.state();
        let e = state
            .jobs
            .get(id)
            .ok_or_else(|| QueueError::NotFound(id.to_owned()))?;
        if e.state == JobState::Active {
            return Err(QueueError::WrongState {
                id: id.to_owned(),
                state: "active".to_owned(),
                action: "remove",
                needs: "not active",
            });
        }
        if let Some(at) = e.due {
            state.delayed.remove(&at);
        }
        state.wait.retain(|w| w != id);
        state.prio.retain(|_, p| p != id);
        state.completed.retain(|(_, c)| c != id);
        state.failed.retain(|(_, f)| f != id);
        state.jobs.remove(id);
        Ok(())
    }

    /// Workers take nothing until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.state().paused = true;
    }

    /// Workers take jobs again.
    pub fn resume(&self) {
        self.state().paused = false;
        self.inner.ready.notify_waiters();
    }

    pub(crate) fn set_progress(&self, id: &str, value: String) -> Result<(), QueueError> {
        let mut state = self.state();
        match state.jobs.get_mut(id) {
            Some(e) if e.state == JobState::Active => {
                e.progress = Some(value);
                Ok(())
            }
            _ => Err(QueueError::WrongState {
                id: id.to_owned(),
                state: "not active".into(),
                action: "progress",
                needs: "active",
            }),
        }
    }

    /// Records a run's outcome.
    fn finish(&self, id: &str, outcome: Outcome) {
        let now = now_ms();
        let config = &self.inner.config;
        let meters = &self.inner.meters;
        let mut state = self.state();
        state.active = state.active.saturating_sub(1);
        let Some(e) = state.jobs.get_mut(id) else {
            return;
        };
        match outcome {
            Outcome::Completed(value) => {
                meters.completed.increment(1);
                e.attempts_made += 1;
                e.state = JobState::Completed;
                e.finished_ms = Some(now);
                e.return_value = Some(value);
                let keep = e
                    .options
                    .remove_on_complete
                    .unwrap_or(config.keep_completed);
                state.completed.push_back((now, id.to_owned()));
                state.trim(false, keep, now);
            }
            Outcome::Retry(reason, delay_ms) => {
                meters.retried.increment(1);
                e.attempts_made += 1;
                e.failed_reason = Some(reason);
                let p = e.options.priority;
                if delay_ms > 0 {
                    state.delay(id, now + delay_ms);
                } else {
                    e.state = if p > 0 {
                        JobState::Prioritized
                    } else {
                        JobState::Waiting
                    };
                    state.ready(id.to_owned(), p);
                }
            }
            Outcome::Failed(reason) => {
                meters.failed.increment(1);
                e.attempts_made += 1;
                e.state = JobState::Failed;
                e.finished_ms = Some(now);
                e.failed_reason = Some(reason);
                let keep = e.options.remove_on_fail.unwrap_or(config.keep_failed);
                state.failed.push_back((now, id.to_owned()));
                state.trim(true, keep, now);
            }
            Outcome::Release => {
                let p = e.options.priority;
                e.state = if p > 0 {
                    JobState::Prioritized
                } else {
                    JobState::Waiting
                };
                if p > 0 {
                    state.ready(id.to_owned(), p);
                } else {
                    state.wait.push_front(id.to_owned());
                }
            }
        }
        drop(state);
        self.inner.ready.notify_waiters();
    }
}

/// Runs a [`MemoryQueue`]'s jobs through a tower [`Service`], as
/// [`Worker`](crate::Worker) does for a Redis queue.
pub struct MemoryWorker<T, S> {
    queue: MemoryQueue,
    service: S,
    concurrency: usize,
    _job: PhantomData<fn() -> T>,
}

impl<T, S> std::fmt::Debug for MemoryWorker<T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryWorker")
            .field("queue", &self.queue.inner.name)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl<T, S> MemoryWorker<T, S>
where
    T: DeserializeOwned + Send + 'static,
    S: Service<Job<T>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send,
    S::Error: Display + Send,
{
    /// A worker of `queue` running up to 10 jobs at once.
    pub fn new(queue: MemoryQueue, service: S) -> Self {
        Self {
            queue,
            service,
            concurrency: 10,
            _job: PhantomData,
        }
    }

    /// Runs up to `n` jobs at once (at least 1).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Starts the worker on the current tokio runtime.
    pub fn start(self) -> WorkerHandle {
        let (stop, stopped) = watch::channel(None);
        let task = tokio::spawn(self.run(stopped));
        WorkerHandle { stop, task }
    }

    async fn run(self, mut stop: watch::Receiver<Option<Instant>>) -> ShutdownReport {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut running = tokio::task::JoinSet::new();
        let inflight: Arc<Mutex<Vec<String>>> = Arc::default();
        let q = self.queue;
        loop {
            // After `shutdown`: the queue's jobs still run (they live only in
            // this process) until none is ready or the deadline passes.
            let draining = *stop.borrow();
            if draining.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let permit = match draining {
                None => tokio::select! {
                    p = slots.clone().acquire_owned() => p.expect("never closed"),
                    () = crate::worker::stopped(&mut stop) => continue,
                },
                Some(d) => tokio::select! {
                    p = slots.clone().acquire_owned() => p.expect("never closed"),
                    () = tokio::time::sleep_until(d.into()) => break,
                },
            };
            // Register for a wake-up before looking, so none is missed.
            let ready = q.inner.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let (job, next_due) = {
                let mut state = q.state();
                let now = now_ms();
                let next_due = state.promote(now);
                let job = if state.paused { None } else { state.take(now) };
                (job, next_due)
            };
            let Some(raw) = job else {
                drop(permit);
                let nap = Duration::from_millis(next_due.unwrap_or(1_000).max(1));
                match draining {
                    None => tokio::select! {
                        () = ready => {}
                        () = tokio::time::sleep(nap) => {}
                        () = crate::worker::stopped(&mut stop) => {}
                    },
                    Some(d) => {
                        // Nothing ready: done, unless a running job may
                        // still queue a retry or a delayed one falls due
                        // before the deadline.
                        while running.try_join_next().is_some() {}
                        let due_in_time = next_due
                            .is_some_and(|ms| Instant::now() + Duration::from_millis(ms) < d);
                        if running.is_empty() && !due_in_time {
                            break;
                        }
                        tokio::select! {
                            () = ready => {}
                            () = tokio::time::sleep(nap) => {}
                            () = tokio::time::sleep_until(d.into()) => {}
                        }
                    }
                }
                continue;
            };
            // Reap finished runs.
            while running.try_join_next().is_some() {}
            let id = raw.id.clone();
            lock(&inflight).push(id.clone());
            let mine = inflight.clone();
            q.inner
                .meters
                .wait
                .record(now_ms().saturating_sub(raw.created_ms) as f64 / 1000.0);
            let service = self.service.clone();
            let queue = q.clone();
            running.spawn(async move {
                let outcome = execute(
                    raw,
                    JobHandle::Memory(queue.clone()),
                    service,
                    &queue.inner.meters,
                )
                .await;
                queue.finish(&id, outcome);
                lock(&mine).retain(|r| *r != id);
                drop(permit);
            });
        }
        let deadline = stop.borrow().unwrap_or_else(Instant::now);
        let left = {
            let c = q.counts();
            c.waiting + c.prioritized + c.delayed
        };
        if left > 0 {
            tracing::warn!(queue = %q.inner.name, jobs = left, "jobs still queued at the shutdown deadline stay in memory: lost if the process exits");
        }
        let drained = tokio::time::timeout_at(deadline.into(), async {
            while running.join_next().await.is_some() {}
        })
        .await;
        running.abort_all();
        while running.join_next().await.is_some() {}
        // Runs cut off at the deadline: their jobs go back to the front of
        // the queue, for the next worker of this process.
        let cut: Vec<String> = std::mem::take(&mut *lock(&inflight));
        if drained.is_err() {
            tracing::warn!(queue = %q.inner.name, jobs = cut.len(), "jobs still running at the shutdown deadline were stopped and put back");
        }
        for id in &cut {
            q.finish(id, Outcome::Release);
        }
        ShutdownReport {
            abandoned: cut.len(),
        }
    }
}
