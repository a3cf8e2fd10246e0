#![doc = include_str!("../README.md")]

mod check;
pub mod error;
#[cfg(feature = "axum")]
mod extract;
mod layer;
pub mod metrics;
mod registry;
mod schema;
mod service;

pub use error::{Part, SchemaError, Violation};
#[cfg(feature = "axum")]
pub use extract::Valid;
pub use layer::ValidateLayer;
pub use registry::{SchemaRegistry, SchemaRegistryBuilder};
pub use schema::HasSchema;
pub use service::{Validate, ValidatedBody};

/// Re-exported so custom keywords can be written without naming the crate.
pub use jsonschema;
