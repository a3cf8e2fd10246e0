//! Response headers: the IETF draft's `RateLimit-Policy` and `RateLimit`
//! (draft-ietf-httpapi-ratelimit-headers-10, Structured Field lists), the
//! legacy `X-RateLimit-*` trio, and `Retry-After`.

use std::fmt::Write;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::policy::Policy;
use crate::store::Decision;

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `X-RateLimit-Limit` (legacy).
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining` (legacy).
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset` (legacy; seconds until the quota is back).
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Whole seconds, rounded up (the draft's `t` and `Retry-After` are integers;
/// rounding down would invite a retry that is refused again).
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `"burst";q=20;w=2, "hourly";q=1000;w=3600, "inflight";q=5;qu="concurrent-requests"`.
/// Names are validated to need no escaping in an sf-string.
pub(crate) fn policy_header(policies: &[Policy]) -> HeaderValue {
    let mut out = String::new();
    for (i, p) in policies.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "\"{}\";q={}", p.name, p.rule.quota());
        if let Some(unit) = p.rule.quota_unit() {
            let _ = write!(out, ";qu=\"{unit}\"");
        }
        if let Some(w) = p.rule.window_secs() {
            let _ = write!(out, ";w={w}");
        }
    }
    HeaderValue::from_str(&out).expect("validated policy names make a valid header")
}

/// Collects decisions, policy by policy, into the headers of one response.
pub(crate) struct HeaderBuilder {
    /// The `RateLimit` list so far, when the draft headers are on.
    draft: Option<String>,
    /// quota, remaining, reset of the policy closest to its limit, when the
    /// legacy headers are on.
    legacy: Option<Option<(u32, u64, Duration)>>,
}

impl HeaderBuilder {
    pub(crate) fn new(draft: bool, legacy: bool) -> Self {
        Self {
            draft: draft.then(String::new),
            legacy: legacy.then_some(None),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, policy: &Policy, decision: &Decision) {
        if let Some(out) = &mut self.draft {
            if !out.is_empty() {
                out.push_str(", ");
            }
            // itoa, not `write!`: this runs on every response.
            let mut n = itoa::Buffer::new();
            out.push('"');
            out.push_str(&policy.name);
            out.push_str("\";r=");
            out.push_str(n.format(decision.remaining));
            if !decision.reset.is_zero() {
                out.push_str(";t=");
                out.push_str(n.format(ceil_secs(decision.reset)));
            }
        }
        if let Some(least) = &mut self.legacy
            && least.is_none_or(|(_, remaining, _)| decision.remaining < remaining)
        {
            *least = Some((policy.rule.quota(), decision.remaining, decision.reset));
        }
    }

    #[inline]
    pub(crate) fn finish(self, policy_header: &HeaderValue) -> HeaderSet {
        if self.draft.is_none() && self.legacy.is_none() {
            return HeaderSet::default();
        }
        self.render(policy_header)
    }

    #[inline(never)]
    fn render(self, policy_header: &HeaderValue) -> HeaderSet {
        let draft = self
            .draft
            .filter(|s| !s.is_empty())
            .and_then(|s| HeaderValue::try_from(s).ok())
            .map(|v| (policy_header.clone(), v));
        let legacy = self.legacy.flatten().map(|(quota, remaining, reset)| {
            [
                HeaderValue::from(quota),
                HeaderValue::from(remaining),
                HeaderValue::from(ceil_secs(reset)),
            ]
        });
        if draft.is_none() && legacy.is_none() {
            return HeaderSet::default();
        }
        HeaderSet(Some(Box::new(Values { draft, legacy })))
    }
}

/// The rate-limit headers of one response, ready to insert: one pointer, so
/// the response future stays small (it is moved by every layer above), and
/// no allocation when there are none.
#[derive(Debug, Default)]
pub(crate) struct HeaderSet(Option<Box<Values>>);

#[derive(Debug)]
struct Values {
    draft: Option<(HeaderValue, HeaderValue)>,
    legacy: Option<[HeaderValue; 3]>,
}

impl HeaderSet {
    #[inline]
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        if let Some(values) = self.0 {
            (*values).insert_into(headers);
        }
    }
}

impl Values {
    #[inline(never)]
    fn insert_into(self, headers: &mut HeaderMap) {
        let Values { draft, legacy } = self;
        if let Some((policy, limit)) = draft {
            headers.insert(RATELIMIT_POLICY, policy);
            headers.insert(RATELIMIT, limit);
        }
        if let Some([limit, remaining, reset]) = legacy {
            headers.insert(X_RATELIMIT_LIMIT, limit);
            headers.insert(X_RATELIMIT_REMAINING, remaining);
            headers.insert(X_RATELIMIT_RESET, reset);
        }
    }
}
