//! `JwksSource`: verification keys fetched from a JWKS URL.
//!
//! - Fetched when the source is made: no key at all is an error then (a
//!   service does not start unable to verify anything).
//! - Refreshed in the background (default every 5 minutes) and when a token
//!   names an unknown `kid`. Unknown-`kid` refreshes are single-flight (the
//!   requests that arrive while one runs wait for it, then look again) and
//!   rate-limited: at most one per `unknown_kid_min_interval` (default 10 s);
//!   an unknown `kid` inside that interval is refused without a fetch and
//!   counted `ee_auth_jwks_refreshes_total{outcome="throttled"}`. So an
//!   issuer that rotates (publishes a new key, then signs with it) costs one
//!   fetch and no failed request, and a flood of random `kid`s cannot hammer it.
//! - When a fetch fails, the last good keys stay; the request whose unknown
//!   `kid` caused the failed fetch (and those waiting on it) get
//!   [`AuthError::Unavailable`] (503, retry), others carry on.
//! - Each fetch has a timeout (default 5 s) and a size limit (default 1 MiB).
//!   HMAC (`oct`) keys in a fetched set are ignored: a secret is never
//!   published. Use `https` in production; `http` is accepted for tests.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use ee_core::Clock;
use jsonwebtoken::AlgorithmFamily;
use metrics::Counter;

use crate::jwt::config::{
    DEFAULT_JWKS_MAX_BYTES, DEFAULT_JWKS_REFRESH_SECS, DEFAULT_JWKS_TIMEOUT_SECS,
    DEFAULT_UNKNOWN_KID_MIN_INTERVAL_SECS, JwtConfig,
};
use crate::jwt::keys::{KeySet, VerifyingKey, jwk_values};
use crate::jwt::verifier::TimeSource;
use crate::{AuthError, METRIC_JWKS_REFRESHES_TOTAL};

/// Why a fetch failed (for logs and the `source` of [`AuthError::Unavailable`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("answered {0}")]
    Status(http::StatusCode),
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Invalid(String),
}

/// Verification keys from a JWKS URL, kept fresh; give it to
/// [`JwtVerifierBuilder::jwks`](crate::JwtVerifierBuilder::jwks).
///
/// Cloning shares the keys and the background refresh, which stops when the
/// last clone is dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), ee_auth::AuthError> {
/// use ee_auth::{JwksSource, JwtVerifier};
///
/// let jwks = JwksSource::discover("https://id.example.com").await?;
/// let verifier = JwtVerifier::builder()
///     .issuer("https://id.example.com")
///     .audience("orders")
///     .jwks(jwks)
///     .build()?;
/// # let _ = verifier; Ok(()) }
/// ```
#[derive(Clone)]
pub struct JwksSource {
    shared: Arc<Shared>,
}

struct Shared {
    url: String,
    client: reqwest::Client,
    max_bytes: usize,
    unknown_kid_min_interval: Duration,
    /// The current keys.
    keys: RwLock<Arc<KeySet>>,
    /// Fetches attempted (bumped after the keys are stored).
    attempts: AtomicU64,
    /// Refreshes that dropped a `kid` (bumped after the keys are stored): a
    /// cached token verified before one is verified again, so a key pulled
    /// from the issuer (a compromise) stops its tokens at once.
    removals: AtomicU64,
    state: tokio::sync::Mutex<RefreshState>,
    time: TimeSource,
    ok: Counter,
    failed: Counter,
    throttled: Counter,
}

#[derive(Default)]
struct RefreshState {
    last_failed: bool,
    last_unknown_kid_refresh: Option<Instant>,
}

impl fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksSource")
            .field("url", &ee_core::redact_url(&self.shared.url))
            .field("keys", &self.snapshot().0.len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`JwksSource`]: refresh interval, unknown-`kid` throttle, timeout,
/// size limit.
#[derive(Debug)]
pub struct JwksSourceBuilder {
    url: String,
    refresh: Duration,
    unknown_kid_min_interval: Duration,
    timeout: Duration,
    max_bytes: usize,
    time: TimeSource,
}

