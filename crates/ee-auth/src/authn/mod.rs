//! Authentication as a tower layer: [`AuthLayer`] → [`Auth<S>`] →
//! [`ResponseFuture`], and the axum extractors that read what it found.
//!
//! The layer reads one credential (`Authorization: Bearer …` or
//! `X-Api-Key`), verifies it (a JWT with the [`JwtVerifier`](crate::JwtVerifier),
//! an API key with the [`ApiKeyVerifier`](crate::ApiKeyVerifier)), and puts
//! the [`Identity`](crate::Identity) and its [`ee_core::Subject`] in the
//! request extensions.

mod credentials;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod layer;
mod scope;
mod service;

#[cfg(feature = "axum")]
pub use extract::Authenticated;
pub use future::ResponseFuture;
pub use layer::{AuthLayer, AuthLayerBuilder};
pub use service::Auth;
