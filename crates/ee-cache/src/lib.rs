#![doc = include_str!("../README.md")]

mod cache;
pub mod config;
pub mod entry;
pub mod error;
#[cfg(feature = "http")]
pub mod http;
pub mod key;
pub mod memory;
pub mod metrics;
#[cfg(feature = "redis")]
pub mod redis;
pub mod store;
#[cfg(feature = "redis")]
pub mod tiered;

pub use cache::{Cache, CacheBuilder};
pub use config::CacheConfig;
pub use entry::{Entry, Freshness};
pub use error::CacheError;
pub use key::{CacheKey, KeyWriter, Shown};
pub use memory::{MemoryStore, MemoryStoreBuilder};
#[cfg(feature = "redis")]
pub use redis::RedisStore;
pub use store::{CacheStore, Found, Level};
#[cfg(feature = "redis")]
pub use tiered::TieredStore;
