//! The backend seam: what a store must do.

use crate::entry::Entry;
use crate::error::CacheError;

/// Which level answered a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// In-process memory (moka).
    L1,
    /// Shared (Redis).
    L2,
}

impl Level {
    /// `l1` or `l2`, as in the `level` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::L1 => "l1",
            Level::L2 => "l2",
        }
    }
}

/// An entry found by a store, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<V> {
    /// The entry (possibly stale or negative: the cache decides what to do).
    pub entry: Entry<V>,
    /// Which level had it.
    pub level: Level,
}

/// A cache backend for values of type `V`, addressed by full keys (the
/// [`Cache`](crate::Cache) builds them: name, version, tenant, your key).
///
/// Implemented by [`MemoryStore`](crate::MemoryStore) and, with feature
/// `redis`, `RedisStore` and `TieredStore`. Stores report failures; the cache
/// turns a failed read into a miss and a failed write into a counted drop.
pub trait CacheStore<V>: Send + Sync + 'static {
    /// The entry under `key`, if any.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Found<V>>, CacheError>> + Send;

    /// The entries under `keys`, in order; one round trip where the backend
    /// allows it.
    fn get_many(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<Option<Found<V>>>, CacheError>> + Send;

    /// Stores `entry` under `key` until its `stale_until`, recording it under
    /// each of `tags` (full tag names).
    fn set(
        &self,
        key: &str,
        entry: Entry<V>,
        tags: &[String],
    ) -> impl Future<Output = Result<(), CacheError>> + Send;

    /// Removes `key`.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), CacheError>> + Send;

    /// Removes every entry recorded under `tag`.
    fn invalidate_tag(&self, tag: &str) -> impl Future<Output = Result<(), CacheError>> + Send;

    /// The last level a lookup reaches (where a miss or a failure is counted).
    fn deepest_level(&self) -> Level {
        Level::L1
    }

    /// The lookup at `now_ms` (Unix ms), answered without waiting by stores
    /// that can (in-process ones); `None` when the store must be awaited.
    fn get_now(&self, key: &str, now_ms: u64) -> Option<Option<Found<V>>> {
        let _ = (key, now_ms);
        None
    }
}
