//! `JwtConfig`: what a [`JwtVerifier`](crate::JwtVerifier) accepts, as data.

use serde::{Deserialize, Serialize};

use jsonwebtoken::Algorithm;

/// The default leeway on `exp` and `nbf`, in seconds.
pub(crate) const DEFAULT_LEEWAY_SECS: u64 = 30;
/// The default largest token accepted, in bytes.
pub(crate) const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The default number of verified tokens kept.
pub(crate) const DEFAULT_CACHE_CAPACITY: u64 = 10_000;
/// The default interval between two background JWKS refreshes, in seconds.
pub(crate) const DEFAULT_JWKS_REFRESH_SECS: u64 = 300;
/// The default least interval between two refreshes caused by an unknown `kid`.
pub(crate) const DEFAULT_UNKNOWN_KID_MIN_INTERVAL_SECS: u64 = 10;
/// The default timeout of one JWKS fetch, in seconds.
pub(crate) const DEFAULT_JWKS_TIMEOUT_SECS: u64 = 5;
/// The default largest JWKS document accepted, in bytes.
pub(crate) const DEFAULT_JWKS_MAX_BYTES: usize = 1024 * 1024;

/// The asymmetric algorithms accepted by default.
pub(crate) const DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// What a [`JwtVerifier`](crate::JwtVerifier) accepts, loadable from any serde
/// source (ee-config, figment, JSON). Apply it with
/// [`JwtVerifierBuilder::config`](crate::JwtVerifierBuilder::config).
///
/// `Default` is the safe set-up: asymmetric algorithms only, 30 s leeway,
/// 8 KiB tokens at most, 10 000 cached tokens, JWKS refreshed every 5 minutes
/// and on an unknown `kid` at most once per 10 s. `issuers` and `audiences`
/// have no default: a verifier refuses to build without both.
///
/// ```
/// let config: ee_auth::JwtConfig = serde_json::from_str(r#"{
///     "issuers": ["https://id.example.com"],
///     "audiences": ["orders"],
///     "jwks_url": "https://id.example.com/.well-known/jwks.json",
///     "roles_claim": "realm_access.roles"
/// }"#).unwrap();
/// assert_eq!(config.leeway_secs, 30);
/// assert!(serde_json::from_str::<ee_auth::JwtConfig>(r#"{ "issuer": "x" }"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted `iss` values (at least one).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (at least one); a token names one of them.
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (default 30).
    pub leeway_secs: u64,
    /// Accepted algorithms (default: RS256/384/512, PS256/384/512, ES256/384,
    /// EdDSA). HS256/384/512 are accepted only with `allow_hmac`.
    pub algorithms: Vec<Algorithm>,
    /// Accept HMAC (HS256/384/512) keys and tokens (default false: a shared
    /// secret lets every verifier mint tokens).
    pub allow_hmac: bool,
    /// Where to fetch the key set (JWKS). Use `https` in production; plain
    /// `http` is accepted for tests and local issuers.
    pub jwks_url: Option<String>,
    /// Seconds between two background JWKS refreshes (default 300).
    pub jwks_refresh_secs: u64,
    /// Least seconds between two refreshes caused by an unknown `kid`
    /// (default 10): a flood of random `kid`s causes at most one fetch per interval.
    pub unknown_kid_min_interval_secs: u64,
    /// Timeout of one JWKS fetch, in seconds (default 5).
    pub jwks_timeout_secs: u64,
    /// Largest JWKS document accepted, in bytes (default 1 MiB).
    pub jwks_max_bytes: usize,
    /// Largest token accepted, in bytes (default 8192); larger ones are
    /// refused before they are parsed.
    pub max_token_bytes: usize,
    /// Verified tokens kept (default 10 000); 0 turns the cache off.
    pub cache_capacity: u64,
    /// The claim holding the roles, an array of strings (default `roles`); a
    /// dotted path reaches into objects (`realm_access.roles`).
    pub roles_claim: String,
    /// The claim holding the tenant, a string (default `tenant`); dotted paths
    /// as for `roles_claim`.
    pub tenant_claim: String,
    /// Claims every token must carry (besides `sub`, `exp`, `iss` and `aud`,
    /// which are always required).
    pub required_claims: Vec<String>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            allow_hmac: false,
            jwks_url: None,
            jwks_refresh_secs: DEFAULT_JWKS_REFRESH_SECS,
            unknown_kid_min_interval_secs: DEFAULT_UNKNOWN_KID_MIN_INTERVAL_SECS,
            jwks_timeout_secs: DEFAULT_JWKS_TIMEOUT_SECS,
            jwks_max_bytes: DEFAULT_JWKS_MAX_BYTES,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            roles_claim: "roles".into(),
            tenant_claim: "tenant".into(),
            required_claims: Vec::new(),
        }
    }
}
