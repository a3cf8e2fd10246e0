//! Inputs shared by the benchmark and the instruction-count example, so both
//! measure the same requests and the same no-op service.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, Response};
use tower::Service;

/// Distinct clients the requests cycle through.
pub const KEYS: usize = 1000;

/// Every request passes: a huge burst, so the allowed path is measured.
pub const BURST: u32 = 1_000_000_000;

/// The `i`-th client's address.
pub fn ip(i: usize) -> IpAddr {
    IpAddr::from([10, 0, ((i % KEYS) / 256) as u8, (i % 256) as u8])
}

/// A GET from client `i`, with axum's `ConnectInfo` as both layers read it.
pub fn request(i: usize) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip(i), 4000)));
    req
}

/// A service that answers 200 with an empty body.
pub fn noop()
-> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::empty()))
    })
}

/// tower_governor's configuration in both files: keyed by peer IP, every
/// request allowed.
pub fn governor_builder() -> tower_governor::governor::GovernorConfigBuilder<
    tower_governor::key_extractor::PeerIpKeyExtractor,
    governor::middleware::NoOpMiddleware,
> {
    let mut builder = tower_governor::governor::GovernorConfigBuilder::default();
    builder.per_nanosecond(1).burst_size(BURST);
    builder
}

/// Our layer around the no-op service: one GCRA policy by peer IP, every
/// request allowed, with `headers`.
pub fn ours(
    headers: ee_ratelimit::HeaderConfig,
) -> ee_ratelimit::RateLimit<
    impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static,
    ee_ratelimit::MemoryLimiter,
> {
    use tower::Layer;

    let layer = ee_ratelimit::RateLimitLayer::builder(ee_ratelimit::MemoryStore::new())
        .policy(ee_ratelimit::Policy::new(
            "api",
            ee_ratelimit::Rule::gcra(BURST, std::time::Duration::from_secs(1), BURST),
        ))
        .headers(headers)
        .build()
        .unwrap();
    layer.layer(noop())
}
