//! `ResponseCacheLayer`: a shared HTTP cache (RFC 9111) for tower and axum,
//! on any [`CacheStore`]: memory, Redis or tiered.

mod config;
mod directives;
mod serve;
mod stored;

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use ee_core::{Problem, unix_ms};
use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tower::{Layer, Service};

pub use config::{DEFAULT_MAX_BODY_BYTES, DEFAULT_RESPONSE_CACHE_BYTES, ResponseCacheConfig};
pub use directives::{
    CacheControl, Storable, immutable, request_accepts, request_bypasses, status_is_cacheable,
    storable, upstream_age,
};
use serve::{not_modified, serve};
pub use stored::{StoredResponse, Variants, VaryField};

use crate::cache::Cache;
use crate::error::CacheError;
use crate::store::CacheStore;

/// `X-Cache`: `HIT`, `MISS` or `STALE`.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// `Surrogate-Key` (Fastly and others): the response's tags, space-separated.
pub const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
/// `Cache-Tag` (Cloudflare and others): the response's tags, comma-separated.
pub const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// Tags for the response it is inserted into (as a response extension, e.g.
/// axum's `Extension(CacheTags(...))`): the stored entry is tagged with them,
/// they are sent as `Surrogate-Key` and `Cache-Tag` for CDNs, and
/// [`ResponseCacheLayer::purge_tag`] removes every response tagged so.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheTags(pub Vec<String>);

type PurgeHook = Arc<dyn Fn(&str) + Send + Sync>;

struct Shared<S> {
    cache: Cache<str, Variants, S>,
    max_body: usize,
    max_variants: usize,
    default_ttl: Option<Duration>,
    on_purge: Option<PurgeHook>,
    refreshing: Mutex<HashSet<String>>,
    background: bool,
}

/// Caches `GET` (and answers `HEAD` from it) as a shared cache: freshness from
/// `s-maxage`, `max-age` or `Expires`; never `no-store`, `private`,
/// `no-cache`, `Set-Cookie` or (unless marked public) `Authorization`
/// responses; `Vary` variants; `ETag`/`If-None-Match` and
/// `Last-Modified`/`If-Modified-Since` answered with 304;
/// `stale-while-revalidate` served with one background refresh; `Age` and
/// `X-Cache` on every response; a successful `POST`, `PUT`, `PATCH` or
/// `DELETE` purges every cached response of its path.
///
/// # Bounds
///
/// Bodies larger than [`max_body_bytes`](Self::max_body_bytes) (1 MiB by
/// default), or of unknown size, are served as they are and not stored.
/// What is stored is bounded by the store:
///
/// - a [`MemoryStore`](crate::MemoryStore) of responses holds at most
///   [`DEFAULT_RESPONSE_CACHE_BYTES`] (64 MiB) and 10 000 entries unless its
///   builder ([`max_bytes`](crate::MemoryStoreBuilder::max_bytes),
///   [`max_entries`](crate::MemoryStoreBuilder::max_entries)) or
///   [`MemoryStoreConfig`](crate::MemoryStoreConfig) says otherwise, each
///   entry weighed by its body, headers, key and tags. When it is full it
///   evicts, as moka does: a new entry is admitted only if it is asked for
///   more often than the least recently used ones it would replace
///   (TinyLFU), so a flood of one-off URLs cannot push out the pages in
///   use. A miss is then served by your handler as usual; nothing fails.
///   Evictions are counted in `ee_cache_evictions_total{cause="size"}` when
///   the store is [named](crate::MemoryStoreBuilder::name);
///   [`MemoryStore::weighted_size`](crate::MemoryStore::weighted_size) reads
///   the bytes held. The same bound applies to the L1 of a `TieredStore`.
/// - a `RedisStore` refuses values over its `max_value_bytes` (1 MiB
///   encoded), and every key it writes expires with the response (its
///   freshness plus `stale-while-revalidate`); the total is bounded by the
///   Redis server's `maxmemory` with an evicting policy (`allkeys-lru` or
///   `volatile-lru`), which a server holding a cache should set.
///
/// ```
/// use axum::{Router, routing::get};
/// use ee_cache::{Cache, MemoryStore, ResponseCacheLayer};
///
/// // At most 64 MiB and 10 000 responses (`MemoryStore::builder().max_bytes(n)` to change).
/// let cache = Cache::builder("http").build(MemoryStore::new()).unwrap();
/// let app: Router = Router::new()
///     .route("/products", get(|| async { ([("cache-control", "max-age=60")], "[]") }))
///     .layer(ResponseCacheLayer::new(cache));
/// ```
pub struct ResponseCacheLayer<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for ResponseCacheLayer<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<S> std::fmt::Debug for ResponseCacheLayer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCacheLayer")
            .field("cache", &self.shared.cache)
            .field("max_body", &self.shared.max_body)
            .finish_non_exhaustive()
    }
}

