//! The in-process backend of [`Queue`](crate::Queue) (see
//! [`Queue::memory`](crate::Queue::memory)): the jobs in a map under one
//! mutex, ready ones in take order, delayed ones by due time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::Notify;

use super::{Counts, NewJob, current_traceparent};
use crate::QueueError;
use crate::config::QueueConfig;
use crate::job::{JobInfo, JobOptions, JobState, Keep, check_name};
use crate::metrics::Meters;
use crate::worker::{Outcome, RawJob};

/// One queue in this process's memory. Cheap to clone; clones share the
/// jobs.
#[derive(Clone)]
pub(crate) struct MemoryQueue {
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

/// The queue-wide rate limit a worker applies: at most `max` jobs start
/// per `window_ms`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateLimit {
    pub(crate) max: u64,
    pub(crate) window_ms: u64,
}

/// The rate limit's current window, as Redis' `limiter` key: it opens at
/// the first start after the last one closed.
#[derive(Debug, Clone, Copy)]
struct Window {
    until_ms: u64,
    used: u64,
}

/// What a worker found when it looked for a job.
pub(crate) struct Look {
    /// The job it took, if any.
    pub(crate) job: Option<RawJob>,
    /// When nothing was taken: the ms until a delayed job falls due or the
    /// rate limit lets one more start, if either will.
    pub(crate) wake_in_ms: Option<u64>,
}

#[derive(Default)]
pub(crate) struct State {
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
    window: Option<Window>,
}

/// One of the sets of finished jobs.
#[derive(Debug, Clone, Copy)]
enum Finished {
    Completed,
    Failed,
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

impl Entry {
    fn info(&self, id: &str) -> JobInfo {
        let json = |v: &Option<String>| {
            v.as_deref()
                .map(|s| serde_json::from_str(s).unwrap_or(serde_json::Value::String(s.to_owned())))
        };
        JobInfo {
            id: id.to_owned(),
            name: self.name.clone(),
            state: self.state,
            data: serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null),
            options: self.options.clone(),
            attempts_made: self.attempts_made,
            stalled: 0,
            created_ms: self.created_ms,
            processed_ms: self.processed_ms,
            finished_ms: self.finished_ms,
            failed_reason: self.failed_reason.clone(),
            return_value: json(&self.return_value),
            progress: json(&self.progress),
            traceparent: (!self.traceparent.is_empty()).then(|| self.traceparent.clone()),
        }
    }

