//! `Policy`: one named limit, the key it counts by and what a request costs.

use std::fmt;
use std::sync::Arc;

use ee_core::{Key, KeyError, KeyExtractor, PeerIp, RequestHead};

use crate::Rule;

type CostFn = dyn Fn(&RequestHead<'_>) -> u32 + Send + Sync;

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
    /// Whether [`Policy::key`] chose the key (else the layer's default key
    /// replaces it when the layer is built).
    pub(crate) keyed: bool,
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
    pub(crate) fn new<K: KeyExtractor>(key: K) -> Self {
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
    /// A policy counted by the layer's default key (the peer IP, [`PeerIp`],
    /// unless [`RateLimitBuilder::default_key`](crate::RateLimitBuilder::default_key)
    /// says otherwise), each request costing 1.
    pub fn new(name: impl Into<Arc<str>>, rule: Rule) -> Self {
        Self {
            name: name.into(),
            rule,
            key: PolicyKey::PeerIp,
            keyed: false,
            cost: Cost::Fixed(1),
        }
    }

    /// Counts by `key` (client IP through trusted proxies, user, API key,
    /// tenant, route, closure: any [`KeyExtractor`]).
    pub fn key(mut self, key: impl KeyExtractor) -> Self {
        self.key = PolicyKey::new(key);
        self.keyed = true;
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
