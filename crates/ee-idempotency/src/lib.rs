#![doc = include_str!("../README.md")]

mod body;
pub mod config;
pub mod error;
pub mod key;
mod layer;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
pub mod store;

pub use body::IdempotencyBody;
pub use config::{IdempotencyConfig, OnBackendError};
pub use error::IdempotencyError;
pub use layer::{Idempotency, IdempotencyLayer, ResponseFuture};
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
pub use store::{Begin, Fingerprint, IdempotencyStore, StoreError, StoredResponse};