impl JwksSourceBuilder {
    /// Applies the JWKS settings of `config` (`jwks_refresh_secs`,
    /// `unknown_kid_min_interval_secs`, `jwks_timeout_secs`, `jwks_max_bytes`).
    pub fn config(self, config: &JwtConfig) -> Self {
        self.refresh_interval(Duration::from_secs(config.jwks_refresh_secs))
            .unknown_kid_min_interval(Duration::from_secs(config.unknown_kid_min_interval_secs))
            .timeout(Duration::from_secs(config.jwks_timeout_secs))
            .max_bytes(config.jwks_max_bytes)
    }

    /// Time between background refreshes (default 5 minutes; at least 1 s).
    pub fn refresh_interval(mut self, every: Duration) -> Self {
        self.refresh = every.max(Duration::from_secs(1));
        self
    }

    /// Least time between two refreshes caused by an unknown `kid` (default 10 s).
    pub fn unknown_kid_min_interval(mut self, interval: Duration) -> Self {
        self.unknown_kid_min_interval = interval;
        self
    }

    /// Timeout of one fetch (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest document accepted (default 1 MiB).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The clock the unknown-`kid` throttle reads (tests: `ee_testing::ManualClock`).
    pub fn clock<C: Clock>(self, clock: C) -> Self {
        self.clock_source(TimeSource::of(clock))
    }

    pub(crate) fn clock_source(mut self, time: TimeSource) -> Self {
        self.time = time;
        self
    }

    /// Fetches the key set and starts the background refresh (on the current
    /// tokio runtime). Fails when the fetch fails or brings no usable key.
    pub async fn fetch(self) -> Result<JwksSource, AuthError> {
        crate::describe_metrics();
        let client = http_client(self.timeout)?;
        let counter = |outcome: &'static str| metrics::counter!(METRIC_JWKS_REFRESHES_TOTAL, "outcome" => outcome);
        let shared = Arc::new(Shared {
            url: self.url,
            client,
            max_bytes: self.max_bytes,
            unknown_kid_min_interval: self.unknown_kid_min_interval,
            keys: RwLock::new(Arc::new(KeySet::default())),
            attempts: AtomicU64::new(0),
            removals: AtomicU64::new(0),
            state: tokio::sync::Mutex::new(RefreshState::default()),
            time: self.time,
            ok: counter("ok"),
            failed: counter("failed"),
            throttled: counter("throttled"),
        });
        {
            let mut state = shared.state.lock().await;
            shared.refresh_locked(&mut state).await.map_err(|e| {
                AuthError::unavailable(
                    format!(
                        "the JWKS at {} (fetched at start)",
                        ee_core::redact_url(&shared.url)
                    ),
                    e,
                )
            })?;
        }
        tokio::spawn(refresh_periodically(Arc::downgrade(&shared), self.refresh));
        Ok(JwksSource { shared })
    }
}

pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, AuthError> {
    reqwest::Client::builder()
        .timeout(timeout)
        // At most 3 redirects, and never from https to plain http: keys fetched
        // over TLS are not downgraded by a redirect.
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let downgrade = attempt.url().scheme() == "http"
                && attempt.previous().iter().any(|u| u.scheme() == "https");
            if downgrade {
                attempt.error("refusing a redirect from https to http")
            } else if attempt.previous().len() > 3 {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        }))
        .build()
        .map_err(|e| AuthError::Config(format!("cannot build the JWKS HTTP client: {e}")))
}

