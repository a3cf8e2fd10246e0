//! `ResponseCacheConfig`: the layer's options, serde-loadable, and the
//! bounds of what it stores.

use serde::{Deserialize, Serialize};

use crate::error::CacheError;

/// The largest response body [`ResponseCacheLayer`](crate::ResponseCacheLayer)
/// stores unless told otherwise: 1 MiB. A larger body (or one of unknown
/// size) is passed through unstored.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// The bound of a [`MemoryStore`](crate::MemoryStore) of HTTP responses
/// ([`Variants`](crate::Variants)) unless
/// [`max_bytes`](crate::MemoryStoreBuilder::max_bytes) says otherwise:
/// 64 MiB, weighed by [`Variants::size_bytes`](crate::Variants::size_bytes)
/// plus the key and tags.
///
/// Why 64 MiB: the cache is an optimisation, so it should take a small share
/// of a service's memory: a quarter of a 256 MiB container, the smallest
/// usual limit. It holds the old default's 10 000 entries when responses
/// average up to 6.7 KB (typical JSON API answers), ~1 000 responses of
/// 64 KiB, and at least 64 at the 1 MiB body limit
/// ([`DEFAULT_MAX_BODY_BYTES`]), so one URL's large answer cannot crowd out
/// the rest. The entry bound (10 000 by default) holds as well.
pub const DEFAULT_RESPONSE_CACHE_BYTES: u64 = 64 << 20;

/// How a [`ResponseCacheLayer`](crate::ResponseCacheLayer) stores responses,
/// applied with [`ResponseCacheLayer::config`](crate::ResponseCacheLayer::config).
/// The store's own bound (bytes, entries) is the store's: see
/// [`MemoryStoreConfig`](crate::MemoryStoreConfig).
///
/// ```
/// use ee_cache::{Cache, MemoryStore, ResponseCacheConfig, ResponseCacheLayer};
///
/// let config: ResponseCacheConfig =
///     serde_json::from_str(r#"{ "max_body_bytes": 262144, "default_ttl_ms": 30000 }"#).unwrap();
/// let cache = Cache::builder("http").build(MemoryStore::new())?;
/// let layer = ResponseCacheLayer::new(cache).config(&config)?;
/// # Ok::<(), ee_cache::CacheError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseCacheConfig {
    /// The largest body stored (default [`DEFAULT_MAX_BODY_BYTES`], 1 MiB):
    /// a response with a larger body, or one of unknown size, is served as
    /// it is and not stored. Keep it well under the store's bound: an entry
    /// (all the `Vary` variants of a URL) larger than the store's
    /// `max_bytes` is never kept.
    pub max_body_bytes: usize,
    /// At most this many `Vary` variants per URL (default 8; at least 1).
    pub max_variants: usize,
    /// Freshness for cacheable responses that state none (default: such
    /// responses are not stored; when set, more than 0).
    pub default_ttl_ms: Option<u64>,
    /// Write to the store in a background task instead of before answering
    /// (default `false`; see
    /// [`ResponseCacheLayer::store_in_background`](crate::ResponseCacheLayer::store_in_background)).
    pub store_in_background: bool,
}

impl Default for ResponseCacheConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_variants: 8,
            default_ttl_ms: None,
            store_in_background: false,
        }
    }
}

impl ResponseCacheConfig {
    /// Checks the values (at least one variant, a default TTL over 0).
    ///
    /// # Errors
    /// [`CacheError::Config`] naming the first value out of range.
    pub fn validate(&self) -> Result<(), CacheError> {
        if self.max_variants == 0 {
            return Err(CacheError::Config("max_variants must be at least 1".into()));
        }
        if self.default_ttl_ms == Some(0) {
            return Err(CacheError::Config(
                "default_ttl_ms must be greater than 0 (leave it out to store only responses that state their freshness)".into(),
            ));
        }
        Ok(())
    }
}
