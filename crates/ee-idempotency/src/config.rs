//! Configuration, serde-deserialisable (figment/ee-config friendly).

use std::time::Duration;

use ee_core::OnBackendError;
use serde::{Deserialize, Serialize};

/// How the layer behaves, applied with
/// [`IdempotencyLayer::config`](crate::IdempotencyLayer::config). `Default`
/// is the safe set-up: POST and PATCH, key optional, 24 h retention, 60 s
/// lease, 1 MiB bodies, fail closed.
///
/// ```
/// # use ee_idempotency::IdempotencyConfig;
/// let config: IdempotencyConfig =
///     serde_json::from_str(r#"{ "required": true, "ttl_ms": 3600000 }"#).unwrap();
/// assert!(config.required);
/// assert_eq!(config.methods, ["POST", "PATCH"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// Methods the layer guards; others pass untouched (default POST, PATCH).
    pub methods: Vec<String>,
    /// A guarded request without `Idempotency-Key` is refused with 400
    /// (default false: it runs without the guarantee).
    pub required: bool,
    /// How long a stored response is replayed, in milliseconds (default 24 h).
    pub ttl_ms: u64,
    /// How long a request holds its key while running, in milliseconds
    /// (default 60 s). A request whose instance crashed blocks its key this
    /// long at most; keep it above your slowest handler.
    pub lease_ms: u64,
    /// Longest accepted key, in bytes (default 255).
    pub max_key_len: usize,
    /// Largest request body fingerprinted, in bytes (default 1 MiB; larger: 413).
    pub max_request_body: usize,
    /// Largest response body stored, in bytes (default 1 MiB). A larger
    /// response is sent but not stored: its key is freed and a retry runs again.
    pub max_response_body: usize,
    /// Also store 5xx responses (default false: a retry after a server error
    /// runs the request again).
    pub store_server_errors: bool,
    /// What to do when the store (Redis) fails or times out:
    /// `fail_closed` (the default: 503, because the requests this layer
    /// guards, payments and orders, are the ones that must not run twice),
    /// `fail_open` (run without the guarantee: a retry may run again) or
    /// `fallback_to_memory` (keep the records in this process while the
    /// store fails: a retry to the same instance is still answered once;
    /// one to another instance may run again).
    pub on_backend_error: OnBackendError,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            methods: vec!["POST".into(), "PATCH".into()],
            required: false,
            ttl_ms: 24 * 3600 * 1000,
            lease_ms: 60_000,
            max_key_len: 255,
            max_request_body: 1 << 20,
            max_response_body: 1 << 20,
            store_server_errors: false,
            on_backend_error: OnBackendError::FailClosed,
        }
    }
}

impl IdempotencyConfig {
    /// The retention as a `Duration`.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    /// The lease as a `Duration`.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }
}
