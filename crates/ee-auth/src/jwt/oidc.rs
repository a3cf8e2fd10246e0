//! OIDC discovery: the JWKS URL from `{issuer}/.well-known/openid-configuration`.

use std::time::Duration;

use crate::AuthError;
use crate::jwt::config::{DEFAULT_JWKS_MAX_BYTES, DEFAULT_JWKS_TIMEOUT_SECS};
use crate::jwt::jwks::{FetchError, JwksSource, http_client, read_bounded};

impl JwksSource {
    /// The `jwks_uri` an OpenID Connect issuer publishes in
    /// `{issuer}/.well-known/openid-configuration`, after checking that the
    /// document's `issuer` is `issuer` (OpenID Connect Discovery §4.3).
    pub async fn discover_uri(issuer: &str) -> Result<String, AuthError> {
        #[derive(serde::Deserialize)]
        struct Document {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let unavailable = |e: FetchError| {
            AuthError::unavailable(
                format!("OIDC discovery at {}", ee_core::redact_url(&url)),
                e,
            )
        };
        let client = http_client(Duration::from_secs(DEFAULT_JWKS_TIMEOUT_SECS))?;
        let response = client
            .get(&url)
            .send()
            .await
            .map_err(|e| unavailable(e.into()))?;
        let body = read_bounded(response, DEFAULT_JWKS_MAX_BYTES)
            .await
            .map_err(unavailable)?;
        let doc: Document = serde_json::from_slice(&body).map_err(|e| {
            unavailable(FetchError::Invalid(format!(
                "not an OpenID provider configuration ({e})"
            )))
        })?;
        if doc.issuer != issuer {
            return Err(AuthError::Config(format!(
                "OIDC discovery: the document at {} names the issuer `{}`, not `{issuer}`",
                ee_core::redact_url(&url),
                doc.issuer
            )));
        }
        Ok(doc.jwks_uri)
    }

    /// Discovers the issuer's `jwks_uri` (see [`discover_uri`](Self::discover_uri))
    /// and fetches it with the default settings.
    pub async fn discover(issuer: &str) -> Result<Self, AuthError> {
        Self::fetch(Self::discover_uri(issuer).await?).await
    }
}
