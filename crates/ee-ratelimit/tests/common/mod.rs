//! Helpers shared by the ee-ratelimit tests.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::Body;
use ee_core::PeerAddr;
use ee_ratelimit::{Limiter, RateLimitLayer};
use ee_testing::TestResponse;
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt};

/// A handler that answers 200 "ok".
pub fn ok_service()
-> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("ok")))
    })
}

/// A GET from `ip` (as the TCP peer).
pub fn from_ip(ip: &str) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    let addr: SocketAddr = format!("{ip}:5000").parse().unwrap();
    req.extensions_mut().insert(PeerAddr(addr));
    req
}

/// Sends one request through `layer` around the ok service.
pub async fn send<L: Limiter>(layer: &RateLimitLayer<L>, req: Request<Body>) -> TestResponse {
    let res = layer.layer(ok_service()).oneshot(req).await.unwrap();
    TestResponse::from_response(res).await
}

/// One member of a Structured Field list: `"name";key=value;…`.
#[derive(Debug, PartialEq, Eq)]
pub struct SfItem {
    pub name: String,
    pub params: Vec<(String, String)>,
}

impl SfItem {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses an RFC 8941 list whose items are sf-strings with parameters whose
/// values are sf-integers or sf-strings, panicking on anything else: the
/// syntax the RateLimit draft requires.
pub fn parse_sf_list(value: &str) -> Vec<SfItem> {
    let mut items = Vec::new();
    for member in value.split(',') {
        let member = member.trim_matches(' ');
        let mut parts = member.split(';');
        let name = parts.next().unwrap();
        assert!(
            name.len() >= 2 && name.starts_with('"') && name.ends_with('"'),
            "item {name:?} of {value:?} is not an sf-string"
        );
        let name = &name[1..name.len() - 1];
        assert!(!name.contains(['"', '\\']), "{name:?}");
        let mut params = Vec::new();
        for param in parts {
            let (k, v) = param
                .split_once('=')
                .unwrap_or_else(|| panic!("param {param:?} in {value:?}"));
            assert!(
                !k.is_empty()
                    && k.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'_'
                        || b == b'-'),
                "param key {k:?}"
            );
            let is_int = !v.is_empty() && v.len() <= 15 && v.bytes().all(|b| b.is_ascii_digit());
            let is_str = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
            assert!(is_int || is_str, "param value {v:?} in {value:?}");
            params.push((k.to_owned(), v.trim_matches('"').to_owned()));
        }
        items.push(SfItem {
            name: name.to_owned(),
            params,
        });
    }
    items
}
