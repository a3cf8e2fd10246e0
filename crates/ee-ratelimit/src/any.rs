//! `AnyStore`: the memory or the Redis store, picked at run time.

use ee_core::Key;

use crate::Rule;
use crate::memory::{MemoryLimiter, MemoryStore};
#[cfg(feature = "redis")]
use crate::redis::{RedisLimiter, RedisStore};
use crate::store::{Admission, Decision, Limiter, RateLimitStore, StoreError};

/// One store type for either backend, for applications that pick it by
/// configuration: a layer built on it has one type
/// (`RateLimitLayer<AnyLimiter>`) whichever store was chosen, so the code
/// around it does not branch on types. A memory store still decides inside
/// `call`, unboxed.
///
/// ```
/// use ee_ratelimit::{AnyStore, MemoryStore, Policy, RateLimitLayer, Rule};
///
/// # let redis: Option<()> = None;
/// // `redis.map_or_else(|| MemoryStore::new().into(), |conn| RedisStore::new(conn).into())`
/// let store: AnyStore = MemoryStore::new().into();
/// let layer = RateLimitLayer::builder(store)
///     .policy(Policy::new("api", Rule::per_second(10)))
///     .build()?;
/// # Ok::<(), ee_ratelimit::RateLimitError>(())
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

impl RateLimitStore for AnyStore {
    type Limiter = AnyLimiter;

    fn limiter(&self, name: &str, rule: &Rule) -> AnyLimiter {
        match self {
            AnyStore::Memory(store) => AnyLimiter::Memory(store.limiter(name, rule)),
            #[cfg(feature = "redis")]
            AnyStore::Redis(store) => AnyLimiter::Redis(store.limiter(name, rule)),
        }
    }
}

/// The [`Limiter`] of an [`AnyStore`]: the chosen backend's.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyLimiter {
    /// In this process.
    Memory(MemoryLimiter),
    /// On Redis (feature `redis`).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Redis(RedisLimiter),
}

impl Limiter for AnyLimiter {
    async fn check(&self, key: &Key, cost: u32) -> Result<Decision, StoreError> {
        match self {
            AnyLimiter::Memory(limiter) => limiter.check(key, cost).await,
            #[cfg(feature = "redis")]
            AnyLimiter::Redis(limiter) => limiter.check(key, cost).await,
        }
    }

    fn decides_now(&self) -> bool {
        match self {
            AnyLimiter::Memory(limiter) => limiter.decides_now(),
            #[cfg(feature = "redis")]
            AnyLimiter::Redis(limiter) => limiter.decides_now(),
        }
    }

    #[inline]
    fn check_now(&self, key: &Key, cost: u32) -> Option<Result<Decision, StoreError>> {
        match self {
            AnyLimiter::Memory(limiter) => limiter.check_now(key, cost),
            #[cfg(feature = "redis")]
            AnyLimiter::Redis(limiter) => limiter.check_now(key, cost),
        }
    }

    #[inline]
    fn admit_now(&self, key: &Key, cost: u32) -> Admission {
        match self {
            AnyLimiter::Memory(limiter) => limiter.admit_now(key, cost),
            #[cfg(feature = "redis")]
            AnyLimiter::Redis(limiter) => limiter.admit_now(key, cost),
        }
    }

    fn release(&self, key: &Key, cost: u32, ticket: u64) {
        match self {
            AnyLimiter::Memory(limiter) => limiter.release(key, cost, ticket),
            #[cfg(feature = "redis")]
            AnyLimiter::Redis(limiter) => limiter.release(key, cost, ticket),
        }
    }
}