impl<S: CacheStore<Variants>> ResponseCacheLayer<S> {
    /// A layer storing responses in `cache`.
    pub fn new(cache: Cache<str, Variants, S>) -> Self {
        Self {
            shared: Arc::new(Shared {
                cache,
                max_body: DEFAULT_MAX_BODY_BYTES,
                max_variants: 8,
                default_ttl: None,
                on_purge: None,
                refreshing: Mutex::default(),
                background: false,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Shared<S>)) -> Self {
        f(Arc::get_mut(&mut self.shared).expect("configure the layer before cloning it"));
        self
    }

    /// All options at once, from configuration (checked first). Like the
    /// other builder methods, call it before cloning the layer.
    ///
    /// # Errors
    /// [`CacheError::Config`] when a value is out of range (see
    /// [`ResponseCacheConfig::validate`]).
    pub fn config(self, config: &ResponseCacheConfig) -> Result<Self, CacheError> {
        config.validate()?;
        let default_ttl = config.default_ttl_ms.map(Duration::from_millis);
        Ok(self.edit(|s| {
            s.max_body = config.max_body_bytes;
            s.max_variants = config.max_variants;
            s.default_ttl = default_ttl;
            s.background = config.store_in_background;
        }))
    }

    /// The largest body stored (default [`DEFAULT_MAX_BODY_BYTES`], 1 MiB): a
    /// larger one, or one of unknown size, is served as it is and not
    /// stored. Keep it well under the store's bound: an entry larger than a
    /// memory store's `max_bytes` is never kept.
    pub fn max_body_bytes(self, bytes: usize) -> Self {
        self.edit(|s| s.max_body = bytes)
    }

    /// At most this many `Vary` variants per URL (default 8).
    pub fn max_variants(self, n: usize) -> Self {
        self.edit(|s| s.max_variants = n.max(1))
    }

    /// Freshness for cacheable responses that state none (default: such
    /// responses are not stored).
    pub fn default_ttl(self, ttl: Duration) -> Self {
        self.edit(|s| s.default_ttl = Some(ttl))
    }

    /// Writes a response to the store in a background task instead of before
    /// answering: the store write (for Redis, its round trip) leaves the
    /// request's path, but a repeat that arrives before the write lands is a
    /// second miss, and a CPU-bound server gains nothing (measured in
    /// `docs/benchmarks.md`). Off by default.
    pub fn store_in_background(self) -> Self {
        self.edit(|s| s.background = true)
    }

    /// Called with each tag purged (to purge a CDN too).
    pub fn on_purge(self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.edit(|s| s.on_purge = Some(Arc::new(hook)))
    }

    /// Removes every stored response tagged `tag` (see [`CacheTags`]), here
    /// and through the purge hook.
    pub async fn purge_tag(&self, tag: &str) {
        purge(&self.shared, tag).await;
    }
}

async fn purge<S: CacheStore<Variants>>(shared: &Shared<S>, tag: &str) {
    shared.cache.invalidate_tag(tag).await;
    if let Some(hook) = &shared.on_purge {
        hook(tag);
    }
}

impl<S, Inner> Layer<Inner> for ResponseCacheLayer<S> {
    type Service = ResponseCache<S, Inner>;

    fn layer(&self, inner: Inner) -> Self::Service {
        ResponseCache {
            shared: self.shared.clone(),
            inner,
        }
    }
}

/// The service [`ResponseCacheLayer`] wraps around yours.
pub struct ResponseCache<S, Inner> {
    shared: Arc<Shared<S>>,
    inner: Inner,
}

impl<S, Inner: Clone> Clone for ResponseCache<S, Inner> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<S, Inner: std::fmt::Debug> std::fmt::Debug for ResponseCache<S, Inner> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The wrapped service, as the layer's helpers need it (the bounds of the
/// `Service` impl below, named once).
trait Origin<ReqB, ResB>:
    Service<Request<ReqB>, Response = Response<ResB>, Future: Send + 'static, Error: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<T, ReqB, ResB> Origin<ReqB, ResB> for T
where
    T: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    T::Future: Send + 'static,
    T::Error: Send + 'static,
{
}

/// A response body the layer can read and rebuild.
trait CacheableBody:
    Body<Data = Bytes, Error: std::fmt::Display> + From<Bytes> + Send + 'static
{
}

impl<B> CacheableBody for B
where
    B: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
}

impl<S, Inner, ReqB, ResB> Service<Request<ReqB>> for ResponseCache<S, Inner>
where
    S: CacheStore<Variants>,
    Inner: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    Inner::Future: Send + 'static,
    Inner::Error: Send + 'static,
    ReqB: Default + Send + 'static,
    ResB: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    ResB::Error: std::fmt::Display,
{
    type Response = Response<ResB>;
    type Error = Inner::Error;
    type Future = BoxFuture<Result<Response<ResB>, Inner::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(handle(shared, inner, req))
    }
}

