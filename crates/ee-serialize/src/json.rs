//! `FastJson<T>`: the JSON extractor and response of ee services.
//!
//! What makes it faster than `axum::Json` is measured, not assumed (see
//! `docs/benchmarks.md`): no `serde_path_to_error` pass over the body, and
//! responses written into a per-thread buffer that keeps its capacity instead
//! of growing a fresh one from 128 bytes.
//!
//! The parser is serde_json at every size. sonic-rs parsed our 3 KB order
//! ~19 % faster (simd-json ~14 %, and ~18 % at 300 KB), but sonic-rs lets
//! input nest 255 deep, which overflowed a 2 MiB thread stack with a
//! 1,000-deep array in a debug build; serde_json stops at 128 with an error.
//! A body nobody can crash the server with beats a fifth of a parse.

use std::cell::RefCell;

use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ee_core::Problem;
use http::header::{CONTENT_TYPE, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{BodyError, JsonError, require_json};

/// A JSON request body or response, parsed and written with less work than
/// `axum::Json` does (see the module docs for what and how much).
///
/// As an extractor it wants `Content-Type: application/json` (or any
/// `application/*+json`) and answers problem+json otherwise: 415 for another
/// content type, 413 past the body limit (axum's `DefaultBodyLimit`, or the
/// decoded-size limit of [`DecompressionLayer`](crate::DecompressionLayer)),
/// 400 for bytes that are not JSON (syntax, truncation, invalid UTF-8,
/// nesting deeper than 128), 422 for JSON of the wrong shape (a missing or,
/// with `#[serde(deny_unknown_fields)]`, unknown field; a number out of range).
///
/// ```
/// use axum::{Router, routing::post};
/// use ee_serialize::FastJson;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize, Serialize)]
/// struct Order { sku: String, quantity: u32 }
///
/// async fn create(FastJson(order): FastJson<Order>) -> FastJson<Order> {
///     FastJson(order)
/// }
///
/// let app: Router = Router::new().route("/orders", post(create));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct FastJson<T>(pub T);

impl<T: DeserializeOwned> FastJson<T> {
    /// Parses `bytes`.
    ///
    /// # Errors
    /// A [`JsonError`] that says whether the bytes are not JSON or JSON of
    /// the wrong shape.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, JsonError> {
        serde_json::from_slice(bytes)
            .map(FastJson)
            .map_err(JsonError::from)
    }
}

impl<T, S> FromRequest<S> for FastJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json(req.headers())?;
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| BodyError::from_read_error(&rejection))?;
        Ok(Self::from_bytes(&bytes)?)
    }
}

thread_local! {
    /// The write buffer of this thread's responses: it keeps its capacity
    /// (up to [`KEEP_AT_MOST`]) so a response does not regrow one from scratch.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Buffers that grew past this are not kept for the next response.
const KEEP_AT_MOST: usize = 1 << 20;

/// Serialises `value` as JSON bytes (serde_json) through the per-thread buffer.
///
/// # Errors
/// The serializer's error (a map with non-string keys, a failing `Serialize`).
pub fn to_json_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, JsonError> {
    BUFFER.with(|cell| {
        // A response serialised while another is (a `Serialize` impl that
        // renders JSON itself) gets its own buffer.
        let mut own = Vec::new();
        let mut guard = cell.try_borrow_mut();
        let buf = match guard.as_deref_mut() {
            Ok(buf) => buf,
            Err(_) => &mut own,
        };
        buf.clear();
        let written = serde_json::to_writer(&mut *buf, value);
        let result = written
            .map(|()| Bytes::copy_from_slice(buf))
            .map_err(JsonError::from);
        if buf.capacity() > KEEP_AT_MOST {
            *buf = Vec::new();
        }
        result
    })
}

impl<T: Serialize> IntoResponse for FastJson<T> {
    fn into_response(self) -> Response {
        match to_json_bytes(&self.0) {
            Ok(bytes) => {
                let mut response = Response::new(axum::body::Body::from(bytes));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            Err(e) => Problem::ee(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "serialize",
                "serialization-failed",
            )
            .with_title("The response could not be serialised")
            .with_detail(e.message)
            .into_response(),
        }
    }
}

impl<T> From<T> for FastJson<T> {
    fn from(value: T) -> Self {
        FastJson(value)
    }
}
