//! Schema errors (at start-up) and violations (per request), the latter as
//! one RFC 9457 problem listing every violation.

use ee_core::Problem;
use ee_serialize::{BodyError, ContentTypeError, JsonError};
use http::StatusCode;
use serde::Serialize;

/// A schema that could not be loaded or compiled, or is not registered.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// No schema is registered under this id.
    #[error("no schema is registered under `{0}`")]
    Unknown(String),
    /// The schema does not compile (a bad keyword value, a `$ref` to a
    /// schema the registry does not hold: nothing is fetched).
    #[error("schema `{id}` does not compile: {reason}")]
    Invalid {
        /// The schema's id.
        id: String,
        /// What the compiler said.
        reason: String,
    },
    /// A schema file could not be read or is not JSON.
    #[error("schema file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why it could not be used.
        reason: String,
    },
    /// Several of the above, every one reported at once.
    #[error("{} schemas failed:\n{}", .0.len(), .0.iter().map(|e| format!("- {e}")).collect::<Vec<_>>().join("\n"))]
    Many(Vec<SchemaError>),
}

impl SchemaError {
    pub(crate) fn many(mut errors: Vec<SchemaError>) -> Self {
        if errors.len() == 1 {
            errors.remove(0)
        } else {
            SchemaError::Many(errors)
        }
    }
}

/// Where a violation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The JSON body.
    Body,
    /// The query string, as an object of its parameters.
    Query,
    /// The headers, as an object of lower-case names.
    Headers,
}

impl Part {
    /// The part's name in problems and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Body => "body",
            Part::Query => "query",
            Part::Headers => "headers",
        }
    }
}

/// One way a request fails its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The request part.
    #[serde(rename = "in")]
    pub part: Part,
    /// JSON pointer (RFC 6901) to the offending value, `""` for the whole.
    pub pointer: String,
    /// The schema keyword that failed (`required`, `minimum`, `format`, …).
    pub keyword: String,
    /// What is wrong, readably.
    pub message: String,
}

/// At most this many violations are listed in one response.
pub const MAX_VIOLATIONS: usize = 100;

/// Why a request was refused before your handler saw it (each a problem:
/// `impl From<ValidateError> for Problem`).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ValidateError {
    /// The request does not match its schema (422, every violation listed).
    #[error("the request does not match its schema: {total} violation(s)")]
    Invalid {
        /// The violations, at most [`MAX_VIOLATIONS`].
        violations: Vec<Violation>,
        /// How many there were in all.
        total: usize,
    },
    /// The document nests deeper than the registry's limit (400).
    #[error("the document nests deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// A query parameter is not valid percent-encoded UTF-8, or there are
    /// too many (400).
    #[error("the query parameter `{parameter}` is not valid percent-encoded UTF-8")]
    MalformedQuery {
        /// The parameter's name (as it came when its name is the bad part).
        parameter: String,
    },
    /// The `Content-Type` is not JSON (415).
    #[error(transparent)]
    ContentType(#[from] ContentTypeError),
    /// The body could not be read, or is too large (400, 413).
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The body is not JSON (400).
    #[error(transparent)]
    Json(#[from] JsonError),
    /// The schema the request needs is not available: a set-up error (500;
    /// the registry logs why, once).
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

impl ValidateError {
    /// One violation: `keyword` failed at `pointer` of `part`.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))] // used by `Valid<T>` (axum)
    pub(crate) fn one(part: Part, keyword: &str, message: String) -> Self {
        ValidateError::Invalid {
            violations: vec![Violation {
                part,
                pointer: String::new(),
                keyword: keyword.to_owned(),
                message,
            }],
            total: 1,
        }
    }
}

impl From<ValidateError> for Problem {
    fn from(e: ValidateError) -> Self {
        match e {
            ValidateError::Invalid { violations, total } => invalid(&violations, total),
            ValidateError::TooDeep { limit } => {
                Problem::ee(StatusCode::BAD_REQUEST, "validate", "too-deep")
                    .with_title("JSON nested too deeply")
                    .with_detail(e.to_string())
                    .with_extension("max_depth", limit)
            }
            ValidateError::MalformedQuery { .. } => {
                Problem::ee(StatusCode::BAD_REQUEST, "validate", "malformed-query")
                    .with_title("Malformed query string")
                    .with_detail(e.to_string())
            }
            ValidateError::ContentType(e) => e.into(),
            ValidateError::Body(e) => e.into(),
            ValidateError::Json(e) => e.into(),
            ValidateError::Schema(e) => e.into(),
        }
    }
}

/// The 422 problem listing `violations` (every one, up to [`MAX_VIOLATIONS`]).
fn invalid(violations: &[Violation], total: usize) -> Problem {
    let detail = match total {
        1 => violations
            .first()
            .map_or_else(|| "1 violation".to_owned(), |v| v.message.clone()),
        n if n > violations.len() => {
            format!("{n} violations; the first {} are listed", violations.len())
        }
        n => format!("{n} violations"),
    };
    Problem::ee(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validate",
        "invalid-request",
    )
    .with_title("The request does not match its schema")
    .with_detail(detail)
    .with_extension(
        "errors",
        serde_json::to_value(violations).expect("violations serialise"),
    )
}

/// A schema the registry does not hold, met by a request: the client can do
/// nothing about it, the operator can (the registry logs why when it first
/// meets it), so the problem is a 500 that says where to look.
impl From<SchemaError> for Problem {
    fn from(_: SchemaError) -> Self {
        Problem::ee(
            StatusCode::INTERNAL_SERVER_ERROR,
            "validate",
            "schema-unavailable",
        )
        .with_title("The schema for this request is not available")
        .with_detail("the server could not check this request; its log says why")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_is_its_problem() {
        let cases = [
            (
                ValidateError::one(Part::Body, "minimum", "0 is less than 1".into()),
                422,
                "validate/invalid-request",
            ),
            (
                ValidateError::TooDeep { limit: 4 },
                400,
                "validate/too-deep",
            ),
            (
                ValidateError::MalformedQuery {
                    parameter: "q".into(),
                },
                400,
                "validate/malformed-query",
            ),
            (
                ValidateError::Schema(SchemaError::Unknown("urn:x".into())),
                500,
                "validate/schema-unavailable",
            ),
            (
                ValidateError::Body(BodyError::LimitExceeded),
                413,
                "serialize/body-too-large",
            ),
            (
                ValidateError::ContentType(ContentTypeError { content_type: None }),
                415,
                "serialize/unsupported-media-type",
            ),
        ];
        for (error, status, kind) in cases {
            let problem = Problem::from(error);
            assert_eq!(problem.status(), status, "{kind}");
            assert_eq!(problem.type_uri(), format!("https://ee.rs/problems/{kind}"));
        }
        let problem = Problem::from(ValidateError::one(
            Part::Query,
            "type",
            "\"x\" is not an integer".into(),
        ));
        assert_eq!(problem.detail(), Some("\"x\" is not an integer"));
        assert_eq!(
            problem.extension("errors"),
            Some(
                &serde_json::json!([{"in": "query", "pointer": "", "keyword": "type",
                                       "message": "\"x\" is not an integer"}])
            )
        );
        let problem = Problem::from(ValidateError::TooDeep { limit: 4 });
        assert_eq!(problem.extension("max_depth"), Some(&serde_json::json!(4)));
    }
}
