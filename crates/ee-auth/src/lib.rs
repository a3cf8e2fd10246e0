#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_auth::Identity`).
mod apikey;
#[cfg(feature = "jwt")]
mod authn;
mod authz;
#[cfg(feature = "cedar")]
mod cedar;
mod error;
mod hooks;
mod identity;
#[cfg(feature = "issuer")]
mod issuer;
#[cfg(feature = "jwt")]
mod jwt;
mod metrics;
mod rbac;
mod rebac;

pub use self::metrics::{
    METRIC_AUTHENTICATIONS_TOTAL, METRIC_DECISIONS_TOTAL, METRIC_JWKS_REFRESHES_TOTAL,
    METRIC_REFRESH_REUSE_TOTAL, METRIC_TOKEN_CACHE_ENTRIES, describe_metrics,
};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
pub use apikey::DbApiKeys;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use apikey::RedisApiKeys;
pub use apikey::{
    AnyApiKeyStore, ApiKeyConfig, ApiKeyRecord, ApiKeyStore, ApiKeys, CreatedKey, Inserted,
    MemoryApiKeys, NewApiKey,
};
#[cfg(all(feature = "jwt", feature = "axum"))]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use authn::Authenticated;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use authn::{Auth, AuthLayer, AuthLayerBuilder, ResponseFuture};
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
#[cfg(all(feature = "issuer", feature = "redis"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "issuer", feature = "redis"))))]
pub use issuer::RedisRefreshStore;
#[cfg(feature = "issuer")]
#[cfg_attr(docsrs, doc(cfg(feature = "issuer")))]
pub use issuer::{
    AnyRefreshStore, Grant, IssuedRefresh, IssuedToken, Issuer, IssuerConfig, KeyConfig, KeyStatus,
    Logout, MAX_USED_TOKENS, MemoryRefreshStore, NewFamily, PasswordCheck, PasswordConfig,
    Passwords, RefreshConfig, RefreshStore, RefreshTokens, RequireService, RequireServiceFuture,
    RequireServiceLayer, RevocationConfig, RevocationList, RevocationListBuilder, RotateOutcome,
    Rotated, Rotation, ServiceToken, ServiceTokens, Session, SigningAlgorithm, SigningKey,
    SigningKeys, TokenHash, TokenIssuer, TokenIssuerBuilder,
};
/// The JWS algorithms (`jsonwebtoken`'s), for keys and configuration.
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use jsonwebtoken::Algorithm;
#[cfg(feature = "jwks")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
pub use jwt::{JwksSource, JwksSourceBuilder};
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use jwt::{JwtConfig, JwtVerifier, JwtVerifierBuilder, VerifyingKey};
pub use rbac::{AssignmentConfig, Rbac, RbacBuilder, RbacConfig, RoleConfig};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
pub use rebac::DbTuples;
pub use rebac::{
    AnyTupleStore, CheckCache, CheckResult, DirectLookup, DirectMatch, ExpandNode, MemoryTuples,
    ObjectRef, Rebac, RebacBuilder, RebacConfig, RebacModel, RelationTuple, ReverseLookup,
    TupleChanges, TupleStore, TupleUser, UserFilter, UsersetTree,
};
