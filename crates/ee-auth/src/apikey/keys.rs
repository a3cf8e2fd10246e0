//! `ApiKeys`: creating, verifying, revoking and listing keys over a store.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ee_core::{Clock, Secret, SharedClock};
use subtle::ConstantTimeEq;

use super::any::AnyApiKeyStore;
use super::cache::VerifiedCache;
use super::config::ApiKeyConfig;
use super::format::{ID_LEN, KeyFormat, dummy_hash, hash_secret, invalid_key};
use super::store::{ApiKeyRecord, ApiKeyStore, Inserted};
use crate::hooks::BoxFuture;
use crate::{ApiKeyVerifier, AuthError, Identity, Method};

/// Bounds on what a key is created with (they are stored and copied into
/// every [`Identity`]).
const MAX_OWNER_LEN: usize = 256;
const MAX_NAME_LEN: usize = 256;
const MAX_ITEM_LEN: usize = 128;
const MAX_ITEMS: usize = 64;

/// How many ids `create` draws before giving up (a collision of 71-bit ids
/// is already unlikely once).
const ID_ATTEMPTS: usize = 4;

/// What a new key is for. `owner` is required; the rest is optional.
///
/// ```
/// let new = ee_auth::NewApiKey {
///     owner: "user:anne".into(),
///     name: "CI deploy".into(),
///     scopes: vec!["orders:read".into()],
///     ..Default::default()
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewApiKey {
    /// Whose key it is: the subject of the [`Identity`] it verifies to
    /// (1 to 256 bytes, no control characters).
    pub owner: String,
    /// A label for people, at most 256 bytes.
    pub name: String,
    /// Scopes granted (at most 64, each 1 to 128 bytes).
    pub scopes: Vec<String>,
    /// Roles granted (at most 64, each 1 to 128 bytes).
    pub roles: Vec<String>,
    /// The tenant, if any (1 to 128 bytes).
    pub tenant: Option<String>,
    /// When the key stops verifying; `None` for never. Must be in the future.
    pub expires_at: Option<SystemTime>,
}

/// A key just created: its id (for `revoke` and listings) and the key itself,
/// which exists in plain text only here. Hand it to its owner once; it cannot
/// be shown again (only its hash is stored).
#[derive(Debug, Clone)]
pub struct CreatedKey {
    /// The lookup id (the middle part of the key).
    pub id: String,
    /// The whole key, `<prefix>_<id>_<secret>`; redacted in `Debug`.
    pub key: Secret<String>,
}

fn bad_input(what: String) -> AuthError {
    AuthError::InvalidRequest(what.into())
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), AuthError> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(bad_input(format!(
            "api key {field} must be 1 to {max} bytes without control characters"
        )));
    }
    Ok(())
}

fn check_items(field: &str, items: &[String]) -> Result<(), AuthError> {
    if items.len() > MAX_ITEMS {
        return Err(bad_input(format!(
            "an api key has at most {MAX_ITEMS} {field}"
        )));
    }
    items
        .iter()
        .try_for_each(|item| check_text(field, item, MAX_ITEM_LEN))
}

impl NewApiKey {
    fn validate(&self, now_ms: u64) -> Result<Option<u64>, AuthError> {
        check_text("owner", &self.owner, MAX_OWNER_LEN)?;
        if self.name.len() > MAX_NAME_LEN || self.name.chars().any(char::is_control) {
            return Err(bad_input(format!(
                "api key name must be at most {MAX_NAME_LEN} bytes without control characters"
            )));
        }
        check_items("scopes", &self.scopes)?;
        check_items("roles", &self.roles)?;
        if let Some(tenant) = &self.tenant {
            check_text("tenant", tenant, MAX_ITEM_LEN)?;
        }
        let expires_at_ms = self.expires_at.map(|at| {
            at.duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        });
        if expires_at_ms.is_some_and(|at| at <= now_ms) {
            return Err(bad_input("api key expires_at must be in the future".into()));
        }
        Ok(expires_at_ms)
    }
}

