//! Refresh tokens: opaque, rotated on every use, grouped in families (one per
//! login), stored only as SHA-256 hashes, with reuse detection.
//!
//! A token is `<family>.<secret>`: 128 random bits naming the family and 256
//! random bits of secret. The store keeps, per family, the hash of the current
//! token and of the last [`MAX_USED_TOKENS`] used ones. Presenting:
//!
//! - the current token rotates it: a new token, the old one becomes *used*;
//! - a used token is **reuse** (it was stolen, or the client lost a race):
//!   the whole family is revoked, so the newest token stops working too,
//!   [`METRIC_REFRESH_REUSE_TOTAL`](crate::METRIC_REFRESH_REUSE_TOTAL) counts
//!   it and a warning names the family (never the token);
//! - anything else (unknown, forged secret, expired or revoked family) is
//!   [`AuthError::InvalidToken`] and changes nothing.
//!
//! A family ends `absolute_ttl` after the login however often it rotates,
//! and `idle_ttl` after its last rotation.

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ee_core::{Clock, Secret, SystemClock};
use sha2::{Digest, Sha256};

pub use self::memory::MemoryRefreshStore;
#[cfg(feature = "redis")]
pub use self::redis::RedisRefreshStore;
use super::config::RefreshConfig;
use super::random_token;
use crate::AuthError;
use crate::metrics::{METRIC_REFRESH_REUSE_TOTAL, describe_metrics};

/// Used tokens remembered per family (for reuse detection); a token used
/// longer ago than this many rotations is merely unknown.
pub const MAX_USED_TOKENS: usize = 1024;

/// Longest subject a family accepts, in bytes.
const MAX_SUBJECT_BYTES: usize = 1024;

const FAMILY_CHARS: usize = 22; // 16 bytes, base64url
const SECRET_CHARS: usize = 43; // 32 bytes, base64url

/// SHA-256 of a refresh token: what stores keep instead of the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A family to create: its first token's hash and its lifetimes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewFamily<'a> {
    /// The family id.
    pub family: &'a str,
    /// Whose session it is.
    pub subject: &'a str,
    /// The first token's hash.
    pub token: TokenHash,
    /// Now, ms since the Unix epoch.
    pub now_ms: u64,
    /// The end of the family's life, ms since the Unix epoch.
    pub absolute_expiry_ms: u64,
    /// When it ends unless rotated first, ms since the Unix epoch.
    pub idle_expiry_ms: u64,
}

/// One rotation to decide atomically.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Rotation<'a> {
    /// The family named by the presented token.
    pub family: &'a str,
    /// The presented token's hash.
    pub presented: TokenHash,
    /// The hash of the token that replaces it.
    pub next: TokenHash,
    /// Now, ms since the Unix epoch.
    pub now_ms: u64,
    /// The idle expiry after this rotation, ms since the Unix epoch.
    pub idle_expiry_ms: u64,
}

/// What a store decided about a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotateOutcome {
    /// The presented token was current: `next` is now.
    Rotated {
        /// The family's subject.
        subject: String,
        /// How many rotations the family has had, this one included.
        generation: u64,
        /// The family's absolute expiry, ms since the Unix epoch.
        absolute_expiry_ms: u64,
    },
    /// The presented token was used before: the family is now revoked.
    Reused {
        /// The family's subject.
        subject: String,
    },
    /// No such family, or a token that never belonged to it.
    Unknown,
    /// The family outlived its absolute or idle lifetime.
    Expired,
    /// The family was revoked (reuse, logout) before.
    Revoked,
}

/// Where refresh-token families live. Each method is one atomic step: two
/// rotations of one token at once must yield one `Rotated` and one `Reused`.
pub trait RefreshStore: Send + Sync + 'static {
    /// Creates a family.
    fn create(&self, family: &NewFamily<'_>) -> impl Future<Output = Result<(), AuthError>> + Send;

    /// Decides and applies a rotation.
    fn rotate(
        &self,
        rotation: &Rotation<'_>,
    ) -> impl Future<Output = Result<RotateOutcome, AuthError>> + Send;

    /// Revokes a family; false if there was none.
    fn revoke(&self, family: &str) -> impl Future<Output = Result<bool, AuthError>> + Send;
}

/// A refresh store picked at run time: memory or Redis.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyRefreshStore {
    /// In process (one instance, or tests).
    Memory(MemoryRefreshStore),
    /// Shared by every instance through Redis.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Redis(RedisRefreshStore),
}

