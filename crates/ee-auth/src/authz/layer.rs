//! `AuthorizeLayer`: asks an [`Authorize`] engine about each request before
//! it reaches the service.

use std::borrow::Cow;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use ee_core::{Problem, RequestHead};
use http::{Request, Response};
use pin_project_lite::pin_project;
use serde_json::Value;
use tower::{Layer, Service};

use crate::{AccessRequest, AuthError, Authorize, Identity, Resource};

/// What a request does to what: the action, the resource (type, id, tenant,
/// attributes) and the context, as owned values (`&'static str` literals are
/// not copied).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The action (`read`, `update`).
    pub action: Cow<'static, str>,
    /// The resource type (`orders`, `Order`).
    pub kind: Cow<'static, str>,
    /// The resource id (`*`: the type as a whole).
    pub id: Cow<'static, str>,
    /// The tenant owning the resource, if known.
    pub tenant: Option<Cow<'static, str>>,
    /// The resource's attributes (ABAC).
    pub attrs: Option<Value>,
    /// The context (ABAC): client IP, time…
    pub context: Option<Value>,
}

impl Target {
    /// `action` on the resource `kind` / `id`.
    pub fn new(
        action: impl Into<Cow<'static, str>>,
        kind: impl Into<Cow<'static, str>>,
        id: impl Into<Cow<'static, str>>,
    ) -> Self {
        Target {
            action: action.into(),
            kind: kind.into(),
            id: id.into(),
            tenant: None,
            attrs: None,
            context: None,
        }
    }

    /// Sets the tenant owning the resource.
    pub fn with_tenant(mut self, tenant: impl Into<Cow<'static, str>>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the resource's attributes.
    pub fn with_attrs(mut self, attrs: Value) -> Self {
        self.attrs = Some(attrs);
        self
    }

    /// Sets the context.
    pub fn with_context(mut self, context: Value) -> Self {
        self.context = Some(context);
        self
    }

    /// The question to an engine, for `identity`.
    pub fn request<'a>(&'a self, identity: &'a Identity) -> AccessRequest<'a> {
        let mut resource = Resource::new(&self.kind, &self.id);
        resource.tenant = self.tenant.as_deref();
        resource.attrs = self.attrs.as_ref();
        AccessRequest {
            subject: identity,
            action: &self.action,
            resource,
            context: self.context.as_ref(),
        }
    }
}

/// An engine shared behind an `Arc` decides as the engine does.
impl<A: Authorize + ?Sized> Authorize for Arc<A> {
    fn authorize(
        &self,
        request: &AccessRequest<'_>,
    ) -> impl Future<Output = Result<crate::Decision, AuthError>> + Send {
        (**self).authorize(request)
    }
}

/// Authorizes every request with an [`Authorize`] engine, on the target a
/// function reads from the request head.
///
/// The [`Identity`] comes from the request extensions (put there by the
/// authentication layer, which must run first): without one the answer is
/// 401 ([`AuthError::Missing`]); a denial is 403 ([`AuthError::Forbidden`],
/// the engine's reason in the decision log, not in the answer); an engine that cannot decide answers
/// its own problem (503 for a store outage…). Every answer is problem+json.
///
/// ```
/// use ee_auth::{AuthorizeLayer, Rbac, RoleConfig, Target};
/// use http::Method;
///
/// let rbac = Rbac::builder()
///     .role("clerk", RoleConfig::new().permissions(["orders:read"]))
///     .build()?;
/// let layer = AuthorizeLayer::new(rbac, |head: &ee_core::RequestHead<'_>| {
///     let action = if head.method == Method::GET { "read" } else { "write" };
///     Target::new(action, "orders", "*")
/// });
/// let app = axum::Router::<()>::new()
///     .route("/orders", axum::routing::get(|| async { "orders" }))
///     .layer(layer);
/// # Ok::<(), ee_auth::AuthError>(())
/// ```
pub struct AuthorizeLayer<A, F> {
    authz: Arc<A>,
    target: Arc<F>,
}

impl<A, F> Clone for AuthorizeLayer<A, F> {
    fn clone(&self) -> Self {
        AuthorizeLayer {
            authz: self.authz.clone(),
            target: self.target.clone(),
        }
    }
}

impl<A, F> fmt::Debug for AuthorizeLayer<A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeLayer").finish_non_exhaustive()
    }
}

