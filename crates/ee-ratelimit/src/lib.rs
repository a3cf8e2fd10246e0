#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_ratelimit::MemoryLimiter`).
mod any;
mod config;
mod error;
mod future;
mod headers;
mod layer;
mod memory;
mod metrics;
mod policy;
#[cfg(feature = "redis")]
mod redis;
mod service;
mod store;

pub use self::metrics::{
    METRIC_BACKEND_DURATION_SECONDS, METRIC_BACKEND_ERRORS_TOTAL, METRIC_DECISIONS_TOTAL,
    METRIC_MEMORY_KEYS_REFUSED_TOTAL, describe_metrics,
};
pub use any::{AnyLimiter, AnyStore};
pub use config::{HeaderConfig, PolicyConfig, RateLimitConfig, Rule};
pub use error::{PROBLEM_TOO_MANY_REQUESTS, PROBLEM_UNAVAILABLE, RateLimitError};
pub use future::ResponseFuture;
pub use headers::{
    RATELIMIT, RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};
pub use layer::{RateLimitBuilder, RateLimitLayer};
pub use memory::{DEFAULT_MAX_KEYS, MemoryLimiter, MemoryStore};
pub use policy::Policy;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{RedisLimiter, RedisStore};
pub use service::RateLimit;
pub use store::{Admission, Decision, Limiter, RateLimitStore, StoreError};
