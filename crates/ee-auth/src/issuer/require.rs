//! `RequireServiceLayer`: routes only the listed services may call.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use ee_core::Problem;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::{AuthError, Identity};

/// Lets through only requests whose [`Identity`] (put in the request
/// extensions by the authentication layer) is a service token of a listed
/// service: no identity answers 401, a user or an unlisted service 403, both
/// as problems.
///
/// ```
/// use ee_auth::RequireServiceLayer;
/// use tower::Layer;
///
/// let layer = RequireServiceLayer::new(["order", "payment"]);
/// let service = layer.layer(tower::service_fn(|_req: http::Request<String>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// }));
/// # drop(service);
/// ```
#[derive(Debug, Clone)]
pub struct RequireServiceLayer {
    allowed: Arc<[Box<str>]>,
}

impl RequireServiceLayer {
    /// Allows the services named (`order` for `service:order`).
    pub fn new<I, S>(services: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            allowed: services
                .into_iter()
                .map(|s| s.into().into_boxed_str())
                .collect(),
        }
    }
}

impl<S> Layer<S> for RequireServiceLayer {
    type Service = RequireService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireService {
            inner,
            allowed: self.allowed.clone(),
        }
    }
}

/// The service [`RequireServiceLayer`] wraps around yours.
#[derive(Debug, Clone)]
pub struct RequireService<S> {
    inner: S,
    allowed: Arc<[Box<str>]>,
}

impl<S> RequireService<S> {
    fn check<B>(&self, req: &Request<B>) -> Result<(), AuthError> {
        let identity = req
            .extensions()
            .get::<Identity>()
            .ok_or(AuthError::Missing)?;
        match identity.service_name() {
            Some(name) if self.allowed.iter().any(|a| &**a == name) => Ok(()),
            Some(_) => Err(AuthError::Forbidden(
                "this service may not call this endpoint".into(),
            )),
            None => Err(AuthError::Forbidden(
                "this endpoint is for services only".into(),
            )),
        }
    }
}

impl<S, B, ResB> Service<Request<B>> for RequireService<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: From<Bytes>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = RequireServiceFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.check(&req) {
            Ok(()) => RequireServiceFuture {
                kind: Kind::Inner {
                    future: self.inner.call(req),
                },
            },
            Err(e) => RequireServiceFuture {
                kind: Kind::Refused {
                    response: Some(Problem::from(e).into_response()),
                },
            },
        }
    }
}

pin_project! {
    /// The future of [`RequireService`]: the inner service's, or a ready refusal.
    pub struct RequireServiceFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = Projection]
    enum Kind<F, B> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response<B>> },
    }
}

impl<F, B, E> Future for RequireServiceFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            Projection::Inner { future } => future.poll(cx),
            Projection::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("RequireServiceFuture polled after completion"))),
        }
    }
}
