//! `ApiKeyConfig`: the API key settings, loadable with serde (ee-config).

use ee_core::OnBackendError;
use serde::{Deserialize, Serialize};

use crate::AuthError;

/// API key settings (`[auth.api_keys]` in `ee.toml`, through ee-config).
/// `Default` is the safe set-up.
///
/// ```
/// let cfg: ee_auth::ApiKeyConfig = serde_json::from_str(r#"{ "prefix": "sk_live", "cache_ttl_ms": 2000 }"#).unwrap();
/// assert_eq!(cfg.prefix, "sk_live");
/// assert_eq!(cfg.max_keys, 100_000);
/// // Unknown settings are refused, so a typo does not pass silently.
/// assert!(serde_json::from_str::<ee_auth::ApiKeyConfig>(r#"{ "colour": "red" }"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// What every key starts with, before `_` (default `eek`; e.g. `sk_live`,
    /// so leaked keys are easy to grep for and secret scanners can match
    /// them). 1 to 32 ASCII letters, digits and `_`, starting with a letter
    /// and not ending with `_`.
    pub prefix: String,
    /// The most keys a [`MemoryApiKeys`](crate::MemoryApiKeys) holds (default
    /// 100 000). When full, revoked and expired records are dropped first; if
    /// none are, `create` fails with [`AuthError::Limit`]. Other stores ignore it.
    pub max_keys: usize,
    /// How long a verified key is remembered in this process, in
    /// milliseconds (default 5 000; 0 turns the cache off). Within it a key
    /// revoked on another instance still verifies here: this is the
    /// revocation delay. A revocation through this instance takes effect at once.
    pub cache_ttl_ms: u64,
    /// The most verified keys remembered (default 10 000). Only keys that
    /// verified enter, so clients cannot fill it with made-up keys.
    pub cache_capacity: usize,
    /// The resolution of `last_used` in milliseconds: a key's last use is
    /// written at most this often (per instance), in the background, never on
    /// every request (default 60 000; 0 never writes it).
    pub last_used_interval_ms: u64,
    /// What to do when the store cannot be reached. Only `fail_closed` (503
    /// with `Retry-After`) is accepted: an authentication layer that let
    /// requests through while it cannot check them would be a way in.
    pub on_backend_error: OnBackendError,
}

impl Default for ApiKeyConfig {
    fn default() -> Self {
        Self {
            prefix: "eek".into(),
            max_keys: 100_000,
            cache_ttl_ms: 5_000,
            cache_capacity: 10_000,
            last_used_interval_ms: 60_000,
            on_backend_error: OnBackendError::FailClosed,
        }
    }
}

/// The most a cache TTL may be: a revocation elsewhere must not take longer
/// than this to reach every instance.
pub(crate) const MAX_CACHE_TTL_MS: u64 = 5 * 60 * 1000;

impl ApiKeyConfig {
    /// Checks the values that cannot work, each with its fix.
    pub(crate) fn validate(&self) -> Result<(), AuthError> {
        if self.on_backend_error != OnBackendError::FailClosed {
            return Err(AuthError::Config(format!(
                "api_keys.on_backend_error = `{}` is refused: API key verification only fails \
                 closed (503), since letting requests through unchecked while the key store is \
                 down would let anyone in; set it to `fail_closed` or leave it out",
                self.on_backend_error
            )));
        }
        if self.max_keys == 0 {
            return Err(AuthError::Config(
                "api_keys.max_keys = 0 would refuse every key: set at least 1 (default 100000)"
                    .into(),
            ));
        }
        if self.cache_ttl_ms > MAX_CACHE_TTL_MS {
            return Err(AuthError::Config(format!(
                "api_keys.cache_ttl_ms = {} is longer than {MAX_CACHE_TTL_MS} ms: a key revoked \
                 on another instance would keep working that long; use a few seconds (default 5000)",
                self.cache_ttl_ms
            )));
        }
        if self.cache_ttl_ms > 0 && self.cache_capacity == 0 {
            return Err(AuthError::Config(
                "api_keys.cache_capacity = 0 with a cache_ttl_ms: set cache_ttl_ms = 0 to turn \
                 the cache off, or a capacity (default 10000)"
                    .into(),
            ));
        }
        Ok(())
    }
}
