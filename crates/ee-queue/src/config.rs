//! Settings of a queue and of a worker, loadable with serde (ee-config).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Keep;

/// Settings of a [`Queue`](crate::Queue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// The largest payload `add` accepts, in bytes of JSON (default 512 KiB).
    pub max_payload_bytes: usize,
    /// About how many entries the queue's lifecycle event stream keeps
    /// (default 10 000, as BullMQ); 0 turns events off. One entry holds the
    /// same event of every job of a batch (see `Queue::events`), so it can
    /// hold more events than this.
    pub events_max_len: u64,
    /// Retention of completed jobs unless a job says otherwise (default
    /// [`Keep::COMPLETED`]: the newest 1 000, none older than a day).
    pub keep_completed: Keep,
    /// Retention of jobs that failed for good, the dead-letter set, unless
    /// a job says otherwise (default [`Keep::FAILED`]: the newest 10 000,
    /// none older than 7 days). Failed jobs keep their payloads, which may
    /// hold personal data, so the default is bounded; [`Keep::ALL`] keeps
    /// every one until retried or removed.
    ///
    /// As with every [`Keep`], the bounds are applied when a later job of
    /// the queue fails: the oldest past either bound are deleted then
    /// (in Redis at most 1 000 per finished batch), so a queue where no job
    /// fails any more keeps its last failures.
    pub keep_failed: Keep,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: 512 * 1024,
            events_max_len: 10_000,
            keep_completed: Keep::COMPLETED,
            keep_failed: Keep::FAILED,
        }
    }
}

/// Settings of a [`Worker`](crate::Worker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Jobs run at once by this worker (default 10).
    pub concurrency: usize,
    /// How long a taken job stays this worker's without a renewal, in ms
    /// (default 30 000). The worker renews at half this; a worker that
    /// dies leaves its jobs to the stalled-job checker after it.
    pub lease_ms: u64,
    /// How often this worker looks for stalled jobs, in ms (default 30 000).
    pub stalled_interval_ms: u64,
    /// How many times a job may stall (its worker's lease ran out, as when
    /// the worker's process died) before it fails for good (default 1: a
    /// job that stalls a second time fails with "job stalled more than the
    /// allowed 1 times"). A stall does not use up an attempt. Each worker's
    /// stalled-job checker applies its own value to whichever stalled jobs
    /// it finds, so give every worker of a queue the same one, e.g.
    /// `WorkerConfig { max_stalled: 3, ..WorkerConfig::default() }` with
    /// [`Worker::config`](crate::Worker::config), or `max_stalled = 3` in
    /// the worker's configuration file. In memory jobs never stall.
    pub max_stalled: u32,
    /// At most this many jobs start per `rate_limit_window_ms` across every
    /// worker of the queue (0, the default: no limit). Every worker of a
    /// queue should be given the same limit.
    pub rate_limit_max: u64,
    /// The rate limit's window, in ms (default 1 000).
    pub rate_limit_window_ms: u64,
    /// The longest a worker blocks waiting for a job before it looks again,
    /// in ms (default 5 000).
    pub block_ms: u64,
    /// The most jobs finished in one call to Redis (default 500).
    pub finish_batch: usize,
    /// Jobs taken ahead of a free runner, so the next job is at hand when
    /// one finishes (default: `None`, as many as `concurrency`, at least
    /// 10; `Some(0)` takes only as many as can start). Taken jobs hold a
    /// lease like running ones; on shutdown the unstarted ones go back to
    /// the front of the queue at once.
    pub prefetch: Option<usize>,
    /// Whether this worker also schedules the queue's repeatable jobs
    /// (default true; any number of schedulers add each tick once).
    pub schedule_repeats: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 10,
            lease_ms: 30_000,
            stalled_interval_ms: 30_000,
            max_stalled: 1,
            rate_limit_max: 0,
            rate_limit_window_ms: 1000,
            block_ms: 5000,
            finish_batch: 500,
            prefetch: None,
            schedule_repeats: true,
        }
    }
}

impl WorkerConfig {
    pub(crate) fn prefetch(&self) -> usize {
        self.prefetch.unwrap_or(self.concurrency.max(10))
    }

    pub(crate) fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.max(100))
    }
}
