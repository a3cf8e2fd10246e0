//! Who is calling, and whether they may: the platform on ee-auth.
//!
//! - The user service signs sessions (EdDSA access tokens, 15 minutes;
//!   rotating refresh tokens) and publishes its keys at
//!   `/.well-known/jwks.json`.
//! - The gateway and **every** service verify the bearer token themselves:
//!   an internal caller without a valid token gets 401, wherever it calls
//!   from. Services that call others (order, notification) do it with
//!   service tokens (`sub: service:<name>`, `aud: <callee>`, 60 s), minted
//!   with the same keys.
//! - Processes that hold the signing keys verify with them; the others read
//!   the user service's JWKS (refreshed every `jwks_refresh_secs`, and at
//!   once for an unknown `kid`).
//! - A logout revokes the access token everywhere (the revocation list, on
//!   Redis when there is one) and the session's refresh-token family.
//! - `admin` (RBAC) may read every user, order and notification, manage the
//!   catalogue and reach the operators' endpoints; the emails in `admins`
//!   get it at login.

use std::sync::Arc;
use std::time::Duration;

use ee_auth::{
    AnyRefreshStore, AuthLayer, Decision, Identity, IssuerConfig, JwksSource, JwtVerifier,
    MemoryRefreshStore, Rbac, RefreshTokens, RevocationList, RoleConfig, ServiceTokens,
    TokenIssuer, VerifyingKey,
};
use serde::{Deserialize, Serialize};

use crate::StartError;
use crate::common::Redis;

/// The audience of the platform's access tokens.
pub const AUDIENCE: &str = "ee-platform";

/// The role that may read everything and manage the catalogue.
pub const ADMIN: &str = "admin";

/// Authentication settings (`[auth]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Token issuing (ee-auth's `IssuerConfig`): `issuer` (default
    /// `ee-platform`), `audiences` (default `["ee-platform"]`), lifetimes,
    /// and the signing `keys` (PKCS#8 PEM, inline or in a file, rotated by
    /// configuration: `next` → `active` → `retired`). Without keys, embedded
    /// mode generates one at start (tokens die with the process); a service
    /// per process refuses to start without them where it signs (user,
    /// order, notification).
    pub issuer: IssuerConfig,
    /// Emails given the `admin` role when they log in.
    pub admins: Vec<String>,
    /// How often a process without the keys refreshes the JWKS, in seconds
    /// (default 60).
    pub jwks_refresh_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        let mut issuer = IssuerConfig::default();
        issuer.issuer = "ee-platform".to_owned();
        issuer.audiences = vec![AUDIENCE.to_owned()];
        Self {
            issuer,
            admins: Vec::new(),
            jwks_refresh_secs: 60,
        }
    }
}

/// Where a process gets the keys it verifies with.
#[derive(Clone)]
enum Keys {
    /// Its own signing keys' public halves.
    Local(Vec<VerifyingKey>),
    /// The user service's JWKS.
    Jwks(JwksSource),
}

/// One process's authentication state, shared by the services it runs.
#[derive(Clone)]
pub struct PlatformAuth {
    settings: Arc<AuthSettings>,
    /// Signs, when this process holds the keys.
    tokens: Option<TokenIssuer>,
    keys: Keys,
    revocations: RevocationList,
    refresh: RefreshTokens<AnyRefreshStore>,
    rbac: Rbac,
}

impl std::fmt::Debug for PlatformAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformAuth")
            .field("issuer", &self.settings.issuer.issuer)
            .field("signs", &self.tokens.is_some())
            .finish_non_exhaustive()
    }
}

/// How a process is to get its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    /// Every service in this process (embedded mode): sign, with an
    /// ephemeral key when none is configured.
    Embedded,
    /// One service that signs (user, order, notification): keys required.
    Signer,
    /// One service that only verifies: the JWKS of the user service.
    Verifier,
}

fn start_error(what: &str) -> impl Fn(ee_auth::AuthError) -> StartError + '_ {
    move |e| StartError(format!("auth: {what}: {e}"))
}

