//! The crate's one error type, and the problems it answers with.
//!
//! Authentication failures answer 401 with an RFC 6750 `WWW-Authenticate`
//! challenge; authorization failures answer 403 (or 404 where the caller must
//! not learn that the resource exists); every answer is `application/problem+json`.

use std::borrow::Cow;
use std::time::Duration;

use ee_core::Problem;
use http::{HeaderValue, StatusCode, header::WWW_AUTHENTICATE};

/// Problem type: no credentials were sent (401).
pub const PROBLEM_UNAUTHENTICATED: &str = "https://ee.rs/problems/auth/unauthenticated";
/// Problem type: the credentials were malformed, e.g. two `Authorization` headers (400).
pub const PROBLEM_INVALID_REQUEST: &str = "https://ee.rs/problems/auth/invalid-request";
/// Problem type: the token or key is invalid, expired or revoked (401).
pub const PROBLEM_INVALID_TOKEN: &str = "https://ee.rs/problems/auth/invalid-token";
/// Problem type: the credentials lack a required scope (403).
pub const PROBLEM_INSUFFICIENT_SCOPE: &str = "https://ee.rs/problems/auth/insufficient-scope";
/// Problem type: an authorization policy denied the request (403).
pub const PROBLEM_FORBIDDEN: &str = "https://ee.rs/problems/auth/forbidden";
/// Problem type: the resource does not exist for this caller (404, so ids do not leak).
pub const PROBLEM_NOT_FOUND: &str = "https://ee.rs/problems/auth/not-found";
/// Problem type: verification keys or a credential store are unreachable (503).
pub const PROBLEM_UNAVAILABLE: &str = "https://ee.rs/problems/auth/unavailable";
/// Problem type: the login failed (401); the same answer whether or not the user exists.
pub const PROBLEM_INVALID_CREDENTIALS: &str = "https://ee.rs/problems/auth/invalid-credentials";

/// How long a client refused while a backend is down is told to wait.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

