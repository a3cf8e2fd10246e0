#![doc = include_str!("../README.md")]

mod context;
mod layer;
#[cfg(feature = "otlp")]
mod otel;
mod setup;

pub use context::{Carrier, RequestId, TRACEPARENT, TRACESTATE, TraceContext, X_REQUEST_ID};
pub use layer::{
    DEFAULT_REDACTED, Propagate, PropagateLayer, RequestLog, RequestLogLayer, ResponseFuture,
    redacted_headers,
};
#[cfg(feature = "otlp")]
pub use otel::Telemetry;
pub use setup::{
    DEFAULT_REDACTED_FIELDS, LogConfig, LogError, LogFormat, LogGuard, Logging, OtlpConfig,
    RedactingWriter,
};
