//! `ServiceTokens`: this service's own short-lived tokens, one per callee,
//! cached until most of their life is spent.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use ee_core::{Clock, Secret, SystemClock};
use http::HeaderValue;

use super::access::TokenIssuer;
use crate::AuthError;

/// Audiences a [`ServiceTokens`] caches tokens for at most; past it, spent
/// tokens are dropped, then (if still full) all of them.
const MAX_AUDIENCES: usize = 1024;

/// A minted service token. Cloning is two reference-count increments.
///
/// `Debug` shows only the expiry.
#[derive(Clone)]
pub struct ServiceToken {
    token: Secret<Arc<str>>,
    header: HeaderValue,
    expires_at: u64,
    renew_at_ms: u64,
}

impl fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl ServiceToken {
    /// The compact JWS.
    pub fn token(&self) -> &Secret<Arc<str>> {
        &self.token
    }

    /// `Bearer <token>`, marked sensitive, for the `Authorization` header of
    /// an outgoing request.
    pub fn header_value(&self) -> HeaderValue {
        self.header.clone()
    }

    /// `exp`, seconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

/// Mints this service's tokens for calls to other services: `sub` =
/// `service:<name>`, `aud` = the callee, `token_use: "service"`, a short
/// lifetime (the issuer's service-token TTL, 60 s by default).
///
/// A token is cached per audience and reused until 80 % of its life has
/// passed, so a hot path does not sign per request. Cheap to clone.
///
/// ```
/// use ee_auth::{SigningAlgorithm, SigningKeys, ServiceTokens, TokenIssuer};
///
/// let issuer = TokenIssuer::builder()
///     .issuer("https://orders.internal")
///     .audience("api")
///     .keys(SigningKeys::generate(SigningAlgorithm::EdDSA).unwrap())
///     .build()
///     .unwrap();
/// let tokens = ServiceTokens::new(issuer, "order").unwrap();
/// let first = tokens.mint("payment").unwrap();
/// let again = tokens.mint("payment").unwrap(); // the cached token
/// assert_eq!(first.token().expose(), again.token().expose());
/// ```
pub struct ServiceTokens<C: Clock = SystemClock> {
    inner: Arc<Inner<C>>,
}

impl<C: Clock> Clone for ServiceTokens<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<C: Clock> {
    issuer: TokenIssuer<C>,
    subject: String,
    cache: RwLock<HashMap<Box<str>, ServiceToken, foldhash::fast::RandomState>>,
}

impl<C: Clock> fmt::Debug for ServiceTokens<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceTokens")
            .field("subject", &self.inner.subject)
            .finish_non_exhaustive()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 256 && name.chars().all(|c| c.is_ascii_graphic())
}

impl<C: Clock> ServiceTokens<C> {
    /// Tokens for the service `name` (`sub` = `service:<name>`), signed by `issuer`.
    pub fn new(issuer: TokenIssuer<C>, name: &str) -> Result<Self, AuthError> {
        if !valid_name(name) {
            return Err(AuthError::Config(
                "service tokens: the service name is 1 to 256 visible ASCII characters".into(),
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                issuer,
                subject: format!("service:{name}"),
                cache: RwLock::new(HashMap::default()),
            }),
        })
    }

    /// The subject of the tokens (`service:<name>`).
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// A token for calling `audience`: the cached one while less than 80 % of
    /// its life has passed, else a fresh one.
    pub fn mint(&self, audience: &str) -> Result<ServiceToken, AuthError> {
        let now_ms = self.inner.issuer.clock().unix_ms();
        {
            let cache = self.inner.cache.read().unwrap_or_else(|e| e.into_inner());
            if let Some(token) = cache.get(audience).filter(|t| now_ms < t.renew_at_ms) {
                return Ok(token.clone());
            }
        }
        self.mint_fresh(audience, now_ms)
    }

    #[cold]
    fn mint_fresh(&self, audience: &str, now_ms: u64) -> Result<ServiceToken, AuthError> {
        if !valid_name(audience) {
            return Err(AuthError::Config(
                "service tokens: the audience is 1 to 256 visible ASCII characters".into(),
            ));
        }
        let issued = self
            .inner
            .issuer
            .issue_service(&self.inner.subject, audience)?;
        let ttl_ms = self.inner.issuer.service_token_ttl().as_millis() as u64;
        let token: Arc<str> = issued.token.expose().as_str().into();
        let mut header = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| AuthError::Config("service tokens: unencodable token".into()))?;
        header.set_sensitive(true);
        let minted = ServiceToken {
            token: Secret::new(token),
            header,
            expires_at: issued.expires_at,
            renew_at_ms: now_ms + ttl_ms * 8 / 10,
        };
        let mut cache = self.inner.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_AUDIENCES && !cache.contains_key(audience) {
            cache.retain(|_, t| now_ms < t.renew_at_ms);
            if cache.len() >= MAX_AUDIENCES {
                cache.clear();
            }
        }
        cache.insert(audience.into(), minted.clone());
        Ok(minted)
    }
}