/// `host/path?query`: what a response is stored under. The host comes from
/// the URI or the `Host` header and must be a plain `host[:port]` (lowercased);
/// a request whose host is anything else (a `/`, userinfo, bad bytes) is not
/// cached at all, so a crafted `Host` cannot write under another path's key.
fn cache_key(parts: &http::request::Parts) -> Option<String> {
    let host = match parts.uri.authority() {
        Some(a) => a.as_str(),
        None => match parts.headers.get(http::header::HOST) {
            Some(h) => h.to_str().ok()?,
            None => "",
        },
    };
    let plain = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !plain {
        return None;
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut key = String::with_capacity(host.len() + path.len());
    key.push_str(host);
    key.make_ascii_lowercase(); // the host only: the path is case-sensitive
    key.push_str(path);
    Some(key)
}

/// The tag every response of a path carries (for the purge on writes), from
/// its cache key.
fn path_tag(key: &str) -> String {
    let path = key.split('?').next().unwrap_or_default();
    let mut tag = String::with_capacity(path.len() + 5);
    tag.push_str("path:");
    tag.push_str(path);
    tag
}

async fn handle<S, Inner, ReqB, ResB>(
    shared: Arc<Shared<S>>,
    mut inner: Inner,
    req: Request<ReqB>,
) -> Result<Response<ResB>, Inner::Error>
where
    S: CacheStore<Variants>,
    Inner: Origin<ReqB, ResB>,
    ReqB: Default + Send + 'static,
    ResB: CacheableBody,
{
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    if matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        let tag = cache_key(&parts).map(|key| path_tag(&key));
        let res = inner.call(Request::from_parts(parts, body)).await?;
        if let Some(tag) = tag
            && (res.status().is_success() || res.status().is_redirection())
        {
            purge(&shared, &tag).await;
        }
        return Ok(res);
    }
    if method != Method::GET && method != Method::HEAD {
        return inner.call(Request::from_parts(parts, body)).await;
    }

    let Some(key) = cache_key(&parts) else {
        let res = inner.call(Request::from_parts(parts, body)).await?;
        return Ok(mark(res, "MISS"));
    };
    let head = method == Method::HEAD;
    let request_cc = CacheControl::parse(&parts.headers);
    if !directives::bypasses(&request_cc, &parts.headers)
        && let Some(variants) = shared.cache.get(&key).await
        && let Some(stored) = variants.matching(&parts.headers)
    {
        let age_ms = unix_ms().saturating_sub(stored.stored_at_ms);
        let acceptable = directives::request_accepts(&request_cc, age_ms, stored.fresh_ms);
        if acceptable && age_ms < stored.fresh_ms {
            return Ok(serve(stored, &parts.headers, "HIT", head));
        }
        if acceptable && age_ms < stored.fresh_ms.saturating_add(stored.stale_ms) {
            refresh(&shared, &inner, &key, &parts);
            return Ok(serve(stored, &parts.headers, "STALE", head));
        }
    }

    let request_headers = parts.headers.clone();
    let tag = path_tag(&key);
    let res = inner.call(Request::from_parts(parts, body)).await?;
    if head {
        return Ok(mark(res, "MISS"));
    }
    match store(&shared, &key, &tag, &request_cc, &request_headers, res).await {
        // A 304 if the request's validators match what was stored.
        Ok((res, Some(stored))) if not_modified(&stored, &request_headers) => {
            drop(res);
            Ok(serve(&stored, &request_headers, "MISS", false))
        }
        Ok((res, _)) => Ok(mark(res, "MISS")),
        Err(problem) => Ok(problem),
    }
}

fn mark<B>(mut res: Response<B>, how: &'static str) -> Response<B> {
    res.headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(how));
    res
}