/// API keys over a store: [`create`](Self::create) (the plaintext key is
/// returned once), [`verify`](Self::verify) (the owner's [`Identity`]),
/// [`revoke`](Self::revoke), [`list`](Self::list). It implements
/// [`ApiKeyVerifier`], so the auth layer accepts `Authorization: Bearer
/// <key>` for keys with its prefix. Clones share the store and the cache.
///
/// ```
/// use ee_auth::{ApiKeys, MemoryApiKeys, Method, NewApiKey};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ee_auth::AuthError> {
/// let keys = ApiKeys::new(MemoryApiKeys::new());
/// let created = keys
///     .create(NewApiKey { owner: "user:anne".into(), scopes: vec!["orders:read".into()], ..Default::default() })
///     .await?;
/// let identity = keys.verify(created.key.expose()).await?;
/// assert_eq!((identity.id(), identity.method()), ("user:anne", Method::ApiKey));
/// assert!(identity.has_scope("orders:read"));
/// keys.revoke(&created.id).await?;
/// assert!(keys.verify(created.key.expose()).await.is_err());
/// # Ok(()) }
/// ```
///
/// # Security
///
/// - **Hashing.** Stores keep SHA-256 of the secret. For a secret of 256
///   random bits a fast hash is the right one: nothing can be guessed from a
///   dictionary and 2^256 candidates cannot be tried, so a slow password hash
///   (Argon2) would only slow every request. A leaked store lets nobody in.
/// - **One answer, one amount of work.** An unknown id, a wrong secret, a
///   revoked and an expired key all answer [`AuthError::InvalidToken`]
///   `"invalid API key"`. Each reads the store once, hashes the presented
///   secret once and compares it in constant time (`subtle`): against the
///   record's hash, or, for an unknown id, against a dummy hash, so the
///   missing record is not skipped work. (Whether an *id* exists may still
///   show in the store's own timing; ids are not secrets and grant nothing.)
/// - **Malformed keys** (wrong prefix, wrong length, a character outside
///   base62) are refused before any store access, the length first, so a
///   100 KB header costs one comparison.
/// - **Outages fail closed.** A store that cannot be reached answers
///   [`AuthError::Unavailable`] (503 with `Retry-After`), never a pass:
///   [`ApiKeyConfig::on_backend_error`] accepts only `fail_closed`.
/// - **The cache and revocation.** Keys that verified are remembered for
///   [`ApiKeyConfig::cache_ttl_ms`] (5 s by default; a hit still hashes and
///   compares the presented secret). A key revoked through this `ApiKeys`
///   stops at once; revoked through another instance, it may still verify
///   here until its cache entry is older than the TTL. Set `cache_ttl_ms = 0`
///   when that delay is not acceptable.
/// - **`last_used`** is written at most once per
///   [`ApiKeyConfig::last_used_interval_ms`] per key and instance, in a
///   background task, never on the request's path (without the cache,
///   verifications that race the first write may each write once).
///
/// # Metrics
///
/// Each verification counts once in `ee_auth_authentications_total` with
/// `method="api_key"` and `outcome` `ok`, `cached` (a cache hit), `invalid`
/// (malformed, unknown, wrong secret, revoked), `expired` or `unavailable`
/// (the client sees the same 401 for `invalid` and `expired`).
pub struct ApiKeys<S = AnyApiKeyStore> {
    store: Arc<S>,
    format: KeyFormat,
    cache: Option<Arc<VerifiedCache>>,
    clock: SharedClock,
    touch_every_ms: u64,
}

impl<S> Clone for ApiKeys<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            format: self.format.clone(),
            cache: self.cache.clone(),
            clock: self.clock.clone(),
            touch_every_ms: self.touch_every_ms,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ApiKeys<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("store", &self.store)
            .field("prefix", &self.format.prefix())
            .field("cached", &self.cache.as_ref().map(|c| c.len()))
            .finish_non_exhaustive()
    }
}

