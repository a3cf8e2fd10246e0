//! [`Queue`]: the producer and admin handle of one queue, over its two
//! backends (an enum inside, as `ee_db::Database` over its engines), so an
//! application picks Redis or memory by configuration and never branches on
//! types.
//!
//! - `redis_queue`: durable, shared by every process; each operation is one
//!   Lua script on the queue's hash slot.
//! - `memory_queue`: this process's memory, for development, tests and a
//!   single-process (embedded) mode.

use std::collections::HashMap;
use std::time::Duration;

use ee_core::{RedisConfig, RedisConn};
use serde::Serialize;

use crate::QueueError;
use crate::config::QueueConfig;
use crate::job::{JobInfo, JobOptions, JobState};
use crate::metrics::Meters;

mod memory_queue;
mod redis_queue;

pub(crate) use memory_queue::{MemoryQueue, RateLimit};
pub(crate) use redis_queue::{Placement, RedisQueue};

/// One job to add with [`Queue::add_bulk`].
#[derive(Debug, Clone)]
pub struct NewJob<T> {
    /// What the job is (`"send-email"`).
    pub name: String,
    /// The payload, serialized as JSON.
    pub data: T,
    /// Its options.
    pub options: JobOptions,
}

impl<T> NewJob<T> {
    /// A job with default options.
    pub fn new(name: impl Into<String>, data: T) -> Self {
        Self {
            name: name.into(),
            data,
            options: JobOptions::default(),
        }
    }

    /// The same job with `options`.
    #[must_use]
    pub fn options(mut self, options: JobOptions) -> Self {
        self.options = options;
        self
    }
}

/// How many jobs are in each state, and whether the queue is paused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Ready, without priority.
    pub waiting: u64,
    /// Ready, with a priority.
    pub prioritized: u64,
    /// Waiting for a delay or a retry backoff.
    pub delayed: u64,
    /// Taken by a worker.
    pub active: u64,
    /// Done (as many as retention keeps).
    pub completed: u64,
    /// Failed for good (the dead-letter set).
    pub failed: u64,
    /// Flow parents waiting for their children.
    #[serde(rename = "waiting-children")]
    pub waiting_children: u64,
    /// Whether workers are told to take nothing.
    pub paused: bool,
}

impl Counts {
    /// The count of `state`.
    pub fn get(&self, state: JobState) -> u64 {
        match state {
            JobState::Waiting => self.waiting,
            JobState::Prioritized => self.prioritized,
            JobState::Delayed => self.delayed,
            JobState::Active => self.active,
            JobState::Completed => self.completed,
            JobState::Failed => self.failed,
            JobState::WaitingChildren => self.waiting_children,
        }
    }
}

/// One entry of the queue's event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueEvent {
    /// The stream entry id (`<ms>-<seq>`), to read on from.
    pub stream_id: String,
    /// `waiting`, `delayed`, `active`, `progress`, `completed`, `failed`,
    /// `stalled` or `removed`.
    pub event: String,
    /// The job.
    pub job_id: String,
    /// The other fields (`reason`, `attempts`, `retry`, `delay`, `progress`).
    pub fields: HashMap<String, String>,
}

/// A handle on one queue: adds jobs and manages them, in Redis
/// ([`connect`](Self::connect)) or in this process's memory
/// ([`memory`](Self::memory)). Cheap to clone; clones share the queue (and,
/// in Redis, one connection). A [`Worker`](crate::Worker) runs the jobs of
/// either.
///
/// **In Redis** every key of the queue shares the hash slot of `{<name>}`,
/// so a queue lives on one Cluster node and each operation is one atomic
/// script. Jobs are durable and any process's workers take them.
///
/// **In memory** the queue keeps from the Redis one: ids and
/// de-duplication by job id, delays, priorities (BullMQ order), attempts
/// with backoff, per-attempt timeouts, undecodable payloads / panics /
/// timeouts failing the job (never the worker), retention of completed and
/// failed jobs, the failed set with `retry` (of failed jobs) and `remove`,
/// `promote`, `jobs`, `obliterate`, pause/resume, progress, the queue-wide
/// rate limit, the producer's trace context, the `ee_queue_*` metrics, and a
/// graceful shutdown suited to a queue that lives in the process: queued
/// jobs still run until none is ready or the deadline passes, and runs cut
/// off at the deadline go back to the front of the queue. Dropping the
/// [`WorkerHandle`](crate::WorkerHandle) leaves the worker running,
/// detached; [`WorkerHandle::abort`](crate::WorkerHandle::abort) stops it at
/// once and leaves its running jobs `active` (there is no stalled-job
/// checker to take them back).
///
/// What memory does not have: durability (jobs are gone when the process
/// exits), other processes (only this process's workers see the jobs, so
/// there are no leases), events, repeatable jobs, flows and
/// [`advance_clock`](Self::advance_clock): those answer
/// [`QueueError::Unsupported`].
#[derive(Clone)]
pub struct Queue {
    backend: Backend,
}