/// Stores `res` if it may be: the response to send (its body rebuilt when it
/// was read) and, when the request carries validators, the stored copy.
async fn store<S, ResB>(
    shared: &Arc<Shared<S>>,
    key: &str,
    path_tag: &str,
    request_cc: &CacheControl,
    request: &HeaderMap,
    res: Response<ResB>,
) -> Result<(Response<ResB>, Option<StoredResponse>), Response<ResB>>
where
    S: CacheStore<Variants>,
    ResB: CacheableBody,
{
    let (fresh, stale) = match directives::storable_get(
        request_cc,
        request,
        res.status(),
        res.headers(),
        shared.default_ttl,
    ) {
        Storable::Yes { fresh, stale } => (fresh, stale),
        Storable::No(_) => return Ok((res, None)),
    };
    if res.headers().contains_key(SET_COOKIE) {
        return Ok((res, None)); // a cookie is for one user, never shared
    }
    let fits = res
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= shared.max_body as u64);
    if !fits {
        return Ok((res, None));
    }
    let (mut head, body) = res.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::warn!(error = %e, "response body failed while being cached");
            let problem = Problem::ee(StatusCode::BAD_GATEWAY, "cache", "upstream-body")
                .with_detail("the response body failed while it was read");
            return Err(problem.into_response());
        }
    };
    let tags = head
        .extensions
        .get::<CacheTags>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    if !tags.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&tags.join(" ")) {
            head.headers.insert(SURROGATE_KEY, v);
        }
        if let Ok(v) = HeaderValue::from_str(&tags.join(",")) {
            head.headers.insert(CACHE_TAG, v);
        }
    }
    let stored = StoredResponse::new(&head, bytes.clone(), request, fresh, stale);
    // The caller needs the stored copy only to answer validators with a 304.
    let copy = (request.contains_key(IF_NONE_MATCH) || request.contains_key(IF_MODIFIED_SINCE))
        .then(|| stored.clone());
    let write = persist(
        shared.clone(),
        key.to_owned(),
        path_tag.to_owned(),
        tags,
        stored,
    );
    if shared.background {
        tokio::spawn(write);
    } else {
        write.await;
    }
    Ok((Response::from_parts(head, ResB::from(bytes)), copy))
}

/// Writes `stored` among the variants of `key`.
async fn persist<S: CacheStore<Variants>>(
    shared: Arc<Shared<S>>,
    key: String,
    path_tag: String,
    tags: Vec<String>,
    stored: StoredResponse,
) {
    // Other variants are kept only when the response varies.
    let existing = if stored.vary.is_empty() {
        None
    } else {
        shared.cache.get(&key).await
    };
    let variants = Variants::with(existing.as_ref(), stored, shared.max_variants);
    let keep = variants.longest();
    let mut all_tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    all_tags.push(&path_tag);
    if let Err(e) = shared
        .cache
        .set_for(&key, variants, keep.fresh, keep.stale, &all_tags)
        .await
    {
        tracing::debug!(error = %e, key, "response not cached");
    }
}

/// Refreshes a stale entry in the background, once at a time per key.
fn refresh<S, Inner, ReqB, ResB>(
    shared: &Arc<Shared<S>>,
    inner: &Inner,
    key: &str,
    parts: &http::request::Parts,
) where
    S: CacheStore<Variants>,
    Inner: Origin<ReqB, ResB>,
    ReqB: Default + Send + 'static,
    ResB: CacheableBody,
{
    if !shared
        .refreshing
        .lock()
        .expect("refreshing set")
        .insert(key.to_owned())
    {
        return;
    }
    let shared = shared.clone();
    let mut inner = inner.clone();
    let key = key.to_owned();
    let mut parts = parts.clone();
    parts.method = Method::GET;
    // The refresh wants the whole response, not a 304 or a range.
    for name in [
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        http::header::IF_MATCH,
        http::header::IF_UNMODIFIED_SINCE,
        http::header::IF_RANGE,
        http::header::RANGE,
    ] {
        parts.headers.remove(name);
    }
    let tag = path_tag(&key);
    let headers = parts.headers.clone();
    tokio::spawn(async move {
        let req = Request::from_parts(parts, ReqB::default());
        if std::future::poll_fn(|cx| inner.poll_ready(cx))
            .await
            .is_ok()
            && let Ok(res) = inner.call(req).await
        {
            let cc = CacheControl::parse(&headers);
            let _ = store(&shared, &key, &tag, &cc, &headers, res).await;
        }
        shared
            .refreshing
            .lock()
            .expect("refreshing set")
            .remove(&key);
    });
}
