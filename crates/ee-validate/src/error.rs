//! Schema errors (at start-up) and violations (per request), the latter as
//! one RFC 9457 problem listing every violation.

use ee_core::Problem;
use http::StatusCode;
use serde::Serialize;

/// A schema that could not be loaded or compiled, or is not registered.
#[derive(Debug, Clone, thiserror::Error)]
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

/// The 422 problem listing `violations` (every one, up to [`MAX_VIOLATIONS`]).
pub fn violations_problem(violations: &[Violation], total: usize) -> Problem {
    let detail = match total {
        1 => violations[0].message.clone(),
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

/// The 400 problem for a document nested deeper than the limit.
pub fn too_deep_problem(limit: usize) -> Problem {
    Problem::ee(StatusCode::BAD_REQUEST, "validate", "too-deep")
        .with_title("JSON nested too deeply")
        .with_detail(format!("the document nests deeper than {limit} levels"))
        .with_extension("max_depth", limit)
}

/// The 500 problem of a set-up error (a schema the registry does not hold):
/// the client can do nothing about it, the operator can.
pub fn setup_problem(error: &SchemaError) -> Problem {
    tracing::error!(%error, "a request could not be validated: its schema is not available");
    Problem::ee(
        StatusCode::INTERNAL_SERVER_ERROR,
        "validate",
        "schema-unavailable",
    )
    .with_title("The schema for this request is not available")
    .with_detail("the server could not check this request; its log says why")
}
