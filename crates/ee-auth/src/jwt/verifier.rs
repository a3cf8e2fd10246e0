//! `JwtVerifier`: header, key, signature, claims, identity; the cache first.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ee_core::Clock;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::jwt::cache::{Entry, TokenCache, TokenDigest};
use crate::jwt::claims::ClaimRules;
#[cfg(feature = "jwks")]
use crate::jwt::jwks::JwksSource;
use crate::jwt::keys::{KeySet, Lookup, VerifyingKey};
use crate::{AuthError, Identity, RevocationCheck};

/// The clock a verifier reads: the process's, or one given (tests).
pub(crate) type TimeSource = ee_core::SharedClock;

/// Verifies JWTs and answers the caller's [`Identity`].
///
/// Cloning is a reference-count increment; clones share keys and cache.
/// A token goes through, in order: the size limit, the verified-token cache
/// (a hit still checks `exp` and revocation), the header (`alg` on the
/// allowlist, never `none`), its key (by `kid`; the key's own algorithm must
/// be the header's), the signature, then the claims (`exp`/`nbf` with
/// leeway against the verifier's clock, `iss`, `aud`, `sub`, the required
/// claims) and revocation of its `jti`.
///
/// ```
/// use ee_auth::{Algorithm, JwtVerifier, VerifyingKey};
///
/// let jwks = r#"{ "keys": [{ "kty": "OKP", "crv": "Ed25519", "kid": "k1",
///                 "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" }] }"#;
/// let verifier = JwtVerifier::builder()
///     .issuer("https://id.example.com")
///     .audience("orders")
///     .keys(VerifyingKey::from_jwk_set(jwks).unwrap())
///     .build()
///     .unwrap();
/// # let _ = verifier;
/// ```
#[derive(Clone)]
pub struct JwtVerifier {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) keys: KeySet,
    #[cfg(feature = "jwks")]
    pub(crate) jwks: Option<JwksSource>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) rules: ClaimRules,
    pub(crate) max_token_bytes: usize,
    pub(crate) cache: Option<Arc<TokenCache>>,
    pub(crate) revocations: Option<Arc<dyn RevocationCheck>>,
    pub(crate) time: TimeSource,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        let mut d = f.debug_struct("JwtVerifier");
        d.field("keys", &inner.keys.keys().collect::<Vec<_>>());
        #[cfg(feature = "jwks")]
        d.field("jwks", &inner.jwks);
        d.field("algorithms", &inner.algorithms)
            .field("issuers", &inner.rules.issuers)
            .field("audiences", &inner.rules.audiences)
            .field("cache", &inner.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// A verified token: its identity, and whether the cache answered.
pub(crate) struct Verified {
    pub(crate) identity: Identity,
    pub(crate) cached: bool,
}

/// The outcome of verifying without waiting.
pub(crate) enum Attempt {
    /// Verified or refused.
    Done(Result<Verified, AuthError>),
    /// The token's `kid` is not among the JWKS keys: a refresh may bring it.
    /// `seen` is the key source's attempt count the lookup saw.
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    UnknownKid { seen: u64 },
}

/// The parts of a JWS header the verifier reads.
struct Header {
    alg: Algorithm,
    kid: Option<String>,
}

fn malformed() -> AuthError {
    AuthError::invalid_token("the token is malformed")
}

/// The header of `token`: `alg` (never `none`, only a known name) and `kid`.
/// A header with `crit` or `b64` is refused: no extension is supported.
fn parse_header(encoded: &str) -> Result<Header, AuthError> {
    #[derive(serde::Deserialize)]
    struct Raw {
        alg: String,
        kid: Option<String>,
        crit: Option<serde::de::IgnoredAny>,
        b64: Option<serde::de::IgnoredAny>,
    }
    let json = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| malformed())?;
    let raw: Raw = serde_json::from_slice(&json).map_err(|_| malformed())?;
    if raw.crit.is_some() || raw.b64.is_some() {
        return Err(AuthError::invalid_token(
            "the token's header uses an unsupported extension",
        ));
    }
    let alg = raw
        .alg
        .parse::<Algorithm>()
        .map_err(|_| AuthError::invalid_token("the token's algorithm is not accepted"))?;
    Ok(Header { alg, kid: raw.kid })
}

