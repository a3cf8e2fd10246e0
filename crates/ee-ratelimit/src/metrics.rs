//! The layer's metrics, each labelled `policy`:
//!
//! | name | kind | unit | labels |
//! |---|---|---|---|
//! | [`METRIC_DECISIONS_TOTAL`] | counter | count | `policy`, `outcome` (`allowed`, `limited`, `failed_open`, `failed_closed`) |
//! | [`METRIC_BACKEND_ERRORS_TOTAL`] | counter | count | `policy` |
//! | [`METRIC_BACKEND_DURATION_SECONDS`] | histogram | seconds | `policy` (Redis) |
//! | [`METRIC_MEMORY_KEYS_REFUSED_TOTAL`] | counter | count | `policy` |
//!
//! A layer calls [`describe_metrics`] and registers its handles when it is
//! built (install the recorder first); no metric is looked up per request.

use metrics::{Counter, Unit};

/// Counter: decisions by `policy` and `outcome` (`allowed`, `limited`,
/// `failed_open`, `failed_closed`).
pub const METRIC_DECISIONS_TOTAL: &str = "ee_ratelimit_decisions_total";
/// Counter: decisions the store failed to make (Redis down or too slow), by
/// `policy`.
pub const METRIC_BACKEND_ERRORS_TOTAL: &str = "ee_ratelimit_backend_errors_total";
/// Histogram: how long a Redis decision took, in seconds, by `policy`.
pub const METRIC_BACKEND_DURATION_SECONDS: &str = "ee_ratelimit_backend_duration_seconds";
/// Counter: new keys an in-memory limiter (the store, or the fallback while
/// Redis fails) refused because the policy's map was full, by `policy`. Each
/// is also a backend error, decided by `on_backend_error` (see
/// [`MemoryStore`](crate::MemoryStore)).
pub const METRIC_MEMORY_KEYS_REFUSED_TOTAL: &str = "ee_ratelimit_memory_keys_refused_total";

/// Describes every ee-ratelimit metric (help text and unit) to the installed
/// recorder. [`RateLimitBuilder::build`](crate::RateLimitBuilder::build)
/// calls it; calling it again is harmless.
pub fn describe_metrics() {
    metrics::describe_counter!(
        METRIC_DECISIONS_TOTAL,
        Unit::Count,
        "Rate-limit decisions by policy and outcome (allowed, limited, failed_open, failed_closed)"
    );
    metrics::describe_counter!(
        METRIC_BACKEND_ERRORS_TOTAL,
        Unit::Count,
        "Rate-limit decisions the backend failed to make (unreachable or too slow)"
    );
    metrics::describe_histogram!(
        METRIC_BACKEND_DURATION_SECONDS,
        Unit::Seconds,
        "Time a rate-limit decision took on Redis"
    );
    metrics::describe_counter!(
        METRIC_MEMORY_KEYS_REFUSED_TOTAL,
        Unit::Count,
        "New keys an in-memory rate limiter refused because the policy's key map was full"
    );
}

/// One policy's handles, registered when the layer is built.
pub(crate) struct PolicyMetrics {
    pub(crate) allowed: Counter,
    pub(crate) limited: Counter,
    pub(crate) failed_open: Counter,
    pub(crate) failed_closed: Counter,
    pub(crate) backend_errors: Counter,
}

impl PolicyMetrics {
    pub(crate) fn new(policy: &str) -> Self {
        let decision = |outcome: &'static str| {
            metrics::counter!(
                METRIC_DECISIONS_TOTAL,
                "policy" => policy.to_owned(),
                "outcome" => outcome
            )
        };
        Self {
            allowed: decision("allowed"),
            limited: decision("limited"),
            failed_open: decision("failed_open"),
            failed_closed: decision("failed_closed"),
            backend_errors: metrics::counter!(
                METRIC_BACKEND_ERRORS_TOTAL,
                "policy" => policy.to_owned()
            ),
        }
    }
}
