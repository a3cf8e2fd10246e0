//! Who is calling: the [`Identity`] an authenticator establishes and the
//! layer puts in the request extensions (beside [`ee_core::Subject`]).

use std::fmt;
use std::sync::Arc;

use ee_core::Subject;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// A JWT access token (user or client).
    Jwt,
    /// A service token: a JWT whose subject is `service:<name>`.
    ServiceToken,
    /// An API key.
    ApiKey,
}

impl Method {
    /// The label used in metrics and logs (`jwt`, `service_token`, `api_key`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Jwt => "jwt",
            Method::ServiceToken => "service_token",
            Method::ApiKey => "api_key",
        }
    }
}

#[derive(Clone)]
struct Inner {
    subject: Subject,
    method: Method,
    tenant: Option<Arc<str>>,
    roles: Vec<Arc<str>>,
    scopes: Vec<Arc<str>>,
    claims: Map<String, Value>,
    expires_at: Option<u64>,
    token_id: Option<Arc<str>>,
}

/// An authenticated caller: subject, how it authenticated, tenant, roles,
/// scopes and the verified claims. Cloning is one reference-count increment.
///
/// `Debug` shows the subject, method, tenant, roles and scopes, never the claims
/// (they may carry personal data).
#[derive(Clone)]
pub struct Identity(Arc<Inner>);

impl Identity {
    /// An identity for `subject`, authenticated by `method`, with no roles,
    /// scopes, tenant or claims.
    pub fn new(subject: impl Into<Arc<str>>, method: Method) -> Self {
        Identity(Arc::new(Inner {
            subject: Subject(subject.into()),
            method,
            tenant: None,
            roles: Vec::new(),
            scopes: Vec::new(),
            claims: Map::new(),
            expires_at: None,
            token_id: None,
        }))
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::make_mut(&mut self.0)
    }

    /// Sets the tenant.
    pub fn with_tenant(mut self, tenant: impl Into<Arc<str>>) -> Self {
        self.inner_mut().tenant = Some(tenant.into());
        self
    }

    /// Sets the roles (RBAC).
    pub fn with_roles<I, R>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<Arc<str>>,
    {
        self.inner_mut().roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the scopes (OAuth 2.0 `scope`, API key scopes).
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.inner_mut().scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the verified claims (a JWT's payload).
    pub fn with_claims(mut self, claims: Map<String, Value>) -> Self {
        self.inner_mut().claims = claims;
        self
    }

    /// Sets when the credentials expire (seconds since the Unix epoch).
    pub fn with_expires_at(mut self, unix_secs: u64) -> Self {
        self.inner_mut().expires_at = Some(unix_secs);
        self
    }

    /// Sets the token id (`jti`), used for revocation.
    pub fn with_token_id(mut self, jti: impl Into<Arc<str>>) -> Self {
        self.inner_mut().token_id = Some(jti.into());
        self
    }

    /// The subject (`sub`, `service:<name>`, the API key's owner).
    pub fn subject(&self) -> &Subject {
        &self.0.subject
    }

    /// The subject as a string.
    pub fn id(&self) -> &str {
        &self.0.subject.0
    }

    /// How the caller authenticated.
    pub fn method(&self) -> Method {
        self.0.method
    }

    /// The tenant, if the credentials name one.
    pub fn tenant(&self) -> Option<&str> {
        self.0.tenant.as_deref()
    }

    /// The roles.
    pub fn roles(&self) -> impl ExactSizeIterator<Item = &str> {
        self.0.roles.iter().map(|r| &**r)
    }

    /// Whether the identity has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.0.roles.iter().any(|r| &**r == role)
    }

    /// The scopes.
    pub fn scopes(&self) -> impl ExactSizeIterator<Item = &str> {
        self.0.scopes.iter().map(|s| &**s)
    }

    /// Whether the identity has `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.0.scopes.iter().any(|s| &**s == scope)
    }

    /// The verified claims (empty for API keys).
    pub fn claims(&self) -> &Map<String, Value> {
        &self.0.claims
    }

    /// The claims deserialized as `C`.
    pub fn claims_as<C: DeserializeOwned>(&self) -> Result<C, serde_json::Error> {
        C::deserialize(&Value::Object(self.0.claims.clone()))
    }

    /// When the credentials expire (seconds since the Unix epoch).
    pub fn expires_at(&self) -> Option<u64> {
        self.0.expires_at
    }

    /// The token id (`jti`), if any.
    pub fn token_id(&self) -> Option<&str> {
        self.0.token_id.as_deref()
    }

    /// Whether the caller is a service (`service:<name>` subject from a service token).
    pub fn is_service(&self) -> bool {
        self.0.method == Method::ServiceToken
    }

    /// The service name of a service identity (`order` for `service:order`).
    pub fn service_name(&self) -> Option<&str> {
        if self.is_service() {
            self.id().strip_prefix("service:")
        } else {
            None
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.id())
            .field("method", &self.0.method)
            .field("tenant", &self.0.tenant)
            .field("roles", &self.0.roles)
            .field("scopes", &self.0.scopes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_reads_back() {
        let mut claims = Map::new();
        claims.insert("email".into(), Value::from("anne@example.com"));
        let id = Identity::new("user:anne", Method::Jwt)
            .with_tenant("acme")
            .with_roles(["admin"])
            .with_scopes(["orders:read"])
            .with_claims(claims)
            .with_expires_at(10);
        assert_eq!(id.id(), "user:anne");
        assert_eq!(id.tenant(), Some("acme"));
        assert!(id.has_role("admin") && !id.has_role("user"));
        assert!(id.has_scope("orders:read"));
        assert_eq!(id.expires_at(), Some(10));
        #[derive(serde::Deserialize)]
        struct C {
            email: String,
        }
        assert_eq!(id.claims_as::<C>().unwrap().email, "anne@example.com");
        // Claims never appear in Debug.
        assert!(!format!("{id:?}").contains("anne@example.com"));
    }

    #[test]
    fn service_identity() {
        let id = Identity::new("service:order", Method::ServiceToken);
        assert_eq!(id.service_name(), Some("order"));
        assert_eq!(Identity::new("service:x", Method::Jwt).service_name(), None);
    }
}
