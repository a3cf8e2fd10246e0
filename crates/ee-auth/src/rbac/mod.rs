//! Role-based access control: roles that include other roles, permissions
//! `resource:action` with wildcards, roles per tenant, reloadable at run time.
//!
//! A model is compiled when it is loaded: each role's permissions, inherited
//! ones included, go into hash maps (exact `resource:action`, `resource:*`,
//! `*:action`, `*`), so a check costs a few lookups per role of the subject
//! whatever the number of roles, permissions or users.
//!
//! # Whose roles
//!
//! A subject's roles are those its credentials carry ([`Identity::roles`]) and
//! those assigned to it in the model ([`AssignmentConfig`]). A request's
//! tenant is the resource's ([`Resource::tenant`]) or else the identity's:
//! - the credentials' roles hold in the identity's tenant only; credentials
//!   that name no tenant hold only where the request names none either (a
//!   token without a tenant claim is no key to every tenant: give platform-wide
//!   roles as assignments without a tenant);
//! - an assignment with a tenant holds in that tenant only; one without, in
//!   every tenant.
//!
//! Roles the model does not define are ignored when a token carries them; an
//! assignment naming one is refused when the model is loaded.

mod config;
mod model;

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};

pub use config::{AssignmentConfig, RbacConfig, RoleConfig};
use model::{Compiled, split_permission};

use crate::authz::record;
use crate::metrics::DecisionMetrics;
use crate::{AccessRequest, AuthError, Authorize, Decision, Identity, Resource};

struct Shared {
    // Readers hold the read lock for one check (no await inside); a reload
    // swaps the Arc and drops the old model outside the lock.
    model: RwLock<Arc<Compiled>>,
    metrics: DecisionMetrics,
}

/// Role-based authorization. Cloning shares the model, so a
/// [`reload`](Rbac::reload) reaches every clone.
///
/// ```
/// use ee_auth::{Identity, Method, Rbac, RoleConfig};
///
/// let rbac = Rbac::builder()
///     .role("viewer", RoleConfig::new().permissions(["orders:read", "products:read"]))
///     .role("editor", RoleConfig::new().inherits(["viewer"]).permissions(["orders:*"]))
///     .build()?;
/// let anne = Identity::new("user:anne", Method::Jwt).with_roles(["editor"]);
/// let decision = rbac.check(&anne, "products:read");
/// assert!(decision.is_allowed());
/// assert_eq!(decision.reason(), "role editor > viewer grants products:read");
/// assert!(!rbac.check(&anne, "products:delete").is_allowed());
/// # Ok::<(), ee_auth::AuthError>(())
/// ```
#[derive(Clone)]
pub struct Rbac(Arc<Shared>);

impl fmt::Debug for Rbac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rbac").finish_non_exhaustive()
    }
}

/// Builds an [`Rbac`] from code, a [`RbacConfig`] or both.
#[derive(Debug, Clone, Default)]
pub struct RbacBuilder {
    config: RbacConfig,
    duplicate: Option<String>,
}

impl RbacBuilder {
    /// Defines role `name` (defining a name twice fails at [`build`](Self::build)).
    pub fn role(mut self, name: impl Into<String>, role: RoleConfig) -> Self {
        match self.config.roles.entry(name.into()) {
            Entry::Vacant(e) => {
                e.insert(role);
            }
            Entry::Occupied(e) => {
                self.duplicate.get_or_insert_with(|| e.key().clone());
            }
        }
        self
    }

    /// Assigns roles to a subject (in one tenant or all).
    pub fn assign(mut self, assignment: AssignmentConfig) -> Self {
        self.config.assignments.push(assignment);
        self
    }

    /// Adds `config`'s roles and assignments to those defined so far, and
    /// checks the result.
    ///
    /// ```
    /// let config: ee_auth::RbacConfig = serde_json::from_value(serde_json::json!({
    ///     "roles": {
    ///         "viewer": { "permissions": ["*:read"] },
    ///         "admin": { "inherits": ["viewer"], "permissions": ["*"] }
    ///     },
    ///     "assignments": [{ "subject": "user:anne", "tenant": "acme", "roles": ["admin"] }]
    /// })).unwrap();
    /// let rbac = ee_auth::Rbac::builder().config(&config)?.build()?;
    /// # Ok::<(), ee_auth::AuthError>(())
    /// ```
    pub fn config(mut self, config: &RbacConfig) -> Result<Self, AuthError> {
        for (name, role) in &config.roles {
            self = self.role(name.clone(), role.clone());
        }
        self.config
            .assignments
            .extend(config.assignments.iter().cloned());
        self.check()?;
        Ok(self)
    }

