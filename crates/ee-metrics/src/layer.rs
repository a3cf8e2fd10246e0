//! `MetricsLayer`: RED metrics per request, labelled by the matched route
//! template (never the raw path), the method and the status class.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use dashmap::DashMap;
use http::{Method, Request, Response};
use http_body::Body;
use metrics::{Counter, Gauge, Histogram};
use tower::{Layer, Service};

use crate::metrics::{
    METRIC_HTTP_REQUEST_DURATION_SECONDS, METRIC_HTTP_REQUEST_SIZE_BYTES,
    METRIC_HTTP_REQUESTS_IN_FLIGHT, METRIC_HTTP_REQUESTS_TOTAL, METRIC_HTTP_RESPONSE_SIZE_BYTES,
};

/// The `route` value of requests no route matched (404s of any path).
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// The `route` value once [`MetricsLayer::max_routes`] distinct routes are in use.
pub const OVERFLOW_ROUTE: &str = "other";

/// Records RED metrics for every request through it.
///
/// Put it on the axum `Router` **after** the routes (`.layer(MetricsLayer::new())`,
/// or `.route_layer(...)`): the route label is axum's `MatchedPath`, the
/// template (`/orders/{id}`), so 10 000 order ids are one time series.
/// Requests that match no route are counted under `route="unmatched"`; with
/// bare tower, set a classifier with [`route_fn`](Self::route_fn).
///
/// ```
/// use axum::{Router, routing::get};
/// use ee_metrics::MetricsLayer;
///
/// let app: Router = Router::new()
///     .route("/orders/{id}", get(|| async { "an order" }))
///     .layer(MetricsLayer::new());
/// ```
#[derive(Clone)]
pub struct MetricsLayer {
    shared: Arc<Shared>,
}

type RouteFn = dyn Fn(&Method, &http::Uri) -> Option<String> + Send + Sync;
type SeriesMap = DashMap<Arc<str>, Arc<Series>, foldhash::fast::RandomState>;

struct Shared {
    route_fn: Option<Box<RouteFn>>,
    max_routes: usize,
    /// Handles by method, then route: registering a series is a hash-map
    /// insert in the recorder (labels hashed, strings allocated); finding one
    /// here is one probe by `&str`.
    series: [SeriesMap; 10],
    routes: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for MetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsLayer")
            .field("max_routes", &self.shared.max_routes)
            .field("routes", &self.shared.routes)
            .finish_non_exhaustive()
    }
}

