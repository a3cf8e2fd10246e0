#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_testing::RedisServer`, `ee_testing::serve`).
mod bench;
#[cfg(feature = "browser")]
mod browser;
mod clock;
mod logs;
mod metrics;
#[cfg(feature = "postgres")]
mod postgres;
mod proxy;
mod redis;
mod service;
mod wire;

pub use bench::{
    RedisPair, Turns, bench_runtime, median, ns_per_op, profile_args, redis_pair,
    spread_over_tasks, take_turns,
};
#[cfg(feature = "browser")]
#[cfg_attr(docsrs, doc(cfg(feature = "browser")))]
pub use browser::Browser;
pub use clock::ManualClock;
pub use logs::{LogCapture, Logs, capture_logs};
pub use metrics::{Counters, counters};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{DEFAULT_DATABASE_URL, Postgres};
pub use proxy::TcpProxy;
pub use redis::{RedisCluster, RedisServer, Reply, command as redis_command, key_slot};
pub use service::{TestResponse, send};
pub use wire::{exchange, parse_response, raw_request, serve};
