//! The layer's metrics:
//!
//! | name | kind | unit | labels |
//! |---|---|---|---|
//! | [`METRIC_REQUESTS_TOTAL`] | counter | count | `outcome` (`executed`, `replayed`, `conflict`, `mismatch`, `rejected`, `not_stored`, `lease_lost`, `body_failed`) |
//! | [`METRIC_STORED_BYTES`] | histogram | bytes | |
//! | [`METRIC_BACKEND_ERRORS_TOTAL`] | counter | count | |
//!
//! A layer calls [`describe`] and registers its handles when it is made
//! ([`IdempotencyLayer::new`](crate::IdempotencyLayer::new); install the
//! recorder first); no metric is looked up per request.

use metrics::{Counter, Histogram, Unit};

/// Counter: guarded requests by `outcome`.
pub const METRIC_REQUESTS_TOTAL: &str = "ee_idempotency_requests_total";
/// Histogram: the size of each stored response body, in bytes.
pub const METRIC_STORED_BYTES: &str = "ee_idempotency_stored_bytes";
/// Counter: store calls that failed (Redis down or too slow) when a request
/// took its key.
pub const METRIC_BACKEND_ERRORS_TOTAL: &str = "ee_idempotency_backend_errors_total";

/// Describes every ee-idempotency metric (help text and unit) to the
/// installed recorder. [`IdempotencyLayer::new`](crate::IdempotencyLayer::new)
/// calls it; calling it again is harmless.
pub fn describe_metrics() {
    metrics::describe_counter!(
        METRIC_REQUESTS_TOTAL,
        Unit::Count,
        "Requests with an Idempotency-Key by outcome (executed, replayed, conflict, mismatch, \
         rejected, not_stored, lease_lost, body_failed)"
    );
    metrics::describe_histogram!(
        METRIC_STORED_BYTES,
        Unit::Bytes,
        "Size of each response body stored for replay"
    );
    metrics::describe_counter!(
        METRIC_BACKEND_ERRORS_TOTAL,
        Unit::Count,
        "Idempotency store calls that failed (unreachable or too slow) when a request took its key"
    );
}

/// The layer's handles, registered when it is made.
#[derive(Clone)]
pub(crate) struct Metrics {
    pub(crate) executed: Counter,
    pub(crate) replayed: Counter,
    pub(crate) conflict: Counter,
    pub(crate) mismatch: Counter,
    pub(crate) rejected: Counter,
    pub(crate) not_stored: Counter,
    pub(crate) lease_lost: Counter,
    pub(crate) body_failed: Counter,
    pub(crate) backend_errors: Counter,
    pub(crate) stored_bytes: Histogram,
}

impl Metrics {
    /// Describes the metrics and registers the handles.
    pub(crate) fn register() -> Self {
        describe_metrics();
        let outcome =
            |outcome: &'static str| metrics::counter!(METRIC_REQUESTS_TOTAL, "outcome" => outcome);
        Self {
            executed: outcome("executed"),
            replayed: outcome("replayed"),
            conflict: outcome("conflict"),
            mismatch: outcome("mismatch"),
            rejected: outcome("rejected"),
            not_stored: outcome("not_stored"),
            lease_lost: outcome("lease_lost"),
            body_failed: outcome("body_failed"),
            backend_errors: metrics::counter!(METRIC_BACKEND_ERRORS_TOTAL),
            stored_bytes: metrics::histogram!(METRIC_STORED_BYTES),
        }
    }
}
