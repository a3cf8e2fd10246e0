//! `RequestLogLayer` (server) and `PropagateLayer` (client).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::HeaderValue;
use http::{HeaderMap, Request, Response};
use tower::{Layer, Service};
use tracing::Span;
use tracing::field::Empty;

use crate::context::{
    CURRENT, Current, RequestId, TRACEPARENT, TRACESTATE, TraceContext, X_REQUEST_ID,
};

/// Headers whose values never reach a log line.
pub const DEFAULT_REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "idempotency-key",
];

/// One span per request, named `request`, with `request_id`, `trace_id`,
/// `span_id`, `method`, `route`, `path`, and, once answered, `status` and
/// `latency_ms`; `tenant` and `user` are recorded when an
/// `ee_core::Subject` is in the request (or by the handler:
/// `Span::current().record("tenant", …)`). An event `request finished`
/// closes it (`warn` for 5xx, `info` otherwise). `route` is axum's matched
/// route template with the `axum` feature, `unmatched` without it.
///
/// - the request id: a valid incoming `X-Request-Id` is kept, anything else
///   replaced by a generated one; it is set on the request, the response
///   and (through [`PropagateLayer`]) on outgoing calls;
/// - W3C Trace Context: a valid `traceparent` is continued (same trace id,
///   a new span id), an invalid or missing one starts a new trace; the
///   response carries this span's `traceparent`. At a public edge, where
///   the caller is not one of your services, turn that off with
///   [`accept_incoming_trace(false)`](Self::accept_incoming_trace): every
///   request then starts a trace of its own;
/// - with [`log_headers`](Self::log_headers), the request headers are a
///   `headers` field, the [redacted](Self::redact) ones as `[redacted]`.
///
/// ```
/// use axum::{Router, routing::get};
/// use ee_logging::RequestLogLayer;
///
/// let app: Router = Router::new()
///     .route("/orders/{id}", get(|| async { "an order" }))
///     .layer(RequestLogLayer::new());
/// ```
#[derive(Clone)]
pub struct RequestLogLayer {
    shared: Arc<Shared>,
}

struct Shared {
    log_headers: bool,
    accept_incoming_trace: bool,
    redacted: Vec<String>,
}

impl std::fmt::Debug for RequestLogLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLogLayer")
            .field("log_headers", &self.shared.log_headers)
            .field("accept_incoming_trace", &self.shared.accept_incoming_trace)
            .field("redacted", &self.shared.redacted)
            .finish()
    }
}

impl Default for RequestLogLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestLogLayer {
    /// A span per request, headers not logged, a valid incoming
    /// `traceparent` continued.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                log_headers: false,
                accept_incoming_trace: true,
                redacted: DEFAULT_REDACTED_HEADERS
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            }),
        }
    }

    fn with(self, f: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Arc::try_unwrap(self.shared).unwrap_or_else(|arc| Shared {
            log_headers: arc.log_headers,
            accept_incoming_trace: arc.accept_incoming_trace,
            redacted: arc.redacted.clone(),
        });
        f(&mut shared);
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Logs the request headers in the span (`headers` field).
    #[must_use]
    pub fn log_headers(self, on: bool) -> Self {
        self.with(|s| s.log_headers = on)
    }

    /// Whether a valid incoming `traceparent` (and its `tracestate`) is
    /// continued (default `true`: the caller is one of your services).
    ///
    /// `false` suits a public edge such as an API gateway: a client cannot
    /// choose the trace id your logs and exported spans are filed under, or
    /// have its span named as your span's parent. Every request starts a new
    /// trace, and the incoming `traceparent` and `tracestate` headers are
    /// removed from the request, so code that passes the request's headers
    /// on does not pass the client's trace on either.
    ///
    /// ```
    /// use ee_logging::RequestLogLayer;
    ///
    /// let edge = RequestLogLayer::new().accept_incoming_trace(false);
    /// ```
    #[must_use]
    pub fn accept_incoming_trace(self, accept: bool) -> Self {
        self.with(|s| s.accept_incoming_trace = accept)
    }

    /// Adds header names whose values are logged as `[redacted]` (besides
    /// [`DEFAULT_REDACTED_HEADERS`]).
    #[must_use]
    pub fn redact<I, S>(self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let extra: Vec<String> = names
            .into_iter()
            .map(|n| n.as_ref().to_ascii_lowercase())
            .collect();
        self.with(|s| s.redacted.extend(extra))
    }
}

