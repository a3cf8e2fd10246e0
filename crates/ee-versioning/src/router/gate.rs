//! The gate around every route of a version with a lifecycle: the sunset
//! check, the deprecation count, the lifecycle headers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use axum::response::Response;
use ee_core::{Clock, Problem};
use http::{HeaderName, HeaderValue, Request};
use tower::Service;

use crate::error::VersioningError;
use crate::lifecycle::Lifecycle;
use crate::metrics::VersionMeter;
use crate::version::Version;

/// The wall clock of an [`ee_core::Clock`], as an object (the router holds
/// any clock without a type parameter).
pub(crate) trait WallClock: Send + Sync {
    fn system_time(&self) -> SystemTime;
}

impl<C: Clock> WallClock for C {
    fn system_time(&self) -> SystemTime {
        Clock::system_time(self)
    }
}

/// Around every route of a version: the sunset check, the deprecation
/// count, the lifecycle headers.
#[derive(Clone)]
pub(super) struct GateLayer {
    pub(super) version: Version,
    /// No deprecation or sunset date: nothing to check per request.
    pub(super) open: bool,
    pub(super) lifecycle: Arc<Lifecycle>,
    pub(super) headers: Arc<[(HeaderName, HeaderValue)]>,
    pub(super) supported: Arc<[Version]>,
    pub(super) clock: Arc<dyn WallClock>,
    /// The version's deprecation counters (none: never deprecated).
    pub(super) meter: Option<Arc<VersionMeter>>,
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gate {
            inner,
            gate: self.clone(),
        }
    }
}

#[derive(Clone)]
pub(super) struct Gate<S> {
    inner: S,
    gate: GateLayer,
}

impl<S> Service<Request<Body>> for Gate<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let inner = &mut self.inner;
        self.gate.wrap(req, |req| inner.call(req))
    }
}

impl GateLayer {
    /// `call(req)` behind this gate: the sunset check and the deprecation
    /// count first, the lifecycle headers on the response.
    pub(super) fn wrap<F>(
        &self,
        req: Request<Body>,
        call: impl FnOnce(Request<Body>) -> F,
    ) -> GateFuture<F> {
        // Most versions have no dates: no call at all then.
        let admitted = if self.open { Ok(()) } else { self.admit(&req) };
        match admitted {
            Ok(()) => GateFuture::Inner {
                inner: call(req),
                headers: self.headers.clone(),
            },
            Err(response) => GateFuture::Done {
                response: Some(*response),
            },
        }
    }

    /// The sunset check (a 410 with the lifecycle headers) and the
    /// deprecation count.
    fn admit<B>(&self, req: &Request<B>) -> Result<(), Box<Response>> {
        let lifecycle = &self.lifecycle;
        let now = self.clock.system_time();
        if lifecycle.is_sunset(now) {
            let mut problem = Problem::from(VersioningError::Sunset {
                version: self.version,
                at: lifecycle.sunset_at.unwrap_or(now),
                supported: self.supported.to_vec(),
            });
            for (name, value) in self.headers.iter() {
                problem = problem.with_header(name.clone(), value.clone());
            }
            return Err(Box::new(problem.into_response()));
        }
        if lifecycle.deprecated_at.is_some_and(|at| at <= now)
            && let Some(meter) = &self.meter
        {
            meter.count(req);
        }
        Ok(())
    }
}

pin_project_lite::pin_project! {
    #[project = GateProj]
    pub(super) enum GateFuture<F> {
        Inner { #[pin] inner: F, headers: Arc<[(HeaderName, HeaderValue)]> },
        Done { response: Option<Response> },
    }
}

impl<F> Future for GateFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GateProj::Inner { inner, headers } => {
                let mut response = std::task::ready!(inner.poll(cx))?;
                let h = response.headers_mut();
                for (name, value) in headers.iter() {
                    if name == http::header::VARY {
                        h.append(name.clone(), value.clone());
                    } else {
                        h.insert(name.clone(), value.clone());
                    }
                }
                Poll::Ready(Ok(response))
            }
            GateProj::Done { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}
