//! What can go wrong in a cache, and the problem a client sees for it.

use std::time::Duration;

use ee_core::Problem;
use http::StatusCode;

/// A cache failure. Reads never return one (a failing store reads as a miss);
/// writes return the ones the caller can act on (a key or value over its
/// limit), and stores report their own to the cache, which counts and logs them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The full key is longer than the configured limit.
    #[error("cache key of {size} bytes is over the {max}-byte limit")]
    KeyTooLong {
        /// Its length.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The encoded value is larger than the configured limit.
    #[error("cache value of {size} bytes is over the {max}-byte limit")]
    ValueTooLarge {
        /// Its encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The value could not be serialized.
    #[error("cache value could not be encoded: {0}")]
    Encode(String),
    /// Stored bytes are not a valid entry (corrupt, or written by another program).
    #[error("cache entry could not be decoded: {0}")]
    Decode(String),
    /// The cache is misconfigured.
    #[error("cache configuration: {0}")]
    Config(String),
    /// The backend (Redis) failed or did not answer in time.
    #[error("cache backend unavailable: {0}")]
    Unavailable(String),
}

impl CacheError {
    /// The last part of its problem type, `https://ee.rs/problems/cache/<kind>`.
    fn kind(&self) -> &'static str {
        match self {
            Self::KeyTooLong { .. } => "key-too-long",
            Self::ValueTooLarge { .. } => "value-too-large",
            Self::Encode(_) => "encode",
            Self::Decode(_) => "decode",
            Self::Config(_) => "config",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// A cache error that reaches a handler becomes a problem: the backend being
/// down is a 503 to retry shortly; anything else is the server's own fault, a
/// 500 whose detail (keys, serde messages) is logged rather than sent.
///
/// ```
/// use ee_cache::CacheError;
/// use ee_core::Problem;
/// let problem = Problem::from(CacheError::Unavailable("connection refused".into()));
/// assert_eq!(problem.status(), 503);
/// assert_eq!(problem.type_uri(), "https://ee.rs/problems/cache/unavailable");
/// assert_eq!(problem.retry_after(), Some(std::time::Duration::from_secs(1)));
/// ```
impl From<CacheError> for Problem {
    fn from(err: CacheError) -> Self {
        if let CacheError::Unavailable(_) = err {
            return Problem::ee(StatusCode::SERVICE_UNAVAILABLE, "cache", err.kind())
                .with_detail("the cache is unavailable; try again shortly")
                .with_retry_after(Duration::from_secs(1));
        }
        tracing::error!(error = %err, "cache error answered as a 500");
        Problem::ee(StatusCode::INTERNAL_SERVER_ERROR, "cache", err.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_side_errors_are_500s_that_keep_their_detail_to_the_log() {
        for err in [
            CacheError::KeyTooLong {
                size: 2000,
                max: 1024,
            },
            CacheError::Encode("secret-ish serde message".into()),
            CacheError::Config("ttl_ms must be greater than 0".into()),
        ] {
            let kind = err.kind();
            let problem = Problem::from(err);
            assert_eq!(problem.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(
                problem.type_uri(),
                format!("https://ee.rs/problems/cache/{kind}")
            );
            assert_eq!(problem.detail(), None);
            assert_eq!(problem.retry_after(), None);
        }
    }
}
