//! Cache options, serde-loadable.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::CacheError;

/// How a [`Cache`](crate::Cache) stores and serves entries.
///
/// ```
/// # use ee_cache::CacheConfig;
/// let config: CacheConfig = serde_json::from_str(
///     r#"{ "ttl_ms": 60000, "stale_ms": 30000, "negative_ttl_ms": 5000, "version": 2 }"#,
/// ).unwrap();
/// assert_eq!(config.ttl().as_secs(), 60);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// How long an entry is fresh (default 5 minutes).
    pub ttl_ms: u64,
    /// Each TTL is shortened by a random fraction up to this (default 0.1), so
    /// entries written together do not all expire together.
    pub jitter: f64,
    /// After its TTL, how long an entry may still be served while one
    /// background load refreshes it (stale-while-revalidate; default 0: off).
    pub stale_ms: u64,
    /// When set, a loader that finds nothing is remembered for this long, so
    /// lookups of absent keys do not reach the source each time. Loader
    /// errors are never cached.
    pub negative_ttl_ms: Option<u64>,
    /// Part of every key: bump it when the value type changes shape, so new
    /// code never reads entries written by old code.
    pub version: u32,
    /// The longest full key (default 1024 bytes); longer ones are refused.
    pub max_key_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl_ms: 300_000,
            jitter: 0.1,
            stale_ms: 0,
            negative_ttl_ms: None,
            version: 1,
            max_key_bytes: 1024,
        }
    }
}

impl CacheConfig {
    /// The TTL.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    /// Checks the values (TTL > 0, jitter within 0..=1, a key limit > 0).
    ///
    /// # Errors
    /// [`CacheError::Config`] naming the first value out of range.
    pub fn validate(&self) -> Result<(), CacheError> {
        let bad = |why: String| Err(CacheError::Config(why));
        if self.ttl_ms == 0 {
            return bad("ttl_ms must be greater than 0".into());
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return bad(format!("jitter must be within 0..=1, not {}", self.jitter));
        }
        if self.max_key_bytes == 0 {
            return bad("max_key_bytes must be greater than 0".into());
        }
        Ok(())
    }
}

/// The bounds of a [`MemoryStore`](crate::MemoryStore), applied with
/// [`MemoryStoreBuilder::config`](crate::MemoryStoreBuilder::config).
///
/// ```
/// # use ee_cache::MemoryStoreConfig;
/// let config: MemoryStoreConfig = serde_json::from_str(
///     r#"{ "max_entries": 50000, "max_bytes": 134217728, "max_ttl_ms": 600000 }"#,
/// ).unwrap();
/// assert_eq!(config.time_to_idle_ms, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryStoreConfig {
    /// At most this many entries (default 10 000).
    pub max_entries: u64,
    /// For a store of HTTP responses: at most this many bytes (default, when
    /// left out: 64 MiB, `DEFAULT_RESPONSE_CACHE_BYTES`). The size of other
    /// values is not known: setting it for their store is an error (bound
    /// those with [`MemoryStoreBuilder::max_weight`](crate::MemoryStoreBuilder::max_weight)).
    pub max_bytes: Option<u64>,
    /// Keep no entry longer than this (default 1 hour).
    pub max_ttl_ms: u64,
    /// Drop an entry not read for this long, even within its TTL (default:
    /// never).
    pub time_to_idle_ms: Option<u64>,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: None,
            max_ttl_ms: crate::memory::DEFAULT_MEMORY_MAX_TTL.as_millis() as u64,
            time_to_idle_ms: None,
        }
    }
}

impl MemoryStoreConfig {
    /// Checks the values (every bound and time greater than 0).
    ///
    /// # Errors
    /// [`CacheError::Config`] naming the first value out of range.
    pub fn validate(&self) -> Result<(), CacheError> {
        let bad = |field: &str| {
            Err(CacheError::Config(format!(
                "{field} must be greater than 0"
            )))
        };
        if self.max_entries == 0 {
            return bad("max_entries");
        }
        if self.max_bytes == Some(0) {
            return bad("max_bytes");
        }
        if self.max_ttl_ms == 0 {
            return bad("max_ttl_ms");
        }
        if self.time_to_idle_ms == Some(0) {
            return bad("time_to_idle_ms");
        }
        Ok(())
    }
}
