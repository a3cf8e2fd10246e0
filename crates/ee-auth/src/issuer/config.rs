//! `IssuerConfig`: everything the issuing side reads from configuration.

use std::path::PathBuf;

use ee_core::Secret;
use serde::{Deserialize, Serialize};

use crate::AuthError;

/// The issuing side's configuration: issuer and audiences, lifetimes, signing
/// keys, password hashing, refresh-token families and the revocation list.
///
/// `Default` sets secure lifetimes and parameters, but names no issuer,
/// audience or key: a [`TokenIssuer`](crate::TokenIssuer) refuses to build
/// until they are set (or `ephemeral_key` is on, for development).
///
/// ```toml
/// issuer = "https://auth.example.com"
/// audiences = ["api"]
/// access_ttl_secs = 900
///
/// [[keys]]
/// kid = "2025-01"
/// alg = "EdDSA"
/// private_key_file = "/run/secrets/jwt-2025-01.pem"
/// status = "active"
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct IssuerConfig {
    /// The `iss` claim of every token (required).
    pub issuer: String,
    /// The `aud` claim of access tokens (at least one).
    pub audiences: Vec<String>,
    /// Access-token lifetime in seconds (default 900: 15 minutes).
    pub access_ttl_secs: u64,
    /// Service-token lifetime in seconds (default 60).
    pub service_token_ttl_secs: u64,
    /// The signing keys (see [`KeyConfig`]): exactly one `active`.
    pub keys: Vec<KeyConfig>,
    /// With no `keys`, generate one EdDSA key at start (development only: the
    /// key dies with the process and differs between instances). Default false.
    pub ephemeral_key: bool,
    /// Argon2id parameters and the bound on concurrent hashing.
    pub password: PasswordConfig,
    /// Refresh-token family lifetimes and the in-memory bound.
    pub refresh: RefreshConfig,
    /// The revocation list's bounds and Redis synchronisation.
    pub revocation: RevocationConfig,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audiences: Vec::new(),
            access_ttl_secs: 900,
            service_token_ttl_secs: 60,
            keys: Vec::new(),
            ephemeral_key: false,
            password: PasswordConfig::default(),
            refresh: RefreshConfig::default(),
            revocation: RevocationConfig::default(),
        }
    }
}

/// A signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// Ed25519 (`EdDSA`, RFC 8037): small, fast, deterministic. The default.
    #[default]
    EdDSA,
    /// ECDSA on P-256 with SHA-256 (`ES256`).
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (`RS256`), for verifiers that know nothing else.
    RS256,
}

impl SigningAlgorithm {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::EdDSA => "EdDSA",
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::RS256 => "RS256",
        }
    }
}

/// Where a key stands in its rotation.
///
/// Rotation, by configuration alone:
/// 1. add the new key as `next` and deploy: it is published in the JWKS, so
///    verifiers learn it before any token carries its `kid`;
/// 2. once every verifier's JWKS cache has refreshed, make it `active` and the
///    old one `retired`: new tokens are signed with the new key, the old one
///    still verifies what it signed;
/// 3. after the longest token lifetime (access and service tokens), remove the
///    retired key from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyStatus {
    /// Signs new tokens (exactly one key) and is published.
    #[default]
    Active,
    /// Published, not signing yet.
    Next,
    /// Published, no longer signing: it verifies the tokens it signed until they expire.
    Retired,
}

/// One signing key in configuration: a PKCS#8 PEM inline or in a file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KeyConfig {
    /// The key id (`kid`) tokens and the JWKS name it by.
    pub kid: String,
    /// The algorithm (default `EdDSA`).
    #[serde(default)]
    pub alg: SigningAlgorithm,
    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`; RS256 also
    /// takes PKCS#1 `RSA PRIVATE KEY`).
    #[serde(default)]
    pub private_key_pem: Option<Secret<String>>,
    /// A file holding the PEM, read when the keys are built.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// Where the key stands in its rotation (default `active`).
    #[serde(default)]
    pub status: KeyStatus,
}

impl KeyConfig {
    /// A key named `kid` with its PEM inline.
    pub fn pem(kid: impl Into<String>, alg: SigningAlgorithm, pem: Secret<String>) -> Self {
        Self {
            kid: kid.into(),
            alg,
            private_key_pem: Some(pem),
            private_key_file: None,
            status: KeyStatus::Active,
        }
    }

    /// A key named `kid` read from the PEM file `path`.
    pub fn file(kid: impl Into<String>, alg: SigningAlgorithm, path: impl Into<PathBuf>) -> Self {
        Self {
            kid: kid.into(),
            alg,
            private_key_pem: None,
            private_key_file: Some(path.into()),
            status: KeyStatus::Active,
        }
    }

    /// Sets the rotation status.
    pub fn with_status(mut self, status: KeyStatus) -> Self {
        self.status = status;
        self
    }
}

/// Argon2id parameters (OWASP's minimum by default: 19 MiB, 2 passes, 1 lane)
/// and the bounds that keep a login flood from exhausting the machine.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PasswordConfig {
    /// Memory per hash in KiB (default 19456).
    pub m_cost_kib: u32,
    /// Passes (default 2).
    pub t_cost: u32,
    /// Lanes (default 1).
    pub p_cost: u32,
    /// Hashes computed at once; more wait their turn (default 0: one per core).
    pub max_concurrent_hashes: usize,
    /// Longer passwords are refused before any hashing (default 1024 bytes).
    pub max_password_bytes: usize,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        Self {
            m_cost_kib: 19_456,
            t_cost: 2,
            p_cost: 1,
            max_concurrent_hashes: 0,
            max_password_bytes: 1024,
        }
    }
}

/// Refresh-token families: lifetimes and the in-memory store's bound.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RefreshConfig {
    /// A family (a login session) ends this long after the login, however
    /// often it rotates (default 30 days).
    pub absolute_ttl_secs: u64,
    /// A family ends when no token of it was rotated for this long (default 7 days).
    pub idle_ttl_secs: u64,
    /// Families the in-memory store holds; when full, expired families go
    /// first, then the longest idle (default 100 000).
    pub max_families: usize,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            absolute_ttl_secs: 30 * 24 * 3600,
            idle_ttl_secs: 7 * 24 * 3600,
            max_families: 100_000,
        }
    }
}

/// The revocation list: bounds and, when backed by Redis, how it converges.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RevocationConfig {
    /// Revoked ids held at most; a revocation beyond it is refused with
    /// [`AuthError::Unavailable`] (default 100 000).
    pub max_entries: usize,
    /// The longest a revocation may be held (default 86 400: a day). An entry
    /// lives until its token's `exp`; a token living longer than this cannot be
    /// revoked (`AuthError::Limit`): keep it ≥ the longest token lifetime.
    pub max_ttl_secs: u64,
    /// How often each instance pulls new revocations from Redis (default
    /// 250 ms: a revocation reaches every instance within about a second).
    pub poll_interval_ms: u64,
    /// How often each instance re-reads the whole list from Redis, in case it
    /// missed changes (default 60 s).
    pub resync_interval_secs: u64,
    /// Separates lists sharing one Redis (default `default`).
    pub namespace: String,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_ttl_secs: 86_400,
            poll_interval_ms: 250,
            resync_interval_secs: 60,
            namespace: "default".to_owned(),
        }
    }
}

pub(crate) fn require(ok: bool, what: &str) -> Result<(), AuthError> {
    if ok {
        Ok(())
    } else {
        Err(AuthError::Config(what.to_owned()))
    }
}
