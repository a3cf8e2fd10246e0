#![doc = include_str!("../README.md")]

pub mod bench;
#[cfg(feature = "browser")]
mod browser;
mod clock;
pub mod logs;
mod metrics;
#[cfg(feature = "postgres")]
mod postgres;
mod proxy;
mod redis;
mod service;
pub mod wire;

#[cfg(feature = "browser")]
pub use browser::Browser;
pub use clock::ManualClock;
pub use metrics::{Counters, counters};
#[cfg(feature = "postgres")]
pub use postgres::{DEFAULT_DATABASE_URL, Postgres};
pub use proxy::TcpProxy;
pub use redis::{RedisCluster, RedisServer, Reply, command as redis_command, key_slot};
pub use service::{TestResponse, send};
