#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_idempotency::MemoryStore`).
mod any;
mod body;
mod config;
mod error;
mod held;
mod key;
mod layer;
mod memory;
mod metrics;
#[cfg(feature = "redis")]
mod redis;
mod service;
mod store;

pub use self::metrics::{
    METRIC_BACKEND_ERRORS_TOTAL, METRIC_REQUESTS_TOTAL, METRIC_STORED_BYTES, describe_metrics,
};
pub use any::AnyStore;
pub use body::IdempotencyBody;
pub use config::IdempotencyConfig;
pub use error::IdempotencyError;
pub use key::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, parse_key};
pub use layer::IdempotencyLayer;
pub use memory::{DEFAULT_MEMORY_MAX_BYTES, MemoryStore};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;
pub use service::{Idempotency, ResponseFuture};
pub use store::{Begin, Fingerprint, IdempotencyStore, StoreError, StoredResponse};
