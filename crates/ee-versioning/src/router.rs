//! `VersionedRouter`: one axum `Router` per API version, the request's
//! version read from the URI, a header, the media type or the query, and the
//! lifecycle headers on every response.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::MethodRouter;
use ee_core::{KeyExtractor, Problem};
use http::{HeaderValue, Request, StatusCode, Uri};
use tower::{Service, ServiceExt};

use crate::lifecycle::Lifecycle;
use crate::version::{Found, Source, Version};

/// `ee_versioning_deprecated_requests_total{version,client}`: requests to a
/// deprecated version, by client key, so its owners know who still calls it.
pub const DEPRECATED_REQUESTS: &str = "ee_versioning_deprecated_requests_total";

type Now = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Routes each request to the `Router` of its API version.
///
/// ```
/// use axum::{Router, routing::get};
/// use ee_versioning::{Lifecycle, VersionRoutes, VersionedRouter};
/// use std::time::{Duration, SystemTime};
///
/// let v1 = VersionRoutes::new().route("/orders", get(|| async { "orders, v1 shape" }));
/// let v2 = VersionRoutes::new().route("/orders", get(|| async { "orders, v2 shape" }));
/// let app: Router = VersionedRouter::new()
///     .version(1, v1)
///     .version(2, v2)
///     .default_version(2)
///     .lifecycle(1, Lifecycle::deprecated(SystemTime::now())
///         .sunset(SystemTime::now() + Duration::from_secs(90 * 86_400))
///         .successor("/v2/orders"))
///     .neutral(Router::new().route("/health", get(|| async { "ok" })))
///     .into_router();
/// // GET /v1/orders, or /orders with `Api-Version: 1`, `Accept:
/// // application/vnd.ee.v1+json` or `?api-version=1`: the v1 handler, with
/// // `Deprecation`, `Sunset` and `Link` headers.
/// ```
///
/// - the sources are tried in order (default: URI, `Api-Version` header,
///   `application/vnd.ee.vN+json`, `api-version` query); the first that
///   names a version decides; with none, the default version (or a 400);
/// - a malformed or unsupported version is a 400 problem listing the
///   supported ones; a version past its sunset a 410;
/// - with a URI version (`/v2/orders`), the version's router sees `/orders`;
/// - version-neutral routes (`neutral`) answer whatever the version.
pub struct VersionedRouter {
    sources: Vec<Source>,
    default: Option<Version>,
    versions: BTreeMap<Version, (Routes, Lifecycle)>,
    neutral: Option<Router>,
    client_key: Option<Arc<dyn KeyExtractor>>,
    now: Now,
    max_clients: usize,
}

