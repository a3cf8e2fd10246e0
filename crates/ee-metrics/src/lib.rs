#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_metrics::MetricsLayer`).
mod exporter;
mod layer;
mod metrics;

pub use exporter::{LATENCY_BUCKETS, MetricsError, Prometheus, PrometheusSetup, SIZE_BUCKETS};
pub use layer::{Metrics, MetricsLayer, OVERFLOW_ROUTE, ResponseFuture, UNMATCHED_ROUTE};
pub use metrics::{
    METRIC_HTTP_REQUEST_DURATION_SECONDS, METRIC_HTTP_REQUEST_SIZE_BYTES,
    METRIC_HTTP_REQUESTS_IN_FLIGHT, METRIC_HTTP_REQUESTS_TOTAL, METRIC_HTTP_RESPONSE_SIZE_BYTES,
    METRIC_TOKIO_ALIVE_TASKS, METRIC_TOKIO_GLOBAL_QUEUE_DEPTH, METRIC_TOKIO_WORKERS,
    describe_metrics,
};
