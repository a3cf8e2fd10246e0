#![doc = include_str!("../README.md")]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_config::Loader`, `ee_config::ConfigIssue`).

mod features;
mod loader;
mod reload;
mod secret;

pub use features::Features;
pub use loader::{ConfigError, ConfigIssue, Loader};
pub use reload::watch;
pub use secret::Secret;
