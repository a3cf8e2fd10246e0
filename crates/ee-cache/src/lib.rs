#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_cache::Cache`, `ee_cache::ResponseCacheLayer`).
mod any;
mod cache;
mod config;
mod entry;
mod error;
#[cfg(feature = "http")]
mod http;
mod key;
mod memory;
mod metrics;
#[cfg(feature = "redis")]
mod redis;
mod store;
#[cfg(feature = "redis")]
mod tiered;

pub use any::AnyStore;
pub use cache::{Cache, CacheBuilder};
pub use config::{CacheConfig, MemoryStoreConfig};
pub use entry::{Entry, Freshness};
pub use error::CacheError;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http::{
    CACHE_TAG, CacheControl, CacheTags, DEFAULT_MAX_BODY_BYTES, DEFAULT_RESPONSE_CACHE_BYTES,
    ResponseCache, ResponseCacheConfig, ResponseCacheLayer, SURROGATE_KEY, Storable,
    StoredResponse, Variants, VaryField, X_CACHE, immutable, request_accepts, request_bypasses,
    status_is_cacheable, storable, upstream_age,
};
pub use key::{CacheKey, KeyWriter, Shown};
pub use memory::{DEFAULT_MEMORY_MAX_TTL, MemoryStore, MemoryStoreBuilder};
pub use metrics::{
    METRIC_DROPPED_WRITES_TOTAL, METRIC_EVICTIONS_TOTAL, METRIC_LOAD_DURATION_SECONDS,
    METRIC_LOADS_TOTAL, METRIC_REQUESTS_TOTAL, describe_metrics,
};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;
pub use store::{CacheStore, Found, Level};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use tiered::{INVALIDATION_CHANNEL, TieredStore};
