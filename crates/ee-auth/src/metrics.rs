//! The crate's metrics:
//!
//! | name | kind | unit | labels |
//! |---|---|---|---|
//! | [`METRIC_AUTHENTICATIONS_TOTAL`] | counter | count | `method` (`jwt`, `service_token`, `api_key`, `none`), `outcome` (`ok`, `cached`, `missing`, `invalid`, `expired`, `unavailable`) |
//! | [`METRIC_DECISIONS_TOTAL`] | counter | count | `model` (`rbac`, `abac`, `rebac`, `scope`, `custom`), `outcome` (`allow`, `deny`, `error`) |
//! | [`METRIC_JWKS_REFRESHES_TOTAL`] | counter | count | `outcome` (`ok`, `failed`, `throttled`) |
//! | [`METRIC_TOKEN_CACHE_ENTRIES`] | gauge | count | — |
//! | [`METRIC_REFRESH_REUSE_TOTAL`] | counter | count | — |
//!
//! Handles are registered when a layer or engine is built (install the recorder
//! first); no metric is looked up per request.

use metrics::{Counter, Unit};

/// Counter: authentication attempts by `method` and `outcome`.
pub const METRIC_AUTHENTICATIONS_TOTAL: &str = "ee_auth_authentications_total";
/// Counter: authorization decisions by `model` and `outcome`.
pub const METRIC_DECISIONS_TOTAL: &str = "ee_auth_decisions_total";
/// Counter: JWKS fetches by `outcome` (`throttled`: an unknown `kid` that did not
/// trigger a fetch because one ran too recently).
pub const METRIC_JWKS_REFRESHES_TOTAL: &str = "ee_auth_jwks_refreshes_total";
/// Gauge: verified tokens held in the cache.
pub const METRIC_TOKEN_CACHE_ENTRIES: &str = "ee_auth_token_cache_entries";
/// Counter: refresh tokens presented a second time (each revokes its family).
pub const METRIC_REFRESH_REUSE_TOTAL: &str = "ee_auth_refresh_reuse_total";

/// Describes every ee-auth metric (help text and unit) to the installed
/// recorder. Builders call it; calling it again is harmless.
pub fn describe_metrics() {
    metrics::describe_counter!(
        METRIC_AUTHENTICATIONS_TOTAL,
        Unit::Count,
        "Authentication attempts by method (jwt, service_token, api_key, none) and outcome (ok, cached, missing, invalid, expired, unavailable)"
    );
    metrics::describe_counter!(
        METRIC_DECISIONS_TOTAL,
        Unit::Count,
        "Authorization decisions by model (rbac, abac, rebac, scope, custom) and outcome (allow, deny, error)"
    );
    metrics::describe_counter!(
        METRIC_JWKS_REFRESHES_TOTAL,
        Unit::Count,
        "JWKS fetches by outcome (ok, failed, throttled)"
    );
    metrics::describe_gauge!(
        METRIC_TOKEN_CACHE_ENTRIES,
        Unit::Count,
        "Verified tokens held in the token cache"
    );
    metrics::describe_counter!(
        METRIC_REFRESH_REUSE_TOTAL,
        Unit::Count,
        "Refresh tokens presented twice; each revoked its whole family"
    );
}

/// One authorization model's decision counters, registered when it is built.
#[derive(Clone)]
pub(crate) struct DecisionMetrics {
    pub(crate) model: &'static str,
    allow: Counter,
    deny: Counter,
    error: Counter,
}

impl DecisionMetrics {
    pub(crate) fn new(model: &'static str) -> Self {
        describe_metrics();
        let c = |outcome: &'static str| metrics::counter!(METRIC_DECISIONS_TOTAL, "model" => model, "outcome" => outcome);
        DecisionMetrics {
            model,
            allow: c("allow"),
            deny: c("deny"),
            error: c("error"),
        }
    }

    pub(crate) fn allow(&self) {
        self.allow.increment(1);
    }
    pub(crate) fn deny(&self) {
        self.deny.increment(1);
    }
    pub(crate) fn error(&self) {
        self.error.increment(1);
    }
}
