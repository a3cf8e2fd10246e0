//! The names ee-metrics records under, and their descriptions (help text and
//! unit in `/metrics`).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// `ee_http_requests_total{method,route,status_class}`.
pub const METRIC_HTTP_REQUESTS_TOTAL: &str = "ee_http_requests_total";
/// `ee_http_request_duration_seconds{method,route,status_class}`.
pub const METRIC_HTTP_REQUEST_DURATION_SECONDS: &str = "ee_http_request_duration_seconds";
/// `ee_http_requests_in_flight{method,route}`.
pub const METRIC_HTTP_REQUESTS_IN_FLIGHT: &str = "ee_http_requests_in_flight";
/// `ee_http_request_size_bytes{method,route}` (bodies of known size).
pub const METRIC_HTTP_REQUEST_SIZE_BYTES: &str = "ee_http_request_size_bytes";
/// `ee_http_response_size_bytes{method,route,status_class}` (bodies of known size).
pub const METRIC_HTTP_RESPONSE_SIZE_BYTES: &str = "ee_http_response_size_bytes";

/// `ee_tokio_workers`: worker threads of the runtime `/metrics` is served on.
pub const METRIC_TOKIO_WORKERS: &str = "ee_tokio_workers";
/// `ee_tokio_alive_tasks`: tasks alive in that runtime.
pub const METRIC_TOKIO_ALIVE_TASKS: &str = "ee_tokio_alive_tasks";
/// `ee_tokio_global_queue_depth`: tasks waiting in its global queue.
pub const METRIC_TOKIO_GLOBAL_QUEUE_DEPTH: &str = "ee_tokio_global_queue_depth";

/// Describes the RED metrics of [`MetricsLayer`](crate::MetricsLayer) and the
/// tokio runtime gauges to the installed recorder. The layer and
/// [`PrometheusSetup::install`](crate::PrometheusSetup::install) call it;
/// calling it again is harmless.
pub fn describe_metrics() {
    describe_counter!(
        METRIC_HTTP_REQUESTS_TOTAL,
        Unit::Count,
        "HTTP requests answered, by method, route template and status class"
    );
    describe_histogram!(
        METRIC_HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time to the response head, by method, route template and status class"
    );
    describe_gauge!(
        METRIC_HTTP_REQUESTS_IN_FLIGHT,
        Unit::Count,
        "HTTP requests being handled, by method and route template"
    );
    describe_histogram!(
        METRIC_HTTP_REQUEST_SIZE_BYTES,
        Unit::Bytes,
        "Request body sizes (Content-Length), by method and route template"
    );
    describe_histogram!(
        METRIC_HTTP_RESPONSE_SIZE_BYTES,
        Unit::Bytes,
        "Response body sizes (when known), by method, route template and status class"
    );
    describe_gauge!(
        METRIC_TOKIO_WORKERS,
        Unit::Count,
        "Worker threads of the tokio runtime"
    );
    describe_gauge!(
        METRIC_TOKIO_ALIVE_TASKS,
        Unit::Count,
        "Tasks alive in the tokio runtime"
    );
    describe_gauge!(
        METRIC_TOKIO_GLOBAL_QUEUE_DEPTH,
        Unit::Count,
        "Tasks waiting in the tokio runtime's global queue"
    );
}