/// What can go wrong in this crate.
///
/// Messages never contain a token, key or password: only what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carried no credentials where they are required (401).
    #[error("no credentials")]
    Missing,
    /// The credentials are malformed beyond a bad token: two `Authorization`
    /// headers, a header that is not visible ASCII (400, RFC 6750 `invalid_request`).
    #[error("malformed credentials: {0}")]
    InvalidRequest(Cow<'static, str>),
    /// The token or API key is invalid: bad signature, wrong issuer or audience,
    /// refused algorithm, unknown key, truncated, oversized, revoked (401).
    #[error("invalid token: {0}")]
    InvalidToken(Cow<'static, str>),
    /// The token has expired (401 `invalid_token`).
    #[error("the token has expired")]
    Expired,
    /// The credentials are valid but lack a scope the route requires (403).
    #[error("insufficient scope: requires `{required}`")]
    InsufficientScope {
        /// The scopes the route requires, space separated as in RFC 6750.
        required: String,
    },
    /// An authorization decision denied the request (403). The reason is logged
    /// and shown by `Display`, never sent to the client.
    #[error("forbidden: {0}")]
    Forbidden(Cow<'static, str>),
    /// The resource is hidden from this caller (404): used where a 403 would
    /// reveal that it exists.
    #[error("not found")]
    NotFound,
    /// A login failed: unknown user or wrong password, indistinguishably (401).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Verification keys or a store could not be reached and the outage policy
    /// fails closed (503 with `Retry-After`).
    #[error("{what} unavailable")]
    Unavailable {
        /// What could not be reached (`jwks`, `api key store`, `tuple store`…).
        what: Cow<'static, str>,
        /// The underlying error, for logs (never sent to the client).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A configured bound was reached: a relationship graph deeper or wider
    /// than the limits, a store at its capacity (500: the operator's to fix,
    /// not the caller's; the message names the limit).
    #[error("limit reached: {0}")]
    Limit(Cow<'static, str>),
    /// Invalid configuration, model or policy (found when it is loaded; a 500
    /// whose log line says the fix if it reaches a request).
    #[error("invalid auth configuration: {0}")]
    Config(String),
}

impl AuthError {
    /// An [`AuthError::InvalidToken`] with a static reason.
    pub fn invalid_token(reason: impl Into<Cow<'static, str>>) -> Self {
        AuthError::InvalidToken(reason.into())
    }

    /// An [`AuthError::Unavailable`] for `what`, keeping `source` for logs.
    pub fn unavailable(
        what: impl Into<Cow<'static, str>>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        AuthError::Unavailable {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Missing
            | AuthError::InvalidToken(_)
            | AuthError::Expired
            | AuthError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            AuthError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            AuthError::InsufficientScope { .. } | AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
            AuthError::NotFound => StatusCode::NOT_FOUND,
            AuthError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Limit(_) | AuthError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An RFC 6750 §3 challenge: `Bearer` with an optional error code and description.
fn challenge(error: Option<&str>, description: Option<&str>, scope: Option<&str>) -> HeaderValue {
    let mut value = String::from("Bearer");
    let mut sep = " ";
    for (name, v) in [
        ("error", error),
        ("error_description", description),
        ("scope", scope),
    ] {
        if let Some(v) = v {
            // Quoted-string: the values here are ours, but never let one break the header.
            let v: String = v
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .filter(|c| *c != '"' && *c != '\\')
                .collect();
            value.push_str(sep);
            value.push_str(name);
            value.push_str("=\"");
            value.push_str(&v);
            value.push('"');
            sep = ", ";
        }
    }
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("Bearer"))
}

impl From<AuthError> for Problem {
    fn from(err: AuthError) -> Self {
        let status = err.status();
        match err {
            AuthError::Missing => Problem::new(status)
                .with_type(PROBLEM_UNAUTHENTICATED)
                .with_detail(
                    "this resource needs credentials: send `Authorization: Bearer <token>`",
                )
                .with_header(WWW_AUTHENTICATE, challenge(None, None, None)),
            AuthError::InvalidRequest(why) => Problem::new(status)
                .with_type(PROBLEM_INVALID_REQUEST)
                .with_header(
                    WWW_AUTHENTICATE,
                    challenge(Some("invalid_request"), Some(&why), None),
                )
                .with_detail(why),
            AuthError::InvalidToken(why) => Problem::new(status)
                .with_type(PROBLEM_INVALID_TOKEN)
                .with_header(
                    WWW_AUTHENTICATE,
                    challenge(Some("invalid_token"), Some(&why), None),
                )
                .with_detail(why),
            AuthError::Expired => Problem::new(status)
                .with_type(PROBLEM_INVALID_TOKEN)
                .with_detail("the token has expired")
                .with_header(
                    WWW_AUTHENTICATE,
                    challenge(Some("invalid_token"), Some("the token has expired"), None),
                ),
            AuthError::InsufficientScope { required } => Problem::new(status)
                .with_type(PROBLEM_INSUFFICIENT_SCOPE)
                .with_detail(format!("this request needs the scope `{required}`"))
                .with_header(
                    WWW_AUTHENTICATE,
                    challenge(Some("insufficient_scope"), None, Some(&required)),
                )
                .with_extension("required_scope", required),
            // The reason (a role, a policy id, a tenant, a tuple path) is for the
            // decision log (`ee_auth::decision`), not for the caller.
            AuthError::Forbidden(why) => {
                tracing::debug!(reason = &*why, "forbidden");
                Problem::new(status)
                    .with_type(PROBLEM_FORBIDDEN)
                    .with_detail("the caller may not perform this request")
            }
            AuthError::NotFound => Problem::new(status).with_type(PROBLEM_NOT_FOUND),
            AuthError::InvalidCredentials => Problem::new(status)
                .with_type(PROBLEM_INVALID_CREDENTIALS)
                .with_detail("unknown user or wrong password"),
            AuthError::Unavailable { what, source } => {
                tracing::warn!(%what, error = ?source, "auth backend unavailable");
                Problem::new(status)
                    .with_type(PROBLEM_UNAVAILABLE)
                    .with_detail(format!("{what} is unavailable; try again shortly"))
                    .with_retry_after(UNAVAILABLE_RETRY)
            }
            AuthError::Limit(msg) => {
                tracing::error!(%msg, "ee-auth limit reached: fix the model or data, or raise the limit it names");
                Problem::new(status)
            }
            AuthError::Config(msg) => {
                tracing::error!(%msg, "auth configuration error reached a request");
                Problem::new(status)
            }
        }
    }
}
