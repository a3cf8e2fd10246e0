//! `DecompressionLayer`: request bodies sent with `Content-Encoding: zstd |
//! br | gzip | deflate` are decoded as they stream, and the **decoded** size
//! is limited, so a small compressed bomb cannot make the server allocate
//! what it inflates to.
//!
//! tower-http's `RequestDecompressionLayer` decodes but does not limit the
//! decoded size, and answers an unsupported coding with an empty 415; this
//! layer does both and speaks problem+json.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{BrotliDecoder, DeflateDecoder, GzipDecoder, ZstdDecoder};
use bytes::Bytes;
use ee_core::Problem;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};
use tower::{Layer, Service};

use crate::error::BodyError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The codings this layer decodes, in the `Accept-Encoding` it sends back
/// with a 415.
const SUPPORTED: &str = "zstd, br, gzip, deflate";

/// Decodes compressed request bodies with a limit on the decoded size.
///
/// ```
/// use axum::{Router, routing::post};
/// use ee_serialize::{DecompressionLayer, FastJson};
///
/// async fn echo(FastJson(v): FastJson<serde_json::Value>) -> FastJson<serde_json::Value> {
///     FastJson(v)
/// }
///
/// // Compressed bodies may inflate to 1 MiB at most: past that, 413.
/// let app: Router = Router::new()
///     .route("/echo", post(echo))
///     .layer(DecompressionLayer::new().max_decoded(1 << 20));
/// ```
///
/// A request with another coding (or several codings) gets a 415 problem
/// with `Accept-Encoding: zstd, br, gzip, deflate`; a body that is not valid
/// data in its coding fails to read with [`BodyError::MalformedEncoding`]
/// (400 through [`FastJson`](crate::FastJson) and ee-validate's extractors),
/// and one that inflates past the limit with [`BodyError::TooLarge`] (413).
/// Requests without `Content-Encoding` (or with `identity`) pass unchanged.
///
/// The compressed bytes are limited as well (to the decoded limit plus
/// 64 KiB), zstd frames may not ask for a window over 8 MiB, and
/// concatenated zstd frames and gzip members are all decoded (data after the
/// first that is not another frame is an error, not ignored).
///
/// The limit reaches handlers as a body error: ee's extractors
/// ([`FastJson`](crate::FastJson), ee-validate's `Valid`) answer 413
/// problem+json; axum's own `Json`/`Bytes` extractors answer their plain-text
/// rejection (400) for it.
#[derive(Debug, Clone, Copy)]
pub struct DecompressionLayer {
    max_decoded: usize,
}

impl Default for DecompressionLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl DecompressionLayer {
    /// A layer that lets bodies inflate to 2 MiB (axum's default body limit).
    pub fn new() -> Self {
        Self {
            max_decoded: 2 << 20,
        }
    }

    /// The most bytes a compressed body may inflate to.
    #[must_use]
    pub fn max_decoded(mut self, bytes: usize) -> Self {
        self.max_decoded = bytes;
        self
    }
}

impl<S> Layer<S> for DecompressionLayer {
    type Service = Decompression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Decompression {
            inner,
            max_decoded: self.max_decoded,
        }
    }
}

/// The service [`DecompressionLayer`] wraps around yours.
#[derive(Debug, Clone)]
pub struct Decompression<S> {
    inner: S,
    max_decoded: usize,
}

/// A content coding this layer decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Zstd,
    Brotli,
    Gzip,
    Deflate,
}

impl Coding {
    fn name(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }
}

/// What `Content-Encoding` asks for: nothing, one known coding, or a refusal.
fn coding(values: http::header::GetAll<'_, HeaderValue>) -> Result<Option<Coding>, Box<Problem>> {
    let unsupported = |detail: String| {
        Box::new(
            Problem::ee(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "serialize",
                "unsupported-content-encoding",
            )
            .with_title("Unsupported Content-Encoding")
            .with_detail(detail)
            .with_header(ACCEPT_ENCODING, HeaderValue::from_static(SUPPORTED)),
        )
    };
    // Several header lines are one comma-separated list (RFC 9110 §5.3).
    let mut text = String::new();
    for value in values {
        let Ok(part) = value.to_str() else {
            return Err(unsupported(
                "the Content-Encoding header is not ASCII".into(),
            ));
        };
        if !text.is_empty() {
            text.push_str(", ");
        }
        text.push_str(part);
    }
    let codings: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
        .collect();
    match codings.as_slice() {
        [] => Ok(None),
        [one] => match one.to_ascii_lowercase().as_str() {
            "zstd" => Ok(Some(Coding::Zstd)),
            "br" => Ok(Some(Coding::Brotli)),
            "gzip" | "x-gzip" => Ok(Some(Coding::Gzip)),
            "deflate" => Ok(Some(Coding::Deflate)),
            other => Err(unsupported(format!(
                "the body is encoded with `{other}`; this server decodes {SUPPORTED}"
            ))),
        },
        _ => Err(unsupported(format!(
            "the body has several content codings (`{text}`); send at most one of {SUPPORTED}"
        ))),
    }
}