impl PlatformAuth {
    /// The state for one process. `jwks_urls`: the user service's JWKS
    /// (each instance's), read in [`KeyMode::Verifier`], retried for up to
    /// 30 s while the user service starts.
    ///
    /// # Errors
    /// Keys that cannot be read, none where they are needed, no JWKS.
    pub async fn start(
        settings: &AuthSettings,
        mode: KeyMode,
        redis: Option<&Redis>,
        jwks_urls: &[String],
    ) -> Result<Self, StartError> {
        let mut issuer = settings.issuer.clone();
        if issuer.keys.is_empty() {
            match mode {
                KeyMode::Embedded => issuer.ephemeral_key = true,
                KeyMode::Signer => {
                    return Err(StartError(
                        "auth: this service signs tokens: configure [[auth.issuer.keys]] (a PKCS#8 PEM, the same for every user, order and notification instance; scripts/platform makes one)".to_owned(),
                    ));
                }
                KeyMode::Verifier => {}
            }
        }
        let tokens = if issuer.keys.is_empty() && !issuer.ephemeral_key {
            None
        } else {
            Some(
                TokenIssuer::builder()
                    .config(&issuer)
                    .and_then(ee_auth::TokenIssuerBuilder::build)
                    .map_err(start_error("signing keys"))?,
            )
        };
        let keys = match &tokens {
            Some(t) => Keys::Local(
                VerifyingKey::from_jwk_set(&t.jwks().to_string())
                    .map_err(start_error("verifying keys"))?,
            ),
            None => Keys::Jwks(jwks(jwks_urls, settings.jwks_refresh_secs).await?),
        };
        let revocations = RevocationList::builder()
            .config(&issuer.revocation)
            .map_err(start_error("revocation list"))?;
        let (revocations, refresh) = match redis {
            Some(r) => (
                revocations
                    .redis(r.conn.clone())
                    .await
                    .map_err(start_error("revocation list on Redis"))?,
                RefreshTokens::new(ee_auth::RedisRefreshStore::new(r.conn.clone()).into()),
            ),
            None => (
                revocations.memory(),
                RefreshTokens::new(
                    MemoryRefreshStore::new()
                        .config(&issuer.refresh)
                        .map_err(start_error("refresh tokens"))?
                        .into(),
                ),
            ),
        };
        let refresh = refresh
            .config(&issuer.refresh)
            .map_err(start_error("refresh tokens"))?;
        let rbac = Rbac::builder()
            .role(
                ADMIN,
                RoleConfig::new().permissions([
                    "user:read",
                    "order:read",
                    "notification:read",
                    "payment:read",
                    "product:write",
                    "ops:read",
                ]),
            )
            .build()
            .map_err(start_error("roles"))?;
        Ok(Self {
            settings: Arc::new(settings.clone()),
            tokens,
            keys,
            revocations,
            refresh,
            rbac,
        })
    }

    /// The authentication layer of `service` (`gateway` for the gateway):
    /// a bearer token is verified (issuer, audience `ee-platform` or the
    /// service's own name, expiry, revocation); a request without one
    /// passes with no identity, and each route says whether it needs one.
    ///
    /// # Errors
    /// The verifier cannot be built.
    pub fn layer(&self, service: &str) -> Result<AuthLayer, StartError> {
        let mut verifier = JwtVerifier::builder()
            .issuer(self.settings.issuer.issuer.clone())
            .audience(AUDIENCE)
            .revocations(Arc::new(self.revocations.clone()));
        if service != "gateway" {
            // Service tokens are minted for their callee.
            verifier = verifier.audience(service);
        }
        verifier = match &self.keys {
            Keys::Local(keys) => verifier.keys(keys.iter().cloned()),
            Keys::Jwks(source) => verifier.jwks(source.clone()),
        };
        let verifier = verifier.build().map_err(start_error("verifier"))?;
        AuthLayer::builder()
            .jwt(verifier)
            .allow_anonymous()
            .build()
            .map_err(start_error("layer"))
    }

    /// Service tokens of `service`, when this process signs.
    pub fn service_tokens(&self, service: &str) -> Option<ServiceTokens> {
        self.tokens
            .as_ref()
            .and_then(|t| ServiceTokens::new(t.clone(), service).ok())
    }

    /// The session issuer (the user service): access tokens, refresh
    /// families and the revocation list.
    ///
    /// # Errors
    /// This process does not sign.
    pub fn issuer(&self) -> Result<ee_auth::Issuer, StartError> {
        let tokens = self.tokens.clone().ok_or_else(|| {
            StartError("auth: the user service needs the signing keys".to_owned())
        })?;
        Ok(ee_auth::Issuer::new(
            tokens,
            self.refresh.clone(),
            self.revocations.clone(),
        ))
    }

    /// The JWKS this process publishes (the user service), if it signs.
    pub fn jwks(&self) -> Option<bytes::Bytes> {
        self.tokens.as_ref().map(|t| t.keys().jwks_bytes())
    }

    /// The roles (RBAC), for [`ee_auth::require`] and [`Self::may`].
    pub fn rbac(&self) -> &Rbac {
        &self.rbac
    }

    /// Whether `identity` holds `permission` (`order:read`) through its
    /// roles.
    pub fn may(&self, identity: &Identity, permission: &str) -> bool {
        matches!(self.rbac.check(identity, permission), Decision::Allow(_))
    }

    /// The roles of the user with `email` at login.
    pub fn roles_of(&self, email: &str) -> Vec<String> {
        if self
            .settings
            .admins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(email))
        {
            vec![ADMIN.to_owned()]
        } else {
            Vec::new()
        }
    }
}

/// The user service's JWKS, from the first instance that answers; retried
/// for up to 30 s (the user service may be starting too).
async fn jwks(urls: &[String], refresh_secs: u64) -> Result<JwksSource, StartError> {
    if urls.is_empty() {
        return Err(StartError(
            "auth: no user service instance to read the JWKS from: list it in upstreams.user"
                .to_owned(),
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    loop {
        for url in urls {
            match JwksSource::builder(url.clone())
                .refresh_interval(Duration::from_secs(refresh_secs.max(1)))
                .fetch()
                .await
            {
                Ok(source) => return Ok(source),
                Err(e) => last = e.to_string(),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StartError(format!(
                "auth: the user service's JWKS could not be read for 30 s (last: {last})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether `identity` is the service token of one of `services`.
pub fn is_service(identity: &Identity, services: &[&str]) -> bool {
    identity
        .service_name()
        .is_some_and(|name| services.contains(&name))
}
