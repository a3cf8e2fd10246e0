//! Errors of request bodies and JSON, each mapped to an RFC 9457 problem with
//! the status a client can act on (ee-validate maps its body errors here too).

use std::error::Error as StdError;

use ee_core::Problem;
use http::StatusCode;

/// A request body that could not be decoded ([`DecompressionLayer`]'s
/// errors, read by the extractors that buffer the body).
///
/// [`DecompressionLayer`]: crate::DecompressionLayer
#[derive(Debug, thiserror::Error)]
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
}

impl From<&BodyError> for Problem {
    fn from(e: &BodyError) -> Self {
        match e {
            BodyError::TooLarge { limit, decoded } => {
                Problem::ee(StatusCode::PAYLOAD_TOO_LARGE, "serialize", "body-too-large")
                    .with_title("Request body too large")
                    .with_detail(e.to_string())
                    .with_extension("limit", *limit)
                    .with_extension("decoded", *decoded)
            }
            BodyError::MalformedEncoding { encoding, .. } => {
                Problem::ee(StatusCode::BAD_REQUEST, "serialize", "malformed-encoding")
                    .with_title("Malformed compressed body")
                    .with_detail(e.to_string())
                    .with_extension("encoding", *encoding)
            }
        }
    }
}

/// The problem for an error met while reading a request body: a
/// [`BodyError`] or a length limit anywhere in its `source()` chain gives
/// 413 or 400 as above; anything else (the client went away mid-body) 400.
pub fn body_read_problem(error: &(dyn StdError + 'static)) -> Problem {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(body) = e.downcast_ref::<BodyError>() {
            return Problem::from(body);
        }
        // http-body-util's `Limited` (axum's `DefaultBodyLimit`, tower-http's
        // `RequestBodyLimitLayer`, the compressed-size cap of `DecompressionLayer`).
        // axum boxes the error once more on its way (a `Box<dyn Error>` inside
        // its own error), which hides the type from `is`: its message is the
        // one way left to recognise it.
        if e.is::<http_body_util::LengthLimitError>() || e.to_string() == "length limit exceeded" {
            return Problem::ee(StatusCode::PAYLOAD_TOO_LARGE, "serialize", "body-too-large")
                .with_title("Request body too large")
                .with_detail("the request body is larger than the server accepts");
        }
        cause = e.source();
    }
    Problem::ee(StatusCode::BAD_REQUEST, "serialize", "unreadable-body")
        .with_title("Unreadable request body")
        .with_detail("the request body could not be read to its end")
}

/// The problem for a request whose `Content-Type` is not JSON (415).
pub fn not_json_problem(content_type: Option<&str>) -> Problem {
    let detail = match content_type {
        Some(ct) => format!("expected a JSON body (`Content-Type: application/json`), got `{ct}`"),
        None => "expected a JSON body: the request has no `Content-Type: application/json`".into(),
    };
    Problem::ee(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "serialize",
        "unsupported-media-type",
    )
    .with_title("Unsupported media type")
    .with_detail(detail)
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

impl From<&JsonError> for Problem {
    fn from(e: &JsonError) -> Self {
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
        let problem = problem.with_detail(e.message.clone());
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
        assert_eq!(Problem::from(&syntax).status(), 400);
        let shape: JsonError = serde_json::from_str::<u8>("300").unwrap_err().into();
        assert_eq!(Problem::from(&shape).status(), 422);
    }
}
