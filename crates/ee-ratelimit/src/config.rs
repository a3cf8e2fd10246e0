//! What a policy limits, as data: serde-deserialisable so ee-config (or any
//! figment/serde source) can load it.

use std::time::Duration;

use ee_core::OnBackendError;
use serde::{Deserialize, Serialize};

use crate::RateLimitError;

/// One limiting rule: the algorithm and its parameters.
///
/// ```
/// # use ee_ratelimit::Rule;
/// # use std::time::Duration;
/// // 10 per second with bursts of 20, from a config file:
/// let rule: Rule = serde_json::from_str(
///     r#"{ "algorithm": "gcra", "limit": 10, "period_ms": 1000, "burst": 20 }"#,
/// ).unwrap();
/// assert_eq!(rule, Rule::gcra(10, Duration::from_secs(1), 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Generic cell rate algorithm: `limit` per `period_ms`, at most `burst` at
    /// once; smooth, no window edges. In memory on `governor`.
    Gcra {
        /// Requests per period.
        limit: u32,
        /// The period, in milliseconds.
        period_ms: u64,
        /// The largest burst (at least 1).
        burst: u32,
    },
    /// `limit` per window, windows aligned to the clock; simple, allows up to
    /// 2x `limit` across a window edge.
    FixedWindow {
        /// Requests per window.
        limit: u32,
        /// The window, in milliseconds.
        window_ms: u64,
    },
    /// `limit` per sliding window, estimated from the current and previous
    /// fixed windows (weighted by overlap), so no log of timestamps is kept.
    SlidingWindow {
        /// Requests per window.
        limit: u32,
        /// The window, in milliseconds.
        window_ms: u64,
    },
    /// A bucket of `capacity` tokens refilled by `refill` tokens every
    /// `period_ms`, continuously.
    TokenBucket {
        /// Bucket size (the largest burst).
        capacity: u32,
        /// Tokens added per period.
        refill: u32,
        /// The period, in milliseconds.
        period_ms: u64,
    },
    /// At most `max` requests in flight per key. On Redis each slot is leased for
    /// `lease_ms`, so a crashed instance's slots free themselves.
    Concurrency {
        /// Requests in flight per key.
        max: u32,
        /// Lease of one slot on Redis, in milliseconds (longer than your slowest request).
        lease_ms: u64,
    },
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Rule {
    /// GCRA: `limit` per `period`, bursts of up to `burst`.
    pub fn gcra(limit: u32, period: Duration, burst: u32) -> Self {
        Rule::Gcra {
            limit,
            period_ms: ms(period),
            burst,
        }
    }

    /// GCRA: `n` per second, bursts of `n`.
    pub fn per_second(n: u32) -> Self {
        Self::gcra(n, Duration::from_secs(1), n)
    }

    /// GCRA: `n` per minute, bursts of `n`.
    pub fn per_minute(n: u32) -> Self {
        Self::gcra(n, Duration::from_secs(60), n)
    }

    /// GCRA: `n` per hour, bursts of `n`.
    pub fn per_hour(n: u32) -> Self {
        Self::gcra(n, Duration::from_secs(3600), n)
    }

    /// Fixed window: `limit` per `window`.
    pub fn fixed_window(limit: u32, window: Duration) -> Self {
        Rule::FixedWindow {
            limit,
            window_ms: ms(window),
        }
    }

    /// Sliding window: `limit` per `window`.
    pub fn sliding_window(limit: u32, window: Duration) -> Self {
        Rule::SlidingWindow {
            limit,
            window_ms: ms(window),
        }
    }

    /// Token bucket: `capacity` tokens, `refill` more every `period`.
    pub fn token_bucket(capacity: u32, refill: u32, period: Duration) -> Self {
        Rule::TokenBucket {
            capacity,
            refill,
            period_ms: ms(period),
        }
    }

    /// At most `max` in flight, with a 60 s lease per slot on Redis.
    pub fn concurrency(max: u32) -> Self {
        Rule::Concurrency {
            max,
            lease_ms: 60_000,
        }
    }

    /// A short id of the rule and its parameters (`gcra.10.1000.20`), part of
    /// Redis keys: two layers with a policy of the same name but another rule
    /// never share (or misread) each other's state.
    pub fn id(&self) -> String {
        match *self {
            Rule::Gcra {
                limit,
                period_ms,
                burst,
            } => format!("gcra.{limit}.{period_ms}.{burst}"),
            Rule::FixedWindow { limit, window_ms } => format!("fixed.{limit}.{window_ms}"),
            Rule::SlidingWindow { limit, window_ms } => format!("sliding.{limit}.{window_ms}"),
            Rule::TokenBucket {
                capacity,
                refill,
                period_ms,
            } => format!("bucket.{capacity}.{refill}.{period_ms}"),
            Rule::Concurrency { max, lease_ms } => format!("concurrency.{max}.{lease_ms}"),
        }
    }

    /// The quota advertised in `RateLimit-Policy` (`q`).
    pub fn quota(&self) -> u32 {
        match *self {
            Rule::Gcra { burst, .. } => burst,
            Rule::FixedWindow { limit, .. } | Rule::SlidingWindow { limit, .. } => limit,
            Rule::TokenBucket { capacity, .. } => capacity,
            Rule::Concurrency { max, .. } => max,
        }
    }

    /// The window advertised in `RateLimit-Policy` (`w`), in whole seconds
    /// (rounded up): the time a full quota takes to come back. `None` for
    /// concurrency limits, which have no window.
    pub fn window_secs(&self) -> Option<u64> {
        let ms = match *self {
            Rule::Gcra {
                limit,
                period_ms,
                burst,
            } => period_ms.saturating_mul(u64::from(burst)) / u64::from(limit.max(1)),
            Rule::FixedWindow { window_ms, .. } | Rule::SlidingWindow { window_ms, .. } => {
                window_ms
            }
            Rule::TokenBucket {
                capacity,
                refill,
                period_ms,
            } => period_ms.saturating_mul(u64::from(capacity)) / u64::from(refill.max(1)),
            Rule::Concurrency { .. } => return None,
        };
        Some(ms.div_ceil(1000).max(1))
    }

    /// Checks the parameters: every count and duration must be positive.
    pub fn validate(&self) -> Result<(), RateLimitError> {
        match self.zero_field() {
            Some(field) => Err(RateLimitError::Config(format!(
                "`{field}` must be greater than 0"
            ))),
            None => Ok(()),
        }
    }

    /// The first parameter that is 0 and must not be.
    pub(crate) fn zero_field(&self) -> Option<&'static str> {
        let fields: &[(&'static str, u64)] = match *self {
            Rule::Gcra {
                limit,
                period_ms,
                burst,
            } => &[
                ("limit", u64::from(limit)),
                ("period_ms", period_ms),
                ("burst", u64::from(burst)),
            ],
            Rule::FixedWindow { limit, window_ms } | Rule::SlidingWindow { limit, window_ms } => {
                &[("limit", u64::from(limit)), ("window_ms", window_ms)]
            }
            Rule::TokenBucket {
                capacity,
                refill,
                period_ms,
            } => &[
                ("capacity", u64::from(capacity)),
                ("refill", u64::from(refill)),
                ("period_ms", period_ms),
            ],
            Rule::Concurrency { max, lease_ms } => {
                &[("max", u64::from(max)), ("lease_ms", lease_ms)]
            }
        };
        fields.iter().find(|(_, v)| *v == 0).map(|(name, _)| *name)
    }

    /// The `qu` (quota unit) of `RateLimit-Policy`, when not the default `requests`.
    pub(crate) fn quota_unit(&self) -> Option<&'static str> {
        matches!(self, Rule::Concurrency { .. }).then_some("concurrent-requests")
    }
}

