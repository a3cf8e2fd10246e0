//! OpenTelemetry export (feature `otlp`): the request spans (and the
//! outgoing-call spans of `PropagateLayer`) go to an OTLP/HTTP collector
//! through a batch exporter, sampled by trace id ratio (parent-based: a
//! caller's decision is kept); the W3C ids in logs and headers are the
//! exported ones.

use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::context::TraceContext;
use crate::setup::{LogError, OtlpConfig};

/// The exporter of a [`Logging`](crate::Logging): flush it before a test
/// reads the collector, and it is shut down (flushed) when dropped.
#[derive(Debug, Clone)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports every span ended so far, waiting for the collector.
    ///
    /// # Errors
    /// [`LogError::Otlp`] with the exporter's error (the collector is down or
    /// refused).
    pub fn flush(&self) -> Result<(), LogError> {
        self.provider
            .force_flush()
            .map_err(|e| LogError::Otlp(e.to_string()))
    }
}

pub(crate) fn provider(config: &OtlpConfig) -> Result<SdkTracerProvider, LogError> {
    let endpoint = if config
        .endpoint
        .trim_end_matches('/')
        .ends_with("/v1/traces")
    {
        config.endpoint.clone()
    } else {
        format!("{}/v1/traces", config.endpoint.trim_end_matches('/'))
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_millis(config.timeout_ms))
        .build()
        .map_err(|e| LogError::Otlp(e.to_string()))?;
    let ratio = config.sample_ratio.clamp(0.0, 1.0);
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build())
}

pub(crate) fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("ee-logging"))
}

pub(crate) fn telemetry(provider: SdkTracerProvider) -> Telemetry {
    Telemetry { provider }
}

/// Makes `span`'s exported ids the request's: its parent is the caller's
/// span (when a valid `traceparent` came in), and the ids OpenTelemetry gave
/// it replace `ours`. Without an OpenTelemetry layer (or for a span filtered
/// off) `ours` is kept.
pub(crate) fn adopt(
    span: &Span,
    ours: TraceContext,
    caller: Option<&TraceContext>,
) -> TraceContext {
    if let Some(caller) = caller {
        let flags = if caller.sampled() {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let remote = SpanContext::new(
            TraceId::from_bytes(caller.trace_id_bytes()),
            SpanId::from_bytes(caller.span_id_bytes()),
            flags,
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let cx = span.context();
    let exported = cx.span().span_context().clone();
    if !exported.is_valid() {
        return ours;
    }
    ours.with_ids(
        exported.trace_id().to_bytes(),
        exported.span_id().to_bytes(),
        exported.is_sampled(),
    )
}
