//! `AnyStore`: the memory or the Redis store, picked at run time.

use std::time::Duration;

use crate::memory::MemoryStore;
#[cfg(feature = "redis")]
use crate::redis::RedisStore;
use crate::store::{Begin, Fingerprint, IdempotencyStore, StoreError, StoredResponse};

/// One store type for either backend, for applications that pick it by
/// configuration: a layer built on it has one type
/// (`IdempotencyLayer<AnyStore>`) whichever store was chosen, so the code
/// around it does not branch on types.
///
/// ```
/// use ee_idempotency::{AnyStore, IdempotencyLayer, MemoryStore};
///
/// # let redis: Option<()> = None;
/// // `redis.map_or_else(|| MemoryStore::new().into(), |conn| RedisStore::new(conn).into())`
/// let store: AnyStore = MemoryStore::new().into();
/// let layer: IdempotencyLayer<AnyStore> = IdempotencyLayer::new(store);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyStore {
    /// In this process ([`MemoryStore`]).
    Memory(MemoryStore),
    /// Shared through Redis (`RedisStore`, feature `redis`).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Redis(RedisStore),
}

impl From<MemoryStore> for AnyStore {
    fn from(store: MemoryStore) -> Self {
        AnyStore::Memory(store)
    }
}

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl From<RedisStore> for AnyStore {
    fn from(store: RedisStore) -> Self {
        AnyStore::Redis(store)
    }
}

impl IdempotencyStore for AnyStore {
    async fn begin(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: u64,
        lease: Duration,
    ) -> Result<Begin, StoreError> {
        match self {
            AnyStore::Memory(store) => store.begin(key, fingerprint, token, lease).await,
            #[cfg(feature = "redis")]
            AnyStore::Redis(store) => store.begin(key, fingerprint, token, lease).await,
        }
    }

    async fn complete(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: u64,
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        match self {
            AnyStore::Memory(store) => store.complete(key, fingerprint, token, response, ttl).await,
            #[cfg(feature = "redis")]
            AnyStore::Redis(store) => store.complete(key, fingerprint, token, response, ttl).await,
        }
    }

    async fn extend(&self, key: &str, token: u64, lease: Duration) -> Result<bool, StoreError> {
        match self {
            AnyStore::Memory(store) => store.extend(key, token, lease).await,
            #[cfg(feature = "redis")]
            AnyStore::Redis(store) => store.extend(key, token, lease).await,
        }
    }

    async fn release(&self, key: &str, token: u64) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(store) => store.release(key, token).await,
            #[cfg(feature = "redis")]
            AnyStore::Redis(store) => store.release(key, token).await,
        }
    }
}