/// Which response headers the layer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderConfig {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10).
    pub draft: bool,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`
    /// (seconds until reset) for the policy closest to its limit.
    pub legacy: bool,
}

impl Default for HeaderConfig {
    fn default() -> Self {
        Self {
            draft: true,
            legacy: false,
        }
    }
}

/// A named policy as data. The key it is counted by is code (a
/// `KeyExtractor`), given when the layer is built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyConfig {
    /// The policy's name: in headers, problems, metrics and Redis keys.
    pub name: String,
    /// The rule.
    #[serde(flatten)]
    pub rule: Rule,
    /// Units one request costs (default 1).
    #[serde(default = "one")]
    pub cost: u32,
}

fn one() -> u32 {
    1
}

/// A whole layer as data: its policies, headers and outage policy, applied
/// with [`RateLimitBuilder::config`](crate::RateLimitBuilder::config).
/// `Default` has no policy, the draft headers and
/// [`OnBackendError::FallbackToMemory`].
///
/// ```
/// # use ee_ratelimit::RateLimitConfig;
/// let config: RateLimitConfig = serde_json::from_str(r#"{
///     "policies": [{ "name": "api", "algorithm": "gcra", "limit": 100, "period_ms": 1000, "burst": 200 }],
///     "on_backend_error": "fail_open"
/// }"#).unwrap();
/// assert_eq!(config.policies[0].name, "api");
/// assert!(config.headers.draft);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The policies, in the order they are checked.
    pub policies: Vec<PolicyConfig>,
    /// Which headers to write.
    pub headers: HeaderConfig,
    /// What to do when the store (Redis) fails or times out (default:
    /// `fallback_to_memory`: the limits hold per instance until it is back).
    pub on_backend_error: OnBackendError,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            policies: Vec::new(),
            headers: HeaderConfig::default(),
            on_backend_error: OnBackendError::FallbackToMemory,
        }
    }
}
