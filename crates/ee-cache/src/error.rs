//! What can go wrong in a cache.

/// A cache failure. Reads never return one (a failing store reads as a miss);
/// writes return the ones the caller can act on (a key or value over its
/// limit), and stores report their own to the cache, which counts and logs them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The full key is longer than the configured limit.
    #[error("cache key of {size} bytes is over the {max}-byte limit")]
    KeyTooLong {
        /// Its length.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The encoded value is larger than the configured limit.
    #[error("cache value of {size} bytes is over the {max}-byte limit")]
    ValueTooLarge {
        /// Its encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The value could not be serialized.
    #[error("cache value could not be encoded: {0}")]
    Encode(String),
    /// Stored bytes are not a valid entry (corrupt, or written by another program).
    #[error("cache entry could not be decoded: {0}")]
    Decode(String),
    /// The cache is misconfigured.
    #[error("cache configuration: {0}")]
    Config(String),
    /// The backend (Redis) failed or did not answer in time.
    #[error("cache backend unavailable: {0}")]
    Unavailable(String),
}
