#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_logging::RequestLogLayer`).
mod context;
mod layer;
#[cfg(feature = "otlp")]
mod otel;
mod setup;

pub use context::{Carrier, RequestId, TRACEPARENT, TRACESTATE, TraceContext, X_REQUEST_ID};
pub use layer::{
    DEFAULT_REDACTED_HEADERS, Propagate, PropagateLayer, RequestLog, RequestLogLayer,
    ResponseFuture, redacted_headers,
};
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use otel::Telemetry;
pub use setup::{
    DEFAULT_REDACTED_FIELDS, LogConfig, LogError, LogFormat, LogGuard, Logging, OtlpConfig,
    RedactingWriter,
};
