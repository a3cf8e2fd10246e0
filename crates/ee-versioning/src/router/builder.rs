//! `VersionedRouter`, the builder: sources, versions and their routes,
//! lifecycles, the neutral routes, the clock and the metric's client key.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::MethodRouter;
use ee_core::{Clock, KeyExtractor, SystemClock};

use super::build::Target;
use super::gate::WallClock;
use super::service::{Front, NoNeutralRoute, VersionedService};
use crate::lifecycle::Lifecycle;
use crate::version::{Source, Version};

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
    pub(super) sources: Vec<Source>,
    pub(super) default: Option<Version>,
    pub(super) versions: BTreeMap<Version, VersionEntry>,
    pub(super) neutral: Option<Router>,
    pub(super) client_key: Option<Arc<dyn KeyExtractor>>,
    pub(super) clock: Arc<dyn WallClock>,
    pub(super) max_clients: usize,
}

/// One version's routes and lifecycle.
pub(super) struct VersionEntry {
    pub(super) routes: Routes,
    pub(super) lifecycle: Lifecycle,
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
            clock: Arc::new(SystemClock),
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
            .map(|e| e.lifecycle)
            .unwrap_or_default();
        self.versions.insert(
            Version(version),
            VersionEntry {
                routes: routes.into(),
                lifecycle,
            },
        );
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
        entry.lifecycle = lifecycle;
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

    /// The clock whose wall time ([`Clock::system_time`]) sunset and
    /// deprecation dates are compared with (default [`SystemClock`]; in
    /// tests, `ee_testing::ManualClock` moved past a sunset).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
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
        self.build(Target::Router).router
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
        let built = self.build(Target::Service);
        let shared = built.shared;
        VersionedService {
            router: built.router,
            front: Arc::new(Front {
                default_nested: shared.default.is_some_and(|d| shared.nested.contains(&d)),
                shared,
                vary: built.vary,
                // A request whose version is wrong still reaches the
                // version-neutral routes; the fallback marks the others.
                neutral: built.neutral.has_routes().then(|| {
                    built.neutral.fallback(|| async {
                        let mut response = Response::new(Body::empty());
                        response.extensions_mut().insert(NoNeutralRoute);
                        response
                    })
                }),
            }),
        }
    }
}

/// The routes of one version (see [`VersionedRouter::version`]): made from
/// a [`VersionRoutes`] or a finished `Router`.
#[derive(Debug)]
pub struct Routes {
    pub(super) kind: RoutesKind,
}

#[derive(Debug)]
pub(super) enum RoutesKind {
    /// Routes registered one by one: each also under `/v<N>`.
    Flat(Vec<FlatRoute>),
    /// A finished router, nested under `/v<N>`.
    Nested(Router),
}

/// One route of a [`VersionRoutes`].
#[derive(Debug)]
pub(super) struct FlatRoute {
    pub(super) path: String,
    pub(super) method_router: MethodRouter,
}

impl From<Router> for Routes {
    fn from(router: Router) -> Self {
        Routes {
            kind: RoutesKind::Nested(router),
        }
    }
}

impl From<VersionRoutes> for Routes {
    fn from(routes: VersionRoutes) -> Self {
        Routes {
            kind: RoutesKind::Flat(routes.routes),
        }
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
    routes: Vec<FlatRoute>,
}

impl VersionRoutes {
    /// No routes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route (`path` as axum writes it: `/orders/{id}`).
    pub fn route(mut self, path: &str, method_router: MethodRouter) -> Self {
        self.routes.push(FlatRoute {
            path: path.to_owned(),
            method_router,
        });
        self
    }
}
