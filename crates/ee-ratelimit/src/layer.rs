//! `RateLimitLayer`: policies, keys, costs, exemptions and the outage policy.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ee_core::{Key, LogThrottle, RequestHead, SystemClock};
use ee_core::{KeyError, KeyExtractor, PeerIp};
use http::HeaderValue;
use tower::Layer;

use crate::Rule;
use crate::config::{HeaderConfig, OnBackendError, PolicyConfig};
use crate::error::RateLimitError;
use crate::memory::MemoryLimiter;
use crate::service::RateLimit;
use crate::store::{Limiter, RateLimitStore};

type CostFn = dyn Fn(&RequestHead<'_>) -> u32 + Send + Sync;
type ExemptFn = dyn Fn(&RequestHead<'_>) -> bool + Send + Sync;

/// One named limit: a [`Rule`], the key it counts by and what a request costs.
///
/// ```
/// use ee_core::{ClientIp, HeaderKey};
/// use ee_ratelimit::{Policy, Rule};
/// use std::time::Duration;
///
/// // 10/s with bursts of 20 per client IP, behind a proxy at 10.0.0.0/8:
/// let burst = Policy::new("burst", Rule::gcra(10, Duration::from_secs(1), 20))
///     .key(ClientIp::trusting(["10.0.0.0/8".parse().unwrap()]));
/// // 1000 per hour per API key, uploads cost 10:
/// let hourly = Policy::new("hourly", Rule::per_hour(1000))
///     .key(HeaderKey::new(http::HeaderName::from_static("x-api-key")))
///     .cost_fn(|req| if req.method == http::Method::POST { 10 } else { 1 });
/// ```
#[derive(Clone)]
pub struct Policy {
    pub(crate) name: Arc<str>,
    pub(crate) rule: Rule,
    pub(crate) key: PolicyKey,
    pub(crate) cost: Cost,
}

/// Where a policy takes its key: the default, the peer IP, is called
/// directly (inlined into the layer); any other extractor through a pointer.
#[derive(Clone)]
pub(crate) enum PolicyKey {
    PeerIp,
    Other(Arc<dyn KeyExtractor>),
}

impl PolicyKey {
    fn new<K: KeyExtractor>(key: K) -> Self {
        if std::any::TypeId::of::<K>() == std::any::TypeId::of::<PeerIp>() {
            PolicyKey::PeerIp
        } else {
            PolicyKey::Other(Arc::new(key))
        }
    }

    #[inline(always)]
    pub(crate) fn extract(&self, head: &RequestHead<'_>) -> Result<Key, KeyError> {
        match self {
            PolicyKey::PeerIp => PeerIp.extract(head),
            PolicyKey::Other(key) => key.extract(head),
        }
    }
}

#[derive(Clone)]
pub(crate) enum Cost {
    Fixed(u32),
    Dynamic(Arc<CostFn>),
}

impl Cost {
    /// What `head` costs.
    #[inline(always)]
    pub(crate) fn of(&self, head: &RequestHead<'_>) -> u32 {
        match self {
            Cost::Fixed(n) => *n,
            Cost::Dynamic(f) => f(head),
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// A policy counted per peer IP ([`PeerIp`]), each request costing 1.
    pub fn new(name: impl Into<Arc<str>>, rule: Rule) -> Self {
        Self {
            name: name.into(),
            rule,
            key: PolicyKey::PeerIp,
            cost: Cost::Fixed(1),
        }
    }

    /// A policy from its configuration (key: [`PeerIp`] until [`Policy::key`]).
    pub fn from_config(config: &PolicyConfig) -> Self {
        Self::new(config.name.as_str(), config.rule).cost(config.cost)
    }

    /// Counts by `key` (client IP through trusted proxies, user, API key,
    /// tenant, route, closure: any [`KeyExtractor`]).
    pub fn key(mut self, key: impl KeyExtractor) -> Self {
        self.key = PolicyKey::new(key);
        self
    }

    /// Every request costs `units` (0 exempts every request from this policy).
    pub fn cost(mut self, units: u32) -> Self {
        self.cost = Cost::Fixed(units);
        self
    }

    /// What a request costs, decided per request (0 skips this policy).
    pub fn cost_fn(mut self, f: impl Fn(&RequestHead<'_>) -> u32 + Send + Sync + 'static) -> Self {
        self.cost = Cost::Dynamic(Arc::new(f));
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }
}

/// Pre-registered metric handles of one policy (no label allocation per request).
pub(crate) struct PolicyMetrics {
    pub(crate) allowed: metrics::Counter,
    pub(crate) limited: metrics::Counter,
    pub(crate) failed_open: metrics::Counter,
    pub(crate) failed_closed: metrics::Counter,
    pub(crate) backend_errors: metrics::Counter,
}

impl PolicyMetrics {
    fn new(policy: &str) -> Self {
        let decision = |outcome: &'static str| {
            metrics::counter!(
                "ee_ratelimit_decisions_total",
                "policy" => policy.to_owned(),
                "outcome" => outcome
            )
        };
        Self {
            allowed: decision("allowed"),
            limited: decision("limited"),
            failed_open: decision("failed_open"),
            failed_closed: decision("failed_closed"),
            backend_errors: metrics::counter!(
                "ee_ratelimit_backend_errors_total",
                "policy" => policy.to_owned()
            ),
        }
    }
}

/// A policy ready to decide.
pub(crate) struct ActivePolicy<L> {
    pub(crate) policy: Policy,
    pub(crate) limiter: L,
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

/// Builds a [`RateLimitLayer`]: policies, exemption, headers, outage policy.
pub struct RateLimitBuilder<S> {
    store: S,
    policies: Vec<Policy>,
    exempt: Option<Arc<ExemptFn>>,
    on_backend_error: OnBackendError,
    headers: HeaderConfig,
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

impl<S: RateLimitStore> RateLimitBuilder<S> {
    /// Adds a policy. A request must pass every policy; the first one that
    /// refuses answers 429 (units already taken by earlier policies stay taken).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policies.push(policy);
        self
    }

    /// Requests for which `f` is true skip rate limiting (health checks, internal callers).
    pub fn exempt(mut self, f: impl Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.exempt = Some(Arc::new(f));
        self
    }

    /// What to do when the store fails (default: fall back to memory).
    pub fn on_backend_error(mut self, action: OnBackendError) -> Self {
        self.on_backend_error = action;
        self
    }

    /// Which headers to write (default: the IETF draft's, no legacy `X-RateLimit-*`).
    pub fn headers(mut self, headers: HeaderConfig) -> Self {
        self.headers = headers;
        self
    }

    /// Checks the policies and makes their limiters.
    ///
    /// Fails on no policy, a duplicate or invalid name (names are `A-Z a-z
    /// 0-9 _ - .`, 1 to 64 characters, as they appear in headers, metrics and
    /// Redis keys), or an invalid rule.
    pub fn build(self) -> Result<RateLimitLayer<S::Limiter>, RateLimitError> {
        if self.policies.is_empty() {
            return Err(RateLimitError::Config("no policy".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.policies {
            let valid = !p.name.is_empty()
                && p.name.len() <= 64
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !valid {
                return Err(RateLimitError::Config(format!(
                    "policy name `{}` must be 1-64 of A-Z a-z 0-9 _ - .",
                    p.name
                )));
            }
            if !seen.insert(p.name.clone()) {
                return Err(RateLimitError::Config(format!(
                    "policy `{}` is defined twice",
                    p.name
                )));
            }
            p.rule
                .validate()
                .map_err(|e| RateLimitError::Config(format!("policy `{}`: {e}", p.name)))?;
        }
        let policy_header = crate::headers::policy_header(&self.policies);
        let fallback = self.on_backend_error == OnBackendError::FallbackToMemory;
        let policies = self
            .policies
            .into_iter()
            .map(|policy| ActivePolicy {
                limiter: self.store.limiter(&policy.name, &policy.rule),
                fallback: fallback.then(|| MemoryLimiter::system(policy.rule)),
                metrics: PolicyMetrics::new(&policy.name),
                policy,
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
    /// Starts a layer on `store` ([`MemoryStore`](crate::MemoryStore), or
    /// `RedisStore` with feature `redis`).
    pub fn builder<S: RateLimitStore>(store: S) -> RateLimitBuilder<S> {
        RateLimitBuilder {
            store,
            policies: Vec::new(),
            exempt: None,
            on_backend_error: OnBackendError::default(),
            headers: HeaderConfig::default(),
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
