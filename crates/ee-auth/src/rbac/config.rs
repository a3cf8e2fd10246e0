//! The serde form of an RBAC model: roles and assignments.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Roles and assignments, as loaded from a file, the environment or a store.
///
/// ```toml
/// [roles.viewer]
/// permissions = ["orders:read", "products:read"]
///
/// [roles.editor]
/// inherits = ["viewer"]
/// permissions = ["orders:*"]
///
/// [roles.admin]
/// permissions = ["*"]
///
/// [[assignments]]
/// subject = "user:anne"
/// tenant = "acme"        # optional: without it the roles hold in every tenant
/// roles = ["admin"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RbacConfig {
    /// Roles by name.
    pub roles: BTreeMap<String, RoleConfig>,
    /// Roles given to subjects by configuration (beside those their
    /// credentials carry).
    pub assignments: Vec<AssignmentConfig>,
}

/// One role: the roles it includes and the permissions it grants itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleConfig {
    /// Roles whose permissions this role includes (transitively). A cycle is
    /// refused when the model is loaded.
    pub inherits: Vec<String>,
    /// Permissions, `resource:action`; either side may be `*`
    /// (`orders:*`, `*:read`), and `*` alone grants everything.
    pub permissions: Vec<String>,
}

impl RoleConfig {
    /// A role with no permissions and no parents.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds roles this role includes.
    pub fn inherits<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inherits.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Adds permissions (`resource:action`, wildcards allowed).
    pub fn permissions<I, S>(mut self, permissions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.permissions
            .extend(permissions.into_iter().map(Into::into));
        self
    }
}

/// Roles a subject holds, in one tenant or in all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssignmentConfig {
    /// The subject ([`Identity::id`](crate::Identity::id)).
    pub subject: String,
    /// The tenant where the roles hold; `None`: every tenant.
    pub tenant: Option<String>,
    /// The roles (each must be defined).
    pub roles: Vec<String>,
}

impl AssignmentConfig {
    /// `roles` for `subject`, in every tenant.
    pub fn new<I, S>(subject: impl Into<String>, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        AssignmentConfig {
            subject: subject.into(),
            tenant: None,
            roles: roles.into_iter().map(Into::into).collect(),
        }
    }

    /// Restricts the assignment to `tenant`.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }
}
