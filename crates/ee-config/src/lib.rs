#![doc = include_str!("../README.md")]

mod features;
mod loader;
mod reload;
mod secret;

pub use features::Features;
pub use loader::{ConfigError, Loader, Problem};
pub use reload::watch;
pub use secret::Secret;
