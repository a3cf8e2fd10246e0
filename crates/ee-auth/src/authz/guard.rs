//! Per-route guards and the in-handler check: [`require`] (a permission),
//! [`RequireScopeLayer`] (OAuth scopes) and [`authorize`].

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use ee_core::RequestHead;
use http::{Request, Response};
use tower::{Layer, Service};

use super::layer::{AuthorizeFuture, AuthorizeLayer, Target};
use crate::metrics::DecisionMetrics;
use crate::{AccessRequest, AuthError, Authorize, Identity, Resource};

/// A guard for one route (axum's `route_layer`, or any tower stack):
/// `permission` is `resource:action`, asked of `authz` with resource id `*`.
///
/// ```
/// use axum::{Router, routing::get};
/// use ee_auth::{Rbac, RoleConfig, require};
///
/// let rbac = std::sync::Arc::new(
///     Rbac::builder()
///         .role("clerk", RoleConfig::new().permissions(["orders:read"]))
///         .build()?,
/// );
/// let app: Router = Router::new()
///     .route("/orders", get(|| async { "orders" }))
///     .route_layer(require(rbac.clone(), "orders:read"))
///     .route("/refunds", get(|| async { "refunds" }).route_layer(require(rbac, "refunds:read")));
/// # Ok::<(), ee_auth::AuthError>(())
/// ```
///
/// # Panics
///
/// If `permission` is not `resource:action` (a typo in the route table,
/// found when the router is built, as axum does for an invalid path).
pub fn require<A: Authorize>(
    authz: A,
    permission: &'static str,
) -> AuthorizeLayer<A, impl Fn(&RequestHead<'_>) -> Target + Send + Sync + 'static> {
    let (kind, action) = match permission.split_once(':') {
        Some((kind, action)) if !kind.is_empty() && !action.is_empty() => (kind, action),
        _ => panic!("ee_auth::require: `{permission}` is not a permission (`resource:action`)"),
    };
    AuthorizeLayer::new(authz, move |_: &RequestHead<'_>| {
        Target::new(action, kind, "*")
    })
}

/// Asks `authz` whether `identity` may do `action` on `resource`, inside a
/// handler (after loading the resource, to check its owner or attributes).
/// A denial is [`AuthError::Forbidden`] (403; the reason goes to the decision log), so `?` answers it.
///
/// ```
/// use ee_auth::{AuthError, Authorize, Identity, Resource, authorize};
///
/// async fn update_order<A: Authorize>(authz: &A, who: &Identity, id: &str) -> Result<(), AuthError> {
///     let attrs = serde_json::json!({ "owner": "anne" }); // loaded with the order
///     authorize(authz, who, "update", Resource::new("Order", id).with_attrs(&attrs)).await?;
///     Ok(())
/// }
/// ```
pub async fn authorize<A: Authorize>(
    authz: &A,
    identity: &Identity,
    action: &str,
    resource: Resource<'_>,
) -> Result<(), AuthError> {
    authz
        .authorize(&AccessRequest::new(identity, action, resource))
        .await?
        .into_result()
}

/// Requires OAuth scopes (all of them) of the request's [`Identity`]:
/// without an identity 401, without a scope 403 `insufficient_scope` with the
/// RFC 6750 challenge naming the scopes. Counted as decisions of model `scope`.
///
/// ```
/// use axum::{Router, routing::get};
/// use ee_auth::RequireScopeLayer;
///
/// let app: Router = Router::new()
///     .route("/orders", get(|| async { "orders" }))
///     .route_layer(RequireScopeLayer::new(["orders:read"]));
/// ```
#[derive(Clone)]
pub struct RequireScopeLayer {
    shared: Arc<ScopeShared>,
}

struct ScopeShared {
    scopes: Box<[String]>,
    /// The scopes, space separated, as the challenge names them.
    required: String,
    metrics: DecisionMetrics,
}

impl fmt::Debug for RequireScopeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopeLayer")
            .field("scopes", &self.shared.scopes)
            .finish()
    }
}

impl RequireScopeLayer {
    /// Requires every scope in `scopes`; registers the decision counters.
    pub fn new<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes: Box<[String]> = scopes.into_iter().map(Into::into).collect();
        let required = scopes.join(" ");
        RequireScopeLayer {
            shared: Arc::new(ScopeShared {
                scopes,
                required,
                metrics: DecisionMetrics::new("scope"),
            }),
        }
    }

    /// Whether `identity` has every required scope; the error otherwise.
    fn check(&self, identity: Option<&Identity>) -> Result<(), AuthError> {
        let shared = &self.shared;
        let Some(identity) = identity else {
            return Err(AuthError::Missing);
        };
        if shared.scopes.iter().all(|s| identity.has_scope(s)) {
            shared.metrics.allow();
            return Ok(());
        }
        shared.metrics.deny();
        tracing::info!(
            target: "ee_auth::decision",
            model = "scope",
            subject = identity.id(),
            outcome = "deny",
            required = %shared.required,
            "insufficient scope"
        );
        Err(AuthError::InsufficientScope {
            required: shared.required.clone(),
        })
    }
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScope {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RequireScopeLayer`] wraps around yours.
#[derive(Clone)]
pub struct RequireScope<S> {
    inner: S,
    layer: RequireScopeLayer,
}

impl<S: fmt::Debug> fmt::Debug for RequireScope<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScope")
            .field("inner", &self.inner)
            .field("scopes", &self.layer.shared.scopes)
            .finish()
    }
}

impl<S, B, ResB> Service<Request<B>> for RequireScope<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: From<Bytes>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = AuthorizeFuture<S::Future, ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.layer.check(req.extensions().get::<Identity>()) {
            Ok(()) => AuthorizeFuture::plain(self.inner.call(req)),
            Err(e) => AuthorizeFuture::refused(e),
        }
    }
}