impl<A, F> AuthorizeLayer<A, F>
where
    A: Authorize,
    F: Fn(&RequestHead<'_>) -> Target + Send + Sync + 'static,
{
    /// Authorizes with `authz` (an engine, or an `Arc` of one to share it)
    /// the target `target` reads from each request.
    pub fn new(authz: A, target: F) -> Self {
        AuthorizeLayer {
            authz: Arc::new(authz),
            target: Arc::new(target),
        }
    }
}

impl<S, A, F> Layer<S> for AuthorizeLayer<A, F> {
    type Service = AuthorizeService<S, A, F>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthorizeService {
            inner,
            authz: self.authz.clone(),
            target: self.target.clone(),
        }
    }
}

/// The service [`AuthorizeLayer`] wraps around yours.
pub struct AuthorizeService<S, A, F> {
    inner: S,
    authz: Arc<A>,
    target: Arc<F>,
}

impl<S: Clone, A, F> Clone for AuthorizeService<S, A, F> {
    fn clone(&self) -> Self {
        AuthorizeService {
            inner: self.inner.clone(),
            authz: self.authz.clone(),
            target: self.target.clone(),
        }
    }
}

impl<S: fmt::Debug, A, F> fmt::Debug for AuthorizeService<S, A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, A, F, B, ResB> Service<Request<B>> for AuthorizeService<S, A, F>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    A: Authorize,
    F: Fn(&RequestHead<'_>) -> Target + Send + Sync + 'static,
    B: Send + 'static,
    ResB: From<Bytes> + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = AuthorizeFuture<S::Future, ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(identity) = req.extensions().get::<Identity>().cloned() else {
            return AuthorizeFuture::refused(AuthError::Missing);
        };
        let target = (self.target)(&RequestHead::from(&req));
        // Call, later, the clone that was polled ready, and leave a fresh
        // clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authz = self.authz.clone();
        AuthorizeFuture::boxed(Box::pin(async move {
            let decision = authz.authorize(&target.request(&identity)).await;
            match decision.and_then(crate::Decision::into_result) {
                Ok(()) => inner.call(req).await,
                Err(e) => Ok(Problem::from(e).into_response()),
            }
        }))
    }
}

type Boxed<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

pin_project! {
    /// The future of [`AuthorizeService`] and [`RequireScope`](crate::RequireScope):
    /// a refusal ready at once, the inner service's future untouched, or a
    /// decision then the inner call (boxed: engines decide asynchronously).
    pub struct AuthorizeFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = Projection]
    enum Kind<F, B, E> {
        Ready { response: Option<Response<B>> },
        Plain { #[pin] future: F },
        Boxed { future: Boxed<B, E> },
    }
}

impl<F, B: From<Bytes>, E> AuthorizeFuture<F, B, E> {
    pub(crate) fn refused(error: AuthError) -> Self {
        AuthorizeFuture {
            kind: Kind::Ready {
                response: Some(Problem::from(error).into_response()),
            },
        }
    }

    pub(crate) fn plain(future: F) -> Self {
        AuthorizeFuture {
            kind: Kind::Plain { future },
        }
    }

    fn boxed(future: Boxed<B, E>) -> Self {
        AuthorizeFuture {
            kind: Kind::Boxed { future },
        }
    }
}

impl<F, B, E> Future for AuthorizeFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            Projection::Ready { response } => Poll::Ready(Ok(response
                .take()
                .expect("AuthorizeFuture polled after completion"))),
            Projection::Plain { future } => future.poll(cx),
            Projection::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}
