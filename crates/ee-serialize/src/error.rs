//! Errors of request bodies and JSON, each mapped to an RFC 9457 problem with
//! the status a client can act on (ee-validate maps its body errors here too).

use std::error::Error as StdError;

use ee_core::Problem;
use http::StatusCode;

/// A request body that could not be read or decoded: [`DecompressionLayer`]'s
/// errors, and what the extractors that buffer the body meet
/// ([`BodyError::from_read_error`]).
///
/// [`DecompressionLayer`]: crate::DecompressionLayer
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body (decoded, when it was compressed) is longer than the limit.
    #[error("the request body is larger than {limit} bytes{}", if *.decoded { " once decoded" } else { "" })]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
        /// Whether the limit applies to the decoded (decompressed) body.
        decoded: bool,
    },
    /// The body is not valid data in its declared `Content-Encoding`.
    #[error("the body is not valid {encoding} data: {reason}")]
    MalformedEncoding {
        /// The content coding (`gzip`, `zstd`, …).
        encoding: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// A length limit of another layer stopped the body (axum's
    /// `DefaultBodyLimit`, tower-http's `RequestBodyLimitLayer`, the
    /// compressed-size cap of `DecompressionLayer`): the limit is not known
    /// here.
    #[error("the request body is larger than the server accepts")]
    LimitExceeded,
    /// The body could not be read to its end (the client went away
    /// mid-body).
    #[error("the request body could not be read to its end")]
    Unreadable,
}

impl BodyError {
    /// What an error met while reading a request body means: a [`BodyError`]
    /// or a length limit anywhere in its `source()` chain is that (413 or
    /// 400 as a problem); anything else is [`BodyError::Unreadable`] (400).
    ///
    /// ```
    /// use ee_serialize::BodyError;
    ///
    /// let decoded = BodyError::TooLarge { limit: 1024, decoded: true };
    /// assert_eq!(BodyError::from_read_error(&decoded), decoded);
    /// let gone = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    /// assert_eq!(BodyError::from_read_error(&gone), BodyError::Unreadable);
    /// ```
    pub fn from_read_error(error: &(dyn StdError + 'static)) -> Self {
        let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(e) = cause {
            if let Some(body) = e.downcast_ref::<BodyError>() {
                return body.clone();
            }
            // http-body-util's `Limited` (axum's `DefaultBodyLimit`, tower-http's
            // `RequestBodyLimitLayer`, the compressed-size cap of `DecompressionLayer`).
            // axum boxes the error once more on its way (a `Box<dyn Error>` inside
            // its own error), which hides the type from `is`: its message is the
            // one way left to recognise it.
            if e.is::<http_body_util::LengthLimitError>()
                || e.to_string() == "length limit exceeded"
            {
                return BodyError::LimitExceeded;
            }
            cause = e.source();
        }
        BodyError::Unreadable
    }
}

impl From<BodyError> for Problem {
    fn from(e: BodyError) -> Self {
        let detail = e.to_string();
        match e {
            BodyError::TooLarge { limit, decoded } => too_large()
                .with_detail(detail)
                .with_extension("limit", limit)
                .with_extension("decoded", decoded),
            BodyError::MalformedEncoding { encoding, .. } => {
                Problem::ee(StatusCode::BAD_REQUEST, "serialize", "malformed-encoding")
                    .with_title("Malformed compressed body")
                    .with_detail(detail)
                    .with_extension("encoding", encoding)
            }
            BodyError::LimitExceeded => too_large().with_detail(detail),
            BodyError::Unreadable => {
                Problem::ee(StatusCode::BAD_REQUEST, "serialize", "unreadable-body")
                    .with_title("Unreadable request body")
                    .with_detail(detail)
            }
        }
    }
}

/// The 413 problem, before its detail.
fn too_large() -> Problem {
    Problem::ee(StatusCode::PAYLOAD_TOO_LARGE, "serialize", "body-too-large")
        .with_title("Request body too large")
}

/// A request whose `Content-Type` is not JSON (415 as a problem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentTypeError {
    /// The `Content-Type` the request had (`(not ASCII)` for a value that is
    /// not), if any.
    pub content_type: Option<String>,
}

impl std::fmt::Display for ContentTypeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.content_type {
            Some(ct) => write!(
                f,
                "expected a JSON body (`Content-Type: application/json`), got `{ct}`"
            ),
            None => f.write_str(
                "expected a JSON body: the request has no `Content-Type: application/json`",
            ),
        }
    }
}

impl StdError for ContentTypeError {}

impl From<ContentTypeError> for Problem {
    fn from(e: ContentTypeError) -> Self {
        Problem::ee(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "serialize",
            "unsupported-media-type",
        )
        .with_title("Unsupported media type")
        .with_detail(e.to_string())
    }
}