impl<S: ApiKeyStore> ApiKeys<S> {
    /// Keys in `store`, with the default [`ApiKeyConfig`] (prefix `eek`, a
    /// 5 s cache of 10 000 keys) and the system clock. Verifications are
    /// counted by the [`AuthLayer`](crate::AuthLayer) that calls them
    /// (`ee_auth_authentications_total{method="api_key"}`), not here.
    pub fn new(store: S) -> Self {
        let config = ApiKeyConfig::default();
        Self {
            store: Arc::new(store),
            format: KeyFormat::new(&config.prefix).expect("the default prefix is valid"),
            cache: Some(Arc::new(VerifiedCache::new(
                Duration::from_millis(config.cache_ttl_ms),
                config.cache_capacity,
            ))),
            clock: SharedClock::System,
            touch_every_ms: config.last_used_interval_ms,
        }
    }

    /// Applies `config` (prefix, cache, `last_used` resolution), after
    /// checking it: a bad prefix, a cache TTL over 5 minutes or an
    /// `on_backend_error` other than `fail_closed` is an [`AuthError::Config`]
    /// that says how to fix it.
    ///
    /// ```
    /// use ee_auth::{ApiKeyConfig, ApiKeys, MemoryApiKeys};
    ///
    /// let open: ApiKeyConfig = serde_json::from_str(r#"{ "on_backend_error": "fail_open" }"#).unwrap();
    /// assert!(ApiKeys::new(MemoryApiKeys::new()).config(&open).is_err());
    /// ```
    pub fn config(mut self, config: &ApiKeyConfig) -> Result<Self, AuthError> {
        config.validate()?;
        self.format = KeyFormat::new(&config.prefix)?;
        self.cache = (config.cache_ttl_ms > 0).then(|| {
            Arc::new(VerifiedCache::new(
                Duration::from_millis(config.cache_ttl_ms),
                config.cache_capacity,
            ))
        });
        self.touch_every_ms = config.last_used_interval_ms;
        Ok(self)
    }

