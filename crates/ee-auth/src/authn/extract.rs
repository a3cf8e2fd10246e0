//! Axum extractors: [`Identity`], [`Authenticated<C>`] and their `Option`s.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use ee_core::Problem;
use http::StatusCode;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::authn::service::PassedAnonymously;
use crate::{AuthError, Identity};

static NOT_INSTALLED_LOGGED: AtomicBool = AtomicBool::new(false);

/// A handler asked for the identity on a route without an `AuthLayer`: a
/// server set-up error (500), logged once.
#[cold]
fn not_installed() -> Problem {
    const FIX: &str = "this route reads the caller's identity but no AuthLayer runs in front of it: \
                       add `.layer(AuthLayer::builder()...build()?)` to the router";
    if !NOT_INSTALLED_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::error!("{FIX}");
    }
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR).with_detail(FIX)
}

/// What the layer left in the request.
enum Found {
    Identity(Identity),
    /// Let through without credentials.
    Anonymous,
    /// No `AuthLayer` ran.
    NoLayer,
}

fn identity_of(parts: &Parts) -> Found {
    if let Some(identity) = parts.extensions.get::<Identity>() {
        return Found::Identity(identity.clone());
    }
    if parts.extensions.get::<PassedAnonymously>().is_some() {
        return Found::Anonymous;
    }
    Found::NoLayer
}

/// The caller's identity; 401 (`WWW-Authenticate: Bearer`) when the request
/// passed anonymously, 500 when no [`AuthLayer`](crate::AuthLayer) runs in
/// front of the route. `Option<Identity>` is `None` for an anonymous request.
impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        match identity_of(parts) {
            Found::Identity(identity) => Ok(identity),
            Found::Anonymous => Err(AuthError::Missing.into()),
            Found::NoLayer => Err(not_installed()),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Identity {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Problem> {
        match identity_of(parts) {
            Found::Identity(identity) => Ok(Some(identity)),
            Found::Anonymous => Ok(None),
            Found::NoLayer => Err(not_installed()),
        }
    }
}

/// The verified claims of the caller's token, deserialized as `C`.
///
/// Refused with 401 when the request carries no identity and with 401
/// `invalid_token` when the claims do not fit `C` (an API key's identity has
/// no claims). `Option<Authenticated<C>>` is `None` for an anonymous request;
/// take [`Identity`] as well for roles, scopes and tenant.
///
/// ```
/// use ee_auth::Authenticated;
///
/// #[derive(serde::Deserialize)]
/// struct Claims { sub: String, email: String }
///
/// async fn me(Authenticated(claims): Authenticated<Claims>) -> String {
///     format!("{} <{}>", claims.sub, claims.email)
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::get(me);
/// ```
#[derive(Debug, Clone)]
pub struct Authenticated<C>(pub C);

impl<C> Deref for Authenticated<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.0
    }
}

fn claims<C: DeserializeOwned>(identity: &Identity) -> Result<Authenticated<C>, AuthError> {
    identity.claims_as::<C>().map(Authenticated).map_err(|_| {
        AuthError::invalid_token("the token's claims do not have the form this route needs")
    })
}

impl<S: Send + Sync, C: DeserializeOwned> FromRequestParts<S> for Authenticated<C> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        match identity_of(parts) {
            Found::Identity(identity) => Ok(claims(&identity)?),
            Found::Anonymous => Err(AuthError::Missing.into()),
            Found::NoLayer => Err(not_installed()),
        }
    }
}

impl<S: Send + Sync, C: DeserializeOwned> OptionalFromRequestParts<S> for Authenticated<C> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Problem> {
        match identity_of(parts) {
            Found::Identity(identity) => Ok(Some(claims(&identity)?)),
            Found::Anonymous => Ok(None),
            Found::NoLayer => Err(not_installed()),
        }
    }
}
