//! `Auth<S>`: the tower service.
//!
//! A JWT that the cache or the keys at hand verify is decided inside `call`:
//! the response future is then the inner service's, untouched (no boxing,
//! no allocation but the two extensions). API keys (a store lookup) and a
//! JWT whose `kid` needs a JWKS refresh take a boxed async path.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use ee_core::Problem;
use http::{Request, Response};
use tower::Service;

use crate::authn::credentials::{self, Credential};
use crate::authn::future::ResponseFuture;
use crate::authn::layer::{Anonymous, MethodLabel, Outcome, Shared};
use crate::jwt::verifier::Attempt;
use crate::{AuthError, Identity, JwtVerifier};

/// The service [`AuthLayer`](crate::AuthLayer) wraps around yours.
pub struct Auth<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S: Clone> Clone for Auth<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Auth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Marks a request let through without credentials (anonymous allowed), so
/// extractors can tell "anonymous" from "no `AuthLayer` installed".
#[derive(Clone, Copy)]
pub(crate) struct PassedAnonymously;

/// Where a request's credential goes once its headers are read.
enum Route {
    /// Verified without waiting.
    Verified(Identity),
    /// An API key, to the API key verifier.
    ApiKey(String),
    /// A JWT whose `kid` is unknown: after a JWKS refresh.
    Refresh {
        jwt: JwtVerifier,
        token: String,
        seen: u64,
    },
}

type Verification = Result<(Identity, Outcome), (MethodLabel, AuthError)>;

fn insert_identity<B>(req: &mut Request<B>, identity: Identity) {
    let extensions = req.extensions_mut();
    extensions.insert(identity.subject().clone());
    extensions.insert(identity);
}

#[cold]
#[inline(never)]
fn refuse<B: From<Bytes>>(shared: &Shared, method: MethodLabel, err: AuthError) -> Response<B> {
    shared.metrics.record(method, Outcome::of(&err));
    Problem::from(err).into_response()
}

impl<S, B, ResB> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResB: From<Bytes> + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = &*self.shared;
        let route = match credentials::extract(req.headers()) {
            Err(e) => return ResponseFuture::ready(refuse(shared, MethodLabel::None, e)),
            Ok(None) => {
                if shared.anonymous == Anonymous::Refused {
                    let missing = refuse(shared, MethodLabel::None, AuthError::Missing);
                    return ResponseFuture::ready(missing);
                }
                shared.metrics.record(MethodLabel::None, Outcome::Missing);
                req.extensions_mut().insert(PassedAnonymously);
                return ResponseFuture::plain(self.inner.call(req));
            }
            Ok(Some(Credential::ApiKey(key))) => Route::ApiKey(key.to_owned()),
            Ok(Some(Credential::Bearer(credential))) => match (&shared.jwt, &shared.api_keys) {
                (_, Some(keys)) if keys.recognizes(credential) => {
                    Route::ApiKey(credential.to_owned())
                }
                (Some(jwt), _) => match jwt.verify_now(credential) {
                    Attempt::Done(Ok(verified)) => {
                        let outcome = if verified.cached {
                            Outcome::Cached
                        } else {
                            Outcome::Ok
                        };
                        let method = MethodLabel::of(verified.identity.method());
                        shared.metrics.record(method, outcome);
                        Route::Verified(verified.identity)
                    }
                    Attempt::Done(Err(e)) => {
                        return ResponseFuture::ready(refuse(shared, MethodLabel::Jwt, e));
                    }
                    Attempt::UnknownKid { seen } => Route::Refresh {
                        jwt: jwt.clone(),
                        token: credential.to_owned(),
                        seen,
                    },
                },
                (None, _) => Route::ApiKey(credential.to_owned()),
            },
        };
        match route {
            Route::Verified(identity) => {
                insert_identity(&mut req, identity);
                ResponseFuture::plain(self.inner.call(req))
            }
            Route::ApiKey(key) => self.call_api_key(req, key),
            Route::Refresh { jwt, token, seen } => self.call_after_refresh(req, jwt, token, seen),
        }
    }
}

impl<S> Auth<S> {
    #[inline(never)]
    fn call_api_key<B, ResB>(
        &mut self,
        req: Request<B>,
        key: String,
    ) -> ResponseFuture<S::Future, ResB, S::Error>
    where
        S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
        ResB: From<Bytes> + Send + 'static,
    {
        let verifier = self.shared.api_keys.clone();
        self.verify_then_call(req, async move {
            let Some(verifier) = verifier else {
                let err = AuthError::invalid_token("API keys are not accepted here");
                return Err((MethodLabel::ApiKey, err));
            };
            match verifier.verify_key(&key).await {
                Ok(identity) => Ok((identity, Outcome::Ok)),
                Err(e) => Err((MethodLabel::ApiKey, e)),
            }
        })
    }

    #[inline(never)]
    fn call_after_refresh<B, ResB>(
        &mut self,
        req: Request<B>,
        jwt: JwtVerifier,
        token: String,
        seen: u64,
    ) -> ResponseFuture<S::Future, ResB, S::Error>
    where
        S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
        ResB: From<Bytes> + Send + 'static,
    {
        self.verify_then_call(req, async move {
            match jwt.verify_after_refresh(&token, seen).await {
                Ok(v) => Ok((v.identity, Outcome::Ok)),
                Err(e) => Err((MethodLabel::Jwt, e)),
            }
        })
    }

    /// Awaits `verify`, then calls the inner service with the identity (or
    /// answers the refusal), in one boxed future.
    fn verify_then_call<B, ResB>(
        &mut self,
        mut req: Request<B>,
        verify: impl Future<Output = Verification> + Send + 'static,
    ) -> ResponseFuture<S::Future, ResB, S::Error>
    where
        S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
        ResB: From<Bytes> + Send + 'static,
    {
        // Call, later, the clone that was polled ready; leave a fresh one behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        ResponseFuture::boxed(Box::pin(async move {
            match verify.await {
                Ok((identity, outcome)) => {
                    let method = MethodLabel::of(identity.method());
                    shared.metrics.record(method, outcome);
                    insert_identity(&mut req, identity);
                    inner.call(req).await
                }
                Err((method, e)) => Ok(refuse(&shared, method, e)),
            }
        }))
    }
}
