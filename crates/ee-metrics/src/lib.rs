#![doc = include_str!("../README.md")]

mod exporter;
mod layer;

pub use exporter::{LATENCY_BUCKETS, MetricsError, Prometheus, PrometheusSetup, SIZE_BUCKETS};
pub use layer::{
    DURATION, IN_FLIGHT, Metrics, MetricsLayer, OVERFLOW, REQUEST_SIZE, REQUESTS, RESPONSE_SIZE,
    ResponseFuture, UNMATCHED,
};

/// Describes the RED metrics (help text and units in `/metrics`).
pub fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(
        REQUESTS,
        "HTTP requests answered, by method, route template and status class"
    );
    metrics::describe_histogram!(
        DURATION,
        Unit::Seconds,
        "Time to the response head, by method, route template and status class"
    );
    metrics::describe_gauge!(
        IN_FLIGHT,
        "HTTP requests being handled, by method and route template"
    );
    metrics::describe_histogram!(
        REQUEST_SIZE,
        Unit::Bytes,
        "Request body sizes (Content-Length), by method and route template"
    );
    metrics::describe_histogram!(
        RESPONSE_SIZE,
        Unit::Bytes,
        "Response body sizes (when known), by method, route template and status class"
    );
}
