//! Response headers: the IETF draft's `RateLimit-Policy` and `RateLimit`
//! (draft-ietf-httpapi-ratelimit-headers-10, Structured Field lists), the
//! legacy `X-RateLimit-*` trio, and `Retry-After`.

use std::fmt::Write;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::layer::Policy;
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

/// One policy's decision for the `RateLimit` field.
pub(crate) struct Outcome<'a> {
    pub(crate) policy: &'a Policy,
    pub(crate) decision: Decision,
}

/// Writes `RateLimit` (every checked policy) and, if asked, the legacy trio
/// for the policy with the least remaining.
pub(crate) fn write(
    headers: &mut HeaderMap,
    policy_header: &HeaderValue,
    outcomes: &[Outcome<'_>],
    draft: bool,
    legacy: bool,
) {
    if outcomes.is_empty() {
        return;
    }
    if draft {
        let mut out = String::with_capacity(32 * outcomes.len());
        for (i, o) in outcomes.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "\"{}\";r={}", o.policy.name, o.decision.remaining);
            if !o.decision.reset.is_zero() {
                let _ = write!(out, ";t={}", ceil_secs(o.decision.reset));
            }
        }
        headers.insert(RATELIMIT_POLICY, policy_header.clone());
        if let Ok(v) = HeaderValue::from_str(&out) {
            headers.insert(RATELIMIT, v);
        }
    }
    if legacy && let Some(o) = outcomes.iter().min_by_key(|o| o.decision.remaining) {
        headers.insert(X_RATELIMIT_LIMIT, o.policy.rule.quota().into());
        headers.insert(X_RATELIMIT_REMAINING, o.decision.remaining.into());
        headers.insert(X_RATELIMIT_RESET, ceil_secs(o.decision.reset).into());
    }
}