/// A token split at its two dots: header, payload, signature.
fn split(token: &str) -> Result<(&str, &str, &str), AuthError> {
    let mut parts = token.splitn(4, '.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && !s.is_empty() => {
            Ok((h, p, s))
        }
        _ => Err(malformed()),
    }
}

/// A key found for a token (shared, so a JWKS refresh cannot pull it away).
enum Found {
    Key(Arc<VerifyingKey>),
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))] // used by the JWKS refresh
    UnknownKid {
        seen: u64,
    },
}

impl JwtVerifier {
    /// A builder; see [`JwtVerifierBuilder`](crate::JwtVerifierBuilder).
    pub fn builder() -> crate::JwtVerifierBuilder {
        crate::JwtVerifierBuilder::new()
    }

    /// Verifies `token` (without `Bearer `): the caller's identity, or why
    /// not ([`AuthError::InvalidToken`], [`AuthError::Expired`], or
    /// [`AuthError::Unavailable`] when a token's unknown `kid` sent the
    /// verifier to a JWKS that could not be fetched).
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        match self.verify_now(token) {
            Attempt::Done(result) => result.map(|v| v.identity),
            Attempt::UnknownKid { seen } => self
                .verify_after_refresh(token, seen)
                .await
                .map(|v| v.identity),
        }
    }

    /// Verified tokens held in the cache (0 without a cache).
    pub fn cached_tokens(&self) -> u64 {
        self.inner.cache.as_ref().map_or(0, |c| c.entry_count())
    }

    /// Verifies without waiting: the cache, or the keys at hand.
    #[inline]
    pub(crate) fn verify_now(&self, token: &str) -> Attempt {
        let inner = &*self.inner;
        if token.len() > inner.max_token_bytes {
            return Attempt::Done(Err(AuthError::invalid_token("the token is too large")));
        }
        let digest = match (&inner.cache, TokenDigest::of(token)) {
            (Some(cache), Some((digest, signed))) => {
                if let Some(entry) = cache.get(&digest, signed) {
                    if entry.key_epoch == self.key_epoch() {
                        return Attempt::Done(self.cache_hit(cache, &digest, entry));
                    }
                    // Verified before a key was dropped: verify it again.
                    cache.remove(&digest);
                }
                Some(digest)
            }
            _ => None,
        };
        self.verify_uncached(token, digest, true)
    }

    fn cache_hit(
        &self,
        cache: &TokenCache,
        digest: &TokenDigest,
        entry: Entry,
    ) -> Result<Verified, AuthError> {
        let inner = &*self.inner;
        let now_secs = inner.time.unix_ms() / 1000;
        if now_secs > entry.exp.saturating_add(inner.rules.leeway_secs) {
            cache.remove(digest);
            return Err(AuthError::Expired);
        }
        self.check_revoked(&entry.identity)?;
        Ok(Verified {
            identity: entry.identity,
            cached: true,
        })
    }

    /// Changes whenever a JWKS refresh drops a key (0 without a JWKS).
    #[inline]
    fn key_epoch(&self) -> u64 {
        #[cfg(feature = "jwks")]
        if let Some(jwks) = &self.inner.jwks {
            return jwks.removals();
        }
        0
    }

    fn check_revoked(&self, identity: &Identity) -> Result<(), AuthError> {
        if let (Some(revocations), Some(jti)) = (&self.inner.revocations, identity.token_id())
            && revocations.is_revoked(jti)
        {
            return Err(AuthError::invalid_token("the token was revoked"));
        }
        Ok(())
    }

    /// After a JWKS refresh for an unknown `kid`: verifies with the keys it
    /// brought, or refuses (the refresh was throttled or the kid is still unknown).
    #[cfg(feature = "jwks")]
    pub(crate) async fn verify_after_refresh(
        &self,
        token: &str,
        seen: u64,
    ) -> Result<Verified, AuthError> {
        if let Some(jwks) = &self.inner.jwks {
            jwks.refresh_for_unknown_kid(seen).await?;
        }
        let digest = self
            .inner
            .cache
            .as_ref()
            .and_then(|_| TokenDigest::of(token))
            .map(|(digest, _)| digest);
        match self.verify_uncached(token, digest, false) {
            Attempt::Done(result) => result,
            Attempt::UnknownKid { .. } => Err(unknown_kid()),
        }
    }

    #[cfg(not(feature = "jwks"))]
    pub(crate) async fn verify_after_refresh(
        &self,
        _token: &str,
        _seen: u64,
    ) -> Result<Verified, AuthError> {
        Err(unknown_kid())
    }

    /// Header, key, signature, claims; caches the identity.
    fn verify_uncached(
        &self,
        token: &str,
        digest: Option<TokenDigest>,
        may_refresh: bool,
    ) -> Attempt {
        let inner = &*self.inner;
        let (header_b64, payload_b64, signature) = match split(token) {
            Ok(parts) => parts,
            Err(e) => return Attempt::Done(Err(e)),
        };
        let header = match parse_header(header_b64) {
            Ok(h) => h,
            Err(e) => return Attempt::Done(Err(e)),
        };
        if !inner.algorithms.contains(&header.alg) {
            return Attempt::Done(Err(AuthError::invalid_token(
                "the token's algorithm is not accepted",
            )));
        }
        let key = match self.find_key(&header) {
            Ok(Found::Key(key)) => key,
            Ok(Found::UnknownKid { seen }) if may_refresh => return Attempt::UnknownKid { seen },
            Ok(Found::UnknownKid { .. }) => return Attempt::Done(Err(unknown_kid())),
            Err(e) => return Attempt::Done(Err(e)),
        };
        let message = &token[..header_b64.len() + 1 + payload_b64.len()];
        Attempt::Done(self.verify_with(&key, &header, message, payload_b64, signature, digest))
    }

    fn verify_with(
        &self,
        key: &VerifyingKey,
        header: &Header,
        message: &str,
        payload_b64: &str,
        signature: &str,
        digest: Option<TokenDigest>,
    ) -> Result<Verified, AuthError> {
        let inner = &*self.inner;
        // The key's own algorithm, never the one the token asks for.
        if key.alg != header.alg {
            return Err(AuthError::invalid_token(
                "the token's algorithm does not match its key",
            ));
        }
        let valid = jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.key, key.alg)
            .unwrap_or(false);
        if !valid {
            return Err(AuthError::invalid_token("the token's signature is invalid"));
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| malformed())?;
        let claims: Map<String, Value> =
            serde_json::from_slice(&payload).map_err(|_| malformed())?;
        let exp = inner.rules.check(&claims, inner.time.unix_ms() / 1000)?;
        let identity = inner.rules.identity(claims, exp);
        self.check_revoked(&identity)?;
        if let (Some(cache), Some(digest)) = (&inner.cache, digest) {
            cache.insert(
                digest,
                Entry {
                    signed: message.into(),
                    identity: identity.clone(),
                    exp,
                    key_epoch: self.key_epoch(),
                },
            );
        }
        Ok(Verified {
            identity,
            cached: false,
        })
    }

    /// The token's key: the static keys first, then the JWKS.
    fn find_key(&self, header: &Header) -> Result<Found, AuthError> {
        let inner = &*self.inner;
        let kid = header.kid.as_deref();
        let in_static = inner.keys.find(kid, header.alg);
        if let Lookup::Found(key) = in_static {
            return Ok(Found::Key(key.clone()));
        }
        #[cfg(feature = "jwks")]
        if let Some(jwks) = &inner.jwks {
            let (keys, seen) = jwks.snapshot();
            return match keys.find(kid, header.alg) {
                Lookup::Found(key) => Ok(Found::Key(key.clone())),
                Lookup::UnknownKid => Ok(Found::UnknownKid { seen }),
                Lookup::Ambiguous => Err(ambiguous()),
            };
        }
        match in_static {
            Lookup::Ambiguous => Err(ambiguous()),
            _ => Err(unknown_kid()),
        }
    }
}

fn unknown_kid() -> AuthError {
    AuthError::invalid_token("the token's key is unknown")
}

fn ambiguous() -> AuthError {
    AuthError::invalid_token("the token names no key and no single key of its algorithm exists")
}
