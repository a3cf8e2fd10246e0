//! `RateLimitLayer`: policies, keys, costs, exemptions and the outage policy.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ee_core::{KeyExtractor, LogThrottle, OnBackendError, RequestHead, SystemClock};
use http::HeaderValue;
use tower::Layer;

use crate::Rule;
use crate::config::{HeaderConfig, RateLimitConfig};
use crate::error::RateLimitError;
use crate::memory::{MemoryLimiter, MemoryStore};
use crate::metrics::PolicyMetrics;
use crate::policy::{Cost, Policy, PolicyKey};
use crate::service::RateLimit;
use crate::store::{Limiter, RateLimitStore};

type ExemptFn = dyn Fn(&RequestHead<'_>) -> bool + Send + Sync;

/// A policy ready to decide.
pub(crate) struct ActivePolicy<L> {
    pub(crate) policy: Policy,
    pub(crate) limiter: L,
    /// Under `FallbackToMemory`, for a store that waits (Redis): a store
    /// that decides at once is in memory already.
    pub(crate) fallback: Option<MemoryLimiter<SystemClock>>,
    pub(crate) metrics: PolicyMetrics,
}

/// Logs a backend outage at most once per interval, counting what it skipped.
pub(crate) struct OutageLog(LogThrottle);

const OUTAGE_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl OutageLog {
    fn new() -> Self {
        Self(LogThrottle::new(OUTAGE_LOG_INTERVAL))
    }

    pub(crate) fn record(&self, policy: &str, error: &dyn fmt::Display, action: OnBackendError) {
        if let Some(suppressed) = self.0.check() {
            tracing::warn!(
                policy,
                error = %error,
                ?action,
                suppressed,
                "rate-limit backend failing; logged at most once per 10 s"
            );
        }
    }
}

pub(crate) struct Shared<L> {
    pub(crate) policies: Vec<ActivePolicy<L>>,
    pub(crate) exempt: Option<Arc<ExemptFn>>,
    pub(crate) on_backend_error: OnBackendError,
    pub(crate) headers: HeaderConfig,
    /// `RateLimit-Policy`, the same on every response.
    pub(crate) policy_header: HeaderValue,
    /// Every limiter decides without waiting (memory): decide inside `call`.
    pub(crate) synchronous: bool,
    /// Synchronous, no headers to write and no concurrency slot to give
    /// back: the response future is the inner service's, untouched.
    pub(crate) lean: bool,
    /// Lean, and every policy keyed by peer IP at a fixed cost, with no
    /// exemption: the costs, one per policy. That path makes no dynamic
    /// call with the request, so the compiler can hand it on uncopied.
    pub(crate) peer_ip_costs: Option<Box<[u32]>>,
    pub(crate) outage: OutageLog,
}

/// Builds a [`RateLimitLayer`]: policies, keys, exemption, headers, outage
/// policy.
pub struct RateLimitBuilder<S> {
    store: S,
    policies: Vec<Policy>,
    default_key: PolicyKey,
    exempt: Option<Arc<ExemptFn>>,
    on_backend_error: OnBackendError,
    headers: HeaderConfig,
    fallback: MemoryStore,
}

impl<S> fmt::Debug for RateLimitBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitBuilder")
            .field("policies", &self.policies)
            .field("on_backend_error", &self.on_backend_error)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// Checks one policy's name and rule. Names are `A-Z a-z 0-9 _ - .`, 1 to
/// 64 characters, as they appear in headers, metrics and Redis keys.
fn check_policy(name: &str, rule: &Rule) -> Result<(), RateLimitError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        return Err(RateLimitError::Config(format!(
            "policy name `{name}` must be 1-64 of A-Z a-z 0-9 _ - ."
        )));
    }
    match rule.zero_field() {
        Some(field) => Err(RateLimitError::Config(format!(
            "policy `{name}`: `{field}` must be greater than 0"
        ))),
        None => Ok(()),
    }
}