impl<S, B, ResB> Service<Request<B>> for Decompression<S>
where
    S: Service<Request<DecodedBody<B>>, Response = Response<ResB>>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResB: From<Bytes>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        S::Future,
        std::future::Ready<Result<Response<ResB>, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        use futures_util::future::Either;
        let coding = match coding(req.headers().get_all(CONTENT_ENCODING)) {
            Ok(coding) => coding,
            Err(problem) => return Either::Right(std::future::ready(Ok(problem.into_response()))),
        };
        let (mut parts, body) = req.into_parts();
        let body = match coding {
            None => DecodedBody::plain(body),
            Some(coding) => {
                parts.headers.remove(CONTENT_ENCODING);
                parts.headers.remove(CONTENT_LENGTH);
                DecodedBody::decoded(decode(body, coding, self.max_decoded))
            }
        };
        Either::Left(self.inner.call(Request::from_parts(parts, body)))
    }
}

/// The decoded stream of `body`: at most `limit` bytes, in chunks of 16 KiB
/// or less, so what the decoder inflates is never held whole.
fn decode<B>(body: B, coding: Coding, limit: usize) -> UnsyncBoxBody<Bytes, BoxError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    // The compressed bytes are limited too: compressed data is never much
    // larger than what it decodes to, and a stream of empty blocks that
    // decodes to nothing must not run forever.
    let compressed = http_body_util::Limited::new(body, limit.saturating_add(64 * 1024))
        .into_data_stream()
        .map_err(|e| std::io::Error::other(Upstream(e)));
    let reader = StreamReader::new(compressed);
    let decoder: Pin<Box<dyn AsyncRead + Send>> = match coding {
        Coding::Zstd => {
            // A frame may ask for a window of up to 2^27 bytes, allocated
            // before any output: 8 MiB (2^23) is what zstd's levels up to 19
            // use and what RFC 8878 asks decoders of HTTP content to support.
            let mut d = ZstdDecoder::with_params(
                reader,
                &[async_compression::zstd::DParameter::window_log_max(23)],
            );
            d.multiple_members(true);
            Box::pin(d)
        }
        Coding::Brotli => Box::pin(BrotliDecoder::new(reader)),
        Coding::Gzip => {
            let mut d = GzipDecoder::new(reader);
            d.multiple_members(true);
            Box::pin(d)
        }
        Coding::Deflate => Box::pin(DeflateDecoder::new(reader)),
    };
    let stream = Limit {
        inner: ReaderStream::with_capacity(decoder, 16 * 1024),
        coding,
        limit,
        seen: 0,
        done: false,
    };
    UnsyncBoxBody::new(http_body_util::StreamBody::new(
        stream.map(|chunk| chunk.map(Frame::data)),
    ))
}

/// An error of the compressed body (not of its decoding), carried through
/// the decoder as an `io::Error`.
#[derive(Debug)]
struct Upstream(BoxError);

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Upstream {}

/// Counts decoded bytes and stops with [`BodyError::TooLarge`] past the limit.
struct Limit<St> {
    inner: St,
    coding: Coding,
    limit: usize,
    seen: usize,
    done: bool,
}

impl<St> Stream for Limit<St>
where
    St: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    type Item = Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len();
                if self.seen > self.limit {
                    self.done = true;
                    return Poll::Ready(Some(Err(Box::new(BodyError::TooLarge {
                        limit: self.limit,
                        decoded: true,
                    }))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                // An error of the compressed body itself (the client went
                // away) passes through; anything else is the decoder's.
                let reason = e.to_string();
                let error: BoxError = match e.into_inner().map(|inner| inner.downcast::<Upstream>())
                {
                    Some(Ok(upstream)) => upstream.0,
                    _ => Box::new(BodyError::MalformedEncoding {
                        encoding: self.coding.name(),
                        reason,
                    }),
                };
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request body after [`DecompressionLayer`]: the original body, or the
    /// decoded stream of a compressed one.
    pub struct DecodedBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project_lite::pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Plain {
            #[pin]
            body: B,
        },
        Decoded {
            #[pin]
            body: UnsyncBoxBody<Bytes, BoxError>,
        },
    }
}

impl<B> DecodedBody<B> {
    fn plain(body: B) -> Self {
        Self {
            inner: Inner::Plain { body },
        }
    }

    fn decoded(body: UnsyncBoxBody<Bytes, BoxError>) -> Self {
        Self {
            inner: Inner::Decoded { body },
        }
    }
}

impl<B> Body for DecodedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().inner.project() {
            InnerProj::Plain { body } => body.poll_frame(cx).map_err(Into::into),
            InnerProj::Decoded { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Plain { body } => body.is_end_stream(),
            Inner::Decoded { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Plain { body } => body.size_hint(),
            Inner::Decoded { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_encoding_values() {
        let parse = |v: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(v));
            coding(headers.get_all(CONTENT_ENCODING))
        };
        assert_eq!(parse("zstd").unwrap(), Some(Coding::Zstd));
        assert_eq!(parse("GZIP").unwrap(), Some(Coding::Gzip));
        assert_eq!(parse("x-gzip").unwrap(), Some(Coding::Gzip));
        assert_eq!(parse("identity").unwrap(), None);
        assert_eq!(parse("identity, br").unwrap(), Some(Coding::Brotli));
        assert_eq!(
            coding(http::HeaderMap::new().get_all(CONTENT_ENCODING)).unwrap(),
            None
        );
        // Two header lines are two codings.
        let mut two = http::HeaderMap::new();
        two.append(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        two.append(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(
            coding(two.get_all(CONTENT_ENCODING)).unwrap_err().status(),
            415
        );
        for bad in ["compress", "gzip, zstd", "lz4"] {
            let problem = parse(bad).unwrap_err();
            assert_eq!(problem.status(), 415, "{bad}");
            assert_eq!(problem.headers()[ACCEPT_ENCODING], SUPPORTED);
        }
    }
}
