//! What a layer does when the backend it depends on (Redis, PostgreSQL) fails.

use serde::{Deserialize, Serialize};

/// A layer's policy for a backend outage or timeout: a decision, not an
/// accident. Every ee layer that calls Redis or PostgreSQL takes one
/// (`on_backend_error` in its config) and documents its default; a layer
/// that cannot honour a variant refuses it when the layer is built, with a
/// typed error.
///
/// In configuration it is spelled `fail_open`, `fail_closed` or
/// `fallback_to_memory`:
///
/// ```
/// use ee_core::OnBackendError;
/// let policy: OnBackendError = serde_json::from_str(r#""fallback_to_memory""#).unwrap();
/// assert_eq!(policy, OnBackendError::FallbackToMemory);
/// assert_eq!(policy.to_string(), "fallback_to_memory");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBackendError {
    /// Let the request through without the layer's guarantee (availability
    /// over protection).
    FailOpen,
    /// Refuse the request with a 503 problem (protection over availability).
    FailClosed,
    /// Decide in this process, in memory, until the backend is back: the
    /// guarantee holds per instance instead of across instances.
    FallbackToMemory,
}

impl OnBackendError {
    /// The configuration spelling (`fail_open`, `fail_closed`,
    /// `fallback_to_memory`).
    pub fn as_str(self) -> &'static str {
        match self {
            OnBackendError::FailOpen => "fail_open",
            OnBackendError::FailClosed => "fail_closed",
            OnBackendError::FallbackToMemory => "fallback_to_memory",
        }
    }
}

impl std::fmt::Display for OnBackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
