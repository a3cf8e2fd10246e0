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

/// Which service a public path belongs to.
fn route(method: &Method, path: &str) -> Option<&'static str> {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
    };
    if under("/v1/users") {
        Some("user")
    } else if under("/v1/products") {
        Some("product")
    } else if under("/v1/orders") {
        Some("order")
    } else if under("/v1/notifications") && method == Method::GET {
        Some("notification")
    } else {
        None
    }
}

async fn proxy(State(up): State<Upstreams>, req: Request) -> Response<Body> {
    match route(req.method(), req.uri().path()) {
        Some(service) => up.forward(service, req).await,
        None => axum::response::IntoResponse::into_response(not_found(req).await),
    }
}

/// The gateway's routes (the caller adds health, metrics and docs).
pub fn api(
    upstreams: Upstreams,
    limits: &RateLimitSettings,
    redis: Option<&Redis>,
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
        .with_state(upstreams);
    let store: ee_ratelimit::AnyStore = redis.map_or_else(
        || ee_ratelimit::MemoryStore::new().into(),
        |r| ee_ratelimit::RedisStore::new(r.conn.clone()).into(),
    );
    routes.layer(
        RateLimitLayer::builder(store)
            .policy(policy)
            .build()
            .expect("a valid policy"),
    )
}

/// The gateway as served: its routes, the probes and metrics, OpenAPI and
/// docs, unknown paths a 404 problem, a log line and metrics per request.
pub fn app(
    upstreams: Upstreams,
    limits: &RateLimitSettings,
    redis: Option<&Redis>,
    health: &ee_health::Health,
    prometheus: Option<&ee_metrics::Prometheus>,
    edge: &EdgeSettings,
) -> Router {
    let mut app = api(upstreams, limits, redis, edge)
        .merge(health.router())
        .merge(crate::openapi::router());
    if let Some(p) = prometheus {
        app = app.merge(p.router());
    }
    app.fallback(not_found)
        .layer(
            ee_logging::RequestLogLayer::new()
                .accept_incoming_trace(edge.accept_client_traceparent),
        )
        .layer(ee_metrics::MetricsLayer::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_paths_route_to_their_service_and_internal_ones_nowhere() {
        let get = Method::GET;
        assert_eq!(route(&get, "/v1/users/usr_1"), Some("user"));
        assert_eq!(route(&get, "/v1/products"), Some("product"));
        assert_eq!(route(&Method::POST, "/v1/orders"), Some("order"));
        assert_eq!(route(&get, "/v1/notifications"), Some("notification"));
        assert_eq!(route(&Method::POST, "/v1/notifications"), None);
        assert_eq!(route(&Method::POST, "/v1/payments"), None);
        assert_eq!(route(&Method::POST, "/v1/reservations"), None);
        assert_eq!(route(&get, "/v1/usersx"), None);
    }
}
