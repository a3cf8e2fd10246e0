//! Response compression: ee's preset of tower-http's `CompressionLayer`.
//!
//! tower-http already negotiates `Accept-Encoding` (q-values, `identity;q=0`,
//! `*`), prefers zstd over br over gzip over deflate when the client weighs
//! them equally, sets `Vary: Accept-Encoding` and leaves already-encoded
//! responses alone. What the preset adds is a content-type **allowlist**
//! (JSON, text, JavaScript, XML, SVG: compressing images, archives, gRPC
//! frames or event streams wastes CPU or breaks streaming) and a minimum
//! size, chosen so that the compressed frame's overhead pays for itself.
//!
//! The levels are tower-http's defaults, chosen by benchmark
//! (`cargo bench -p ee-serialize --bench compression`, numbers in
//! `docs/benchmarks.md`): zstd 3, brotli 4, gzip 6. tower-http applies one
//! `CompressionLevel` to every algorithm, so one per-algorithm table is what
//! `Default` gives.

use http::Response;
use http::header::CONTENT_TYPE;
use http_body::Body;
use tower_http::compression::predicate::Predicate;
use tower_http::compression::{CompressionLayer, CompressionLevel};

/// Content types compressed by default (a prefix match on the media type;
/// `+json` and `+xml` suffixes match too).
pub const DEFAULT_CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/problem+json",
    "application/health+json",
    "application/javascript",
    "application/xml",
    "application/x-ndjson",
    "image/svg+xml",
    "text/",
];

/// Responses shorter than this are sent as they are: below ~1 KiB the
/// headers dominate and the frame overhead can make the body larger.
pub const DEFAULT_MIN_SIZE: u16 = 1024;

/// The response-compression preset: zstd preferred, JSON and text only,
/// 1 KiB and more.
///
/// ```
/// use axum::{Router, routing::get};
///
/// let app: Router = Router::new()
///     .route("/products", get(|| async { "…a large listing…" }))
///     .layer(ee_serialize::compression());
/// ```
pub fn compression() -> CompressionLayer<Compressible> {
    CompressionLayer::new()
        .quality(CompressionLevel::Default)
        .compress_when(Compressible::default())
}

/// The preset's predicate: compress a response when its content type is on
/// an allowlist and its size (when known) is at least a minimum.
#[derive(Debug, Clone)]
pub struct Compressible {
    min_size: u64,
    content_types: std::sync::Arc<[String]>,
}

impl Default for Compressible {
    fn default() -> Self {
        Self {
            min_size: u64::from(DEFAULT_MIN_SIZE),
            content_types: DEFAULT_CONTENT_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

impl Compressible {
    /// The default allowlist and minimum size.
    pub fn new() -> Self {
        Self::default()
    }

    /// Responses of fewer bytes are not compressed (a response of unknown
    /// size, streamed, always is when its type allows).
    #[must_use]
    pub fn min_size(mut self, bytes: u64) -> Self {
        self.min_size = bytes;
        self
    }

    /// Replaces the allowlist: media-type prefixes (`"text/"`,
    /// `"application/json"`), matched case-insensitively.
    #[must_use]
    pub fn content_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.content_types = types
            .into_iter()
            .map(|s| s.into().to_ascii_lowercase())
            .collect();
        self
    }

    fn allows(&self, content_type: &str) -> bool {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        let essence = essence.to_ascii_lowercase();
        if essence == "text/event-stream" {
            return false; // compressing would buffer the stream's events
        }
        essence.ends_with("+json")
            || essence.ends_with("+xml")
            || self
                .content_types
                .iter()
                .any(|allowed| essence.starts_with(allowed.as_str()))
    }
}

impl Predicate for Compressible {
    fn should_compress<B>(&self, response: &Response<B>) -> bool
    where
        B: Body,
    {
        let allowed = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| self.allows(ct));
        if !allowed {
            return false;
        }
        let size = response.body().size_hint().exact().or_else(|| {
            response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        });
        size.is_none_or(|size| size >= self.min_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(content_type: &str, len: usize) -> Response<http_body_util::Full<bytes::Bytes>> {
        Response::builder()
            .header(CONTENT_TYPE, content_type)
            .body(http_body_util::Full::new(bytes::Bytes::from(vec![
                b'a';
                len
            ])))
            .unwrap()
    }

    #[test]
    fn allowlist_and_minimum_size() {
        let p = Compressible::new();
        assert!(p.should_compress(&response("application/json", 2000)));
        assert!(p.should_compress(&response("Application/JSON; charset=utf-8", 2000)));
        assert!(p.should_compress(&response("application/vnd.ee.v2+json", 2000)));
        assert!(p.should_compress(&response("text/html", 2000)));
        assert!(!p.should_compress(&response("application/json", 100)));
        assert!(!p.should_compress(&response("image/png", 2000)));
        assert!(!p.should_compress(&response("application/grpc", 2000)));
        assert!(!p.should_compress(&response("text/event-stream", 2000)));
        assert!(!p.should_compress(&response("application/octet-stream", 2000)));
        let custom = Compressible::new()
            .content_types(["application/octet-stream"])
            .min_size(0);
        assert!(custom.should_compress(&response("application/octet-stream", 1)));
        assert!(!custom.should_compress(&response("text/plain", 10)));
    }
}