/// Checks a layer's policies: at least one, each valid, no name twice.
fn check_policies(policies: &[Policy]) -> Result<(), RateLimitError> {
    if policies.is_empty() {
        return Err(RateLimitError::Config("no policy".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for p in policies {
        check_policy(&p.name, &p.rule)?;
        if !seen.insert(&p.name) {
            return Err(RateLimitError::Config(format!(
                "policy `{}` is defined twice",
                p.name
            )));
        }
    }
    Ok(())
}

impl<S: RateLimitStore> RateLimitBuilder<S> {
    /// Adds a policy. A request must pass every policy; the first one that
    /// refuses answers 429 (units already taken by earlier policies stay taken).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policies.push(policy);
        self
    }

    /// Applies `config`: adds its policies (each counted by the default key,
    /// see [`RateLimitBuilder::default_key`]) after any added so far, and sets
    /// the headers and the outage policy.
    ///
    /// Fails on an invalid policy name or rule, or a name used twice.
    ///
    /// ```
    /// use ee_core::ClientIp;
    /// use ee_ratelimit::{MemoryStore, RateLimitConfig, RateLimitLayer};
    ///
    /// let config: RateLimitConfig = serde_json::from_str(r#"{ "policies": [
    ///     { "name": "api", "algorithm": "gcra", "limit": 100, "period_ms": 1000, "burst": 200 }
    /// ] }"#).unwrap();
    /// let layer = RateLimitLayer::builder(MemoryStore::new())
    ///     .default_key(ClientIp::trusting(["10.0.0.0/8".parse().unwrap()]))
    ///     .config(&config)?
    ///     .build()?;
    /// # Ok::<(), ee_ratelimit::RateLimitError>(())
    /// ```
    pub fn config(mut self, config: &RateLimitConfig) -> Result<Self, RateLimitError> {
        for p in &config.policies {
            self.policies
                .push(Policy::new(p.name.as_str(), p.rule).cost(p.cost));
        }
        check_policies(&self.policies)?;
        self.headers = config.headers;
        self.on_backend_error = config.on_backend_error;
        Ok(self)
    }

    /// The key of every policy that does not choose its own with
    /// [`Policy::key`] (default: the peer IP, [`PeerIp`](ee_core::PeerIp)):
    /// the client IP through your proxies, an API key, a tenant…
    pub fn default_key(mut self, key: impl KeyExtractor) -> Self {
        self.default_key = PolicyKey::new(key);
        self
    }

    /// Requests for which `f` is true skip rate limiting (health checks, internal callers).
    pub fn exempt(mut self, f: impl Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.exempt = Some(Arc::new(f));
        self
    }

    /// What to do when the store fails (default: fall back to memory).
    ///
    /// A store that decides at once ([`MemoryStore`]) fails only when a
    /// policy's map is full and a new key comes (see [`MemoryStore`]):
    /// there is no other memory to fall back to, so `FallbackToMemory`
    /// refuses it as `FailClosed` does (503).
    pub fn on_backend_error(mut self, action: OnBackendError) -> Self {
        self.on_backend_error = action;
        self
    }

    /// The store that decides in this process while the store fails, under
    /// [`OnBackendError::FallbackToMemory`] (default [`MemoryStore::new`]:
    /// at most [`DEFAULT_MAX_KEYS`](crate::DEFAULT_MAX_KEYS) keys per
    /// policy). When a policy's fallback map is full, a new key is refused
    /// as under `FailClosed` (503).
    ///
    /// ```
    /// use ee_ratelimit::{MemoryStore, Policy, RateLimitLayer, Rule};
    ///
    /// # let store = MemoryStore::new(); // `RedisStore::new(conn)`
    /// let layer = RateLimitLayer::builder(store)
    ///     .policy(Policy::new("api", Rule::per_minute(600)))
    ///     .fallback(MemoryStore::new().with_max_keys(500_000))
    ///     .build()?;
    /// # Ok::<(), ee_ratelimit::RateLimitError>(())
    /// ```
    pub fn fallback(mut self, store: MemoryStore) -> Self {
        self.fallback = store;
        self
    }

    /// Which headers to write (default: the IETF draft's, no legacy `X-RateLimit-*`).
    pub fn headers(mut self, headers: HeaderConfig) -> Self {
        self.headers = headers;
        self
    }

    /// Checks the policies and makes their limiters; describes the crate's
    /// metrics and registers the policies' handles (install the metrics
    /// recorder first).
    ///
    /// Fails on no policy, a duplicate or invalid name (names are `A-Z a-z
    /// 0-9 _ - .`, 1 to 64 characters, as they appear in headers, metrics and
    /// Redis keys), or an invalid rule.
    pub fn build(self) -> Result<RateLimitLayer<S::Limiter>, RateLimitError> {
        check_policies(&self.policies)?;
        crate::metrics::describe_metrics();
        let policy_header = crate::headers::policy_header(&self.policies);
        let fallback = self.on_backend_error == OnBackendError::FallbackToMemory;
        let default_key = self.default_key;
        let policies = self
            .policies
            .into_iter()
            .map(|mut policy| {
                if !policy.keyed {
                    policy.key = default_key.clone();
                }
                let limiter = self.store.limiter(&policy.name, &policy.rule);
                let fallback = (fallback && !limiter.decides_now())
                    .then(|| self.fallback.limiter(&policy.name, &policy.rule));
                ActivePolicy {
                    limiter,
                    fallback,
                    metrics: PolicyMetrics::new(&policy.name),
                    policy,
                }
            })
            .collect::<Vec<_>>();
        let synchronous = policies.iter().all(|p| p.limiter.decides_now());
        let lean = synchronous
            && !self.headers.draft
            && !self.headers.legacy
            && !policies
                .iter()
                .any(|p| matches!(p.policy.rule, Rule::Concurrency { .. }));
        let peer_ip_costs = if lean && self.exempt.is_none() {
            policies
                .iter()
                .map(|p| match (&p.policy.key, &p.policy.cost) {
                    (PolicyKey::PeerIp, Cost::Fixed(n)) => Some(*n),
                    _ => None,
                })
                .collect::<Option<Box<[u32]>>>()
        } else {
            None
        };
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                synchronous,
                lean,
                peer_ip_costs,
                policies,
                exempt: self.exempt,
                on_backend_error: self.on_backend_error,
                headers: self.headers,
                policy_header,
                outage: OutageLog::new(),
            }),
        })
    }
}

