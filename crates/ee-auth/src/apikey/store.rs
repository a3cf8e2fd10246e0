//! The backend seam: where API key records live.

use std::fmt;

use crate::AuthError;

/// What is stored of one API key: everything but the key itself, which only
/// its SHA-256 stands for.
///
/// Times are Unix milliseconds (`ee_core::unix_ms()`). `Debug` leaves the
/// hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// The lookup id (the middle part of the key), unique in its store.
    pub id: String,
    /// SHA-256 of the key's secret part.
    pub hash: [u8; 32],
    /// Whose key it is: the subject of the [`Identity`](crate::Identity) it verifies to.
    pub owner: String,
    /// A label for people (`"CI deploy"`).
    pub name: String,
    /// Scopes granted to the key.
    pub scopes: Vec<String>,
    /// Roles granted to the key.
    pub roles: Vec<String>,
    /// The tenant the key belongs to, if any.
    pub tenant: Option<String>,
    /// When it was created.
    pub created_at_ms: u64,
    /// When it stops verifying, if ever.
    pub expires_at_ms: Option<u64>,
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<u64>,
    /// When it last verified, to the resolution of
    /// [`ApiKeyConfig::last_used_interval_ms`](crate::ApiKeyConfig::last_used_interval_ms)
    /// (it is not written on every request).
    pub last_used_ms: Option<u64>,
}

impl ApiKeyRecord {
    /// Whether the key is revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at_ms.is_some()
    }

    /// Whether the key has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }
}

impl fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("roles", &self.roles)
            .field("tenant", &self.tenant)
            .field("created_at_ms", &self.created_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("revoked_at_ms", &self.revoked_at_ms)
            .field("last_used_ms", &self.last_used_ms)
            .finish_non_exhaustive()
    }
}

/// What [`ApiKeyStore::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Inserted {
    /// The record is stored.
    Stored,
    /// A record with this id exists already; nothing was written (the caller
    /// draws another id).
    IdTaken,
}

/// Where API key records live: [`MemoryApiKeys`](crate::MemoryApiKeys),
/// `RedisApiKeys` (feature `redis`), `DbApiKeys` (features `postgres`,
/// `sqlite`), or your own. [`ApiKeys`](crate::ApiKeys) does the hashing,
/// checking and caching; a store only keeps records.
///
/// Errors: a backend that cannot be reached answers
/// [`AuthError::Unavailable`] (a 503: API key verification fails closed,
/// never open).
pub trait ApiKeyStore: Send + Sync + 'static {
    /// The record whose lookup id is `id`, if any (revoked and expired ones
    /// included: the caller decides).
    fn get(&self, id: &str)
    -> impl Future<Output = Result<Option<ApiKeyRecord>, AuthError>> + Send;

    /// Stores a new record, unless its id is taken.
    fn insert(
        &self,
        record: &ApiKeyRecord,
    ) -> impl Future<Output = Result<Inserted, AuthError>> + Send;

    /// Marks `id` revoked at `at_ms` (an already revoked key keeps its first
    /// time). [`AuthError::NotFound`] when there is no such key.
    fn revoke(&self, id: &str, at_ms: u64) -> impl Future<Output = Result<(), AuthError>> + Send;

    /// The records of `owner`'s keys (revoked and expired ones included), in
    /// no particular order.
    fn list(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<ApiKeyRecord>, AuthError>> + Send;

    /// Sets `id`'s last use to `at_ms` (called at most once per key per
    /// `last_used_interval_ms`, off the request's path). Nothing happens when
    /// there is no such key.
    fn touch(&self, id: &str, at_ms: u64) -> impl Future<Output = Result<(), AuthError>> + Send;
}