impl<S> Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`RequestLogLayer`] wraps around yours.
#[derive(Clone)]
pub struct RequestLog<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for RequestLog<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLog")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The headers as one line, redacted values replaced.
pub fn redacted_headers(headers: &HeaderMap, redacted: &[String]) -> String {
    let mut out = String::new();
    for (name, value) in headers {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(name.as_str());
        out.push_str(": ");
        if redacted.iter().any(|r| r == name.as_str()) {
            out.push_str("[redacted]");
        } else {
            out.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
    }
    out
}

fn route<B>(req: &Request<B>) -> Option<&str> {
    #[cfg(feature = "axum")]
    if let Some(m) = req.extensions().get::<axum::extract::MatchedPath>() {
        return Some(m.as_str());
    }
    let _ = req;
    None
}

impl<S, B, ResB> Service<Request<B>> for RequestLog<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let request_id = req
            .headers()
            .get(&X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(RequestId::parse)
            .unwrap_or_else(RequestId::generate);
        let caller = if self.shared.accept_incoming_trace {
            TraceContext::extract(req.headers())
        } else {
            let headers = req.headers_mut();
            headers.remove(&TRACEPARENT);
            headers.remove(&TRACESTATE);
            None
        };
        let trace = caller
            .as_ref()
            .map_or_else(TraceContext::new_root, TraceContext::child);
        let span = tracing::info_span!(
            "request",
            request_id = request_id.as_str(),
            trace_id = Empty,
            span_id = Empty,
            parent_id = Empty,
            method = %req.method(),
            route = route(&req).unwrap_or("unmatched"),
            path = req.uri().path(),
            status = Empty,
            latency_ms = Empty,
            tenant = Empty,
            user = Empty,
            headers = Empty,
        );
        #[cfg(feature = "otlp")]
        let trace = crate::otel::adopt(&span, trace, caller.as_ref());
        #[cfg(not(feature = "otlp"))]
        let _ = caller;
        if !span.is_disabled() {
            span.record("trace_id", trace.trace_id().as_str());
            span.record("span_id", trace.span_id().as_str());
            if let Some(parent) = trace.parent_id() {
                span.record("parent_id", parent.as_str());
            }
        }
        if let Some(subject) = req.extensions().get::<ee_core::Subject>() {
            span.record("user", &*subject.0);
        }
        if self.shared.log_headers {
            span.record(
                "headers",
                redacted_headers(req.headers(), &self.shared.redacted).as_str(),
            );
        }
        if let Ok(v) = HeaderValue::from_str(request_id.as_str()) {
            req.headers_mut().insert(X_REQUEST_ID.clone(), v);
        }
        req.extensions_mut().insert(request_id.clone());
        req.extensions_mut().insert(trace.clone());
        let traceparent = HeaderValue::from_str(&trace.traceparent()).ok();
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ResponseFuture {
            inner,
            current: Some(Current {
                trace,
                request_id: Some(request_id),
            }),
            span,
            start,
            traceparent,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`RequestLog`]: polls yours inside the request
    /// span and the request's trace context.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        current: Option<Current>,
        span: Span,
        start: Instant,
        traceparent: Option<HeaderValue>,
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<ResB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let current = this.current.take().expect("polled after completion");
        let (result, current) = CURRENT.sync_scope(current, || {
            let r = this.inner.poll(cx);
            (r, CURRENT.with(Clone::clone))
        });
        let Poll::Ready(mut result) = result else {
            *this.current = Some(current);
            return Poll::Pending;
        };
        let latency_ms = this.start.elapsed().as_secs_f64() * 1000.0;
        this.span.record("latency_ms", latency_ms);
        match &mut result {
            Ok(response) => {
                let status = response.status().as_u16();
                this.span.record("status", status);
                if let Some(rid) = &current.request_id
                    && let Ok(v) = HeaderValue::from_str(rid.as_str())
                {
                    response.headers_mut().insert(X_REQUEST_ID.clone(), v);
                }
                if let Some(tp) = this.traceparent.take() {
                    response.headers_mut().insert(TRACEPARENT.clone(), tp);
                }
                if status >= 500 {
                    tracing::warn!(status, latency_ms, "request finished");
                } else {
                    tracing::info!(status, latency_ms, "request finished");
                }
            }
            Err(_) => tracing::error!(latency_ms, "request failed: the service returned an error"),
        }
        Poll::Ready(result)
    }
}

/// For outgoing calls (a tower HTTP client): opens an `outgoing request`
/// span and sets `traceparent` (that span, a child of the current request's),
/// `tracestate` and `x-request-id` from the request this task is handling,
/// so the next service continues the trace. Outside a request it starts no
/// trace and sets no header.
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateLayer;

impl<S> Layer<S> for PropagateLayer {
    type Service = Propagate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Propagate { inner }
    }
}

/// The service [`PropagateLayer`] wraps around a client.
#[derive(Debug, Clone)]
pub struct Propagate<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Propagate<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "outgoing request",
            method = %req.method(),
            uri = %req.uri(),
            span_id = Empty,
        );
        if let Some(trace) = TraceContext::current() {
            // The call's own span, a child of the request's: in the exported
            // trace when OpenTelemetry runs, a fresh id otherwise.
            let child = trace.child();
            #[cfg(feature = "otlp")]
            let child = crate::otel::adopt(&span, child, None);
            span.record("span_id", child.span_id().as_str());
            child.inject(req.headers_mut());
        }
        if let Some(id) = RequestId::current()
            && let Ok(v) = HeaderValue::from_str(id.as_str())
        {
            req.headers_mut().insert(X_REQUEST_ID.clone(), v);
        }
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        future.instrument(span)
    }
}
