#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_metrics::MetricsLayer`).
mod exporter;
mod layer;
mod metrics;

pub use exporter::{LATENCY_BUCKETS, MetricsError, Prometheus, PrometheusSetup, SIZE_BUCKETS};
pub use layer::{Metrics, MetricsLayer, OVERFLOW, ResponseFuture, UNMATCHED};
pub use metrics::{
    DURATION, IN_FLIGHT, REQUEST_SIZE, REQUESTS, RESPONSE_SIZE, TOKIO_ALIVE_TASKS,
    TOKIO_GLOBAL_QUEUE_DEPTH, TOKIO_WORKERS, describe,
};
