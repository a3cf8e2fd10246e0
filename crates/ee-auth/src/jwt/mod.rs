//! JWT verification on `jsonwebtoken` (aws-lc-rs backend): keys with one
//! algorithm each, static or from a JWKS URL, claims mapped to an
//! [`Identity`](crate::Identity), and a verified-token cache in front.
//!
//! - [`JwtVerifier`] verifies; [`JwtVerifierBuilder`] (or [`JwtConfig`]) sets it up.
//! - [`VerifyingKey`]: a PEM public key, a JWK or an HMAC secret, with its algorithm.
//! - [`JwksSource`] (feature `jwks`): keys from a JWKS URL or OIDC discovery.
//!
//! Secure defaults: asymmetric algorithms only (HMAC after `allow_hmac()`),
//! `alg: none` never, a token's algorithm must be its key's, `iss`, `aud`,
//! `sub` and `exp` always required, 30 s leeway, 8 KiB tokens at most.

mod builder;
mod cache;
mod claims;
mod config;
#[cfg(feature = "jwks")]
mod jwks;
mod keys;
#[cfg(feature = "jwks")]
mod oidc;
pub(crate) mod verifier;

pub use builder::JwtVerifierBuilder;
pub use config::JwtConfig;
#[cfg(feature = "jwks")]
pub use jwks::{JwksSource, JwksSourceBuilder};
pub use keys::VerifyingKey;
pub use verifier::JwtVerifier;
