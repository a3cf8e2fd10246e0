//! API keys: issued by the server, stored only as a hash, verified in
//! constant time, revocable, with scopes, roles and a tenant.
//!
//! A key reads `<prefix>_<lookup id>_<secret>`, e.g.
//! `eek_3Fq9x2LmA7cQ_V1q…` (43 secret characters): the prefix (configurable,
//! `sk_live`) makes leaked keys easy to find, the lookup id (12 base62
//! characters) finds the record without a scan, and the secret (43 base62
//! characters, ≥ 256 bits from the OS CSPRNG) is what proves possession.
//! Stores keep the SHA-256 of the secret, never the key: see [`ApiKeys`].
//!
//! - [`ApiKeys`]: create, verify, revoke, list; [`ApiKeyVerifier`](crate::ApiKeyVerifier)
//!   for the auth layer.
//! - [`ApiKeyStore`]: the backend seam, with [`MemoryApiKeys`], `RedisApiKeys`
//!   (feature `redis`), `DbApiKeys` (features `postgres`, `sqlite`) and
//!   [`AnyApiKeyStore`] to pick one at run time.

mod any;
mod cache;
mod config;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod db;
mod format;
mod keys;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod store;

pub use any::AnyApiKeyStore;
pub use config::ApiKeyConfig;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use db::DbApiKeys;
pub use keys::{ApiKeys, CreatedKey, NewApiKey};
pub use memory::MemoryApiKeys;
#[cfg(feature = "redis")]
pub use redis::RedisApiKeys;
pub use store::{ApiKeyRecord, ApiKeyStore, Inserted};
