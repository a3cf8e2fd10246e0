#![doc = include_str!("../README.md")]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_config::Loader`, `ee_config::ConfigIssue`).

mod features;
mod loader;
mod reload;

/// Re-exported from ee-core, where every ee crate takes it from.
pub use ee_core::Secret;
pub use features::Features;
pub use loader::{ConfigError, ConfigIssue, Loader};
pub use reload::watch;
