#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_versioning::VersionedRouter`).
mod config;
mod error;
mod lifecycle;
mod metrics;
mod router;
mod version;

pub use config::{Date, LifecycleConfig, VersioningConfig};
pub use error::VersioningError;
pub use lifecycle::{Lifecycle, deprecation_value, sunset_value};
pub use metrics::{METRIC_DEPRECATED_REQUESTS_TOTAL, describe_metrics};
pub use router::{ResponseFuture, Routes, VersionRoutes, VersionedRouter, VersionedService};
pub use version::{Source, Version};
