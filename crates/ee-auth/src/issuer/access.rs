//! `TokenIssuer`: signed access tokens (and the signing behind service tokens).

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ee_core::{Clock, Secret, SystemClock};
use serde::Serialize;
use serde_json::{Map, Value};

use super::config::{IssuerConfig, SigningAlgorithm, require};
use super::keyset::{SigningKey, SigningKeys};
use super::random_token;
use crate::AuthError;

/// Claims the issuer sets itself; a [`Grant`] cannot override them.
const RESERVED: [&str; 12] = [
    "iss",
    "sub",
    "aud",
    "iat",
    "nbf",
    "exp",
    "jti",
    "roles",
    "scope",
    "scp",
    "tenant",
    "token_use",
];

/// What an access token grants: subject, roles, scopes, tenant, extra claims.
///
/// `Debug` leaves the extra claims out (they may carry personal data).
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct Grant {
    /// The `sub` claim.
    pub subject: String,
    /// The `roles` claim (omitted when empty).
    pub roles: Vec<String>,
    /// The scopes, sent space separated as `scope` (omitted when empty).
    pub scopes: Vec<String>,
    /// The `tenant` claim.
    pub tenant: Option<String>,
    /// Further claims; the registered ones above cannot be overridden.
    pub claims: Map<String, Value>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("subject", &self.subject)
            .field("roles", &self.roles)
            .field("scopes", &self.scopes)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl Grant {
    /// A grant for `subject`, with no roles, scopes, tenant or extra claims.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            ..Self::default()
        }
    }

    /// Sets the roles.
    pub fn with_roles<I: IntoIterator<Item = R>, R: Into<String>>(mut self, roles: I) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the scopes.
    pub fn with_scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the tenant.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Adds a claim (`email`, `name`…).
    pub fn with_claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }
}

/// A freshly signed token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuedToken {
    /// The compact JWS to hand to the client.
    pub token: Secret<String>,
    /// Its `jti` (what [`RevocationList::revoke`](crate::RevocationList::revoke) takes).
    pub jti: String,
    /// `iat`, seconds since the Unix epoch.
    pub issued_at: u64,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
}

#[derive(Clone, Copy, Serialize)]
#[serde(untagged)]
enum Audience<'a> {
    One(&'a str),
    Many(&'a [String]),
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: Audience<'a>,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    roles: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    token_use: &'static str,
    #[serde(flatten)]
    extra: Option<&'a Map<String, Value>>,
}

/// Signs access tokens (and, through [`ServiceTokens`](crate::ServiceTokens),
/// service tokens) with the active key of its [`SigningKeys`].
///
/// Every token carries `iss`, `sub`, `aud`, `iat`, `nbf`, `exp`, a random
/// `jti` and `token_use` (`access` or `service`), and a `kid` header naming
/// the key, so any JWT library verifies it against [`jwks`](Self::jwks).
/// The key set can be replaced while running ([`set_keys`](Self::set_keys)),
/// for rotation on configuration reload. Cheap to clone.
///
/// ```
/// use ee_auth::{Grant, SigningAlgorithm, SigningKeys, TokenIssuer};
///
/// let issuer = TokenIssuer::builder()
///     .issuer("https://auth.example.com")
///     .audience("api")
///     .keys(SigningKeys::generate(SigningAlgorithm::EdDSA).unwrap())
///     .build()
///     .unwrap();
/// let issued = issuer
///     .issue_access(&Grant::new("user:42").with_roles(["admin"]))
///     .unwrap();
/// assert_eq!(issued.token.expose().split('.').count(), 3);
/// ```
pub struct TokenIssuer<C: Clock = SystemClock> {
    inner: Arc<Inner<C>>,
}

impl<C: Clock> Clone for TokenIssuer<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<C> {
    keys: RwLock<SigningKeys>,
    issuer: String,
    audiences: Vec<String>,
    access_ttl: u64,
    service_ttl: u64,
    clock: C,
}

impl<C: Clock> fmt::Debug for TokenIssuer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.inner.issuer)
            .field("audiences", &self.inner.audiences)
            .field("access_ttl_secs", &self.inner.access_ttl)
            .field("keys", &self.keys())
            .finish_non_exhaustive()
    }
}

