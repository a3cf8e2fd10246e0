//! The two seams between authentication and the stores behind it: revoked
//! token ids and API keys. They are object safe, so [`AuthLayer`](crate::AuthLayer)
//! holds them without a type parameter.

use std::future::Future;
use std::pin::Pin;

use crate::{AuthError, Identity};

/// Answers, without I/O, whether a token id (`jti`) was revoked.
///
/// It is consulted on every request, verified-token cache hits included, so
/// it must be a local lookup; [`RevocationList`](crate::RevocationList) keeps a
/// local copy in sync with Redis.
pub trait RevocationCheck: Send + Sync + 'static {
    /// Whether `jti` is revoked.
    fn is_revoked(&self, jti: &str) -> bool;
}

/// A boxed, sendable future (the return type of object-safe async hooks).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Verifies an API key presented by a client and answers whose it is.
///
/// Implemented by [`ApiKeys`](crate::ApiKeys) over each of its stores.
pub trait ApiKeyVerifier: Send + Sync + 'static {
    /// Whether `credential` looks like one of this verifier's keys (its prefix),
    /// so `Authorization: Bearer <key>` can carry an API key as well as a JWT.
    fn recognizes(&self, credential: &str) -> bool;

    /// Verifies `key`: the owner's identity, or [`AuthError::InvalidToken`]
    /// (unknown, revoked, expired: indistinguishably) or
    /// [`AuthError::Unavailable`] when the store is down.
    fn verify_key<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Identity, AuthError>>;
}
