//! axum's own extractor rejections as problems: `WithProblem<Query<T>>` answers a
//! malformed query string with `application/problem+json`, not axum's
//! `text/plain`.

use axum::extract::rejection::{
    BytesRejection, ExtensionRejection, JsonRejection, PathRejection, QueryRejection,
    StringRejection,
};
use axum::extract::{FromRequest, FromRequestParts, Request};
use http::request::Parts;

use crate::Problem;

/// A problem from an axum rejection: its status, its text as the detail,
/// and a type `https://ee.rs/problems/core/<kind>`.
fn problem(kind: &str, status: http::StatusCode, text: String) -> Problem {
    Problem::ee(status, "core", kind).with_detail(text)
}

impl From<QueryRejection> for Problem {
    /// 400 `invalid-query`: the query string does not deserialise
    /// (`?per_page=`, a missing required parameter).
    fn from(rejection: QueryRejection) -> Self {
        problem("invalid-query", rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for Problem {
    /// 400 `invalid-path` when a path parameter does not deserialise; a
    /// route without the parameters the handler asks for is a server error
    /// (500).
    fn from(rejection: PathRejection) -> Self {
        problem("invalid-path", rejection.status(), rejection.body_text())
    }
}

impl From<JsonRejection> for Problem {
    /// 415 `unsupported-media-type` without a JSON `Content-Type`, 400
    /// `malformed-json` for a syntax error, 422 `invalid-json` for a body of
    /// the wrong shape, 413 `body-too-large` past the body limit, 400
    /// `unreadable-body` otherwise.
    fn from(rejection: JsonRejection) -> Self {
        let kind = match &rejection {
            JsonRejection::MissingJsonContentType(_) => "unsupported-media-type",
            JsonRejection::JsonSyntaxError(_) => "malformed-json",
            JsonRejection::JsonDataError(_) => "invalid-json",
            JsonRejection::BytesRejection(_) => {
                return bytes_problem(rejection.status(), rejection.body_text());
            }
            _ => "invalid-json",
        };
        problem(kind, rejection.status(), rejection.body_text())
    }
}

impl From<BytesRejection> for Problem {
    /// 413 `body-too-large` past the body limit, 400 `unreadable-body`
    /// otherwise.
    fn from(rejection: BytesRejection) -> Self {
        bytes_problem(rejection.status(), rejection.body_text())
    }
}

impl From<StringRejection> for Problem {
    /// As for bytes, and 400 `unreadable-body` for a body that is not UTF-8.
    fn from(rejection: StringRejection) -> Self {
        bytes_problem(rejection.status(), rejection.body_text())
    }
}

impl From<ExtensionRejection> for Problem {
    /// 500 `missing-extension`: a layer the handler relies on is not
    /// installed (a set-up error; the detail names the type).
    fn from(rejection: ExtensionRejection) -> Self {
        problem(
            "missing-extension",
            rejection.status(),
            rejection.body_text(),
        )
    }
}

fn bytes_problem(status: http::StatusCode, text: String) -> Problem {
    let kind = if status == http::StatusCode::PAYLOAD_TOO_LARGE {
        "body-too-large"
    } else {
        "unreadable-body"
    };
    problem(kind, status, text)
}

/// Runs the extractor `E` and turns its rejection into a [`Problem`], so
/// axum's own extractors answer with `application/problem+json`.
///
/// ```
/// use axum::extract::{Path, Query};
/// use ee_core::{Problem, WithProblem};
///
/// #[derive(serde::Deserialize)]
/// struct Page { per_page: u32 }
///
/// async fn list(WithProblem(Query(page)): WithProblem<Query<Page>>) -> String {
///     format!("{} per page", page.per_page)
/// }
/// async fn show(WithProblem(Path(id)): WithProblem<Path<u64>>) -> Result<String, Problem> {
///     Ok(format!("item {id}"))
/// }
/// let app: axum::Router = axum::Router::new()
///     .route("/items", axum::routing::get(list))
///     .route("/items/{id}", axum::routing::get(show));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct WithProblem<E>(pub E);

impl<S, E> FromRequestParts<S> for WithProblem<E>
where
    S: Send + Sync,
    E: FromRequestParts<S>,
    E::Rejection: Into<Problem>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        E::from_request_parts(parts, state)
            .await
            .map(WithProblem)
            .map_err(Into::into)
    }
}

impl<S, E> FromRequest<S> for WithProblem<E>
where
    S: Send + Sync,
    E: FromRequest<S>,
    E::Rejection: Into<Problem>,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        E::from_request(req, state)
            .await
            .map(WithProblem)
            .map_err(Into::into)
    }
}