/// Builds a [`TokenIssuer`].
#[derive(Debug)]
#[must_use]
pub struct TokenIssuerBuilder<C: Clock = SystemClock> {
    issuer: String,
    audiences: Vec<String>,
    access_ttl: Duration,
    service_ttl: Duration,
    keys: Option<SigningKeys>,
    clock: C,
}

impl TokenIssuer {
    /// A builder with the defaults of [`IssuerConfig`] (15-minute access
    /// tokens, 60-second service tokens) and no issuer, audience or keys yet.
    pub fn builder() -> TokenIssuerBuilder {
        let cfg = IssuerConfig::default();
        TokenIssuerBuilder {
            issuer: String::new(),
            audiences: Vec::new(),
            access_ttl: Duration::from_secs(cfg.access_ttl_secs),
            service_ttl: Duration::from_secs(cfg.service_token_ttl_secs),
            keys: None,
            clock: SystemClock,
        }
    }
}

impl<C: Clock> TokenIssuerBuilder<C> {
    /// Applies `cfg`: issuer, audiences, lifetimes and, if it names any (or
    /// `ephemeral_key` is on), the signing keys.
    pub fn config(mut self, cfg: &IssuerConfig) -> Result<Self, AuthError> {
        self.issuer.clone_from(&cfg.issuer);
        self.audiences.clone_from(&cfg.audiences);
        self.access_ttl = Duration::from_secs(cfg.access_ttl_secs);
        self.service_ttl = Duration::from_secs(cfg.service_token_ttl_secs);
        if !cfg.keys.is_empty() {
            self.keys = Some(SigningKeys::from_config(&cfg.keys)?);
        } else if cfg.ephemeral_key {
            tracing::warn!(
                "no signing keys configured: generated an ephemeral EdDSA key (development only: \
                 tokens stop verifying after a restart and differ between instances)"
            );
            self.keys = Some(SigningKeys::generate(SigningAlgorithm::EdDSA)?);
        }
        Ok(self)
    }

    /// Sets the `iss` claim.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// Adds an audience of access tokens.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Sets the access-token lifetime (whole seconds; default 15 minutes).
    pub fn access_ttl(mut self, ttl: Duration) -> Self {
        self.access_ttl = ttl;
        self
    }

    /// Sets the service-token lifetime (whole seconds; default 60 s).
    pub fn service_token_ttl(mut self, ttl: Duration) -> Self {
        self.service_ttl = ttl;
        self
    }

    /// Sets the signing keys.
    pub fn keys(mut self, keys: SigningKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Reads time from `clock` (tests use `ee_testing::ManualClock`).
    pub fn clock<C2: Clock>(self, clock: C2) -> TokenIssuerBuilder<C2> {
        TokenIssuerBuilder {
            issuer: self.issuer,
            audiences: self.audiences,
            access_ttl: self.access_ttl,
            service_ttl: self.service_ttl,
            keys: self.keys,
            clock,
        }
    }

    /// Validates and builds.
    pub fn build(self) -> Result<TokenIssuer<C>, AuthError> {
        require(
            !self.issuer.is_empty(),
            "issuer: set `issuer` (the `iss` claim)",
        )?;
        require(
            !self.audiences.is_empty() && self.audiences.iter().all(|a| !a.is_empty()),
            "issuer: set at least one non-empty audience (`audiences`)",
        )?;
        require(
            self.access_ttl.as_secs() >= 1 && self.service_ttl.as_secs() >= 1,
            "issuer: token lifetimes must be at least one second",
        )?;
        let keys = self.keys.ok_or_else(|| {
            AuthError::Config(
                "issuer: no signing keys: configure `keys` (or `ephemeral_key = true` in development)"
                    .to_owned(),
            )
        })?;
        Ok(TokenIssuer {
            inner: Arc::new(Inner {
                keys: RwLock::new(keys),
                issuer: self.issuer,
                audiences: self.audiences,
                access_ttl: self.access_ttl.as_secs(),
                service_ttl: self.service_ttl.as_secs(),
                clock: self.clock,
            }),
        })
    }
}

/// What one signature needs besides the issuer's own settings.
struct TokenSpec<'a> {
    subject: &'a str,
    audience: Audience<'a>,
    ttl: u64,
    token_use: &'static str,
    grant: Option<&'a Grant>,
}

