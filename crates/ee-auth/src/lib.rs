#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_auth::Identity`).
#[cfg(feature = "jwt")]
mod authn;
mod authz;
mod error;
mod hooks;
mod identity;
#[cfg(feature = "jwt")]
mod jwt;
mod metrics;

pub use self::metrics::{
    METRIC_AUTHENTICATIONS_TOTAL, METRIC_DECISIONS_TOTAL, METRIC_JWKS_REFRESHES_TOTAL,
    METRIC_REFRESH_REUSE_TOTAL, METRIC_TOKEN_CACHE_ENTRIES, describe_metrics,
};
#[cfg(all(feature = "jwt", feature = "axum"))]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use authn::Authenticated;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use authn::{Auth, AuthLayer, AuthLayerBuilder, ResponseFuture};
pub use authz::{AccessRequest, Authorize, Decision, Resource};
pub use error::{
    AuthError, PROBLEM_FORBIDDEN, PROBLEM_INSUFFICIENT_SCOPE, PROBLEM_INVALID_CREDENTIALS,
    PROBLEM_INVALID_REQUEST, PROBLEM_INVALID_TOKEN, PROBLEM_NOT_FOUND, PROBLEM_UNAUTHENTICATED,
    PROBLEM_UNAVAILABLE,
};
pub use hooks::{ApiKeyVerifier, BoxFuture, RevocationCheck};
pub use identity::{Identity, Method};
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