/// Reads a whole response body, refusing one over `max` bytes.
pub(crate) async fn read_bounded(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, FetchError> {
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status()));
    }
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(FetchError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(FetchError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn refresh_periodically(shared: Weak<Shared>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut state = shared.state.lock().await;
        // A failure is logged and counted; the last good keys stay.
        let _ = shared.refresh_locked(&mut state).await;
    }
}

impl Shared {
    async fn fetch_keys(&self) -> Result<KeySet, FetchError> {
        let response = self
            .client
            .get(&self.url)
            .header(
                http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await?;
        let body = read_bounded(response, self.max_bytes).await?;
        let values = jwk_values(&body).map_err(|e| FetchError::Invalid(e.to_string()))?;
        let mut keys = Vec::with_capacity(values.len());
        for value in values {
            match VerifyingKey::from_jwk_value(value) {
                // A secret is never published: an `oct` key here is ignored.
                Ok(Some(key)) if key.alg.family() != AlgorithmFamily::Hmac => keys.push(key),
                Ok(_) => {}
                Err(why) => tracing::debug!(%why, "JWKS: skipping a key that cannot verify tokens"),
            }
        }
        if keys.is_empty() {
            return Err(FetchError::Invalid(
                "the key set holds no usable signature key".into(),
            ));
        }
        Ok(KeySet::new(keys))
    }

    /// Fetches and, on success, replaces the keys; the caller holds the state lock.
    async fn refresh_locked(&self, state: &mut RefreshState) -> Result<(), FetchError> {
        let result = self.fetch_keys().await;
        state.last_failed = result.is_err();
        let outcome = match result {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "JWKS refreshed");
                let old = std::mem::replace(
                    &mut *self.keys.write().unwrap_or_else(|e| e.into_inner()),
                    Arc::new(keys),
                );
                let new = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
                let dropped = old.keys().any(|k| {
                    !new.keys()
                        .any(|n| n.kid() == k.kid() && n.algorithm() == k.algorithm())
                });
                if dropped {
                    self.removals.fetch_add(1, Ordering::Release);
                }
                self.ok.increment(1);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(url = %ee_core::redact_url(&self.url), error = %e,
                    "JWKS fetch failed; keeping the last good keys");
                self.failed.increment(1);
                Err(e)
            }
        };
        // After the keys: a reader that sees the new count sees the new keys.
        self.attempts.fetch_add(1, Ordering::Release);
        outcome
    }
}

impl JwksSource {
    /// A builder for the key set at `url`.
    pub fn builder(url: impl Into<String>) -> JwksSourceBuilder {
        JwksSourceBuilder {
            url: url.into(),
            refresh: Duration::from_secs(DEFAULT_JWKS_REFRESH_SECS),
            unknown_kid_min_interval: Duration::from_secs(DEFAULT_UNKNOWN_KID_MIN_INTERVAL_SECS),
            timeout: Duration::from_secs(DEFAULT_JWKS_TIMEOUT_SECS),
            max_bytes: DEFAULT_JWKS_MAX_BYTES,
            time: TimeSource::System,
        }
    }

    /// Fetches the key set at `url` with the default settings.
    pub async fn fetch(url: impl Into<String>) -> Result<Self, AuthError> {
        Self::builder(url).fetch().await
    }

    /// The `kid`s of the current keys, for diagnostics.
    pub fn kids(&self) -> Vec<String> {
        self.snapshot()
            .0
            .keys()
            .filter_map(|k| k.kid().map(str::to_owned))
            .collect()
    }

    /// How many refreshes dropped a key so far.
    #[inline]
    pub(crate) fn removals(&self) -> u64 {
        self.shared.removals.load(Ordering::Acquire)
    }

    /// The attempt count, then the keys (in that order: see `refresh_locked`).
    pub(crate) fn snapshot(&self) -> (Arc<KeySet>, u64) {
        let seen = self.shared.attempts.load(Ordering::Acquire);
        let keys = self
            .shared
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (keys, seen)
    }

    /// A token named a `kid` the keys seen at attempt `seen` lack: refreshes
    /// once (single-flight, throttled). `Ok` means "look again"; `Err` that
    /// the fetch this request caused or waited for failed.
    pub(crate) async fn refresh_for_unknown_kid(&self, seen: u64) -> Result<(), AuthError> {
        let shared = &*self.shared;
        let mut state = shared.state.lock().await;
        if shared.attempts.load(Ordering::Acquire) != seen {
            // A fetch ran while this request waited: its keys are the news.
            return if state.last_failed {
                Err(jwks_unavailable(None))
            } else {
                Ok(())
            };
        }
        let now = shared.time.now();
        if let Some(last) = state.last_unknown_kid_refresh
            && now.saturating_duration_since(last) < shared.unknown_kid_min_interval
        {
            shared.throttled.increment(1);
            return Ok(());
        }
        state.last_unknown_kid_refresh = Some(now);
        shared
            .refresh_locked(&mut state)
            .await
            .map_err(|e| jwks_unavailable(Some(e)))
    }
}

fn jwks_unavailable(source: Option<FetchError>) -> AuthError {
    AuthError::Unavailable {
        what: "the JWKS".into(),
        source: source.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
    }
}
