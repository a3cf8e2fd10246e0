//! Hop-by-hop header fields: they describe one connection, so a proxy does
//! not forward them and a cache or replay store does not keep them.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// The fixed hop-by-hop fields: RFC 9110 §7.6.1 (`Connection`,
/// `Proxy-Connection`, `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade`),
/// plus `Trailer` and the proxy credentials of RFC 2616 §13.5.1.
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Whether `name` is hop-by-hop in a message whose `Connection` field named
/// `connection_named` (see [`connection_named`]).
pub fn is_hop_by_hop(name: &HeaderName, connection_named: &[HeaderName]) -> bool {
    HOP_BY_HOP.contains(name) || connection_named.contains(name)
}

/// The fields a message's `Connection` header names (also hop-by-hop).
pub fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect()
}

/// Removes every hop-by-hop field: the fixed ones and those `Connection`
/// names.
///
/// ```
/// let mut h = http::HeaderMap::new();
/// h.insert("connection", "close, x-trace".parse().unwrap());
/// h.insert("x-trace", "1".parse().unwrap());
/// h.insert("keep-alive", "timeout=5".parse().unwrap());
/// h.insert("content-type", "application/json".parse().unwrap());
/// ee_core::remove_hop_by_hop(&mut h);
/// assert_eq!(h.len(), 1);
/// ```
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    for name in connection_named(headers) {
        headers.remove(&name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}