impl From<MemoryRefreshStore> for AnyRefreshStore {
    fn from(store: MemoryRefreshStore) -> Self {
        AnyRefreshStore::Memory(store)
    }
}

#[cfg(feature = "redis")]
impl From<RedisRefreshStore> for AnyRefreshStore {
    fn from(store: RedisRefreshStore) -> Self {
        AnyRefreshStore::Redis(store)
    }
}

impl RefreshStore for AnyRefreshStore {
    async fn create(&self, family: &NewFamily<'_>) -> Result<(), AuthError> {
        match self {
            AnyRefreshStore::Memory(s) => s.create(family).await,
            #[cfg(feature = "redis")]
            AnyRefreshStore::Redis(s) => s.create(family).await,
        }
    }

    async fn rotate(&self, rotation: &Rotation<'_>) -> Result<RotateOutcome, AuthError> {
        match self {
            AnyRefreshStore::Memory(s) => s.rotate(rotation).await,
            #[cfg(feature = "redis")]
            AnyRefreshStore::Redis(s) => s.rotate(rotation).await,
        }
    }

    async fn revoke(&self, family: &str) -> Result<bool, AuthError> {
        match self {
            AnyRefreshStore::Memory(s) => s.revoke(family).await,
            #[cfg(feature = "redis")]
            AnyRefreshStore::Redis(s) => s.revoke(family).await,
        }
    }
}

/// A new family's first token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuedRefresh {
    /// The token to hand to the client (once; only its hash is stored).
    pub token: Secret<String>,
    /// The family id (keep it with the session, for logout).
    pub family: String,
    /// When the family ends at the latest, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// The result of a successful rotation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Rotated {
    /// The new token (the presented one is now used).
    pub token: Secret<String>,
    /// Whose session it is.
    pub subject: String,
    /// The family id.
    pub family: String,
    /// Rotations so far in this family.
    pub generation: u64,
    /// When the family ends at the latest, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Issues and rotates refresh tokens in a [`RefreshStore`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), ee_auth::AuthError> {
/// use ee_auth::{MemoryRefreshStore, RefreshTokens};
///
/// let refresh = RefreshTokens::new(MemoryRefreshStore::new());
/// let first = refresh.issue("user:42").await?;
/// let second = refresh.rotate(&first.token).await?;
/// assert_eq!(second.subject, "user:42");
/// // The first token again: reuse, the family is revoked.
/// assert!(refresh.rotate(&first.token).await.is_err());
/// assert!(refresh.rotate(&second.token).await.is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RefreshTokens<S, C: Clock = SystemClock> {
    store: S,
    absolute_ttl_ms: u64,
    idle_ttl_ms: u64,
    reuse: metrics::Counter,
    clock: C,
}

impl<S: fmt::Debug, C: Clock> fmt::Debug for RefreshTokens<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokens")
            .field("store", &self.store)
            .field("absolute_ttl_ms", &self.absolute_ttl_ms)
            .field("idle_ttl_ms", &self.idle_ttl_ms)
            .finish_non_exhaustive()
    }
}

impl<S: RefreshStore> RefreshTokens<S> {
    /// Families in `store`, with the default lifetimes (30 days absolute,
    /// 7 days idle). Registers the reuse counter (install the recorder first).
    pub fn new(store: S) -> Self {
        describe_metrics();
        let cfg = RefreshConfig::default();
        Self {
            store,
            absolute_ttl_ms: cfg.absolute_ttl_secs * 1000,
            idle_ttl_ms: cfg.idle_ttl_secs * 1000,
            reuse: metrics::counter!(METRIC_REFRESH_REUSE_TOTAL),
            clock: SystemClock,
        }
    }
}

impl<S: RefreshStore, C: Clock> RefreshTokens<S, C> {
    /// Applies the lifetimes of `cfg`.
    pub fn config(mut self, cfg: &RefreshConfig) -> Result<Self, AuthError> {
        if cfg.absolute_ttl_secs == 0 || cfg.idle_ttl_secs == 0 {
            return Err(AuthError::Config(
                "refresh: lifetimes must be at least one second".into(),
            ));
        }
        self.absolute_ttl_ms = cfg.absolute_ttl_secs.saturating_mul(1000);
        self.idle_ttl_ms = cfg.idle_ttl_secs.saturating_mul(1000);
        Ok(self)
    }

    /// Sets the absolute lifetime of a family.
    pub fn absolute_ttl(mut self, ttl: Duration) -> Self {
        self.absolute_ttl_ms = ttl.as_millis().max(1) as u64;
        self
    }