impl<C: Clock> TokenIssuer<C> {
    /// Signs an access token for `grant` (`token_use: "access"`), valid from
    /// now for the access lifetime.
    pub fn issue_access(&self, grant: &Grant) -> Result<IssuedToken, AuthError> {
        if let Some(name) = grant.claims.keys().find(|k| RESERVED.contains(&k.as_str())) {
            return Err(AuthError::Config(format!(
                "grant: the claim `{name}` is set by the issuer"
            )));
        }
        let audience = match self.inner.audiences.as_slice() {
            [one] => Audience::One(one),
            many => Audience::Many(many),
        };
        self.sign(&TokenSpec {
            subject: &grant.subject,
            audience,
            ttl: self.inner.access_ttl,
            token_use: "access",
            grant: Some(grant),
        })
    }

    /// Signs a service token: `sub` = `service:<name>`, one audience.
    pub(crate) fn issue_service(
        &self,
        subject: &str,
        audience: &str,
    ) -> Result<IssuedToken, AuthError> {
        self.sign(&TokenSpec {
            subject,
            audience: Audience::One(audience),
            ttl: self.inner.service_ttl,
            token_use: "service",
            grant: None,
        })
    }

    fn sign(&self, spec: &TokenSpec<'_>) -> Result<IssuedToken, AuthError> {
        let now = self.inner.clock.unix_ms() / 1000;
        let expires_at = now + spec.ttl;
        let jti = random_token(16);
        let grant = spec.grant;
        let claims = Claims {
            iss: &self.inner.issuer,
            sub: spec.subject,
            aud: spec.audience,
            iat: now,
            nbf: now,
            exp: expires_at,
            jti: &jti,
            roles: grant.map_or(&[], |g| &g.roles),
            scope: grant
                .filter(|g| !g.scopes.is_empty())
                .map(|g| g.scopes.join(" ")),
            tenant: grant.and_then(|g| g.tenant.as_deref()),
            token_use: spec.token_use,
            extra: grant.map(|g| &g.claims).filter(|c| !c.is_empty()),
        };
        let json = serde_json::to_vec(&claims)
            .map_err(|e| AuthError::Config(format!("grant: claims do not serialise: {e}")))?;
        let token = self.with_active(|key| key.sign_json(&json))?;
        Ok(IssuedToken {
            token: Secret::new(token),
            jti,
            issued_at: now,
            expires_at,
        })
    }

    fn with_active<T>(&self, f: impl FnOnce(&SigningKey) -> T) -> T {
        let keys = self.inner.keys.read().unwrap_or_else(|e| e.into_inner());
        f(keys.active())
    }

    /// The current key set.
    pub fn keys(&self) -> SigningKeys {
        self.inner
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the key set (rotation on configuration reload): the next token
    /// is signed with the new active key.
    pub fn set_keys(&self, keys: SigningKeys) {
        *self.inner.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
    }

    /// The public JWK set of the current keys.
    pub fn jwks(&self) -> Value {
        self.keys().jwks().clone()
    }

    /// The `iss` claim.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The audiences of access tokens.
    pub fn audiences(&self) -> &[String] {
        &self.inner.audiences
    }

    /// The access-token lifetime.
    pub fn access_ttl(&self) -> Duration {
        Duration::from_secs(self.inner.access_ttl)
    }

    /// The service-token lifetime.
    pub fn service_token_ttl(&self) -> Duration {
        Duration::from_secs(self.inner.service_ttl)
    }

    /// The clock.
    pub(crate) fn clock(&self) -> &C {
        &self.inner.clock
    }
}
