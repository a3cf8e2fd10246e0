//! `AnyApiKeyStore`: the memory, Redis or SQL store, picked at run time.

#[cfg(any(feature = "postgres", feature = "sqlite"))]
use super::db::DbApiKeys;
use super::memory::MemoryApiKeys;
#[cfg(feature = "redis")]
use super::redis::RedisApiKeys;
use super::store::{ApiKeyRecord, ApiKeyStore, Inserted};
use crate::AuthError;

/// One store type for every backend, for applications that pick it by
/// configuration: `ApiKeys<AnyApiKeyStore>` (the default type parameter) is
/// one type whichever store was chosen, so the code around it does not
/// branch on types.
///
/// ```
/// use ee_auth::{AnyApiKeyStore, ApiKeyVerifier, ApiKeys, MemoryApiKeys};
///
/// # let redis: Option<()> = None;
/// // `redis.map_or_else(|| MemoryApiKeys::new().into(), |conn| RedisApiKeys::new(conn).into())`
/// let store: AnyApiKeyStore = MemoryApiKeys::new().into();
/// let keys: ApiKeys = ApiKeys::new(store);
/// assert!(keys.recognizes("eek_0123"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyApiKeyStore {
    /// In this process ([`MemoryApiKeys`]).
    Memory(MemoryApiKeys),
    /// In Redis (`RedisApiKeys`, feature `redis`).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Redis(RedisApiKeys),
    /// In PostgreSQL or SQLite (`DbApiKeys`, features `postgres`, `sqlite`).
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
    Db(DbApiKeys),
}

impl From<MemoryApiKeys> for AnyApiKeyStore {
    fn from(store: MemoryApiKeys) -> Self {
        AnyApiKeyStore::Memory(store)
    }
}

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl From<RedisApiKeys> for AnyApiKeyStore {
    fn from(store: RedisApiKeys) -> Self {
        AnyApiKeyStore::Redis(store)
    }
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
impl From<DbApiKeys> for AnyApiKeyStore {
    fn from(store: DbApiKeys) -> Self {
        AnyApiKeyStore::Db(store)
    }
}

/// Runs `$call` on whichever store `$self` holds.
macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyApiKeyStore::Memory($store) => $call,
            #[cfg(feature = "redis")]
            AnyApiKeyStore::Redis($store) => $call,
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            AnyApiKeyStore::Db($store) => $call,
        }
    };
}

impl ApiKeyStore for AnyApiKeyStore {
    async fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>, AuthError> {
        dispatch!(self, store => store.get(id).await)
    }

    async fn insert(&self, record: &ApiKeyRecord) -> Result<Inserted, AuthError> {
        dispatch!(self, store => store.insert(record).await)
    }

    async fn revoke(&self, id: &str, at_ms: u64) -> Result<(), AuthError> {
        dispatch!(self, store => store.revoke(id, at_ms).await)
    }

    async fn list(&self, owner: &str) -> Result<Vec<ApiKeyRecord>, AuthError> {
        dispatch!(self, store => store.list(owner).await)
    }

    async fn touch(&self, id: &str, at_ms: u64) -> Result<(), AuthError> {
        dispatch!(self, store => store.touch(id, at_ms).await)
    }
}
