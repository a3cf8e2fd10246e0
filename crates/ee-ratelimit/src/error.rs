//! The crate's one error type, and the problems it answers with.

use std::time::Duration;

use ee_core::Problem;
use http::StatusCode;

/// Problem type of a refused request (429).
pub const PROBLEM_TOO_MANY_REQUESTS: &str = "https://ee.rs/problems/ratelimit/too-many-requests";
/// Problem type of a request refused because the backend is down and the
/// policy fails closed (503).
pub const PROBLEM_UNAVAILABLE: &str = "https://ee.rs/problems/ratelimit/unavailable";

/// How long a client refused while the backend is down is told to wait.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// The layer's configuration is invalid (found when it is configured or
    /// built).
    #[error("invalid rate-limit configuration: {0}")]
    Config(String),
    /// A policy refused the request.
    #[error("rate limit `{policy}` exceeded")]
    Limited {
        /// The refusing policy.
        policy: String,
        /// Its quota.
        quota: u32,
        /// Its window in seconds, if it has one.
        window_secs: Option<u64>,
        /// When to retry, if ever.
        retry_after: Option<Duration>,
    },
    /// The backend failed and the policy fails closed.
    #[error("rate-limit backend unavailable for `{policy}`")]
    Unavailable {
        /// The policy that could not be decided.
        policy: String,
    },
}

impl From<RateLimitError> for Problem {
    fn from(err: RateLimitError) -> Self {
        match err {
            RateLimitError::Limited {
                policy,
                quota,
                window_secs,
                retry_after,
            } => {
                let detail = match window_secs {
                    Some(w) => format!("policy `{policy}` allows {quota} per {w} s"),
                    None => format!("policy `{policy}` allows {quota} requests in flight"),
                };
                let never = format!(
                    "the request costs more than policy `{policy}` allows at once; it will never pass"
                );
                let problem = Problem::new(StatusCode::TOO_MANY_REQUESTS)
                    .with_type(PROBLEM_TOO_MANY_REQUESTS)
                    .with_detail(detail)
                    .with_extension("policy", policy);
                match retry_after {
                    Some(wait) => problem
                        .with_extension("retry_after", crate::headers::ceil_secs(wait))
                        .with_retry_after(wait),
                    None => problem.with_detail(never),
                }
            }
            RateLimitError::Unavailable { policy } => Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_type(PROBLEM_UNAVAILABLE)
                .with_detail("rate limiting is unavailable; try again shortly")
                .with_extension("policy", policy)
                .with_retry_after(UNAVAILABLE_RETRY),
            RateLimitError::Config(msg) => {
                tracing::error!(%msg, "rate-limit configuration error reached a request");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}
