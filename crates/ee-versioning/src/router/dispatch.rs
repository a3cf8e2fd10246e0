//! The versioned dispatch: a request's version picked, then that version's
//! router called (the URI's version segment stripped).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use ee_core::Problem;
use http::{Request, Uri};
use tower::{Service, ServiceExt};

use super::pick::{Picked, Shared};

/// The router's fallback (and the rare path of the selector): any request
/// whose version its routes did not settle.
#[derive(Clone)]
pub(super) struct Dispatch {
    pub(super) shared: Arc<Shared>,
}

impl Service<Request<Body>> for Dispatch {
    type Response = Response;
    type Error = Infallible;
    type Future = futures_util::future::Either<
        tower::util::Oneshot<Router, Request<Body>>,
        std::future::Ready<Result<Response, Infallible>>,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        use futures_util::future::Either;
        let shared = &self.shared;
        let picked = shared.pick(&req, super::pick::Uri::Read);
        let router = picked.and_then(|picked| shared.router(picked.version()).map(|r| (picked, r)));
        let (picked, router) = match router {
            Ok(found) => found,
            Err(e) => {
                return Either::Right(std::future::ready(Ok(Problem::from(e).into_response())));
            }
        };
        if let Picked::ByUri(_) = picked {
            *req.uri_mut() = strip_version(req.uri());
        }
        Either::Left(router.clone().oneshot(req))
    }
}

/// `uri` without its first path segment (`/v2/orders?x` → `/orders?x`).
fn strip_version(uri: &Uri) -> Uri {
    let path = uri.path().trim_start_matches('/');
    let rest = path.split_once('/').map_or("", |(_, rest)| rest);
    let mut text = format!("/{rest}");
    if let Some(q) = uri.query() {
        text.push('?');
        text.push_str(q);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = text.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}
