//! Answers from a stored copy: the response, or a 304 when the request's
//! validators match, with `Age` and `X-Cache`.

use bytes::Bytes;
use ee_core::unix_ms;
use http::header::{
    AGE, CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::X_CACHE;
use super::stored::StoredResponse;

/// The headers a 304 carries from the stored response (RFC 9110 §15.4.5).
const NOT_MODIFIED_HEADERS: [HeaderName; 6] =
    [CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, VARY];

/// A response from the stored copy: 304 when the request's validators match,
/// with `Age` and `X-Cache`.
pub(crate) fn serve<B: From<Bytes>>(
    stored: &StoredResponse,
    request: &HeaderMap,
    how: &'static str,
    head: bool,
) -> Response<B> {
    let age = (unix_ms().saturating_sub(stored.stored_at_ms) / 1000).to_string();
    let mut res = if not_modified(stored, request) {
        let mut res = Response::new(B::from(Bytes::new()));
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        for name in NOT_MODIFIED_HEADERS.iter().chain([&LAST_MODIFIED]) {
            for v in stored.headers.get_all(name) {
                res.headers_mut().append(name.clone(), v.clone());
            }
        }
        res
    } else {
        let body = if head {
            Bytes::new()
        } else {
            stored.body.clone()
        };
        let mut res = Response::new(B::from(body));
        *res.status_mut() = stored.status;
        *res.headers_mut() = stored.headers.clone();
        res
    };
    let headers = res.headers_mut();
    headers.insert(AGE, HeaderValue::from_str(&age).expect("digits"));
    headers.insert(X_CACHE, HeaderValue::from_static(how));
    res
}

/// `If-None-Match` (weak comparison) or, without it, `If-Modified-Since`.
pub(crate) fn not_modified(stored: &StoredResponse, request: &HeaderMap) -> bool {
    if !stored.status.is_success() {
        return false;
    }
    if let Some(inm) = request.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let Some(etag) = stored.headers.get(ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        let etag = weak(etag);
        return inm.split(',').any(|t| t.trim() == "*" || weak(t) == etag);
    }
    let since = request
        .get(IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let modified = stored
        .headers
        .get(LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    matches!((since, modified), (Some(since), Some(modified)) if modified <= since)
}