    /// Reads time from `clock` (tests: `ee_testing::ManualClock`).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = SharedClock::of(clock);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// How many verified keys the cache holds (0 without a cache).
    pub fn cached_keys(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.len())
    }

    /// The configured prefix (without its `_`).
    pub fn prefix(&self) -> &str {
        self.format.prefix()
    }

    /// Creates a key for `new.owner` and returns it, in plain text for the
    /// only time. [`AuthError::InvalidRequest`] for a field out of bounds or
    /// an `expires_at` in the past; the store's error when it cannot store
    /// (`Unavailable`, or `Limit` for a full memory store).
    pub async fn create(&self, new: NewApiKey) -> Result<CreatedKey, AuthError> {
        let now = self.clock.unix_ms();
        let expires_at_ms = new.validate(now)?;
        let mut record = ApiKeyRecord {
            id: String::new(),
            hash: [0; 32],
            owner: new.owner,
            name: new.name,
            scopes: new.scopes,
            roles: new.roles,
            tenant: new.tenant,
            created_at_ms: now,
            expires_at_ms,
            revoked_at_ms: None,
            last_used_ms: None,
        };
        for _ in 0..ID_ATTEMPTS {
            let generated = self.format.generate()?;
            record.id = generated.id;
            record.hash = generated.hash;
            if self.store.insert(&record).await? == Inserted::Stored {
                tracing::info!(key_id = %record.id, owner = %record.owner, "api key created");
                return Ok(CreatedKey {
                    id: record.id,
                    key: Secret::new(generated.key),
                });
            }
        }
        Err(AuthError::Limit(
            format!("no free api key id after {ID_ATTEMPTS} random draws").into(),
        ))
    }

    /// Revokes key `id`: it stops verifying at once on this instance, and on
    /// others within the cache TTL. Revoking twice is fine;
    /// [`AuthError::NotFound`] when there is no such key.
    pub async fn revoke(&self, id: &str) -> Result<(), AuthError> {
        if !is_id(id) {
            return Err(AuthError::NotFound);
        }
        if let Some(cache) = &self.cache {
            cache.remove(id);
        }
        self.store.revoke(id, self.clock.unix_ms()).await?;
        // Again: a verify that read the record before the revocation may have
        // cached it in between.
        if let Some(cache) = &self.cache {
            cache.remove(id);
        }
        tracing::info!(key_id = %id, "api key revoked");
        Ok(())
    }

    /// The record of key `id` (for an admin view, or to check its owner
    /// before revoking), or `None`.
    pub async fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>, AuthError> {
        if !is_id(id) {
            return Ok(None);
        }
        self.store.get(id).await
    }

    /// `owner`'s keys, revoked and expired ones included.
    pub async fn list(&self, owner: &str) -> Result<Vec<ApiKeyRecord>, AuthError> {
        check_text("owner", owner, MAX_OWNER_LEN)?;
        self.store.list(owner).await
    }

    /// Verifies a presented key: the owner's [`Identity`] (method
    /// [`Method::ApiKey`], the key's scopes, roles and tenant, `token_id` =
    /// the key id), or [`AuthError::InvalidToken`] `"invalid API key"` for
    /// any key that does not verify, or [`AuthError::Unavailable`] when the
    /// store cannot be reached (fail closed). See the type's *Security*
    /// section for what takes the same time.
    pub async fn verify(&self, presented: &str) -> Result<Identity, AuthError> {
        let Some(parsed) = self.format.parse(presented) else {
            return Err(invalid_key());
        };
        let hash = hash_secret(parsed.secret);
        let now = self.clock.unix_ms();
        if let Some(cache) = &self.cache
            && let Some(hit) = cache.lookup(parsed.id, &hash, now, self.touch_every_ms)
        {
            if hit.touch_due {
                self.touch(parsed.id, now);
            }
            return Ok(hit.identity);
        }
        let record = match self.store.get(parsed.id).await {
            Ok(record) => record,
            Err(e) => {
                return Err(e);
            }
        };
        // The same comparison whether or not the id exists.
        let stored = record.as_ref().map_or(dummy_hash(), |r| &r.hash);
        let matches = bool::from(hash.ct_eq(stored));
        let Some(record) = record.filter(|r| matches && !r.is_revoked()) else {
            return Err(invalid_key());
        };
        if record.is_expired(now) {
            return Err(invalid_key());
        }
        let identity = identity_of(&record);
        let last_touch = record.last_used_ms.unwrap_or(0);
        let touch_due =
            self.touch_every_ms > 0 && now.saturating_sub(last_touch) >= self.touch_every_ms;
        if touch_due {
            self.touch(parsed.id, now);
        }
        if let Some(cache) = &self.cache {
            let last_touch = if touch_due { now } else { last_touch };
            cache.insert(
                parsed.id,
                record.hash,
                identity.clone(),
                record.expires_at_ms,
                last_touch,
                now,
            );
        }
        Ok(identity)
    }

    /// Writes `last_used` in a background task (when there is a tokio
    /// runtime; otherwise it is skipped).
    fn touch(&self, id: &str, at_ms: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        let id = id.to_owned();
        runtime.spawn(async move {
            if let Err(e) = store.touch(&id, at_ms).await {
                tracing::debug!(key_id = %id, error = %e, "api key last_used not written");
            }
        });
    }
}

/// Whether `id` has the shape of a lookup id (so admin calls with junk never
/// reach the store).
fn is_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn identity_of(record: &ApiKeyRecord) -> Identity {
    let mut identity = Identity::new(record.owner.as_str(), Method::ApiKey)
        .with_scopes(record.scopes.iter().map(String::as_str))
        .with_roles(record.roles.iter().map(String::as_str))
        .with_token_id(record.id.as_str());
    if let Some(tenant) = &record.tenant {
        identity = identity.with_tenant(tenant.as_str());
    }
    if let Some(at) = record.expires_at_ms {
        identity = identity.with_expires_at(at / 1000);
    }
    identity
}

impl<S: ApiKeyStore> ApiKeyVerifier for ApiKeys<S> {
    fn recognizes(&self, credential: &str) -> bool {
        self.format.recognizes(credential)
    }

    fn verify_key<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(self.verify(key))
    }
}
