//! The API gateway: the platform's one public address.
//!
//! - Routes by path to the services' instances (round robin, per-upstream
//!   timeout, 502/504 problem+json when they fail): `/v1/users…` → user,
//!   `/v1/products…` → product, `/v1/orders…` → order, `GET
//!   /v1/notifications…` → notification. Internal routes (reservations,
//!   payments) are not reachable from outside: 404.
//! - Rate limits every routed request per client IP (ee-ratelimit, GCRA, in
//!   memory or shared through Redis), with the IETF `RateLimit` headers and a
//!   429 problem. The client is the TCP peer, or, behind the proxies in
//!   `edge.trusted_proxies`, the address their forwarding header names.
//! - Starts a trace per request (a client's `traceparent` is continued only
//!   with `edge.accept_client_traceparent`), and names its own span as the
//!   parent of the service's.
//! - Serves `/openapi.json`, the docs page `/docs`, the probes and `/metrics`.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, Response};
use axum::routing::any;
use ee_ratelimit::{Policy, RateLimitLayer, Rule};
use serde::{Deserialize, Serialize};

use crate::common::{Redis, not_found};
use crate::edge::EdgeSettings;
use crate::upstream::Upstreams;

/// The gateway's per-client rate limit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Sustained requests per second per client IP (default 1 000).
    pub per_second: u32,
    /// Burst above it (default 2 000).
    pub burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_second: 1_000,
            burst: 2_000,
        }
    }
}

/// Where a public request goes: the service, and whether the gateway lets
/// it through without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    service: &'static str,
    anonymous: bool,
}

/// Which service a public path belongs to, and whether it may be called
/// without a token: registering, logging in, refreshing a session, the
/// catalogue's reads and the JWKS. Everything else needs a valid token
/// before it is routed (the service checks it again, and decides what the
/// caller may see).
fn route(method: &Method, path: &str) -> Option<Route> {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
    };
    let to = |service, anonymous| Some(Route { service, anonymous });
    let post = method == Method::POST;
    let get = method == Method::GET || method == Method::HEAD;
    let signing_in = matches!(path, "/v1/users" | "/v1/auth/token" | "/v1/auth/refresh");
    if signing_in && post {
        to("user", true)
    } else if (path == "/v1/auth/logout" && post) || under("/v1/users") {
        to("user", false)
    } else if under("/v1/products") {
        to("product", get)
    } else if under("/v1/orders") {
        to("order", false)
    } else if under("/v1/notifications") && get {
        to("notification", false)
    } else if path == JWKS_PATH && get {
        to("user", true)
    } else {
        None
    }
}

/// Where the user service publishes its signing keys.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

async fn proxy(
    State(up): State<Upstreams>,
    identity: Option<ee_auth::Identity>,
    req: Request,
) -> Response<Body> {
    match route(req.method(), req.uri().path()) {
        Some(Route {
            anonymous: false, ..
        }) if identity.is_none() => axum::response::IntoResponse::into_response(
            ee_core::Problem::from(ee_auth::AuthError::Missing),
        ),
        // The bearer token goes on: the service verifies it again.
        Some(Route { service, .. }) => up.forward(service, req).await,
        None => axum::response::IntoResponse::into_response(not_found(req).await),
    }
}

/// The gateway's routes (the caller adds health, metrics and docs).
///
/// Rate limited first, then authenticated: a flood of bad tokens is
/// limited like any other.
pub fn api(
    upstreams: Upstreams,
    limits: &RateLimitSettings,
    redis: Option<&Redis>,
    auth: ee_auth::AuthLayer,
    edge: &EdgeSettings,
) -> Router {
    let policy = Policy::new(
        "per-client",
        Rule::gcra(limits.per_second, Duration::from_secs(1), limits.burst),
    )
    .key(edge.client_ip());
    let routes = Router::new()
        .route("/v1", any(proxy))
        .route("/v1/{*rest}", any(proxy))
        .route(JWKS_PATH, any(proxy))
        .with_state(upstreams);
    let store: ee_ratelimit::AnyStore = redis.map_or_else(
        || ee_ratelimit::MemoryStore::new().into(),
        |r| ee_ratelimit::RedisStore::new(r.conn.clone()).into(),
    );
    routes.layer(auth).layer(
        RateLimitLayer::builder(store)
            .policy(policy)
            .build()
            .expect("a valid policy"),
    )
}

/// The gateway as served: its routes, the probes, OpenAPI and docs, the
/// operators' endpoints for admins, unknown paths a 404 problem, every
/// bearer token verified, a log line and metrics per request.
///
/// # Errors
/// The authentication layer cannot be built.
pub fn app(
    upstreams: Upstreams,
    limits: &RateLimitSettings,
    redis: Option<&Redis>,
    auth: &crate::auth::PlatformAuth,
    ops: crate::common::Ops<'_>,
    edge: &EdgeSettings,
) -> Result<Router, crate::StartError> {
    let verify = auth.layer("gateway")?;
    Ok(api(upstreams, limits, redis, verify.clone(), edge)
        .merge(ops.health.probes_router())
        .merge(ops.router(auth).layer(verify))
        .merge(crate::openapi::router())
        .fallback(not_found)
        .layer(
            ee_logging::RequestLogLayer::new()
                .accept_incoming_trace(edge.accept_client_traceparent),
        )
        .layer(ee_metrics::MetricsLayer::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_paths_route_to_their_service_and_internal_ones_nowhere() {
        let get = Method::GET;
        let post = Method::POST;
        let to = |service, anonymous| Some(Route { service, anonymous });
        assert_eq!(route(&get, "/v1/users/usr_1"), to("user", false));
        assert_eq!(route(&get, "/v1/users/me"), to("user", false));
        assert_eq!(route(&post, "/v1/users"), to("user", true));
        assert_eq!(route(&post, "/v1/auth/token"), to("user", true));
        assert_eq!(route(&post, "/v1/auth/refresh"), to("user", true));
        assert_eq!(route(&post, "/v1/auth/logout"), to("user", false));
        assert_eq!(route(&get, "/.well-known/jwks.json"), to("user", true));
        assert_eq!(route(&get, "/v1/products"), to("product", true));
        assert_eq!(route(&post, "/v1/products"), to("product", false));
        assert_eq!(
            route(&Method::PATCH, "/v1/products/SKU-0001"),
            to("product", false)
        );
        assert_eq!(route(&post, "/v1/orders"), to("order", false));
        assert_eq!(route(&get, "/v1/notifications"), to("notification", false));
        assert_eq!(route(&post, "/v1/notifications"), None);
        assert_eq!(route(&post, "/v1/payments"), None);
        assert_eq!(route(&post, "/v1/reservations"), None);
        assert_eq!(route(&get, "/v1/usersx"), None);
    }
}
