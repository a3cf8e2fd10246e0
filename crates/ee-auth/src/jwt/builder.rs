//! `JwtVerifierBuilder`: keys, accepted issuers and audiences, algorithms,
//! limits, cache, revocation and clock.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ee_core::Clock;
use jsonwebtoken::{Algorithm, AlgorithmFamily};

use crate::jwt::cache::TokenCache;
use crate::jwt::claims::{ClaimRules, claim_path};
use crate::jwt::config::{
    DEFAULT_ALGORITHMS, DEFAULT_CACHE_CAPACITY, DEFAULT_LEEWAY_SECS, DEFAULT_MAX_TOKEN_BYTES,
    JwtConfig,
};
#[cfg(feature = "jwks")]
use crate::jwt::jwks::JwksSource;
use crate::jwt::keys::{KeySet, VerifyingKey};
use crate::jwt::verifier::{Inner, JwtVerifier, TimeSource};
use crate::{AuthError, RevocationCheck};

/// Builds a [`JwtVerifier`]: at least one key source, one issuer and one
/// audience.
pub struct JwtVerifierBuilder {
    keys: Vec<VerifyingKey>,
    #[cfg(feature = "jwks")]
    jwks: Option<JwksSource>,
    /// A JWKS URL from a config, fetched by `build_async`.
    jwks_config: Option<JwtConfig>,
    issuers: Vec<Box<str>>,
    audiences: Vec<Box<str>>,
    leeway_secs: u64,
    algorithms: Vec<Algorithm>,
    allow_hmac: bool,
    max_token_bytes: usize,
    cache_capacity: u64,
    roles_claim: String,
    tenant_claim: String,
    required_claims: Vec<Box<str>>,
    revocations: Option<Arc<dyn RevocationCheck>>,
    time: TimeSource,
}