/// Rate limits requests by named policies; see the [crate docs](crate).
///
/// Cheap to clone (the policies' state is shared), so one layer serves every
/// clone of a router. Metric handles are registered when the layer is built:
/// install your metrics recorder before building it.
pub struct RateLimitLayer<L> {
    pub(crate) shared: Arc<Shared<L>>,
}

impl<L> Clone for RateLimitLayer<L> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<L> fmt::Debug for RateLimitLayer<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .shared
            .policies
            .iter()
            .map(|p| p.policy.name())
            .collect();
        f.debug_struct("RateLimitLayer")
            .field("policies", &names)
            .field("on_backend_error", &self.shared.on_backend_error)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer<()> {
    /// Starts a layer on `store` ([`MemoryStore`](crate::MemoryStore),
    /// `RedisStore` with feature `redis`, or [`AnyStore`](crate::AnyStore),
    /// either one picked at run time).
    pub fn builder<S: RateLimitStore>(store: S) -> RateLimitBuilder<S> {
        RateLimitBuilder {
            store,
            policies: Vec::new(),
            default_key: PolicyKey::PeerIp,
            exempt: None,
            on_backend_error: OnBackendError::FallbackToMemory,
            headers: HeaderConfig::default(),
            fallback: MemoryStore::new(),
        }
    }
}

impl<S, L> Layer<S> for RateLimitLayer<L> {
    type Service = RateLimit<S, L>;

    fn layer(&self, inner: S) -> RateLimit<S, L> {
        RateLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ee_core::HeaderKey;

    use super::*;
    use crate::MemoryStore;

    fn shape(
        build: impl FnOnce(RateLimitBuilder<MemoryStore>) -> RateLimitBuilder<MemoryStore>,
    ) -> (bool, bool) {
        let rule = Rule::gcra(10, Duration::from_secs(1), 10);
        let builder = RateLimitLayer::builder(MemoryStore::new())
            .policy(Policy::new("a", rule))
            .policy(Policy::new("b", rule).cost(3));
        let layer = build(builder).build().unwrap();
        (layer.shared.lean, layer.shared.peer_ip_costs.is_some())
    }

    #[test]
    fn only_the_default_shape_takes_the_peer_ip_path() {
        let off = HeaderConfig {
            draft: false,
            legacy: false,
        };
        assert_eq!(shape(|b| b.headers(off)), (true, true));
        assert_eq!(shape(|b| b), (false, false), "headers on");
        assert_eq!(shape(|b| b.headers(off).exempt(|_| false)), (true, false));
        assert_eq!(
            shape(|b| b
                .headers(off)
                .policy(Policy::new("c", Rule::per_hour(5)).cost_fn(|_| 1))),
            (true, false),
            "a cost closure"
        );
        assert_eq!(
            shape(|b| b.headers(off).policy(
                Policy::new("c", Rule::per_hour(5))
                    .key(HeaderKey::new(http::HeaderName::from_static("x-api-key")))
            )),
            (true, false),
            "another key"
        );
        assert_eq!(
            shape(|b| b
                .headers(off)
                .policy(Policy::new("c", Rule::concurrency(5)))),
            (false, false),
            "a concurrency limit"
        );
    }
}
