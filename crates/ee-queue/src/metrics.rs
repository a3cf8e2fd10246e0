//! The queue's metrics, registered once per queue handle.

use metrics::{Counter, Gauge, Histogram};

use crate::JobState;
use crate::queue::Counts;

/// `ee_queue_jobs_total{queue,state}`: jobs that reached a state.
pub const JOBS: &str = "ee_queue_jobs_total";
/// `ee_queue_wait_seconds{queue}`: from added (or due) to taken.
pub const WAIT: &str = "ee_queue_wait_seconds";
/// `ee_queue_processing_seconds{queue}`: one attempt in the handler.
pub const PROCESSING: &str = "ee_queue_processing_seconds";
/// `ee_queue_depth{queue,state}`: jobs in each state when last counted.
pub const DEPTH: &str = "ee_queue_depth";
/// `ee_queue_backend_errors_total{queue}`: Redis calls that failed.
pub const BACKEND_ERRORS: &str = "ee_queue_backend_errors_total";

pub(crate) struct Meters {
    pub(crate) added: Counter,
    pub(crate) completed: Counter,
    pub(crate) failed: Counter,
    pub(crate) retried: Counter,
    pub(crate) stalled: Counter,
    pub(crate) lost: Counter,
    pub(crate) wait: Histogram,
    pub(crate) processing: Histogram,
    pub(crate) backend_errors: Counter,
    depth: [Gauge; 7],
}

impl Meters {
    pub(crate) fn new(queue: &str) -> Self {
        let q = queue.to_owned();
        let jobs =
            |state: &'static str| metrics::counter!(JOBS, "queue" => q.clone(), "state" => state);
        Self {
            added: jobs("added"),
            completed: jobs("completed"),
            failed: jobs("failed"),
            retried: jobs("retried"),
            stalled: jobs("stalled"),
            lost: jobs("lost"),
            wait: metrics::histogram!(WAIT, "queue" => q.clone()),
            processing: metrics::histogram!(PROCESSING, "queue" => q.clone()),
            backend_errors: metrics::counter!(BACKEND_ERRORS, "queue" => q.clone()),
            depth: JobState::ALL
                .map(|s| metrics::gauge!(DEPTH, "queue" => q.clone(), "state" => s.as_str())),
        }
    }

    pub(crate) fn publish_depth(&self, counts: &Counts) {
        for (gauge, state) in self.depth.iter().zip(JobState::ALL) {
            gauge.set(counts.get(state) as f64);
        }
    }
}
