#![doc = include_str!("../README.md")]

pub mod codec;
#[cfg(feature = "http")]
pub mod compression;
#[cfg(feature = "http")]
pub mod decompression;
pub mod error;
#[cfg(feature = "axum")]
pub mod json;

pub use codec::{CodecError, Dictionary, ZstdCodec};
#[cfg(feature = "http")]
pub use compression::{Compressible, compression};
#[cfg(feature = "http")]
pub use decompression::{DecodedBody, Decompression, DecompressionLayer};
pub use error::{BodyError, JsonError};
#[cfg(feature = "axum")]
pub use json::FastJson;
