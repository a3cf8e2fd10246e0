//! Feature flags, with per-tenant overrides (`[features]` in `ee.toml`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Feature flags: on or off for everyone, and per tenant.
///
/// ```toml
/// [features.flags]
/// new_checkout = false
/// [features.tenants.acme]
/// new_checkout = true
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Features {
    /// Flags for everyone.
    pub flags: BTreeMap<String, bool>,
    /// Per-tenant values, over `flags`.
    pub tenants: BTreeMap<String, BTreeMap<String, bool>>,
}

impl Features {
    /// Whether `flag` is on for `tenant` (its own value, else everyone's,
    /// else off).
    pub fn is_enabled(&self, flag: &str, tenant: Option<&str>) -> bool {
        tenant
            .and_then(|t| self.tenants.get(t))
            .and_then(|flags| flags.get(flag))
            .or_else(|| self.flags.get(flag))
            .copied()
            .unwrap_or(false)
    }
}
