//! The queue's metrics: names, descriptions, and the handles each queue
//! registers once, when it is opened.

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::Counts;
use crate::JobState;

/// `ee_queue_jobs_total{queue,state}`: jobs that reached a state (`added`,
/// `completed`, `failed`, `retried`, `stalled`, `lost`).
pub const METRIC_JOBS_TOTAL: &str = "ee_queue_jobs_total";
/// `ee_queue_wait_seconds{queue}`: from added (or due) to taken.
pub const METRIC_WAIT_SECONDS: &str = "ee_queue_wait_seconds";
/// `ee_queue_processing_seconds{queue}`: one attempt in the handler.
pub const METRIC_PROCESSING_SECONDS: &str = "ee_queue_processing_seconds";
/// `ee_queue_depth{queue,state}`: jobs in each state when last counted.
pub const METRIC_DEPTH: &str = "ee_queue_depth";
/// `ee_queue_backend_errors_total{queue}`: Redis calls that failed.
pub const METRIC_BACKEND_ERRORS_TOTAL: &str = "ee_queue_backend_errors_total";

/// Describes every metric of the crate (help text and unit) to the
/// installed recorder. Every queue calls it when it is opened (so workers,
/// which need a queue, are covered); call it yourself to have the
/// descriptions before any queue exists.
pub fn describe_metrics() {
    metrics::describe_counter!(
        METRIC_JOBS_TOTAL,
        Unit::Count,
        "Jobs that reached a state: added, completed, failed, retried, stalled, lost"
    );
    metrics::describe_histogram!(
        METRIC_WAIT_SECONDS,
        Unit::Seconds,
        "Time from a job being added (or falling due) to a worker taking it"
    );
    metrics::describe_histogram!(
        METRIC_PROCESSING_SECONDS,
        Unit::Seconds,
        "Time one attempt of a job spent in the worker's handler"
    );
    metrics::describe_gauge!(
        METRIC_DEPTH,
        Unit::Count,
        "Jobs in each state when the queue was last counted"
    );
    metrics::describe_counter!(
        METRIC_BACKEND_ERRORS_TOTAL,
        Unit::Count,
        "Calls to the queue's Redis that failed"
    );
}

/// One queue's handles, registered when the queue is opened.
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
    /// Describes the metrics and registers queue `queue`'s handles.
    pub(crate) fn new(queue: &str) -> Self {
        describe_metrics();
        let q = queue.to_owned();
        let jobs = |state: &'static str| metrics::counter!(METRIC_JOBS_TOTAL, "queue" => q.clone(), "state" => state);
        Self {
            added: jobs("added"),
            completed: jobs("completed"),
            failed: jobs("failed"),
            retried: jobs("retried"),
            stalled: jobs("stalled"),
            lost: jobs("lost"),
            wait: metrics::histogram!(METRIC_WAIT_SECONDS, "queue" => q.clone()),
            processing: metrics::histogram!(METRIC_PROCESSING_SECONDS, "queue" => q.clone()),
            backend_errors: metrics::counter!(METRIC_BACKEND_ERRORS_TOTAL, "queue" => q.clone()),
            depth: JobState::ALL.map(
                |s| metrics::gauge!(METRIC_DEPTH, "queue" => q.clone(), "state" => s.as_str()),
            ),
        }
    }

    pub(crate) fn publish_depth(&self, counts: &Counts) {
        for (gauge, state) in self.depth.iter().zip(JobState::ALL) {
            gauge.set(counts.get(state) as f64);
        }
    }
}
