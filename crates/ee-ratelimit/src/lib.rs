#![doc = include_str!("../README.md")]

pub mod config;
pub mod error;
mod future;
pub mod headers;
mod layer;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
mod service;
pub mod store;

pub use config::{HeaderConfig, OnBackendError, PolicyConfig, Rule};
pub use error::RateLimitError;
pub use future::ResponseFuture;
pub use layer::{Policy, RateLimitBuilder, RateLimitLayer};
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
pub use service::RateLimit;
pub use store::{Admission, Decision, Limiter, RateLimitStore, StoreError};
