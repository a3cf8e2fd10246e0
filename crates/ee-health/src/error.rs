//! The crate's one error type: set-up mistakes, found when the health is
//! built.

use axum::http::StatusCode;
use ee_core::Problem;

/// What can go wrong setting up health checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HealthError {
    /// A [`HealthConfig`](crate::HealthConfig) value that cannot work.
    #[error("health.{field}: {reason}")]
    Config {
        /// The key (`timeout_ms`).
        field: &'static str,
        /// Why it cannot work.
        reason: String,
    },
    /// An [`HttpCheck`](crate::HttpCheck) URL that is not a plain
    /// `http://host[:port]/path`.
    #[error("{url}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A set-up error that reaches a request (a handler that builds checks per
/// request) is the server's: a 500 that says what to fix.
impl From<HealthError> for Problem {
    fn from(e: HealthError) -> Self {
        Problem::ee(StatusCode::INTERNAL_SERVER_ERROR, "health", "setup")
            .with_title("Health checks set up wrongly")
            .with_detail(e.to_string())
    }
}
