//! `into_router`'s unprefixed paths: one axum route per path whose service
//! picks the version's handler (one match, no second router), and the layer
//! on the default version's handler that hands other versions to it.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use axum::routing::MethodRouter;
use http::Request;
use tower::Service;

use super::dispatch::Dispatch;
use super::gate::{GateFuture, GateLayer};
use super::pick::{Picked, Shared, Uri};
use crate::error::VersioningError;
use crate::version::Version;

/// One version's handler for a path, and its gate (applied by the selector,
/// not as a layer: one future less per request).
pub(super) struct PathHandler {
    pub(super) version: Version,
    /// Behind a mutex: calling it only builds its future (held for that
    /// instant), which is cheaper than cloning the `MethodRouter` for every
    /// request.
    pub(super) handler: Mutex<MethodRouter>,
    pub(super) gate: GateLayer,
}

/// The service of one unprefixed path: picks the version, calls that
/// version's handler for the path (or, when the version lacks the path, its
/// router, which answers 404 with its headers).
#[derive(Clone)]
pub(super) struct Selector {
    pub(super) shared: Arc<Shared>,
    /// A short list (a handful of versions), searched in order: cheaper
    /// than a map lookup at this size.
    pub(super) versions: Arc<[PathHandler]>,
}

impl Service<Request<Body>> for Selector {
    type Response = Response;
    type Error = Infallible;
    /// The rare fallback (a version without this path, or read from the
    /// URI) is boxed: the common future stays small to move around.
    type Future = futures_util::future::Either<
        GateFuture<<MethodRouter as Service<Request<Body>>>::Future>,
        Pin<Box<<Dispatch as Service<Request<Body>>>::Future>>,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let picked = self.shared.pick(&req, Uri::Skip);
        self.call_picked(picked, req)
    }
}

impl Selector {
    /// Calls the handler of an already picked version.
    fn call_picked(
        &self,
        picked: Result<Picked, VersioningError>,
        req: Request<Body>,
    ) -> <Self as Service<Request<Body>>>::Future {
        use futures_util::future::Either;
        let found = match picked {
            Ok(Picked::Otherwise(version)) => self.versions.iter().find(|h| h.version == version),
            _ => None,
        };
        match found {
            // `MethodRouter` is always ready; `call` clones the matching
            // route into the future it returns.
            Some(h) => Either::Left(
                h.gate
                    .wrap(req, |req| h.handler.lock().expect("not poisoned").call(req)),
            ),
            // The dispatch picks again and answers (a problem, or the
            // version's router).
            None => Either::Right(Box::pin(
                Dispatch {
                    shared: self.shared.clone(),
                }
                .call(req),
            )),
        }
    }
}

/// On the default version's handler of a path: passes the request on when
/// it names no other version, hands it to the selector otherwise.
#[derive(Clone)]
pub(super) struct DefaultLayer {
    /// One `Arc`: axum clones the route's service on every request.
    pub(super) shared: Arc<DefaultShared>,
}

pub(super) struct DefaultShared {
    pub(super) version: Version,
    pub(super) gate: GateLayer,
    pub(super) selector: Selector,
}

impl<S> tower::Layer<S> for DefaultLayer {
    type Service = DefaultVersion<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DefaultVersion {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub(super) struct DefaultVersion<S> {
    inner: S,
    layer: DefaultLayer,
}

/// Only over axum's `Route` (what `MethodRouter::layer` wraps): the default
/// handler's future and another version's handler's future are then the
/// same type, and the two paths share one future type without nesting.
impl Service<Request<Body>> for DefaultVersion<axum::routing::Route> {
    type Response = Response;
    type Error = Infallible;
    type Future = <Selector as Service<Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request<Body>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        use futures_util::future::Either;
        let l = &*self.layer.shared;
        match l.selector.shared.pick(&req, Uri::Skip) {
            Ok(Picked::Otherwise(v)) if v == l.version => {
                let inner = &mut self.inner;
                Either::Left(l.gate.wrap(req, |req| inner.call(req)))
            }
            other => l.selector.call_picked(other, req),
        }
    }
}