/// Where a queue's jobs live.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Redis(RedisQueue),
    Memory(MemoryQueue),
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match &self.backend {
            Backend::Redis(_) => "redis",
            Backend::Memory(_) => "memory",
        };
        f.debug_struct("Queue")
            .field("name", &self.name())
            .field("backend", &backend)
            .field("key_prefix", &self.key_prefix())
            .finish_non_exhaustive()
    }
}

/// A queue name: 1-200 bytes without control characters, on either backend
/// (so a name that works in memory works in Redis).
fn check_queue_name(name: &str) -> Result<(), QueueError> {
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(QueueError::InvalidOption(format!(
            "queue name {name:?} must be 1-200 bytes without control characters"
        )));
    }
    Ok(())
}

impl Queue {
    /// Connects to Redis (standalone or Cluster) and opens queue `name`
    /// with default settings.
    ///
    /// # Errors
    /// Redis cannot be reached (503), or the name is not 1-200 bytes
    /// without control characters (400).
    pub async fn connect(redis: RedisConfig, name: &str) -> Result<Self, QueueError> {
        Self::connect_with(redis, name, QueueConfig::default()).await
    }

    /// As [`connect`](Self::connect), with `config`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with(
        redis: RedisConfig,
        name: &str,
        config: QueueConfig,
    ) -> Result<Self, QueueError> {
        check_queue_name(name)?;
        let conn = RedisConn::connect(&redis).await?;
        Self::with_connection(conn, redis, name, config)
    }

    /// A Redis queue on an existing connection. `redis` is what workers use
    /// to open their own connection for blocking waits.
    ///
    /// # Errors
    /// The name is not 1-200 bytes without control characters (400).
    pub fn with_connection(
        conn: RedisConn,
        redis: RedisConfig,
        name: &str,
        config: QueueConfig,
    ) -> Result<Self, QueueError> {
        check_queue_name(name)?;
        Ok(Self {
            backend: Backend::Redis(RedisQueue::new(conn, redis, name, config)),
        })
    }

    /// An empty queue `name` in this process's memory, with default
    /// settings (see the [type docs](Self) for what it keeps).
    ///
    /// ```
    /// # async fn demo() -> Result<(), ee_queue::QueueError> {
    /// let queue = ee_queue::Queue::memory("emails")?;
    /// queue.add("welcome", &"ada@example.com", ee_queue::JobOptions::default()).await?;
    /// assert_eq!(queue.counts().await?.waiting, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The name is not 1-200 bytes without control characters (400), as
    /// for a Redis queue.
    pub fn memory(name: &str) -> Result<Self, QueueError> {
        Self::memory_with(name, &QueueConfig::default())
    }

    /// As [`memory`](Self::memory), with `config` (`events_max_len` does
    /// not apply: there are no events).
    ///
    /// # Errors
    /// As [`memory`](Self::memory).
    pub fn memory_with(name: &str, config: &QueueConfig) -> Result<Self, QueueError> {
        check_queue_name(name)?;
        Ok(Self {
            backend: Backend::Memory(MemoryQueue::new(name, config.clone())),
        })
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The Redis backend, or [`QueueError::Unsupported`] for `operation`.
    pub(crate) fn redis(&self, operation: &'static str) -> Result<&RedisQueue, QueueError> {
        match &self.backend {
            Backend::Redis(r) => Ok(r),
            Backend::Memory(_) => Err(QueueError::Unsupported { operation }),
        }
    }

    pub(crate) fn meters(&self) -> &Meters {
        match &self.backend {
            Backend::Redis(r) => &r.inner.meters,
            Backend::Memory(m) => m.meters(),
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        match &self.backend {
            Backend::Redis(r) => r.name(),
            Backend::Memory(m) => m.name(),
        }
    }

    /// The prefix of every key of this queue in Redis
    /// (`ee:queue:{<name>}:`); empty for a queue in memory, which has no
    /// keys.
    pub fn key_prefix(&self) -> &str {
        match &self.backend {
            Backend::Redis(r) => &r.inner.base,
            Backend::Memory(_) => "",
        }
    }

    /// The settings the queue was opened with.
    pub fn config(&self) -> &QueueConfig {
        match &self.backend {
            Backend::Redis(r) => &r.inner.config,
            Backend::Memory(m) => m.config(),
        }
    }

    /// Adds one job; returns its id (the existing one when `options.job_id`
    /// names a job that is already there).
    ///
    /// # Errors
    /// An invalid name or option (400), a payload that does not serialize
    /// (400) or is over `max_payload_bytes` (413); Redis unavailable (503).
    pub async fn add<T: Serialize + ?Sized>(
        &self,
        name: &str,
        data: &T,
        options: JobOptions,
    ) -> Result<String, QueueError> {
        match &self.backend {
            Backend::Redis(r) => r.add(name, data, options).await,
            Backend::Memory(m) => m.add(name, data, options),
        }
    }

    /// Adds many jobs in one round trip and one atomic step; returns their
    /// ids in order. Nothing is added when any job is invalid.
    ///
    /// # Errors
    /// As [`add`](Self::add).
    pub async fn add_bulk<T: Serialize>(
        &self,
        jobs: impl IntoIterator<Item = NewJob<T>>,
    ) -> Result<Vec<String>, QueueError> {
        match &self.backend {
            Backend::Redis(r) => r.add_bulk(jobs).await,
            Backend::Memory(m) => m.add_bulk(jobs),
        }
    }

    /// Tells workers to take no more jobs (those running finish). Jobs can
    /// still be added.
    ///
    /// # Errors
    /// Redis unavailable (503).
    pub async fn pause(&self) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Redis(r) => r.pause().await,
            Backend::Memory(m) => {
                m.pause();
                Ok(())
            }
        }
    }

    /// Lets workers take jobs again.
    ///
    /// # Errors
    /// Redis unavailable (503).
    pub async fn resume(&self) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Redis(r) => r.resume().await,
            Backend::Memory(m) => {
                m.resume();
                Ok(())
            }
        }
    }

    /// Moves this queue's clock forward by `by` (for tests: delays, retry
    /// backoff, leases and repeats then behave as if that much time had
    /// passed, without sleeping). Every operation adds the shift to Redis'
    /// time; it is stored in the queue's `meta` hash, so every worker sees it.
    ///
    /// # Errors
    /// Redis unavailable (503); [`QueueError::Unsupported`] in memory.
    pub async fn advance_clock(&self, by: Duration) -> Result<(), QueueError> {
        self.redis("advance_clock")?.advance_clock(by).await
    }

    /// How many jobs are in each state (one round trip in Redis); also
    /// publishes the `ee_queue_depth` gauges.
    ///
    /// # Errors
    /// Redis unavailable (503).
    pub async fn counts(&self) -> Result<Counts, QueueError> {
        match &self.backend {
            Backend::Redis(r) => r.counts().await,
            Backend::Memory(m) => Ok(m.counts()),
        }
    }

    /// Everything stored about job `id`, or `None`.
    ///
    /// # Errors
    /// Redis unavailable (503).
    pub async fn job(&self, id: &str) -> Result<Option<JobInfo>, QueueError> {
        match &self.backend {
            Backend::Redis(r) => r.job(id).await,
            Backend::Memory(m) => Ok(m.job(id)),
        }
    }

    /// Up to `limit` jobs in `state` from `offset`: waiting and prioritized
    /// in the order workers take them, delayed soonest first, completed and
    /// failed newest first.
    ///
    /// # Errors
    /// Redis unavailable (503).
    pub async fn jobs(
        &self,
        state: JobState,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<JobInfo>, QueueError> {
        match &self.backend {
            Backend::Redis(r) => r.jobs(state, offset, limit).await,
            Backend::Memory(m) => Ok(m.jobs(state, offset, limit)),
        }
    }

    /// Runs a failed job again, with its attempts reset (in Redis, a
    /// completed one too).
    ///
    /// # Errors
    /// [`QueueError::NotFound`], [`QueueError::WrongState`]; Redis
    /// unavailable (503).
    pub async fn retry(&self, id: &str) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Redis(r) => r.retry(id).await,
            Backend::Memory(m) => m.retry(id),
        }
    }

    /// Runs a delayed job now.
    ///
    /// # Errors
    /// [`QueueError::NotFound`], [`QueueError::WrongState`] when it is not
    /// delayed; Redis unavailable (503).
    pub async fn promote(&self, id: &str) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Redis(r) => r.promote(id).await,
            Backend::Memory(m) => m.promote(id),
        }
    }

    /// Deletes a job that is not running.
    ///
    /// # Errors
    /// [`QueueError::NotFound`], [`QueueError::WrongState`] when it is
    /// active; Redis unavailable (503).
    pub async fn remove(&self, id: &str) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Redis(r) => r.remove(id).await,
            Backend::Memory(m) => m.remove(id),
        }
    }

    /// Deletes the queue: every job in every state and every key.
    ///
    /// # Errors
    /// Redis unavailable (503).
    pub async fn obliterate(&self) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Redis(r) => r.obliterate().await,
            Backend::Memory(m) => {
                m.obliterate();
                Ok(())
            }
        }
    }

    /// The lifecycle events of up to `count` stream entries after stream id
    /// `after` (`"0"` for the oldest kept). The stream keeps about
    /// `events_max_len` entries.
    ///
    /// Jobs that had the same plain event (`waiting`, `active`, `completed`,
    /// `stalled`, `removed`) in one batch share one entry, so this can return
    /// more than `count` events; they come one per job, in order, each with
    /// its entry's `stream_id`. Read on from the last one's `stream_id`.
    ///
    /// # Errors
    /// Redis unavailable (503); [`QueueError::Unsupported`] in memory.
    pub async fn events(&self, after: &str, count: usize) -> Result<Vec<QueueEvent>, QueueError> {
        self.redis("events")?.events(after, count).await
    }
}

/// The `traceparent` of the code adding a job: a child of the current
/// request's span (ee-logging), or none.
pub(crate) fn current_traceparent() -> String {
    ee_logging::TraceContext::current().map_or_else(String::new, |c| c.child().traceparent())
}
