//! The crate's one error type, and the problems it answers with.

use std::time::Duration;

use ee_core::Problem;
use http::StatusCode;

/// How long a client refused with 409 (in flight) or 503 (store down) is
/// told to wait.
const RETRY: Duration = Duration::from_secs(1);

/// What a client did wrong, or what went wrong, as the layer reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotencyError {
    /// The request needs an `Idempotency-Key` and has none (400).
    #[error("this request requires an Idempotency-Key header")]
    MissingKey,
    /// The `Idempotency-Key` is not a usable key (400).
    #[error("the Idempotency-Key header is malformed: {0}")]
    MalformedKey(&'static str),
    /// The body is larger than the layer fingerprints (413).
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The body could not be read (400).
    #[error("the request body could not be read")]
    BodyUnreadable,
    /// A request with this key is still being processed (409).
    #[error("a request with this Idempotency-Key is still being processed")]
    InFlight,
    /// This key was used for a different request (422).
    #[error("this Idempotency-Key was used with a different request (method, path or body)")]
    KeyReused,
    /// The store failed and the layer fails closed (503).
    #[error("idempotency store unavailable")]
    Unavailable,
    /// The layer's configuration is invalid (found when it is applied, by
    /// [`IdempotencyLayer::config`](crate::IdempotencyLayer::config)).
    #[error("invalid idempotency configuration: {0}")]
    Config(String),
}

impl IdempotencyError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingKey | Self::MalformedKey(_) | Self::BodyUnreadable => {
                StatusCode::BAD_REQUEST
            }
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InFlight => StatusCode::CONFLICT,
            Self::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type's last segment (`https://ee.rs/problems/idempotency/<kind>`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingKey => "missing-key",
            Self::MalformedKey(_) => "malformed-key",
            Self::BodyTooLarge(_) => "body-too-large",
            Self::BodyUnreadable => "body-unreadable",
            Self::InFlight => "in-flight",
            Self::KeyReused => "key-reused",
            Self::Unavailable => "unavailable",
            Self::Config(_) => "config",
        }
    }
}

impl From<IdempotencyError> for Problem {
    fn from(err: IdempotencyError) -> Self {
        if let IdempotencyError::Config(msg) = &err {
            // A set-up error: its text is for the operator, not the client.
            tracing::error!(%msg, "idempotency configuration error reached a request");
            return Problem::ee(err.status(), "idempotency", err.kind());
        }
        let problem =
            Problem::ee(err.status(), "idempotency", err.kind()).with_detail(err.to_string());
        match err {
            IdempotencyError::InFlight | IdempotencyError::Unavailable => {
                problem.with_retry_after(RETRY)
            }
            _ => problem,
        }
    }
}