impl Default for MetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsLayer {
    /// RED metrics with axum's matched route as the route label (feature
    /// `axum`; without it, set [`route_fn`](Self::route_fn)).
    pub fn new() -> Self {
        crate::metrics::describe_metrics();
        Self {
            shared: Arc::new(Shared {
                route_fn: None,
                max_routes: 1000,
                series: std::array::from_fn(|_| {
                    DashMap::with_hasher(foldhash::fast::RandomState::default())
                }),
                routes: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    /// Names the route of a request that axum did not match (bare tower, or
    /// a layer outside the router): return a **template**, never the raw
    /// path; `None` counts it as `unmatched`.
    #[must_use]
    pub fn route_fn<F>(self, f: F) -> Self
    where
        F: Fn(&Method, &http::Uri) -> Option<String> + Send + Sync + 'static,
    {
        let mut shared = self.unshared();
        shared.route_fn = Some(Box::new(f));
        Self {
            shared: Arc::new(shared),
        }
    }

    /// At most this many distinct routes get their own series (default
    /// 1 000); later ones share `route="other"`. A guard against a
    /// `route_fn` that leaks raw paths.
    #[must_use]
    pub fn max_routes(self, n: usize) -> Self {
        let mut shared = self.unshared();
        shared.max_routes = n;
        Self {
            shared: Arc::new(shared),
        }
    }

    fn unshared(self) -> Shared {
        Arc::try_unwrap(self.shared)
            .unwrap_or_else(|_| panic!("configure MetricsLayer before cloning it"))
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        #[cfg(not(feature = "axum"))]
        if self.shared.route_fn.is_none() {
            warn_no_route_source();
        }
        Metrics {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Without axum's `MatchedPath` (feature `axum`) and without a `route_fn`,
/// every request is `route="unmatched"`: said once per process, with the fix.
#[cfg(not(feature = "axum"))]
fn warn_no_route_source() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::warn!(
            "MetricsLayer has no route source: every request is counted as route=\"unmatched\". \
             To fix: enable ee-metrics' `axum` feature (routes from axum's MatchedPath), \
             or set MetricsLayer::route_fn"
        );
    });
}

/// The service [`MetricsLayer`] wraps around yours.
#[derive(Clone)]
pub struct Metrics<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Metrics<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The method label: the nine standard methods by name, anything else `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MethodLabel {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Connect,
    Trace,
    Other,
}

impl MethodLabel {
    fn of(m: &Method) -> Self {
        match *m {
            Method::GET => Self::Get,
            Method::HEAD => Self::Head,
            Method::POST => Self::Post,
            Method::PUT => Self::Put,
            Method::DELETE => Self::Delete,
            Method::PATCH => Self::Patch,
            Method::OPTIONS => Self::Options,
            Method::CONNECT => Self::Connect,
            Method::TRACE => Self::Trace,
            _ => Self::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Patch => "PATCH",
            Self::Options => "OPTIONS",
            Self::Connect => "CONNECT",
            Self::Trace => "TRACE",
            Self::Other => "other",
        }
    }
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "cancelled"];

/// The handles of one (method, route): per status class, a counter, a
/// duration histogram and a response-size histogram; the in-flight gauge and
/// the request-size histogram.
struct Series {
    requests: [Counter; 6],
    duration: [Histogram; 6],
    response_size: [Histogram; 6],
    in_flight: Gauge,
    request_size: Histogram,
}

impl Series {
    fn new(method: MethodLabel, route: &Arc<str>) -> Self {
        let m = method.as_str();
        let class_labels = |class: &str| {
            [
                ("method", m.to_owned()),
                ("route", route.to_string()),
                ("status_class", class.to_owned()),
            ]
        };
        let histograms = |name: &'static str| {
            CLASSES.map(|class| metrics::histogram!(name, &class_labels(class)))
        };
        let labels = [("method", m.to_owned()), ("route", route.to_string())];
        Self {
            requests: CLASSES
                .map(|class| metrics::counter!(METRIC_HTTP_REQUESTS_TOTAL, &class_labels(class))),
            duration: histograms(METRIC_HTTP_REQUEST_DURATION_SECONDS),
            response_size: histograms(METRIC_HTTP_RESPONSE_SIZE_BYTES),
            in_flight: metrics::gauge!(METRIC_HTTP_REQUESTS_IN_FLIGHT, &labels),
            request_size: metrics::histogram!(METRIC_HTTP_REQUEST_SIZE_BYTES, &labels),
        }
    }
}

impl Shared {
    fn series(&self, method: MethodLabel, route: &str) -> Arc<Series> {
        let map = &self.series[method.index()];
        // The common case: a known series, one read-locked probe.
        if let Some(s) = map.get(route) {
            return s.clone();
        }
        use std::sync::atomic::Ordering::Relaxed;
        let route: Arc<str> = if self.routes.load(Relaxed) >= self.max_routes {
            Arc::from(OVERFLOW_ROUTE)
        } else {
            Arc::from(route)
        };
        map.entry(route.clone())
            .or_insert_with(|| {
                self.routes.fetch_add(1, Relaxed);
                Arc::new(Series::new(method, &route))
            })
            .clone()
    }
}

impl<S, B, ResB> Service<Request<B>> for Metrics<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: Body,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let method = MethodLabel::of(req.method());
        let series = match route_of(&self.shared, &req) {
            Route::Known(r) => self.shared.series(method, r),
            Route::Owned(r) => self.shared.series(method, &r),
        };
        series.in_flight.increment(1.0);
        if let Some(size) = request_size(&req) {
            series.request_size.record(size as f64);
        }
        ResponseFuture {
            inner: self.inner.call(req),
            record: Some(Record { series, start }),
        }
    }
}

enum Route<'a> {
    Known(&'a str),
    Owned(String),
}

fn route_of<'a, B>(shared: &Shared, req: &'a Request<B>) -> Route<'a> {
    #[cfg(feature = "axum")]
    if let Some(matched) = req.extensions().get::<axum::extract::MatchedPath>() {
        return Route::Known(matched.as_str());
    }
    if let Some(f) = &shared.route_fn
        && let Some(route) = f(req.method(), req.uri())
    {
        return Route::Owned(route);
    }
    Route::Known(UNMATCHED_ROUTE)
}

fn request_size<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

struct Record {
    series: Arc<Series>,
    start: Instant,
}

impl Record {
    fn finish(self, class: usize, response_size: Option<u64>) {
        let s = &self.series;
        s.requests[class].increment(1);
        s.duration[class].record(self.start.elapsed().as_secs_f64());
        if let Some(size) = response_size {
            s.response_size[class].record(size as f64);
        }
        s.in_flight.decrement(1.0);
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Metrics`]: records when the response head is
    /// ready, or as `cancelled` when the request is dropped before.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        record: Option<Record>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(record) = this.project().record.take() {
                record.finish(5, None);
            }
        }
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    ResB: Body,
{
    type Output = Result<Response<ResB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Some(record) = this.record.take() {
            match &result {
                Ok(response) => {
                    let class = match response.status().as_u16() {
                        100..=199 => 0,
                        200..=299 => 1,
                        300..=399 => 2,
                        400..=499 => 3,
                        _ => 4,
                    };
                    record.finish(class, response.body().size_hint().exact());
                }
                // A service error (not a response): the server answers 500.
                Err(_) => record.finish(4, None),
            }
        }
        Poll::Ready(result)
    }
}