impl fmt::Debug for JwtVerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifierBuilder")
            .field("keys", &self.keys)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl JwtVerifierBuilder {
    pub(crate) fn new() -> Self {
        Self {
            keys: Vec::new(),
            #[cfg(feature = "jwks")]
            jwks: None,
            jwks_config: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            allow_hmac: false,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            roles_claim: "roles".into(),
            tenant_claim: "tenant".into(),
            required_claims: Vec::new(),
            revocations: None,
            time: TimeSource::System,
        }
    }

    /// Applies `config`: issuers, audiences, leeway, algorithms, limits,
    /// cache, claim names. A `jwks_url` is fetched by
    /// [`build_async`](Self::build_async) (feature `jwks`).
    ///
    /// Fails on a `jwks_url` without the `jwks` feature or an invalid claim name.
    pub fn config(mut self, config: &JwtConfig) -> Result<Self, AuthError> {
        self.issuers = config.issuers.iter().map(|s| s.as_str().into()).collect();
        self.audiences = config.audiences.iter().map(|s| s.as_str().into()).collect();
        self.leeway_secs = config.leeway_secs;
        self.algorithms = config.algorithms.clone();
        if config.allow_hmac {
            self = self.allow_hmac();
        }
        self.max_token_bytes = config.max_token_bytes;
        self.cache_capacity = config.cache_capacity;
        claim_path(&config.roles_claim)?;
        claim_path(&config.tenant_claim)?;
        self.roles_claim = config.roles_claim.clone();
        self.tenant_claim = config.tenant_claim.clone();
        self.required_claims = config
            .required_claims
            .iter()
            .map(|s| s.as_str().into())
            .collect();
        if config.jwks_url.is_some() {
            if !cfg!(feature = "jwks") {
                return Err(AuthError::Config(
                    "`jwks_url` needs ee-auth's `jwks` feature".into(),
                ));
            }
            self.jwks_config = Some(config.clone());
        }
        Ok(self)
    }

    /// Accepts tokens issued by `iss` (call again for several).
    pub fn issuer(mut self, iss: impl Into<String>) -> Self {
        self.issuers.push(iss.into().into());
        self
    }

    /// Accepts tokens whose `aud` names `aud` (call again for several).
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audiences.push(aud.into().into());
        self
    }

    /// Clock skew allowed on `exp` and `nbf` (default 30 s, whole seconds).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway_secs = leeway.as_secs();
        self
    }

    /// The accepted algorithms, replacing the default (RS256/384/512,
    /// PS256/384/512, ES256/384, EdDSA). HS256/384/512 also need
    /// [`allow_hmac`](Self::allow_hmac).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Opts in to HMAC (HS256/384/512): adds them to the accepted algorithms
    /// and accepts [`VerifyingKey::hmac`] keys. Only for a verifier that may
    /// also mint tokens: whoever holds the secret can.
    pub fn allow_hmac(mut self) -> Self {
        self.allow_hmac = true;
        for alg in AlgorithmFamily::Hmac.algorithms() {
            if !self.algorithms.contains(alg) {
                self.algorithms.push(*alg);
            }
        }
        self
    }

    /// Adds a static key.
    pub fn key(mut self, key: VerifyingKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Adds static keys (e.g. [`VerifyingKey::from_jwk_set`]).
    pub fn keys(mut self, keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        self.keys.extend(keys);
        self
    }

    /// Takes keys from a JWKS URL, refreshed in the background and on an
    /// unknown `kid`. Static keys, if any, are looked up first.
    #[cfg(feature = "jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
    pub fn jwks(mut self, source: JwksSource) -> Self {
        self.jwks = Some(source);
        self
    }

    /// Refuses tokens larger than `bytes` before parsing them (default 8192).
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes;
        self
    }

    /// Keeps up to `entries` verified tokens (default 10 000); 0 turns the
    /// cache off.
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.cache_capacity = entries;
        self
    }

    /// The claim holding the roles (default `roles`; dotted paths reach into objects).
    pub fn roles_claim(mut self, claim: impl Into<String>) -> Self {
        self.roles_claim = claim.into();
        self
    }

    /// The claim holding the tenant (default `tenant`; dotted paths reach into objects).
    pub fn tenant_claim(mut self, claim: impl Into<String>) -> Self {
        self.tenant_claim = claim.into();
        self
    }

    /// Requires every token to carry `claim` (non-null).
    pub fn require_claim(mut self, claim: impl Into<String>) -> Self {
        self.required_claims.push(claim.into().into());
        self
    }

    /// Refuses tokens whose `jti` is revoked, on cache hits too.
    pub fn revocations(mut self, check: Arc<dyn RevocationCheck>) -> Self {
        self.revocations = Some(check);
        self
    }

    /// The clock `exp` and `nbf` are checked against (default: the system's;
    /// tests pass `ee_testing::ManualClock`).
    pub fn clock<C: Clock>(mut self, clock: C) -> Self {
        self.time = TimeSource::of(clock);
        self
    }

    /// Fetches the config's `jwks_url` (if any, and no JWKS source was given),
    /// then builds: fails when the JWKS cannot be fetched or holds no usable key.
    #[cfg(feature = "jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
    pub async fn build_async(mut self) -> Result<JwtVerifier, AuthError> {
        if let Some(config) = self.jwks_config.take()
            && self.jwks.is_none()
        {
            let url = config.jwks_url.clone().unwrap_or_default();
            let source = JwksSource::builder(url)
                .config(&config)
                .clock_source(self.time.clone())
                .fetch()
                .await?;
            self.jwks = Some(source);
        }
        self.build()
    }

    /// Builds the verifier. Fails without issuer, audience or key source, on
    /// a key whose algorithm is not accepted (an HMAC key without
    /// [`allow_hmac`](Self::allow_hmac)), or on a `jwks_url` from the config
    /// (use [`build_async`](Self::build_async)).
    pub fn build(self) -> Result<JwtVerifier, AuthError> {
        if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
            return Err(AuthError::Config(
                "jsonwebtoken has no crypto provider: enable exactly one of its backends".into(),
            ));
        }
        if self.jwks_config.is_some() {
            return Err(AuthError::Config(
                "the config sets `jwks_url`: build with `build_async().await`".into(),
            ));
        }
        self.check()?;
        let rules = ClaimRules {
            issuers: self.issuers,
            audiences: self.audiences,
            leeway_secs: self.leeway_secs,
            required: self.required_claims,
            roles_path: claim_path(&self.roles_claim)?,
            tenant_path: claim_path(&self.tenant_claim)?,
        };
        let cache = (self.cache_capacity > 0).then(|| {
            crate::describe_metrics();
            TokenCache::new(self.cache_capacity, self.time.clone(), self.leeway_secs)
        });
        Ok(JwtVerifier {
            inner: Arc::new(Inner {
                keys: KeySet::new(self.keys),
                #[cfg(feature = "jwks")]
                jwks: self.jwks,
                algorithms: self.algorithms,
                rules,
                max_token_bytes: self.max_token_bytes,
                cache,
                revocations: self.revocations,
                time: self.time,
            }),
        })
    }

    fn check(&self) -> Result<(), AuthError> {
        let config = |msg: &str| Err(AuthError::Config(msg.into()));
        if self.issuers.is_empty() {
            return config("a JWT verifier needs at least one accepted issuer (`iss`)");
        }
        if self.audiences.is_empty() {
            return config("a JWT verifier needs at least one accepted audience (`aud`)");
        }
        if self.algorithms.is_empty() {
            return config("a JWT verifier needs at least one accepted algorithm");
        }
        let hmac = |a: &Algorithm| a.family() == AlgorithmFamily::Hmac;
        if !self.allow_hmac && self.algorithms.iter().any(hmac) {
            return config("HS256/384/512 are accepted only after `allow_hmac()`");
        }
        #[cfg(feature = "jwks")]
        let has_jwks = self.jwks.is_some();
        #[cfg(not(feature = "jwks"))]
        let has_jwks = false;
        if self.keys.is_empty() && !has_jwks {
            return config("a JWT verifier needs keys: static keys or a JWKS source");
        }
        for key in &self.keys {
            if !self.algorithms.contains(&key.alg) {
                return Err(AuthError::Config(format!(
                    "key {:?} is for {:?}, which is not an accepted algorithm{}",
                    key.kid,
                    key.alg,
                    if hmac(&key.alg) {
                        " (HMAC keys need `allow_hmac()`)"
                    } else {
                        ""
                    }
                )));
            }
        }
        if self.max_token_bytes == 0 {
            return config("`max_token_bytes` must be greater than 0");
        }
        Ok(())
    }
}