    fn check(&self) -> Result<Compiled, AuthError> {
        if let Some(name) = &self.duplicate {
            return Err(AuthError::Config(format!(
                "rbac: role `{name}` is defined twice"
            )));
        }
        Compiled::compile(&self.config)
    }

    /// Compiles the model and registers the decision counters (install the
    /// metrics recorder first).
    ///
    /// Fails with [`AuthError::Config`] on an inheritance cycle, a reference
    /// to an undefined role, an invalid permission or a role defined twice.
    pub fn build(self) -> Result<Rbac, AuthError> {
        let compiled = self.check()?;
        Ok(Rbac(Arc::new(Shared {
            model: RwLock::new(Arc::new(compiled)),
            metrics: DecisionMetrics::new("rbac"),
        })))
    }
}

impl Rbac {
    /// A builder with no roles (a model without roles denies everything).
    pub fn builder() -> RbacBuilder {
        RbacBuilder::default()
    }

    /// Replaces the model with `config`, for every clone, without a restart
    /// (after a config file changed or a store was edited). On error the
    /// current model stays.
    pub fn reload(&self, config: &RbacConfig) -> Result<(), AuthError> {
        let compiled = Arc::new(Compiled::compile(config)?);
        let old = std::mem::replace(
            &mut *self.0.model.write().unwrap_or_else(PoisonError::into_inner),
            compiled,
        );
        drop(old);
        tracing::info!(target: "ee_auth::decision", model = "rbac", "rbac model reloaded");
        Ok(())
    }

    /// Whether `identity` holds `permission` (`resource:action`) in its own
    /// tenant; recorded like every decision.
    ///
    /// A permission that is not `resource:action` is denied. A wildcard in
    /// the request is literal: `orders:*` is granted only by `orders:*` or `*`.
    pub fn check(&self, identity: &Identity, permission: &str) -> Decision {
        let Some((resource, action)) = split_permission(permission) else {
            return Decision::Deny(Cow::Owned(format!(
                "`{permission}` is not a permission (`resource:action`)"
            )));
        };
        let request = AccessRequest::new(identity, action, Resource::new(resource, "*"));
        match self.decide_recorded(&request) {
            Ok(decision) => decision,
            // RBAC always decides; never taken.
            Err(e) => Decision::Deny(Cow::Owned(e.to_string())),
        }
    }

    /// Decides `request` and records the decision.
    fn decide_recorded(&self, request: &AccessRequest<'_>) -> Result<Decision, AuthError> {
        let result = Ok(self.decide(request));
        record(&self.0.metrics, request, &result);
        result
    }

    fn decide(&self, request: &AccessRequest<'_>) -> Decision {
        let identity = request.subject;
        let id_tenant = identity.tenant();
        let tenant = request.resource.tenant.or(id_tenant);
        // Fail closed: credentials without a tenant do not carry their roles
        // into a tenant the request names.
        let own_roles_hold = id_tenant == tenant;
        let model = self.0.model.read().unwrap_or_else(PoisonError::into_inner);
        let grant = model.find(
            identity.roles().filter(|_| own_roles_hold),
            identity.id(),
            tenant,
            request.resource.kind,
            request.action,
        );
        match grant {
            Some(g) => {
                Decision::Allow(Cow::Owned(format!("role {} grants {}", g.chain, g.pattern)))
            }
            None => Decision::Deny(Cow::Owned(match tenant {
                Some(t) => format!(
                    "no role grants {}:{} in tenant {t}",
                    request.resource.kind, request.action
                ),
                None => format!(
                    "no role grants {}:{}",
                    request.resource.kind, request.action
                ),
            })),
        }
    }
}

impl Authorize for Rbac {
    /// The permission is `{resource.kind}:{action}`; the resource id and the
    /// context play no part.
    fn authorize(
        &self,
        request: &AccessRequest<'_>,
    ) -> impl Future<Output = Result<Decision, AuthError>> + Send {
        std::future::ready(self.decide_recorded(request))
    }
}
