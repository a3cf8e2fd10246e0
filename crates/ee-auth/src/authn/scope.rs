//! Scope checks inside handlers.

use crate::{AuthError, Identity};

impl Identity {
    /// `Ok` when the identity has `scope`, else
    /// [`AuthError::InsufficientScope`] (403 with an RFC 6750
    /// `insufficient_scope` challenge naming it).
    ///
    /// ```
    /// use ee_auth::{Identity, Method};
    ///
    /// let id = Identity::new("user:anne", Method::Jwt).with_scopes(["orders:read"]);
    /// assert!(id.require_scope("orders:read").is_ok());
    /// assert_eq!(id.require_scope("orders:write").unwrap_err().status(), 403);
    /// ```
    pub fn require_scope(&self, scope: &str) -> Result<(), AuthError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope {
                required: scope.to_owned(),
            })
        }
    }
}
