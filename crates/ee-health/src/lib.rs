#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_health::Health`, `ee_health::DiskCheck`).
mod check;
mod error;
mod health;
mod router;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use check::PostgresCheck;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use check::RedisCheck;
pub use check::{
    CheckFuture, DiskCheck, HealthCheck, HttpCheck, MemoryCheck, Observed, Outcome, Status,
    check_fn,
};
pub use error::HealthError;
pub use health::{CheckResult, HEALTH_JSON, Health, HealthBuilder, HealthConfig, Report};
