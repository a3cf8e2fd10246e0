#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_auth::Identity`).
mod authz;
mod error;
mod hooks;
mod identity;
mod metrics;
mod rebac;

pub use self::metrics::{
    METRIC_AUTHENTICATIONS_TOTAL, METRIC_DECISIONS_TOTAL, METRIC_JWKS_REFRESHES_TOTAL,
    METRIC_REFRESH_REUSE_TOTAL, METRIC_TOKEN_CACHE_ENTRIES, describe_metrics,
};
pub use authz::{AccessRequest, Authorize, Decision, Resource};
pub use error::{
    AuthError, PROBLEM_FORBIDDEN, PROBLEM_INSUFFICIENT_SCOPE, PROBLEM_INVALID_CREDENTIALS,
    PROBLEM_INVALID_REQUEST, PROBLEM_INVALID_TOKEN, PROBLEM_NOT_FOUND, PROBLEM_UNAUTHENTICATED,
    PROBLEM_UNAVAILABLE,
};
pub use hooks::{ApiKeyVerifier, BoxFuture, RevocationCheck};
pub use identity::{Identity, Method};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
pub use rebac::DbTuples;
pub use rebac::{
    AnyTupleStore, CheckCache, CheckResult, DirectLookup, DirectMatch, ExpandNode, MemoryTuples,
    ObjectRef, Rebac, RebacBuilder, RebacConfig, RebacModel, RelationTuple, ReverseLookup,
    TupleChanges, TupleStore, TupleUser, UserFilter, UsersetTree,
};
