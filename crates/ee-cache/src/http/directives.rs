//! `Cache-Control` parsing and freshness (RFC 9111), as a shared cache sees it.

use std::time::Duration;

use ee_core::{Clock, SystemClock};
use http::header::{AUTHORIZATION, CACHE_CONTROL, EXPIRES};
use http::{HeaderMap, Method, StatusCode};

/// The `Cache-Control` directives this cache acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache`, unqualified or naming fields (a shared cache without
    /// revalidation treats both alike: not reused).
    pub no_cache: bool,
    /// `private` (unqualified or with fields).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `max-age`.
    pub max_age: Option<u64>,
    /// `s-maxage` (shared caches use it over `max-age`).
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate`.
    pub stale_while_revalidate: Option<u64>,
    /// `min-fresh` (a request's: fresh for at least this long still).
    pub min_fresh: Option<u64>,
    /// `immutable`.
    pub immutable: bool,
}

impl CacheControl {
    /// Parses every `Cache-Control` field of `headers` (case-insensitive,
    /// comma-separated, quoted arguments accepted; unknown directives ignored;
    /// a malformed number ignores that directive).
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut cc = Self::default();
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',') {
                let directive = directive.trim();
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive, None),
                };
                // Lifetimes past 2^31 s are 2^31 s (RFC 9111 §1.2.2).
                let seconds = || {
                    arg.and_then(|a| a.parse::<u64>().ok())
                        .map(|s| s.min(1 << 31))
                };
                // Directive names are case-insensitive; compared in place
                // (no lowercased copy per directive).
                let is = |known: &str| name.eq_ignore_ascii_case(known);
                if is("max-age") {
                    cc.max_age = seconds().or(cc.max_age);
                } else if is("s-maxage") {
                    cc.s_maxage = seconds().or(cc.s_maxage);
                } else if is("stale-while-revalidate") {
                    cc.stale_while_revalidate = seconds().or(cc.stale_while_revalidate);
                } else if is("min-fresh") {
                    cc.min_fresh = seconds().or(cc.min_fresh);
                } else if is("no-store") {
                    cc.no_store = true;
                } else if is("no-cache") {
                    cc.no_cache = true;
                } else if is("private") {
                    cc.private = true;
                } else if is("public") {
                    cc.public = true;
                } else if is("must-revalidate") {
                    cc.must_revalidate = true;
                } else if is("proxy-revalidate") {
                    cc.proxy_revalidate = true;
                } else if is("immutable") {
                    cc.immutable = true;
                }
            }
        }
        cc
    }
}

/// Statuses a cache may store (RFC 9110 §15.1, "heuristically cacheable"),
/// here only with explicit freshness.
pub fn status_is_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Why a response is not stored, or how long it is fresh and may be stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storable {
    /// Store it.
    Yes {
        /// How long it is fresh.
        fresh: Duration,
        /// How long after that it may be served stale, while one background
        /// request refreshes it.
        stale: Duration,
    },
    /// Do not store it, for this reason.
    No(&'static str),
}

/// Whether a shared cache may store the response to a `method` request with
/// `request` headers, and for how long (RFC 9111 §3 and §4.2.1).
/// `default_ttl` applies to cacheable responses without explicit freshness.
pub fn storable(
    method: &Method,
    request: &HeaderMap,
    status: StatusCode,
    response: &HeaderMap,
    default_ttl: Option<Duration>,
) -> Storable {
    if method != Method::GET {
        return Storable::No("method");
    }
    storable_get(
        &CacheControl::parse(request),
        request,
        status,
        response,
        default_ttl,
    )
}

/// [`storable`] for a `GET` whose request `Cache-Control` is parsed already.
pub(crate) fn storable_get(
    req: &CacheControl,
    request: &HeaderMap,
    status: StatusCode,
    response: &HeaderMap,
    default_ttl: Option<Duration>,
) -> Storable {
    if !status_is_cacheable(status) {
        return Storable::No("status");
    }
    if req.no_store {
        return Storable::No("request no-store");
    }
    let res = CacheControl::parse(response);
    if res.no_store {
        return Storable::No("no-store");
    }
    if res.private {
        return Storable::No("private");
    }
    if res.no_cache {
        // Would need revalidation before every use: not worth storing here.
        return Storable::No("no-cache");
    }
    if request.contains_key(AUTHORIZATION)
        && !(res.public || res.s_maxage.is_some() || res.must_revalidate)
    {
        return Storable::No("authorization");
    }
    if response
        .get(http::header::VARY)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|f| f.trim() == "*"))
    {
        return Storable::No("vary *");
    }
    let fresh = res
        .s_maxage
        .or(res.max_age)
        .map(Duration::from_secs)
        .or_else(|| expires_in(response))
        .or(default_ttl);
    let Some(fresh) = fresh.filter(|d| !d.is_zero()) else {
        return Storable::No("no freshness");
    };
    if upstream_age(response) >= fresh {
        return Storable::No("stale on arrival");
    }
    // s-maxage implies proxy-revalidate for a shared cache: no stale serving.
    let stale = if res.must_revalidate || res.proxy_revalidate || res.s_maxage.is_some() {
        Duration::ZERO
    } else {
        Duration::from_secs(res.stale_while_revalidate.unwrap_or(0))
    };
    Storable::Yes { fresh, stale }
}

/// The response's `Age` (time already spent in caches upstream), capped at 2^31 s.
pub fn upstream_age(response: &HeaderMap) -> Duration {
    let secs = response
        .get(http::header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_secs(secs.min(1 << 31))
}

/// Freshness from `Expires` (relative to `Date`, or to now).
fn expires_in(response: &HeaderMap) -> Option<Duration> {
    let date = |name| {
        response
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
    };
    let expires = match date(EXPIRES) {
        Some(t) => t,
        // An invalid Expires means "already expired" (RFC 9111 §5.3).
        None if response.contains_key(EXPIRES) => return Some(Duration::ZERO),
        None => return None,
    };
    let now = date(http::header::DATE).unwrap_or_else(|| SystemClock.system_time());
    Some(expires.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whether the request asks not to be answered from the cache (`no-store`,
/// `no-cache`, `max-age=0`, or `Pragma: no-cache` without `Cache-Control`).
/// A request's `max-age=N` and `min-fresh=N` are checked against each stored
/// response by [`request_accepts`]; `max-stale` is ignored (nothing is served
/// stale beyond `stale-while-revalidate`).
pub fn request_bypasses(request: &HeaderMap) -> bool {
    bypasses(&CacheControl::parse(request), request)
}

/// Whether a stored response `age_ms` old and fresh for `fresh_ms` may answer
/// a request with these directives (RFC 9111 §5.2.1): not older than its
/// `max-age`, and fresh for its `min-fresh` still, in whole seconds as the
/// `Age` header counts them.
pub fn request_accepts(request: &CacheControl, age_ms: u64, fresh_ms: u64) -> bool {
    let age = age_ms / 1000;
    let left = fresh_ms.saturating_sub(age_ms) / 1000;
    request.max_age.is_none_or(|max| age <= max) && request.min_fresh.is_none_or(|min| left >= min)
}

/// [`request_bypasses`] with the request's `Cache-Control` parsed already.
pub(crate) fn bypasses(cc: &CacheControl, request: &HeaderMap) -> bool {
    if cc.no_store || cc.no_cache || cc.max_age == Some(0) {
        return true;
    }
    !request.contains_key(CACHE_CONTROL)
        && request
            .get(http::header::PRAGMA)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("no-cache"))
}

/// `public, max-age=31536000, immutable`: for fingerprinted assets
/// (`app.3f2a1c.js`) whose content never changes under that name.
pub fn immutable() -> http::HeaderValue {
    http::HeaderValue::from_static("public, max-age=31536000, immutable")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn directives_parse_leniently() {
        let cc = CacheControl::parse(&headers(&[
            ("cache-control", "Public, MAX-AGE=60, s-maxage=\"120\""),
            (
                "cache-control",
                "stale-while-revalidate=30, max-age=oops, immutable",
            ),
        ]));
        assert!(cc.public && cc.immutable && !cc.private);
        assert_eq!(cc.max_age, Some(60));
        assert_eq!(cc.s_maxage, Some(120));
        assert_eq!(cc.stale_while_revalidate, Some(30));
        assert_eq!(CacheControl::parse(&headers(&[])), CacheControl::default());
    }

    #[test]
    fn each_directive_decides_as_a_shared_cache_should() {
        let get = Method::GET;
        let ok = StatusCode::OK;
        let s = |secs| Duration::from_secs(secs);
        type Pairs = &'static [(&'static str, &'static str)];
        let cases: &[(Pairs, Pairs, Storable)] = &[
            (
                &[],
                &[("cache-control", "max-age=60")],
                Storable::Yes {
                    fresh: s(60),
                    stale: s(0),
                },
            ),
            (
                &[],
                &[("cache-control", "max-age=60, s-maxage=10")],
                Storable::Yes {
                    fresh: s(10),
                    stale: s(0),
                },
            ),
            (
                &[],
                &[("cache-control", "max-age=60, stale-while-revalidate=30")],
                Storable::Yes {
                    fresh: s(60),
                    stale: s(30),
                },
            ),
            (
                &[],
                &[(
                    "cache-control",
                    "max-age=60, stale-while-revalidate=30, must-revalidate",
                )],
                Storable::Yes {
                    fresh: s(60),
                    stale: s(0),
                },
            ),
            (
                &[],
                &[("cache-control", "no-store, max-age=60")],
                Storable::No("no-store"),
            ),
            (
                &[],
                &[("cache-control", "private, max-age=60")],
                Storable::No("private"),
            ),
            (
                &[],
                &[("cache-control", "no-cache")],
                Storable::No("no-cache"),
            ),
            (
                &[],
                &[("cache-control", "max-age=0")],
                Storable::No("no freshness"),
            ),
            (&[], &[], Storable::No("no freshness")),
            (
                &[("cache-control", "no-store")],
                &[("cache-control", "max-age=60")],
                Storable::No("request no-store"),
            ),
            (
                &[("authorization", "Bearer x")],
                &[("cache-control", "max-age=60")],
                Storable::No("authorization"),
            ),
            (
                &[("authorization", "Bearer x")],
                &[("cache-control", "public, max-age=60")],
                Storable::Yes {
                    fresh: s(60),
                    stale: s(0),
                },
            ),
            (
                &[],
                &[("cache-control", "max-age=60"), ("vary", "*")],
                Storable::No("vary *"),
            ),
            (
                &[],
                &[("expires", "not a date")],
                Storable::No("no freshness"),
            ),
            (
                &[],
                &[
                    ("date", "Wed, 25 Nov 2026 10:00:00 GMT"),
                    ("expires", "Wed, 25 Nov 2026 10:05:00 GMT"),
                ],
                Storable::Yes {
                    fresh: s(300),
                    stale: s(0),
                },
            ),
        ];
        for (req, res, want) in cases {
            assert_eq!(
                storable(&get, &headers(req), ok, &headers(res), None),
                *want,
                "request {req:?}, response {res:?}"
            );
        }
        let cacheable = headers(&[("cache-control", "max-age=60")]);
        assert_eq!(
            storable(&Method::POST, &HeaderMap::new(), ok, &cacheable, None),
            Storable::No("method")
        );
        assert_eq!(
            storable(
                &get,
                &HeaderMap::new(),
                StatusCode::INTERNAL_SERVER_ERROR,
                &cacheable,
                None
            ),
            Storable::No("status")
        );
        assert_eq!(
            storable(&get, &HeaderMap::new(), ok, &HeaderMap::new(), Some(s(5))),
            Storable::Yes {
                fresh: s(5),
                stale: s(0)
            },
            "the default TTL for responses without freshness"
        );
    }

    #[test]
    fn requests_that_bypass_the_cache() {
        assert!(request_bypasses(&headers(&[("cache-control", "no-cache")])));
        assert!(request_bypasses(&headers(&[(
            "cache-control",
            "max-age=0"
        )])));
        assert!(request_bypasses(&headers(&[("cache-control", "no-store")])));
        assert!(request_bypasses(&headers(&[("pragma", "no-cache")])));
        assert!(!request_bypasses(&headers(&[(
            "cache-control",
            "max-age=60"
        )])));
        assert!(!request_bypasses(&headers(&[])));
    }
}
