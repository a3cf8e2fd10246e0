//! `AnyStore`: the store picked by configuration, as one type.

use crate::entry::Entry;
use crate::error::CacheError;
use crate::memory::MemoryStore;
#[cfg(feature = "redis")]
use crate::redis::RedisStore;
use crate::store::{CacheStore, Found, Level};
#[cfg(feature = "redis")]
use crate::tiered::TieredStore;

/// One of the crate's stores, chosen at run time (memory in one process,
/// Redis or tiered when shared), so a [`Cache`](crate::Cache) built on it has
/// one type whatever the configuration said. Dispatch is a `match`; the
/// store traits return `impl Future`, so an enum serves where a trait object
/// cannot.
///
/// ```
/// use ee_cache::{AnyStore, Cache, MemoryStore};
/// let store: AnyStore<String> = MemoryStore::new().into();
/// let cache: Cache<str, String, AnyStore<String>> = Cache::builder("names").build(store).unwrap();
/// ```
#[non_exhaustive]
pub enum AnyStore<V> {
    /// In this process ([`MemoryStore`]).
    Memory(MemoryStore<V>),
    /// Shared through Redis (`RedisStore`, feature `redis`).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Redis(RedisStore),
    /// An L1 in memory in front of Redis (`TieredStore`, feature `redis`).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Tiered(TieredStore<V>),
}

impl<V> Clone for AnyStore<V> {
    fn clone(&self) -> Self {
        match self {
            AnyStore::Memory(s) => AnyStore::Memory(s.clone()),
            #[cfg(feature = "redis")]
            AnyStore::Redis(s) => AnyStore::Redis(s.clone()),
            #[cfg(feature = "redis")]
            AnyStore::Tiered(s) => AnyStore::Tiered(s.clone()),
        }
    }
}

impl<V> std::fmt::Debug for AnyStore<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnyStore::Memory(_) => f.write_str("AnyStore::Memory"),
            #[cfg(feature = "redis")]
            AnyStore::Redis(s) => f.debug_tuple("AnyStore::Redis").field(s).finish(),
            #[cfg(feature = "redis")]
            AnyStore::Tiered(s) => f.debug_tuple("AnyStore::Tiered").field(s).finish(),
        }
    }
}

impl<V> From<MemoryStore<V>> for AnyStore<V> {
    fn from(store: MemoryStore<V>) -> Self {
        AnyStore::Memory(store)
    }
}

#[cfg(feature = "redis")]
impl<V> From<RedisStore> for AnyStore<V> {
    fn from(store: RedisStore) -> Self {
        AnyStore::Redis(store)
    }
}

#[cfg(feature = "redis")]
impl<V> From<TieredStore<V>> for AnyStore<V> {
    fn from(store: TieredStore<V>) -> Self {
        AnyStore::Tiered(store)
    }
}

/// Runs `$call` on whichever store `$self` holds.
macro_rules! each {
    ($self:expr, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($store) => $call,
            #[cfg(feature = "redis")]
            AnyStore::Redis($store) => $call,
            #[cfg(feature = "redis")]
            AnyStore::Tiered($store) => $call,
        }
    };
}

/// The one `CacheStore` impl, under the bounds the crate's stores need with
/// and without the `redis` feature.
macro_rules! dispatch {
    ($($bounds:tt)*) => {
        impl<V> CacheStore<V> for AnyStore<V>
        where
            V: $($bounds)*,
        {
            async fn get(&self, key: &str) -> Result<Option<Found<V>>, CacheError> {
                each!(self, s => CacheStore::<V>::get(s, key).await)
            }
            async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Found<V>>>, CacheError> {
                each!(self, s => CacheStore::<V>::get_many(s, keys).await)
            }
            async fn set(&self, key: &str, entry: Entry<V>, tags: &[String]) -> Result<(), CacheError> {
                each!(self, s => CacheStore::<V>::set(s, key, entry, tags).await)
            }
            async fn delete(&self, key: &str) -> Result<(), CacheError> {
                each!(self, s => CacheStore::<V>::delete(s, key).await)
            }
            async fn invalidate_tag(&self, tag: &str) -> Result<(), CacheError> {
                each!(self, s => CacheStore::<V>::invalidate_tag(s, tag).await)
            }
            fn deepest_level(&self) -> Level {
                each!(self, s => CacheStore::<V>::deepest_level(s))
            }
            fn get_now(&self, key: &str, now_ms: u64) -> Option<Option<Found<V>>> {
                each!(self, s => CacheStore::<V>::get_now(s, key, now_ms))
            }
        }
    };
}

#[cfg(not(feature = "redis"))]
dispatch!(Clone + Send + Sync + 'static);
#[cfg(feature = "redis")]
dispatch!(serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static);
