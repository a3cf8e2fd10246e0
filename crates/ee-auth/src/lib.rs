#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_auth::Identity`).
mod authz;
#[cfg(feature = "cedar")]
mod cedar;
mod error;
mod hooks;
mod identity;
mod metrics;
mod rbac;

pub use self::metrics::{
    METRIC_AUTHENTICATIONS_TOTAL, METRIC_DECISIONS_TOTAL, METRIC_JWKS_REFRESHES_TOTAL,
    METRIC_REFRESH_REUSE_TOTAL, METRIC_TOKEN_CACHE_ENTRIES, describe_metrics,
};
pub use authz::{
    AccessRequest, Authorize, AuthorizeFuture, AuthorizeLayer, AuthorizeService, Decision,
    RequireScope, RequireScopeLayer, Resource, Target, authorize, require,
};
#[cfg(feature = "cedar")]
#[cfg_attr(docsrs, doc(cfg(feature = "cedar")))]
pub use cedar::{CedarBuilder, CedarConfig, CedarPolicies};
pub use error::{
    AuthError, PROBLEM_FORBIDDEN, PROBLEM_INSUFFICIENT_SCOPE, PROBLEM_INVALID_CREDENTIALS,
    PROBLEM_INVALID_REQUEST, PROBLEM_INVALID_TOKEN, PROBLEM_NOT_FOUND, PROBLEM_UNAUTHENTICATED,
    PROBLEM_UNAVAILABLE,
};
pub use hooks::{ApiKeyVerifier, BoxFuture, RevocationCheck};
pub use identity::{Identity, Method};
pub use rbac::{AssignmentConfig, Rbac, RbacBuilder, RbacConfig, RoleConfig};