    /// The ready state its priority puts it in.
    fn ready_state(&self) -> JobState {
        if self.options.priority > 0 {
            JobState::Prioritized
        } else {
            JobState::Waiting
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
    fn promote_due(&mut self, now: u64) -> Option<u64> {
        while let Some((&(due, seq), _)) = self.delayed.first_key_value() {
            if due > now {
                return Some(due - now);
            }
            let id = self.delayed.remove(&(due, seq)).expect("just seen");
            if let Some(e) = self.jobs.get_mut(&id) {
                e.due = None;
                e.state = e.ready_state();
                let p = e.options.priority;
                self.ready(id, p);
            }
        }
        None
    }

    /// The ms until the rate limit lets another job start, when it is used
    /// up.
    fn rate_limited(&mut self, now: u64, limit: RateLimit) -> Option<u64> {
        match self.window {
            Some(w) if now < w.until_ms => (w.used >= limit.max).then(|| (w.until_ms - now).max(1)),
            _ => {
                self.window = None;
                None
            }
        }
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

    /// Drops the oldest jobs of the `finished` set past `keep`.
    fn trim(&mut self, finished: Finished, keep: Keep, now: u64) {
        let set = match finished {
            Finished::Completed => &mut self.completed,
            Finished::Failed => &mut self.failed,
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

    /// The ids in `state`, in the order [`MemoryQueue::jobs`] lists them.
    fn ids(&self, state: JobState) -> Vec<&String> {
        match state {
            JobState::Waiting => self.wait.iter().collect(),
            JobState::Prioritized => self.prio.values().collect(),
            JobState::Delayed => self.delayed.values().collect(),
            JobState::Completed => self.completed.iter().rev().map(|(_, id)| id).collect(),
            JobState::Failed => self.failed.iter().rev().map(|(_, id)| id).collect(),
            JobState::Active => {
                let mut active: Vec<(&String, &Entry)> = self
                    .jobs
                    .iter()
                    .filter(|(_, e)| e.state == JobState::Active)
                    .collect();
                active.sort_by(|a, b| (a.1.processed_ms, a.0).cmp(&(b.1.processed_ms, b.0)));
                active.into_iter().map(|(id, _)| id).collect()
            }
            // Flows need Redis: no parent waits here.
            JobState::WaitingChildren => Vec::new(),
        }
    }
}

impl MemoryQueue {
    /// An empty queue `name` (checked by the caller).
    pub(crate) fn new(name: &str, config: QueueConfig) -> Self {
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

    pub(crate) fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    pub(crate) fn meters(&self) -> &Meters {
        &self.inner.meters
    }

    /// Woken when a job becomes ready or the queue is resumed.
    pub(crate) fn ready(&self) -> &Notify {
        &self.inner.ready
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    pub(crate) fn add<T: Serialize + ?Sized>(
        &self,
        name: &str,
        data: &T,
        options: JobOptions,
    ) -> Result<String, QueueError> {
        let traceparent = current_traceparent();
        let entry = self.entry(name, data, options, traceparent)?;
        let mut state = self.state();
        let id = self.insert(&mut state, entry);
        drop(state);
        self.inner.ready.notify_waiters();
        Ok(id)
    }

    pub(crate) fn add_bulk<T: Serialize>(
        &self,
        jobs: impl IntoIterator<Item = NewJob<T>>,
    ) -> Result<Vec<String>, QueueError> {
        let traceparent = current_traceparent();
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
            created_ms: ee_core::unix_ms(),
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
            e.state = e.ready_state();
            state.jobs.insert(id.clone(), e);
            state.ready(id.clone(), priority);
        }
        id
    }

    /// How many jobs are in each state; also publishes the depth gauges.
    pub(crate) fn counts(&self) -> Counts {
        let state = self.state();
        let counts = Counts {
            waiting: state.wait.len() as u64,
            prioritized: state.prio.len() as u64,
            delayed: state.delayed.len() as u64,
            active: state.active as u64,
            completed: state.completed.len() as u64,
            failed: state.failed.len() as u64,
            waiting_children: 0,
            paused: state.paused,
        };
        drop(state);
        self.inner.meters.publish_depth(&counts);
        counts
    }

    pub(crate) fn job(&self, id: &str) -> Option<JobInfo> {
        self.state().jobs.get(id).map(|e| e.info(id))
    }

    /// Up to `limit` jobs in `state` from `offset`, in the order of the
    /// Redis queue: ready ones as workers take them, delayed soonest first,
    /// finished ones newest first.
    pub(crate) fn jobs(&self, state: JobState, offset: u64, limit: u64) -> Vec<JobInfo> {
        let all = self.state();
        all.ids(state)
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .filter_map(|id| all.jobs.get(id).map(|e| e.info(id)))
            .collect()
    }

    /// Runs a failed job again (attempts start over).
    pub(crate) fn retry(&self, id: &str) -> Result<(), QueueError> {
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
        e.state = e.ready_state();
        let p = e.options.priority;
        state.failed.retain(|(_, f)| f != id);
        state.ready(id.to_owned(), p);
        drop(state);
        self.inner.ready.notify_waiters();
        Ok(())
    }

    /// Runs a delayed job now.
    pub(crate) fn promote(&self, id: &str) -> Result<(), QueueError> {
        let mut state = self.state();
        let e = state
            .jobs
            .get_mut(id)
            .ok_or_else(|| QueueError::NotFound(id.to_owned()))?;
        if e.state != JobState::Delayed {
            return Err(QueueError::WrongState {
                id: id.to_owned(),
                state: e.state.as_str().to_owned(),
                action: "promote",
                needs: "delayed",
            });
        }
        let at = e.due.take();
        e.state = e.ready_state();
        let p = e.options.priority;
        if let Some(at) = at {
            state.delayed.remove(&at);
        }
        state.ready(id.to_owned(), p);
        drop(state);
        self.inner.ready.notify_waiters();
        Ok(())
    }

    /// Removes a job that is not running.
    pub(crate) fn remove(&self, id: &str) -> Result<(), QueueError> {
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

    /// Deletes every job, in every state (running ones finish unrecorded),
    /// and the pause; ids start again from 1.
    pub(crate) fn obliterate(&self) {
        *self.state() = State::default();
    }

    pub(crate) fn pause(&self) {
        self.state().paused = true;
    }

    pub(crate) fn resume(&self) {
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

    /// Promotes due delayed jobs and takes the next ready one, unless the
    /// queue is paused or `limit` is used up.
    pub(crate) fn look(&self, limit: Option<RateLimit>) -> Look {
        let mut state = self.state();
        let now = ee_core::unix_ms();
        let next_due = state.promote_due(now);
        if state.paused {
            return Look {
                job: None,
                wake_in_ms: next_due,
            };
        }
        if let Some(ms) = limit.and_then(|l| state.rate_limited(now, l)) {
            return Look {
                job: None,
                wake_in_ms: Some(ms),
            };
        }
        let job = state.take(now);
        if let (Some(limit), Some(_)) = (limit, &job) {
            match &mut state.window {
                Some(w) => w.used += 1,
                None => {
                    state.window = Some(Window {
                        until_ms: now.saturating_add(limit.window_ms),
                        used: 1,
                    });
                }
            }
        }
        Look {
            wake_in_ms: if job.is_some() { None } else { next_due },
            job,
        }
    }

    /// Jobs waiting, prioritized or delayed.
    pub(crate) fn queued(&self) -> u64 {
        let state = self.state();
        (state.wait.len() + state.prio.len() + state.delayed.len()) as u64
    }

    /// Records a run's outcome. A job no longer active (the queue was
    /// obliterated meanwhile) is left alone.
    pub(crate) fn finish(&self, id: &str, outcome: Outcome) {
        let now = ee_core::unix_ms();
        let config = &self.inner.config;
        let meters = &self.inner.meters;
        let mut state = self.state();
        let Some(e) = state
            .jobs
            .get_mut(id)
            .filter(|e| e.state == JobState::Active)
        else {
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
                state.trim(Finished::Completed, keep, now);
            }
            Outcome::Retry { reason, delay_ms } => {
                meters.retried.increment(1);
                e.attempts_made += 1;
                e.failed_reason = Some(reason);
                let p = e.options.priority;
                if delay_ms > 0 {
                    state.delay(id, now + delay_ms);
                } else {
                    e.state = e.ready_state();
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
                state.trim(Finished::Failed, keep, now);
            }
            Outcome::Release => {
                let p = e.options.priority;
                e.state = e.ready_state();
                if p > 0 {
                    state.ready(id.to_owned(), p);
                } else {
                    state.wait.push_front(id.to_owned());
                }
            }
        }
        state.active = state.active.saturating_sub(1);
        drop(state);
        self.inner.ready.notify_waiters();
    }
}