impl std::fmt::Debug for VersionedRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionedRouter")
            .field("sources", &self.sources)
            .field("default", &self.default)
            .field("versions", &self.versions.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for VersionedRouter {
    fn default() -> Self {
        Self::new()
    }
}

impl VersionedRouter {
    /// No versions yet; the default sources.
    pub fn new() -> Self {
        Self {
            sources: vec![
                Source::Uri,
                Source::Header(http::HeaderName::from_static("api-version")),
                Source::MediaType {
                    vendor: "ee".into(),
                },
                Source::Query("api-version".into()),
            ],
            default: None,
            versions: BTreeMap::new(),
            neutral: None,
            client_key: None,
            now: Arc::new(SystemTime::now),
            max_clients: 1000,
        }
    }

    /// Where the version is read from, in order.
    #[must_use]
    pub fn sources(mut self, sources: Vec<Source>) -> Self {
        self.sources = sources;
        self
    }

    /// The version of requests that name none (otherwise they get a 400).
    #[must_use]
    pub fn default_version(mut self, version: u16) -> Self {
        self.default = Some(Version(version));
        self
    }

    /// The routes of `version`: a [`VersionRoutes`] (each route registered
    /// under `/v<N>` itself: plain axum routing) or a finished `Router`
    /// (nested under `/v<N>`: axum strips the prefix on every request).
    #[must_use]
    pub fn version(mut self, version: u16, routes: impl Into<Routes>) -> Self {
        let lifecycle = self
            .versions
            .remove(&Version(version))
            .map(|(_, l)| l)
            .unwrap_or_default();
        self.versions
            .insert(Version(version), (routes.into(), lifecycle));
        self
    }

    /// The lifecycle of `version` (add the version first).
    ///
    /// # Panics
    /// When `version` has no routes: a set-up mistake, found at start-up.
    #[must_use]
    pub fn lifecycle(mut self, version: u16, lifecycle: Lifecycle) -> Self {
        let entry = self
            .versions
            .get_mut(&Version(version))
            .unwrap_or_else(|| panic!("lifecycle for v{version}, which has no routes"));
        entry.1 = lifecycle;
        self
    }

    /// Whether `version` has routes.
    pub(crate) fn has_version(&self, version: Version) -> bool {
        self.versions.contains_key(&version)
    }

    /// Routes that answer whatever the version (health, docs, metrics).
    #[must_use]
    pub fn neutral(mut self, router: Router) -> Self {
        self.neutral = Some(router);
        self
    }

    /// Counts deprecated-version requests by this key (an API key, the
    /// authenticated subject, the client IP); without one, `client="unknown"`.
    #[must_use]
    pub fn client_key(mut self, key: impl KeyExtractor) -> Self {
        self.client_key = Some(Arc::new(key));
        self
    }

    /// The wall clock sunset and deprecation dates are compared with (a
    /// fixed time in tests).
    #[must_use]
    pub fn clock(mut self, now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.now = Arc::new(now);
        self
    }

    /// At most this many distinct client labels in the deprecation metric
    /// (default 1 000); later clients share `client="other"`.
    #[must_use]
    pub fn max_clients(mut self, n: usize) -> Self {
        self.max_clients = n;
        self
    }

    /// The axum router: neutral routes; each version's routes nested under
    /// `/v<N>` when the URI is the first source (plain axum routing, one
    /// match); everything else through the versioned dispatch.
    pub fn into_router(self) -> Router {
        self.build(false).0
    }

    /// The versions as one service to put in front of everything (where
    /// axum's documentation puts middleware that must run before routing):
    /// the version is picked before axum routes the request, so every route
    /// registered with [`VersionRoutes`] is a plain axum route (a version
    /// given as a finished `Router` is still nested under `/v<N>`). The default version's routes
    /// (and `/v<N>/…` ones) are in one router, each other version's in a
    /// router of its own with the neutral routes, which a request naming it
    /// by header, media type or query goes to; a version without a
    /// lifecycle has no layer around its routes at all. Behaves as
    /// [`VersionedRouter::into_router`] (the same sources, problems,
    /// lifecycle headers, `Vary` and metrics) at less cost per request
    /// (1.11x plain axum's instructions for the default version and for one
    /// named by header, against 1.18-1.20x; 1.08x against 1.015x for
    /// `/v<N>/…`; measured in
    /// `docs/benchmarks.md`); take `into_router` when the versions must be
    /// merged into a larger `Router`.
    ///
    /// A request for `/v<N>/…` when the URI is not among the sources is a
    /// 404, as no route has that path.
    ///
    /// ```no_run
    /// use axum::{ServiceExt, extract::Request, routing::get};
    /// use ee_versioning::{VersionRoutes, VersionedRouter};
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// let app = VersionedRouter::new()
    ///     .version(2, VersionRoutes::new().route("/orders/{id}", get(|| async { "an order" })))
    ///     .default_version(2)
    ///     .into_service();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(listener, ServiceExt::<Request>::into_make_service(app)).await
    /// # }
    /// ```
    pub fn into_service(self) -> VersionedService {
        let (router, shared, vary, neutral) = self.build(true);
        VersionedService {
            router,
            front: Arc::new(Front {
                default_nested: shared.default.is_some_and(|d| shared.nested.contains(&d)),
                shared,
                vary,
                // A request whose version is wrong still reaches the
                // version-neutral routes; the fallback marks the others.
                neutral: neutral.has_routes().then(|| {
                    neutral.fallback(|| async {
                        let mut response = Response::new(Body::empty());
                        response.extensions_mut().insert(NoNeutralRoute);
                        response
                    })
                }),
            }),
        }
    }

    /// The router, what picks versions (with each version's router), the
    /// `Vary` of requests not versioned by their URI, and the neutral
    /// routes. `front`: the routers for [`VersionedService`], plain routes
    /// only (`/v<N>/…` when the URI is a source, the default's unprefixed;
    /// each version's own router with the neutral routes), no selection
    /// inside.
    fn build(self, front: bool) -> Built {
        let supported: Arc<str> = Arc::from(
            self.versions
                .keys()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        );
        let vary = self
            .sources
            .iter()
            .filter_map(|s| match s {
                Source::Header(h) => Some(h.as_str().to_owned()),
                Source::MediaType { .. } => Some("accept".to_owned()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(", ");
        let vary = HeaderValue::from_str(&vary).ok().filter(|v| !v.is_empty());
        let meter = Arc::new(Meter {
            client_key: self.client_key,
            clients: Mutex::new(HashSet::new()),
            max_clients: self.max_clients,
        });
        let uri_first = self.sources.first() == Some(&Source::Uri);
        let default_version = self.default;
        let neutral = self.neutral.unwrap_or_default();
        let uri_is_source = self.sources.contains(&Source::Uri);
        let mut outer = neutral.clone();
        let mut gated = BTreeMap::new();
        let mut nested = Vec::new();
        let mut by_path: BTreeMap<String, BTreeMap<Version, (MethodRouter, GateLayer)>> =
            BTreeMap::new();
        for (version, (routes, lifecycle)) in self.versions {
            let lifecycle = Arc::new(lifecycle);
            let gate = |vary: Option<&HeaderValue>| {
                let mut headers = lifecycle.headers();
                if let Some(v) = vary {
                    headers.push((http::header::VARY, v.clone()));
                }
                GateLayer {
                    version,
                    open: lifecycle.deprecated_at.is_none() && lifecycle.sunset_at.is_none(),
                    lifecycle: lifecycle.clone(),
                    headers: headers.into(),
                    supported: supported.clone(),
                    now: self.now.clone(),
                    meter: meter.clone(),
                }
            };
            let quiet = lifecycle.deprecated_at.is_none()
                && lifecycle.sunset_at.is_none()
                && lifecycle.deprecation_link.is_none()
                && lifecycle.successor_link.is_none();
            // With the URI first, `/v<N>/…` is routed by axum itself: the
            // response does not vary by the other sources, and a version
            // without a lifecycle needs no gate at all.
            let lifecycled = |m: MethodRouter| if quiet { m } else { m.layer(gate(None)) };
            match routes {
                Routes::Flat(list) if front => {
                    // Every route plain: under `/v<N>` when the URI is a
                    // source, the default's also unprefixed, and each
                    // version's in a router of its own (with the neutral
                    // routes) for requests that name it otherwise.
                    let mut own = Router::new();
                    for (path, method_router) in list {
                        if uri_is_source {
                            outer = outer.route(
                                &format!("/{version}{path}"),
                                lifecycled(method_router.clone()),
                            );
                        }
                        if default_version == Some(version) {
                            outer = outer.route(&path, lifecycled(method_router.clone()));
                        }
                        own = own.route(&path, method_router);
                    }
                    let own = if quiet { own } else { own.layer(gate(None)) };
                    gated.insert(version, own.merge(neutral.clone()));
                }
                Routes::Nested(router) if front => {
                    nested.push(version);
                    let own = if quiet {
                        router
                    } else {
                        router.layer(gate(None))
                    };
                    if uri_is_source {
                        outer = outer.nest(&format!("/{version}"), own.clone());
                    }
                    gated.insert(version, own.merge(neutral.clone()));
                }
                Routes::Flat(list) => {
                    let mut dispatch = Router::new();
                    for (path, method_router) in list {
                        if uri_first {
                            let prefixed = format!("/{version}{path}");
                            outer = if quiet {
                                outer.route(&prefixed, method_router.clone())
                            } else {
                                outer.route(&prefixed, method_router.clone().layer(gate(None)))
                            };
                        }
                        by_path
                            .entry(path.clone())
                            .or_default()
                            // `with_state` turns the handlers into routes once,
                            // not on every request.
                            .insert(
                                version,
                                (method_router.clone().with_state(()), gate(vary.as_ref())),
                            );
                        dispatch = dispatch.route(&path, method_router);
                    }
                    gated.insert(version, dispatch.layer(gate(vary.as_ref())));
                }
                Routes::Nested(router) => {
                    if uri_first {
                        let nested = if quiet {
                            router.clone()
                        } else {
                            router.clone().layer(gate(None))
                        };
                        outer = outer.nest(&format!("/{version}"), nested);
                    }
                    gated.insert(version, router.layer(gate(vary.as_ref())));
                }
            }
        }
        let shared = Arc::new(Shared {
            sources: self.sources,
            default: self.default,
            versions: gated,
            nested,
            supported,
        });
        if front {
            return (outer, shared, vary, neutral);
        }
        // A path of `VersionRoutes` without a version segment is one axum
        // route whose service picks the version's handler: one match, no
        // second router.
        for (path, versions) in by_path {
            let selector = Selector {
                shared: shared.clone(),
                versions: versions
                    .iter()
                    .map(|(v, (h, g))| (*v, std::sync::Mutex::new(h.clone()), g.clone()))
                    .collect(),
            };
            // The default version's handler is the route itself (plain axum
            // routing); a request that names another version is handed to
            // the selector by a layer that only reads the sources.
            let default = shared
                .default
                .and_then(|d| versions.get(&d).map(|(h, g)| (d, h.clone(), g.clone())));
            outer = match default {
                Some((version, handler, gate)) => outer.route(
                    &path,
                    handler.layer(DefaultLayer {
                        shared: Arc::new(DefaultShared {
                            version,
                            gate,
                            selector,
                        }),
                    }),
                ),
                None => outer.route_service(&path, selector),
            };
        }
        (
            outer.fallback_service(Dispatch {
                shared: shared.clone(),
            }),
            shared,
            vary,
            neutral,
        )
    }
}

/// What [`VersionedRouter::build`] makes: the router, what picks versions,
/// the `Vary` of requests not versioned by their URI, the neutral routes.
type Built = (Router, Arc<Shared>, Option<HeaderValue>, Router);

/// Marks the response of [`Front::neutral`]'s fallback: no neutral route
/// had the path.
#[derive(Clone, Copy)]
struct NoNeutralRoute;

/// The routes of one version (see [`VersionedRouter::version`]).
#[derive(Debug)]
pub enum Routes {
    /// Routes registered one by one: each also under `/v<N>`.
    Flat(Vec<(String, MethodRouter)>),
    /// A finished router, nested under `/v<N>`.
    Nested(Router),
}

impl From<Router> for Routes {
    fn from(router: Router) -> Self {
        Routes::Nested(router)
    }
}

impl From<VersionRoutes> for Routes {
    fn from(routes: VersionRoutes) -> Self {
        Routes::Flat(routes.routes)
    }
}

/// The routes of one version, registered like `Router::route`, so each can
/// be routed under `/v<N>` by axum directly (no per-request prefix strip).
///
/// ```
/// use axum::routing::get;
/// use ee_versioning::{VersionRoutes, VersionedRouter};
///
/// let app: axum::Router = VersionedRouter::new()
///     .version(2, VersionRoutes::new().route("/orders/{id}", get(|| async { "an order" })))
///     .into_router();
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct VersionRoutes {
    routes: Vec<(String, MethodRouter)>,
}

impl VersionRoutes {
    /// No routes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route (`path` as axum writes it: `/orders/{id}`).
    pub fn route(mut self, path: &str, method_router: MethodRouter) -> Self {
        self.routes.push((path.to_owned(), method_router));
        self
    }
}

struct Shared {
    sources: Vec<Source>,
    default: Option<Version>,
    /// Each version's routes, behind its gate.
    versions: BTreeMap<Version, Router>,
    /// The versions given as finished routers (nested under `/v<N>`).
    nested: Vec<Version>,
    supported: Arc<str>,
}

/// Who calls deprecated versions.
struct Meter {
    client_key: Option<Arc<dyn KeyExtractor>>,
    clients: Mutex<HashSet<String>>,
    max_clients: usize,
}

impl Meter {
    fn count<B>(&self, version: Version, req: &Request<B>) {
        // Requests without a key are `unknown`, a fixed label outside the
        // bound; past `max_clients` distinct keys, new ones are `other`.
        let client = match self
            .client_key
            .as_ref()
            .and_then(|k| k.extract_from(req).ok())
        {
            None => "unknown".to_owned(),
            Some(key) => {
                let key = key.to_string();
                let mut seen = self.clients.lock().expect("not poisoned");
                if seen.contains(&key) {
                    key
                } else if seen.len() >= self.max_clients {
                    "other".to_owned()
                } else {
                    seen.insert(key.clone());
                    key
                }
            }
        };
        metrics::counter!(DEPRECATED_REQUESTS, "version" => version.to_string(), "client" => client)
            .increment(1);
    }
}

#[derive(Clone)]
struct Dispatch {
    shared: Arc<Shared>,
}

fn bad_version(versions: impl Iterator<Item = Version>, detail: String) -> Response {
    Problem::ee(StatusCode::BAD_REQUEST, "versioning", "unsupported-version")
        .with_title("Unsupported API version")
        .with_detail(detail)
        .with_extension(
            "supported",
            versions.map(|v| v.to_string()).collect::<Vec<_>>(),
        )
        .into_response()
}

impl Shared {
    fn pick(&self, req: &Request<Body>) -> Result<(Version, bool), Box<Response>> {
        self.pick_from(req, false)
    }

    /// [`pick`](Self::pick), skipping the URI when the request already
    /// matched an unprefixed route (its first segment is not a version).
    fn pick_from(
        &self,
        req: &Request<Body>,
        skip_uri: bool,
    ) -> Result<(Version, bool), Box<Response>> {
        let shared = self;
        let bad = |detail: String| Box::new(bad_version(shared.versions.keys().copied(), detail));
        for source in &shared.sources {
            if skip_uri && matches!(source, Source::Uri) {
                continue;
            }
            match source.read(req) {
                Found::Absent => continue,
                Found::Malformed(text) => {
                    return Err(bad(format!(
                        "`{text}` is not an API version; this API serves {}",
                        shared.supported
                    )));
                }
                Found::Version(v) => return Ok((v, *source == Source::Uri)),
            }
        }
        shared.default.map(|v| (v, false)).ok_or_else(|| {
            bad(format!(
                "the request names no API version; this API serves {}",
                shared.supported
            ))
        })
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
        let (version, from_uri) = match self.shared.pick(&req) {
            Ok(picked) => picked,
            Err(response) => return Either::Right(std::future::ready(Ok(*response))),
        };
        let shared = &self.shared;
        let Some(router) = shared.versions.get(&version) else {
            let response = bad_version(
                shared.versions.keys().copied(),
                format!(
                    "{version} is not served; this API serves {}",
                    shared.supported
                ),
            );
            return Either::Right(std::future::ready(Ok(response)));
        };
        if from_uri {
            *req.uri_mut() = strip_version(req.uri());
        }
        Either::Left(router.clone().oneshot(req))
    }
}

/// The service of one unprefixed path: picks the version, calls that
/// version's handler for the path (or, when the version lacks the path, its
/// router, which answers 404 with its headers).
#[derive(Clone)]
struct Selector {
    shared: Arc<Shared>,
    /// Each version's handler for this path, and its gate (applied here, not
    /// as a layer: one future less per request).
    /// The handler is behind a mutex: calling it only builds its future
    /// (held for that instant), which is cheaper than cloning the
    /// `MethodRouter` for every request.
    /// A short list (a handful of versions), searched in order: cheaper
    /// than a map lookup at this size.
    versions: Arc<[(Version, std::sync::Mutex<MethodRouter>, GateLayer)]>,
}

impl Service<Request<Body>> for Selector {
    type Response = Response;
    type Error = Infallible;
    /// The rare fallback (a version without this path, or read from the
    /// URI) is boxed: the common future stays small to move around.
    type Future = futures_util::future::Either<
        GateFuture<<MethodRouter as Service<Request<Body>>>::Future>,
        Pin<Box<<Dispatch as Service<Request<Body>>>::Future>>,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let picked = self.shared.pick_from(&req, true);
        self.call_picked(picked, req)
    }
}

impl Selector {
    /// Calls the handler of an already picked version.
    fn call_picked(
        &self,
        picked: Result<(Version, bool), Box<Response>>,
        req: Request<Body>,
    ) -> <Self as Service<Request<Body>>>::Future {
        use futures_util::future::Either;
        match picked {
            Ok((version, false)) => match self.versions.iter().find(|(v, ..)| *v == version) {
                // `MethodRouter` is always ready; `call` clones the matching
                // route into the future it returns.
                Some((_, handler, gate)) => Either::Left(
                    gate.wrap(req, |req| handler.lock().expect("not poisoned").call(req)),
                ),
                None => Either::Right(Box::pin(
                    Dispatch {
                        shared: self.shared.clone(),
                    }
                    .call(req),
                )),
            },
            _ => Either::Right(Box::pin(
                Dispatch {
                    shared: self.shared.clone(),
                }
                .call(req),
            )),
        }
    }
}

/// On the default version's handler of a path: passes the request on when
/// it names no other version, hands it to the selector otherwise.
#[derive(Clone)]
struct DefaultLayer {
    /// One `Arc`: axum clones the route's service on every request.
    shared: Arc<DefaultShared>,
}

struct DefaultShared {
    version: Version,
    gate: GateLayer,
    selector: Selector,
}

impl<S> tower::Layer<S> for DefaultLayer {
    type Service = DefaultVersion<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DefaultVersion {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
struct DefaultVersion<S> {
    inner: S,
    layer: DefaultLayer,
}

/// Only over axum's `Route` (what `MethodRouter::layer` wraps): the default
/// handler's future and another version's handler's future are then the
/// same type, and the two paths share one future type without nesting.
impl Service<Request<Body>> for DefaultVersion<axum::routing::Route> {
    type Response = Response;
    type Error = Infallible;
    type Future = <Selector as Service<Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request<Body>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        use futures_util::future::Either;
        let l = &*self.layer.shared;
        match l.selector.shared.pick_from(&req, true) {
            Ok((v, false)) if v == l.version => {
                let inner = &mut self.inner;
                Either::Left(l.gate.wrap(req, |req| inner.call(req)))
            }
            other => l.selector.call_picked(other, req),
        }
    }
}

/// The versions in front of axum's routing (see
/// [`VersionedRouter::into_service`]).
#[derive(Clone)]
pub struct VersionedService {
    router: Router,
    front: Arc<Front>,
}

impl std::fmt::Debug for VersionedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionedService")
            .field("supported", &self.front.shared.supported)
            .finish_non_exhaustive()
    }
}

struct Front {
    shared: Arc<Shared>,
    vary: Option<HeaderValue>,
    /// The default version is a nested router: unprefixed requests for it
    /// go to its own router too.
    default_nested: bool,
    /// The version-neutral routes, with a marking fallback (none: no such
    /// routes).
    neutral: Option<Router>,
}

type FrontFuture = futures_util::future::Either<
    VaryFuture<<Router as Service<Request<Body>>>::Future>,
    futures_util::future::Either<
        std::future::Ready<Result<Response, Infallible>>,
        Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>,
    >,
>;

impl Service<Request<Body>> for VersionedService {
    type Response = Response;
    type Error = Infallible;
    type Future = FrontFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        use futures_util::future::Either;
        let front = &*self.front;
        let shared = &*front.shared;
        let (version, from_uri) = match shared.pick(&req) {
            Ok(picked) => picked,
            Err(problem) => return front.neutral_or(req, *problem),
        };
        // The common case first, with no lookup: the default version,
        // not named by the URI.
        if !from_uri && shared.default == Some(version) && !front.default_nested {
            return Either::Left(VaryFuture {
                inner: self.router.call(req),
                vary: front.vary.clone(),
            });
        }
        let Some(own) = shared.versions.get(&version) else {
            let problem = bad_version(
                shared.versions.keys().copied(),
                format!(
                    "{version} is not served; this API serves {}",
                    shared.supported
                ),
            );
            return front.neutral_or(req, problem);
        };
        // `/v<N>/…` is routed as it is. Any other request is answered by the
        // version its headers or the default picked, and varies by them:
        // the default's unprefixed routes are in the main router, another
        // version's in a router of its own (its routes and the neutral ones;
        // only an `Arc` is cloned).
        let (inner, vary) = if from_uri {
            (self.router.call(req), None)
        } else {
            (own.clone().call(req), front.vary.clone())
        };
        Either::Left(VaryFuture { inner, vary })
    }
}

impl Front {
    /// A request whose version is wrong: a neutral route still answers it;
    /// any other path gets `problem`.
    fn neutral_or(&self, req: Request<Body>, problem: Response) -> FrontFuture {
        use futures_util::future::Either;
        let Some(neutral) = &self.neutral else {
            return Either::Right(Either::Left(std::future::ready(Ok(problem))));
        };
        let neutral = neutral.clone();
        Either::Right(Either::Right(Box::pin(async move {
            let response = neutral.oneshot(req).await?;
            if response.extensions().get::<NoNeutralRoute>().is_some() {
                return Ok(problem);
            }
            Ok(response)
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response with `Vary` appended (the sources that picked its version).
    #[doc(hidden)]
    pub struct VaryFuture<F> {
        #[pin]
        inner: F,
        vary: Option<HeaderValue>,
    }
}

impl<F> Future for VaryFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(vary) = this.vary.take() {
            response.headers_mut().append(http::header::VARY, vary);
        }
        Poll::Ready(Ok(response))
    }
}

/// Around every route of a version: the sunset check, the deprecation
/// count, the lifecycle headers.
#[derive(Clone)]
struct GateLayer {
    version: Version,
    /// No deprecation or sunset date: nothing to check per request.
    open: bool,
    lifecycle: Arc<Lifecycle>,
    headers: Arc<[(http::HeaderName, HeaderValue)]>,
    supported: Arc<str>,
    now: Now,
    meter: Arc<Meter>,
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gate {
            inner,
            gate: self.clone(),
        }
    }
}

#[derive(Clone)]
struct Gate<S> {
    inner: S,
    gate: GateLayer,
}

impl<S> Service<Request<Body>> for Gate<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let inner = &mut self.inner;
        self.gate.wrap(req, |req| inner.call(req))
    }
}

impl GateLayer {
    /// `call(req)` behind this gate: the sunset check and the deprecation
    /// count first, the lifecycle headers on the response.
    fn wrap<F>(&self, req: Request<Body>, call: impl FnOnce(Request<Body>) -> F) -> GateFuture<F> {
        // Most versions have no dates: no call at all then.
        let admitted = if self.open { Ok(()) } else { self.admit(&req) };
        match admitted {
            Ok(()) => GateFuture::Inner {
                inner: call(req),
                headers: self.headers.clone(),
            },
            Err(response) => GateFuture::Done {
                response: Some(*response),
            },
        }
    }

    /// The sunset check (a 410) and the deprecation count.
    fn admit<B>(&self, req: &Request<B>) -> Result<(), Box<Response>> {
        let lifecycle = &self.lifecycle;
        let now = (self.now)();
        if lifecycle.is_sunset(now) {
            let mut problem = Problem::ee(StatusCode::GONE, "versioning", "sunset")
                .with_title("API version retired")
                .with_detail(format!(
                    "{} was retired on {}; this API serves {}",
                    self.version,
                    httpdate::fmt_http_date(lifecycle.sunset_at.unwrap_or(now)),
                    self.supported
                ));
            for (name, value) in self.headers.iter() {
                problem = problem.with_header(name.clone(), value.clone());
            }
            return Err(Box::new(problem.into_response()));
        }
        if lifecycle.deprecated_at.is_some_and(|at| at <= now) {
            self.meter.count(self.version, req);
        }
        Ok(())
    }
}

pin_project_lite::pin_project! {
    #[project = GateProj]
    enum GateFuture<F> {
        Inner { #[pin] inner: F, headers: Arc<[(http::HeaderName, HeaderValue)]> },
        Done { response: Option<Response> },
    }
}

impl<F> Future for GateFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GateProj::Inner { inner, headers } => {
                let mut response = std::task::ready!(inner.poll(cx))?;
                let h = response.headers_mut();
                for (name, value) in headers.iter() {
                    if name == http::header::VARY {
                        h.append(name.clone(), value.clone());
                    } else {
                        h.insert(name.clone(), value.clone());
                    }
                }
                Poll::Ready(Ok(response))
            }
            GateProj::Done { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}
