#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_serialize::FastJson`, `ee_serialize::BodyError`).
mod codec;
#[cfg(feature = "http")]
mod compression;
#[cfg(feature = "http")]
mod decompression;
mod error;
#[cfg(feature = "axum")]
mod json;

pub use codec::{CodecError, Dictionary, ZstdCodec};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use compression::{Compressible, DEFAULT_CONTENT_TYPES, DEFAULT_MIN_SIZE, compression};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use decompression::{DecodedBody, Decompression, DecompressionLayer};
pub use error::{BodyError, ContentTypeError, JsonError, is_json_content_type, require_json};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use json::{FastJson, to_json_bytes};
