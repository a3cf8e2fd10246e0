//! Authorization: one [`Authorize`] trait answered by RBAC, ABAC (Cedar) and
//! ReBAC (OpenFGA-style relationships) engines.
//!
//! Every engine records each decision as `ee_auth_decisions_total{model,outcome}`
//! and a `tracing` event (target `ee_auth::decision`) with the subject, action,
//! resource and the reason: the role, policy or tuple path that granted it.

mod guard;
mod layer;

pub use guard::{RequireScope, RequireScopeLayer, authorize, require};
pub use layer::{AuthorizeFuture, AuthorizeLayer, AuthorizeService, Target};

use std::borrow::Cow;
use std::fmt;
use std::future::Future;

use serde_json::Value;

use crate::metrics::DecisionMetrics;
use crate::{AuthError, Identity};

/// The resource a request acts on: a type and an id (`order` / `42`), with
/// optional attributes (for ABAC) and tenant.
#[derive(Debug, Clone, Copy)]
pub struct Resource<'a> {
    /// The resource type (`order`, `document`).
    pub kind: &'a str,
    /// The resource id (`42`); `*` for the type as a whole (e.g. "create an order").
    pub id: &'a str,
    /// Attributes of the resource, for attribute policies.
    pub attrs: Option<&'a Value>,
    /// The tenant owning the resource, if known.
    pub tenant: Option<&'a str>,
}

impl<'a> Resource<'a> {
    /// A resource of type `kind` with id `id`.
    pub fn new(kind: &'a str, id: &'a str) -> Self {
        Resource {
            kind,
            id,
            attrs: None,
            tenant: None,
        }
    }

    /// Adds attributes.
    pub fn with_attrs(mut self, attrs: &'a Value) -> Self {
        self.attrs = Some(attrs);
        self
    }

    /// Adds the tenant.
    pub fn with_tenant(mut self, tenant: &'a str) -> Self {
        self.tenant = Some(tenant);
        self
    }
}

impl fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

/// One question to an authorizer: may `subject` do `action` on `resource`, in `context`?
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// Who asks.
    pub subject: &'a Identity,
    /// What they want to do (`read`, `update`, or a ReBAC relation such as `viewer`).
    pub action: &'a str,
    /// On what.
    pub resource: Resource<'a>,
    /// The environment (time, IP, request attributes), for attribute policies.
    pub context: Option<&'a Value>,
}

impl<'a> AccessRequest<'a> {
    /// A request without context.
    pub fn new(subject: &'a Identity, action: &'a str, resource: Resource<'a>) -> Self {
        AccessRequest {
            subject,
            action,
            resource,
            context: None,
        }
    }

    /// Adds the context.
    pub fn with_context(mut self, context: &'a Value) -> Self {
        self.context = Some(context);
        self
    }
}

/// An authorizer's answer, with the reason (for the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// Allowed; the reason names what granted it (`role admin`, `policy p1`,
    /// `order:1#owner@user:anne`).
    Allow(Cow<'static, str>),
    /// Denied; the reason says why (`no role grants orders:delete`).
    Deny(Cow<'static, str>),
}

impl Decision {
    /// Whether the decision allows.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow(r) | Decision::Deny(r) => r,
        }
    }

    /// `Ok(())` if allowed, [`AuthError::Forbidden`] otherwise.
    pub fn into_result(self) -> Result<(), AuthError> {
        match self {
            Decision::Allow(_) => Ok(()),
            Decision::Deny(reason) => Err(AuthError::Forbidden(reason)),
        }
    }
}

/// Decides whether a subject may do an action on a resource.
///
/// Implemented by [`Rbac`](crate::Rbac), [`CedarPolicies`](crate::CedarPolicies)
/// and [`Rebac`](crate::Rebac); implement it for your own rules. An engine
/// answers `Err` only when it cannot decide (a store is down, a graph limit);
/// a refusal is `Ok(Decision::Deny(_))`.
pub trait Authorize: Send + Sync + 'static {
    /// Decides `request`.
    fn authorize(
        &self,
        request: &AccessRequest<'_>,
    ) -> impl Future<Output = Result<Decision, AuthError>> + Send;
}

/// Records a decision: the counter for its outcome and a tracing event with
/// subject, action, resource and reason.
pub(crate) fn record(
    metrics: &DecisionMetrics,
    request: &AccessRequest<'_>,
    result: &Result<Decision, AuthError>,
) {
    match result {
        Ok(Decision::Allow(reason)) => {
            metrics.allow();
            tracing::debug!(
                target: "ee_auth::decision",
                model = metrics.model,
                subject = request.subject.id(),
                action = request.action,
                resource = %request.resource,
                outcome = "allow",
                reason = &**reason,
            );
        }
        Ok(Decision::Deny(reason)) => {
            metrics.deny();
            tracing::info!(
                target: "ee_auth::decision",
                model = metrics.model,
                subject = request.subject.id(),
                action = request.action,
                resource = %request.resource,
                outcome = "deny",
                reason = &**reason,
            );
        }
        Err(error) => {
            metrics.error();
            tracing::warn!(
                target: "ee_auth::decision",
                model = metrics.model,
                subject = request.subject.id(),
                action = request.action,
                resource = %request.resource,
                outcome = "error",
                %error,
            );
        }
    }
}