/// Checks that a request's `Content-Type` is JSON ([`is_json_content_type`]).
///
/// # Errors
/// [`ContentTypeError`] naming the content type the request had instead.
///
/// ```
/// use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
///
/// let mut headers = HeaderMap::new();
/// assert!(ee_serialize::require_json(&headers).is_err());
/// headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
/// assert!(ee_serialize::require_json(&headers).is_ok());
/// ```
pub fn require_json(headers: &http::HeaderMap) -> Result<(), ContentTypeError> {
    let content_type = headers.get(http::header::CONTENT_TYPE);
    if content_type
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_content_type)
    {
        return Ok(());
    }
    Err(ContentTypeError {
        content_type: content_type.map(|v| v.to_str().unwrap_or("(not ASCII)").to_owned()),
    })
}

/// Whether a `Content-Type` value is JSON: `application/json` or any
/// `application/<subtype>+json`, parameters (`; charset=utf-8`) allowed.
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len().checked_sub(5).is_some_and(|i| {
                subtype.is_char_boundary(i) && subtype[i..].eq_ignore_ascii_case("+json")
            }))
}

/// A JSON document that did not parse into the expected type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Whether the bytes are not JSON at all (syntax, truncation, invalid
    /// UTF-8, nesting too deep: 400) rather than JSON of the wrong shape
    /// (a missing or unknown field, a number out of range: 422).
    pub syntax: bool,
    /// The parser's message.
    pub message: String,
    /// 1-based line of the error (0 when unknown).
    pub line: usize,
    /// 1-based column of the error (0 when unknown).
    pub column: usize,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for JsonError {}

impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> Self {
        use serde_json::error::Category;
        Self {
            syntax: !matches!(e.classify(), Category::Data),
            message: e.to_string(),
            line: e.line(),
            column: e.column(),
        }
    }
}

impl From<JsonError> for Problem {
    fn from(e: JsonError) -> Self {
        let problem = if e.syntax {
            Problem::ee(StatusCode::BAD_REQUEST, "serialize", "malformed-json")
                .with_title("Malformed JSON")
        } else {
            Problem::ee(
                StatusCode::UNPROCESSABLE_ENTITY,
                "serialize",
                "invalid-json",
            )
            .with_title("JSON of the wrong shape")
        };
        let problem = problem.with_detail(e.message);
        if e.line > 0 {
            problem
                .with_extension("line", e.line)
                .with_extension("column", e.column)
        } else {
            problem
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
            "application/vnd.ee.v2+json",
        ] {
            assert!(is_json_content_type(ok), "{ok}");
        }
        for no in [
            "text/json",
            "application/jsonx",
            "application/x-www-form-urlencoded",
            "json",
            "",
        ] {
            assert!(!is_json_content_type(no), "{no}");
        }
    }

    #[test]
    fn syntax_and_shape_errors_get_their_statuses() {
        let syntax: JsonError = serde_json::from_str::<serde_json::Value>("{")
            .unwrap_err()
            .into();
        assert_eq!(Problem::from(syntax).status(), 400);
        let shape: JsonError = serde_json::from_str::<u8>("300").unwrap_err().into();
        assert_eq!(Problem::from(shape).status(), 422);
    }

    #[test]
    fn body_errors_are_found_anywhere_in_the_chain() {
        #[derive(Debug)]
        struct Wrapped(Box<dyn StdError + Send + Sync>);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl StdError for Wrapped {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&*self.0)
            }
        }
        let too_large = BodyError::TooLarge {
            limit: 10,
            decoded: true,
        };
        let wrapped = Wrapped(Box::new(too_large.clone()));
        assert_eq!(BodyError::from_read_error(&wrapped), too_large);
        let problem = Problem::from(BodyError::from_read_error(&wrapped));
        assert_eq!(problem.status(), 413);
        assert_eq!(problem.extension("limit"), Some(&serde_json::json!(10)));
        // A real `Limited` body past its limit.
        let mut body = std::pin::pin!(http_body_util::Limited::new(
            http_body_util::Full::new(bytes::Bytes::from_static(b"too long")),
            2
        ));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(Some(Err(error))) =
            http_body::Body::poll_frame(body.as_mut(), &mut cx)
        else {
            panic!("the limit was not hit");
        };
        let limited = Wrapped(error);
        assert_eq!(
            Problem::from(BodyError::from_read_error(&limited)).status(),
            413
        );
        let gone = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let problem = Problem::from(BodyError::from_read_error(&gone));
        assert_eq!(
            (problem.status().as_u16(), problem.type_uri()),
            (400, "https://ee.rs/problems/serialize/unreadable-body")
        );
    }

    #[test]
    fn a_content_type_that_is_not_json_is_415_naming_it() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        let err = require_json(&headers).unwrap_err();
        let problem = Problem::from(err);
        assert_eq!(problem.status(), 415);
        assert!(problem.detail().unwrap().contains("`text/plain`"));
        let none = require_json(&http::HeaderMap::new()).unwrap_err();
        assert_eq!(none.content_type, None);
    }
}
