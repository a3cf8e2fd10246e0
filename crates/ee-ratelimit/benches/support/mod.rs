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
