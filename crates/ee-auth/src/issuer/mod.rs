//! Issuing tokens (feature `issuer`): Argon2id passwords, signing keys
//! published as a JWKS, access and service tokens, rotating refresh-token
//! families with reuse detection, and the revocation list.
//!
//! The parts stand alone ([`Passwords`], [`SigningKeys`], [`TokenIssuer`],
//! [`ServiceTokens`], [`RefreshTokens`], [`RevocationList`]); [`Issuer`]
//! bundles the three a login service needs together for login and logout.

mod access;
mod config;
mod keyset;
mod password;
mod refresh;
mod require;
mod revocation;
mod service;

use ee_core::{Clock, SystemClock};
use rand::RngCore;

pub use self::access::{Grant, IssuedToken, TokenIssuer, TokenIssuerBuilder};
pub use self::config::{
    IssuerConfig, KeyConfig, KeyStatus, PasswordConfig, RefreshConfig, RevocationConfig,
    SigningAlgorithm,
};
pub use self::keyset::{SigningKey, SigningKeys};
pub use self::password::{PasswordCheck, Passwords};
#[cfg(feature = "redis")]
pub use self::refresh::RedisRefreshStore;
pub use self::refresh::{
    AnyRefreshStore, IssuedRefresh, MAX_USED_TOKENS, MemoryRefreshStore, NewFamily, RefreshStore,
    RefreshTokens, RotateOutcome, Rotated, Rotation, TokenHash,
};
pub use self::require::{RequireService, RequireServiceFuture, RequireServiceLayer};
pub use self::revocation::{RevocationList, RevocationListBuilder};
pub use self::service::{ServiceToken, ServiceTokens};
use crate::AuthError;

/// `N` random bytes from the thread's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// `len` random bytes, base64url without padding.
pub(crate) fn random_token(len: usize) -> String {
    use base64::Engine;
    let mut bytes = vec![0; len];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A login's tokens: a signed access token and the first refresh token of a
/// new family.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Session {
    /// The access token.
    pub access: IssuedToken,
    /// The refresh token and its family.
    pub refresh: IssuedRefresh,
}

/// What [`Issuer::logout`] ends: the access token still in the client's
/// hands and, if known, the refresh-token family of the session.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Logout {
    /// The access token's `jti`.
    pub access_jti: String,
    /// The access token's `exp` (seconds since the Unix epoch).
    pub access_expires_at: u64,
    /// The refresh-token family, if the session has one.
    pub refresh_family: Option<String>,
}

impl Logout {
    /// Ends the access token `jti` (expiring at `expires_at`).
    pub fn access(jti: impl Into<String>, expires_at: u64) -> Self {
        Self {
            access_jti: jti.into(),
            access_expires_at: expires_at,
            refresh_family: None,
        }
    }

    /// Also revokes the refresh-token family `family`.
    pub fn with_refresh_family(mut self, family: impl Into<String>) -> Self {
        self.refresh_family = Some(family.into());
        self
    }
}

/// The issuing side of a login service: access tokens, refresh-token
/// families and the revocation list, for login ([`issue_session`](Self::issue_session))
/// and logout ([`logout`](Self::logout)). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Issuer<S = AnyRefreshStore, C: Clock = SystemClock> {
    tokens: TokenIssuer<C>,
    refresh: RefreshTokens<S, C>,
    revocations: RevocationList<C>,
}

impl<S: RefreshStore, C: Clock> Issuer<S, C> {
    /// Bundles the three parts.
    pub fn new(
        tokens: TokenIssuer<C>,
        refresh: RefreshTokens<S, C>,
        revocations: RevocationList<C>,
    ) -> Self {
        Self {
            tokens,
            refresh,
            revocations,
        }
    }

    /// The access-token issuer.
    pub fn tokens(&self) -> &TokenIssuer<C> {
        &self.tokens
    }

    /// The refresh tokens.
    pub fn refresh(&self) -> &RefreshTokens<S, C> {
        &self.refresh
    }

    /// The revocation list (hand it to the verifier as its `RevocationCheck`).
    pub fn revocations(&self) -> &RevocationList<C> {
        &self.revocations
    }

    /// After a successful login: an access token for `grant` and a new
    /// refresh-token family for its subject.
    pub async fn issue_session(&self, grant: &Grant) -> Result<Session, AuthError> {
        let access = self.tokens.issue_access(grant)?;
        let refresh = self.refresh.issue(&grant.subject).await?;
        Ok(Session { access, refresh })
    }

    /// Ends a session: the access token is revoked until it expires, and the
    /// refresh-token family (if given) rotates no more.
    pub async fn logout(&self, logout: &Logout) -> Result<(), AuthError> {
        self.revocations
            .revoke(&logout.access_jti, logout.access_expires_at)
            .await?;
        if let Some(family) = &logout.refresh_family {
            self.refresh.revoke_family(family).await?;
        }
        Ok(())
    }
}
