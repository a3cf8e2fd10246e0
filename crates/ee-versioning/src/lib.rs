#![doc = include_str!("../README.md")]

mod config;
mod lifecycle;
mod router;
mod version;

pub use config::{Date, LifecycleConfig, VersioningConfig};
pub use lifecycle::{Lifecycle, deprecation_value, sunset_value};
pub use router::{DEPRECATED_REQUESTS, Routes, VersionRoutes, VersionedRouter, VersionedService};
pub use version::{Source, Version};
