#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_validate::Valid`, `ee_validate::METRIC_REJECTIONS_TOTAL`).
mod check;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod layer;
mod metrics;
mod registry;
mod schema;
mod service;

pub use error::{MAX_VIOLATIONS, Part, SchemaError, ValidateError, Violation};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::Valid;
pub use layer::ValidateLayer;
pub use metrics::{METRIC_REJECTIONS_TOTAL, UNMATCHED_ROUTE, describe_metrics};
pub use registry::{SchemaRegistry, SchemaRegistryBuilder};
pub use schema::HasSchema;
pub use service::{Validate, ValidatedBody};

/// Re-exported so custom keywords can be written without naming the crate.
pub use jsonschema;
