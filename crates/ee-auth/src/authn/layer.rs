//! `AuthLayer`: which credentials are accepted and whether anonymous
//! requests pass.

use std::fmt;
use std::sync::Arc;

use metrics::Counter;
use tower::Layer;

use crate::authn::service::Auth;
use crate::{ApiKeyVerifier, AuthError, JwtVerifier, METRIC_AUTHENTICATIONS_TOTAL, Method};

/// Whether a request without credentials may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anonymous {
    Refused,
    Allowed,
}

/// The `method` label of an attempt.
#[derive(Clone, Copy)]
pub(crate) enum MethodLabel {
    Jwt = 0,
    ServiceToken = 1,
    ApiKey = 2,
    None = 3,
}

impl MethodLabel {
    const ALL: [(MethodLabel, &'static str); 4] = [
        (MethodLabel::Jwt, "jwt"),
        (MethodLabel::ServiceToken, "service_token"),
        (MethodLabel::ApiKey, "api_key"),
        (MethodLabel::None, "none"),
    ];

    pub(crate) fn of(method: Method) -> Self {
        match method {
            Method::ServiceToken => MethodLabel::ServiceToken,
            Method::ApiKey => MethodLabel::ApiKey,
            _ => MethodLabel::Jwt,
        }
    }
}

/// The `outcome` label of an attempt.
#[derive(Clone, Copy)]
pub(crate) enum Outcome {
    Ok = 0,
    Cached = 1,
    Missing = 2,
    Invalid = 3,
    Expired = 4,
    Unavailable = 5,
}

impl Outcome {
    const ALL: [&'static str; 6] = [
        "ok",
        "cached",
        "missing",
        "invalid",
        "expired",
        "unavailable",
    ];

    pub(crate) fn of(err: &AuthError) -> Self {
        match err {
            AuthError::Missing => Outcome::Missing,
            AuthError::Expired => Outcome::Expired,
            AuthError::Unavailable { .. } => Outcome::Unavailable,
            _ => Outcome::Invalid,
        }
    }
}

/// `ee_auth_authentications_total{method,outcome}`, every pair registered
/// when the layer is built.
pub(crate) struct AuthMetrics([[Counter; 6]; 4]);

impl AuthMetrics {
    fn new() -> Self {
        crate::describe_metrics();
        AuthMetrics(MethodLabel::ALL.map(|(_, method)| {
            Outcome::ALL.map(|outcome| {
                metrics::counter!(METRIC_AUTHENTICATIONS_TOTAL, "method" => method, "outcome" => outcome)
            })
        }))
    }

    #[inline]
    pub(crate) fn record(&self, method: MethodLabel, outcome: Outcome) {
        self.0[method as usize][outcome as usize].increment(1);
    }
}

pub(crate) struct Shared {
    pub(crate) jwt: Option<JwtVerifier>,
    pub(crate) api_keys: Option<Arc<dyn ApiKeyVerifier>>,
    pub(crate) anonymous: Anonymous,
    pub(crate) metrics: AuthMetrics,
}

/// Authenticates every request: `Authorization: Bearer <JWT or API key>` or
/// `X-Api-Key: <key>`. On success the request carries the caller's
/// [`Identity`](crate::Identity) and its [`ee_core::Subject`] (so
/// `SubjectKey` rate limits, idempotency scopes and caches key by it); on
/// failure it is answered with a problem (401 with an RFC 6750
/// `WWW-Authenticate: Bearer` challenge, 400 for a malformed request, 503 when
/// keys or the key store cannot be reached).
///
/// Works with any tower service over `http::Request<B>` whose response body
/// can be made from `Bytes`.
///
/// ```
/// use ee_auth::{AuthLayer, JwtVerifier, VerifyingKey};
///
/// # fn main() -> Result<(), ee_auth::AuthError> {
/// # let jwks = r#"{ "keys": [{ "kty": "OKP", "crv": "Ed25519", "kid": "k1",
/// #                 "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" }] }"#;
/// let verifier = JwtVerifier::builder()
///     .issuer("https://id.example.com")
///     .audience("orders")
///     .keys(VerifyingKey::from_jwk_set(jwks)?)
///     .build()?;
/// let auth = AuthLayer::builder().jwt(verifier).build()?;
/// # #[cfg(feature = "axum")] {
/// let app: axum::Router = axum::Router::new()
///     .route("/orders", axum::routing::get(|| async { "orders" }))
///     .layer(auth);
/// # let _ = app; }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AuthLayer {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("jwt", &self.shared.jwt)
            .field("api_keys", &self.shared.api_keys.is_some())
            .field("anonymous", &self.shared.anonymous)
            .finish()
    }
}

impl AuthLayer {
    /// A builder: add a JWT verifier, an API key verifier, or both.
    pub fn builder() -> AuthLayerBuilder {
        AuthLayerBuilder {
            jwt: None,
            api_keys: None,
            anonymous: Anonymous::Refused,
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Builds an [`AuthLayer`].
pub struct AuthLayerBuilder {
    jwt: Option<JwtVerifier>,
    api_keys: Option<Arc<dyn ApiKeyVerifier>>,
    anonymous: Anonymous,
}

impl fmt::Debug for AuthLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayerBuilder")
            .field("jwt", &self.jwt)
            .field("api_keys", &self.api_keys.is_some())
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

impl AuthLayerBuilder {
    /// Verifies Bearer JWTs with `verifier`.
    pub fn jwt(mut self, verifier: JwtVerifier) -> Self {
        self.jwt = Some(verifier);
        self
    }

    /// Verifies API keys (`X-Api-Key`, or a Bearer credential the verifier
    /// [recognizes](ApiKeyVerifier::recognizes)) with `verifier`.
    pub fn api_keys(self, verifier: impl ApiKeyVerifier) -> Self {
        self.shared_api_keys(Arc::new(verifier))
    }

    /// As [`api_keys`](Self::api_keys), with a verifier shared elsewhere.
    pub fn shared_api_keys(mut self, verifier: Arc<dyn ApiKeyVerifier>) -> Self {
        self.api_keys = Some(verifier);
        self
    }

    /// Requests without credentials pass, with no `Identity` (handlers take
    /// `Option<Identity>`). Invalid credentials are still refused.
    pub fn allow_anonymous(mut self) -> Self {
        self.anonymous = Anonymous::Allowed;
        self
    }

    /// Requests without credentials are refused with 401 (the default).
    pub fn required(mut self) -> Self {
        self.anonymous = Anonymous::Refused;
        self
    }

    /// Builds the layer (registers its metrics). Fails with neither a JWT
    /// nor an API key verifier.
    pub fn build(self) -> Result<AuthLayer, AuthError> {
        if self.jwt.is_none() && self.api_keys.is_none() {
            return Err(AuthError::Config(
                "an AuthLayer needs a JWT verifier (`.jwt(..)`) or an API key verifier (`.api_keys(..)`)"
                    .into(),
            ));
        }
        Ok(AuthLayer {
            shared: Arc::new(Shared {
                jwt: self.jwt,
                api_keys: self.api_keys,
                anonymous: self.anonymous,
                metrics: AuthMetrics::new(),
            }),
        })
    }
}