    /// Sets the idle lifetime of a family.
    pub fn idle_ttl(mut self, ttl: Duration) -> Self {
        self.idle_ttl_ms = ttl.as_millis().max(1) as u64;
        self
    }

    /// Reads time from `clock`.
    pub fn clock<C2: Clock>(self, clock: C2) -> RefreshTokens<S, C2> {
        RefreshTokens {
            store: self.store,
            absolute_ttl_ms: self.absolute_ttl_ms,
            idle_ttl_ms: self.idle_ttl_ms,
            reuse: self.reuse,
            clock,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Starts a family for `subject` (at login): its first token.
    pub async fn issue(&self, subject: &str) -> Result<IssuedRefresh, AuthError> {
        if subject.is_empty() || subject.len() > MAX_SUBJECT_BYTES {
            return Err(AuthError::Config(format!(
                "refresh: a subject is 1 to {MAX_SUBJECT_BYTES} bytes"
            )));
        }
        let now = self.clock.unix_ms();
        let family = random_token(16);
        let token = new_token(&family);
        let absolute_expiry_ms = now + self.absolute_ttl_ms;
        self.store
            .create(&NewFamily {
                family: &family,
                subject,
                token: TokenHash::of(&token),
                now_ms: now,
                absolute_expiry_ms,
                idle_expiry_ms: (now + self.idle_ttl_ms).min(absolute_expiry_ms),
            })
            .await?;
        Ok(IssuedRefresh {
            token: Secret::new(token),
            family,
            expires_at: absolute_expiry_ms / 1000,
        })
    }

    /// Rotates `presented`: a new token for the same family, or an error.
    ///
    /// [`AuthError::InvalidToken`] for a malformed, unknown, expired or revoked
    /// token, and for reuse (which also revokes the family);
    /// [`AuthError::Unavailable`] when the store cannot be reached.
    pub async fn rotate(&self, presented: &Secret<String>) -> Result<Rotated, AuthError> {
        let presented = presented.expose();
        let family = parse(presented)?;
        let now = self.clock.unix_ms();
        let next = new_token(family);
        let outcome = self
            .store
            .rotate(&Rotation {
                family,
                presented: TokenHash::of(presented),
                next: TokenHash::of(&next),
                now_ms: now,
                idle_expiry_ms: now + self.idle_ttl_ms,
            })
            .await?;
        match outcome {
            RotateOutcome::Rotated {
                subject,
                generation,
                absolute_expiry_ms,
            } => Ok(Rotated {
                token: Secret::new(next),
                subject,
                family: family.to_owned(),
                generation,
                expires_at: absolute_expiry_ms / 1000,
            }),
            RotateOutcome::Reused { subject } => {
                self.reuse.increment(1);
                tracing::warn!(
                    family,
                    subject,
                    "refresh token reused: the family is revoked (a stolen token, or a client that lost a race)"
                );
                Err(AuthError::invalid_token(
                    "refresh token reused: the session is revoked",
                ))
            }
            RotateOutcome::Unknown => Err(AuthError::invalid_token("unknown refresh token")),
            RotateOutcome::Expired => {
                Err(AuthError::invalid_token("the refresh token has expired"))
            }
            RotateOutcome::Revoked => Err(AuthError::invalid_token("the session was revoked")),
        }
    }

    /// Revokes the family `family` (logout): none of its tokens rotates
    /// again. False if there was no such family.
    pub async fn revoke_family(&self, family: &str) -> Result<bool, AuthError> {
        if family.len() != FAMILY_CHARS || !is_b64url(family) {
            return Ok(false);
        }
        self.store.revoke(family).await
    }
}

fn new_token(family: &str) -> String {
    let mut token = String::with_capacity(FAMILY_CHARS + 1 + SECRET_CHARS);
    token.push_str(family);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(super::random_bytes::<32>(), &mut token);
    token
}

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The family id of a well-formed token.
fn parse(token: &str) -> Result<&str, AuthError> {
    let malformed = || AuthError::invalid_token("malformed refresh token");
    if token.len() != FAMILY_CHARS + 1 + SECRET_CHARS || !token.is_ascii() {
        return Err(malformed());
    }
    let (family, secret) = token.split_at(FAMILY_CHARS);
    let secret = secret.strip_prefix('.').ok_or_else(malformed)?;
    if !is_b64url(family) || !is_b64url(secret) {
        return Err(malformed());
    }
    Ok(family)
}
