#![doc = include_str!("../README.md")]

mod check;
mod health;
mod router;

#[cfg(feature = "postgres")]
pub use check::PostgresCheck;
#[cfg(feature = "redis")]
pub use check::RedisCheck;
pub use check::{
    CheckFuture, DiskCheck, HealthCheck, HttpCheck, MemoryCheck, Outcome, Status, check_fn,
};
pub use health::{HEALTH_JSON, Health, HealthBuilder, HealthConfig, Report};
