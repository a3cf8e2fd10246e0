//! `VersionedService`: the versions in front of axum's routing
//! ([`VersionedRouter::into_service`](crate::VersionedRouter::into_service)).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use ee_core::Problem;
use http::{HeaderValue, Request};
use tower::{Service, ServiceExt};

use super::pick::{Picked, Shared, Uri};

/// The versions in front of axum's routing (see
/// [`VersionedRouter::into_service`](crate::VersionedRouter::into_service)).
#[derive(Clone)]
pub struct VersionedService {
    pub(super) router: Router,
    pub(super) front: Arc<Front>,
}

impl std::fmt::Debug for VersionedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionedService")
            .field("supported", &self.front.shared.supported)
            .finish_non_exhaustive()
    }
}

pub(super) struct Front {
    pub(super) shared: Arc<Shared>,
    pub(super) vary: Option<HeaderValue>,
    /// The default version is a nested router: unprefixed requests for it
    /// go to its own router too.
    pub(super) default_nested: bool,
    /// The version-neutral routes, with a marking fallback (none: no such
    /// routes).
    pub(super) neutral: Option<Router>,
}

/// Marks the response of the neutral routes' fallback: no neutral route
/// had the path.
#[derive(Clone, Copy)]
pub(super) struct NoNeutralRoute;

type Inner = futures_util::future::Either<
    VaryFuture<<Router as Service<Request<Body>>>::Future>,
    futures_util::future::Either<
        std::future::Ready<Result<Response, Infallible>>,
        Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>,
    >,
>;

pin_project_lite::pin_project! {
    /// The response future of [`VersionedService`].
    pub struct ResponseFuture {
        #[pin]
        inner: Inner,
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl ResponseFuture {
    fn new(inner: Inner) -> Self {
        Self { inner }
    }
}

impl Service<Request<Body>> for VersionedService {
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        use futures_util::future::Either;
        let front = &*self.front;
        let shared = &*front.shared;
        let picked = match shared.pick(&req, Uri::Read) {
            Ok(picked) => picked,
            Err(e) => return front.neutral_or(req, Problem::from(e).into_response()),
        };
        // The common case first, with no lookup: the default version,
        // not named by the URI.
        if let Picked::Otherwise(v) = picked
            && shared.default == Some(v)
            && !front.default_nested
        {
            return ResponseFuture::new(Either::Left(VaryFuture {
                inner: self.router.call(req),
                vary: front.vary.clone(),
            }));
        }
        let own = match shared.router(picked.version()) {
            Ok(own) => own,
            Err(e) => return front.neutral_or(req, Problem::from(e).into_response()),
        };
        // `/v<N>/…` is routed as it is. Any other request is answered by the
        // version its headers or the default picked, and varies by them:
        // the default's unprefixed routes are in the main router, another
        // version's in a router of its own (its routes and the neutral ones;
        // only an `Arc` is cloned).
        let (inner, vary) = match picked {
            Picked::ByUri(_) => (self.router.call(req), None),
            Picked::Otherwise(_) => (own.clone().call(req), front.vary.clone()),
        };
        ResponseFuture::new(Either::Left(VaryFuture { inner, vary }))
    }
}

impl Front {
    /// A request whose version is wrong: a neutral route still answers it;
    /// any other path gets `problem`.
    fn neutral_or(&self, req: Request<Body>, problem: Response) -> ResponseFuture {
        use futures_util::future::Either;
        let Some(neutral) = &self.neutral else {
            return ResponseFuture::new(Either::Right(Either::Left(std::future::ready(Ok(
                problem,
            )))));
        };
        let neutral = neutral.clone();
        ResponseFuture::new(Either::Right(Either::Right(Box::pin(async move {
            let response = neutral.oneshot(req).await?;
            if response.extensions().get::<NoNeutralRoute>().is_some() {
                return Ok(problem);
            }
            Ok(response)
        }))))
    }
}

pin_project_lite::pin_project! {
    /// A response with `Vary` appended (the sources that picked its version).
    pub(super) struct VaryFuture<F> {
        #[pin]
        inner: F,
        vary: Option<HeaderValue>,
    }
}

impl<F> Future for VaryFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(vary) = this.vary.take() {
            response.headers_mut().append(http::header::VARY, vary);
        }
        Poll::Ready(Ok(response))
    }
}
