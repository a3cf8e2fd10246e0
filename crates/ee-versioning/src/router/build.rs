//! Building a [`VersionedRouter`] into axum routers: each version's routes
//! (flat or nested) under `/v<N>`, unprefixed for the default, behind the
//! version's gate; for `into_router`, the services that pick versions inside
//! axum's routing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::MethodRouter;
use http::HeaderValue;

use super::builder::{FlatRoute, RoutesKind, VersionEntry, VersionedRouter};
use super::dispatch::Dispatch;
use super::gate::{GateLayer, WallClock};
use super::pick::Shared;
use super::selector::{DefaultLayer, DefaultShared, PathHandler, Selector};
use crate::lifecycle::Lifecycle;
use crate::metrics::{Meter, VersionMeter};
use crate::version::{Source, Version};

/// What a [`VersionedRouter`] is built into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// [`VersionedRouter::into_router`]: one `Router` that picks versions
    /// inside axum's routing (a selector per unprefixed path, the dispatch
    /// as the fallback).
    Router,
    /// [`VersionedRouter::into_service`]: plain routes only (`/v<N>/…` when
    /// the URI is a source, the default's unprefixed; each version's own
    /// router with the neutral routes), the selection in front of them.
    Service,
}

/// What [`VersionedRouter::build`] makes.
pub(super) struct Built {
    /// The main router.
    pub(super) router: Router,
    /// What picks versions, with each version's router.
    pub(super) shared: Arc<Shared>,
    /// The `Vary` of requests not versioned by their URI.
    pub(super) vary: Option<HeaderValue>,
    /// The version-neutral routes.
    pub(super) neutral: Router,
}

impl VersionedRouter {
    /// The routers and what picks versions, for `target`.
    pub(super) fn build(self, target: Target) -> Built {
        let supported: Arc<[Version]> = self.versions.keys().copied().collect();
        let neutral = self.neutral.unwrap_or_default();
        let meter = Arc::new(Meter::new(self.client_key, self.max_clients));
        let mut assembly = Assembly {
            target,
            uri_first: self.sources.first() == Some(&Source::Uri),
            uri_is_source: self.sources.contains(&Source::Uri),
            default: self.default,
            vary: vary_of(&self.sources),
            outer: neutral.clone(),
            neutral,
            gated: BTreeMap::new(),
            nested: Vec::new(),
            by_path: BTreeMap::new(),
        };
        for (version, VersionEntry { routes, lifecycle }) in self.versions {
            let gate = VersionGate::new(
                version,
                lifecycle,
                supported.clone(),
                self.clock.clone(),
                &meter,
            );
            match (routes.kind, target) {
                (RoutesKind::Flat(list), Target::Service) => {
                    assembly.flat_in_front(&gate, list);
                }
                (RoutesKind::Nested(router), Target::Service) => {
                    assembly.nested_in_front(&gate, router);
                }
                (RoutesKind::Flat(list), Target::Router) => assembly.flat_inside(&gate, list),
                (RoutesKind::Nested(router), Target::Router) => {
                    assembly.nested_inside(&gate, router);
                }
            }
        }
        let shared = Arc::new(Shared {
            sources: self.sources,
            default: self.default,
            versions: assembly.gated,
            nested: assembly.nested,
            supported,
        });
        let router = match target {
            Target::Service => assembly.outer,
            Target::Router => {
                let outer = selectors(assembly.outer, assembly.by_path, &shared);
                outer.fallback_service(Dispatch {
                    shared: shared.clone(),
                })
            }
        };
        Built {
            router,
            shared,
            vary: assembly.vary,
            neutral: assembly.neutral,
        }
    }
}

/// The `Vary` of requests not versioned by their URI: the header sources
/// (and `accept` for the media type).
fn vary_of(sources: &[Source]) -> Option<HeaderValue> {
    let vary = sources
        .iter()
        .filter_map(|s| match s {
            Source::Header(h) => Some(h.as_str().to_owned()),
            Source::MediaType { .. } => Some("accept".to_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(", ");
    HeaderValue::from_str(&vary).ok().filter(|v| !v.is_empty())
}

/// Makes the gates of one version.
struct VersionGate {
    version: Version,
    lifecycle: Arc<Lifecycle>,
    supported: Arc<[Version]>,
    clock: Arc<dyn WallClock>,
    /// The deprecation counters, registered now (a deprecated version only).
    meter: Option<Arc<VersionMeter>>,
}

impl VersionGate {
    fn new(
        version: Version,
        lifecycle: Lifecycle,
        supported: Arc<[Version]>,
        clock: Arc<dyn WallClock>,
        meter: &Arc<Meter>,
    ) -> Self {
        let meter = lifecycle
            .deprecated_at
            .is_some()
            .then(|| Arc::new(VersionMeter::new(meter.clone(), version)));
        Self {
            version,
            lifecycle: Arc::new(lifecycle),
            supported,
            clock,
            meter,
        }
    }

    /// The gate, adding `vary` to the lifecycle headers.
    fn layer(&self, vary: Option<&HeaderValue>) -> GateLayer {
        let lifecycle = &self.lifecycle;
        let mut headers = lifecycle.headers();
        if let Some(v) = vary {
            headers.push((http::header::VARY, v.clone()));
        }
        GateLayer {
            version: self.version,
            open: lifecycle.deprecated_at.is_none() && lifecycle.sunset_at.is_none(),
            lifecycle: lifecycle.clone(),
            headers: headers.into(),
            supported: self.supported.clone(),
            clock: self.clock.clone(),
            meter: self.meter.clone(),
        }
    }

    /// No lifecycle at all: routes of this version need no gate where
    /// nothing else (`Vary`) is added.
    fn quiet(&self) -> bool {
        let l = &self.lifecycle;
        l.deprecated_at.is_none()
            && l.sunset_at.is_none()
            && l.deprecation_link.is_none()
            && l.successor_link.is_none()
    }

    /// `m` behind the gate, unless the version is quiet.
    fn method(&self, m: MethodRouter) -> MethodRouter {
        if self.quiet() {
            m
        } else {
            m.layer(self.layer(None))
        }
    }

    /// `r` behind the gate, unless the version is quiet.
    fn router(&self, r: Router) -> Router {
        if self.quiet() {
            r
        } else {
            r.layer(self.layer(None))
        }
    }
}

/// One version's handler for an unprefixed path (`into_router`).
struct VersionHandler {
    handler: MethodRouter,
    gate: GateLayer,
}

/// The routers as they are assembled, version by version.
struct Assembly {
    target: Target,
    /// `/v<N>/…` is routed by axum itself (`into_router`, the URI first).
    uri_first: bool,
    /// `/v<N>/…` routes exist (`into_service`, the URI among the sources).
    uri_is_source: bool,
    default: Option<Version>,
    vary: Option<HeaderValue>,
    neutral: Router,
    /// The main router: the neutral routes, then the versions'.
    outer: Router,
    /// Each version's own router, behind its gate.
    gated: BTreeMap<Version, Router>,
    /// The versions given as finished routers.
    nested: Vec<Version>,
    /// `into_router`: each unprefixed path's handler, per version.
    by_path: BTreeMap<String, BTreeMap<Version, VersionHandler>>,
}

impl Assembly {
    /// `into_service`, routes registered one by one: every route plain,
    /// under `/v<N>` when the URI is a source, the default's also
    /// unprefixed, and each version's in a router of its own (with the
    /// neutral routes) for requests that name it otherwise.
    fn flat_in_front(&mut self, gate: &VersionGate, list: Vec<FlatRoute>) {
        debug_assert_eq!(self.target, Target::Service);
        let version = gate.version;
        let mut own = Router::new();
        for FlatRoute {
            path,
            method_router,
        } in list
        {
            if self.uri_is_source {
                let prefixed = format!("/{version}{path}");
                let route = gate.method(method_router.clone());
                self.outer = std::mem::take(&mut self.outer).route(&prefixed, route);
            }
            if self.default == Some(version) {
                let route = gate.method(method_router.clone());
                self.outer = std::mem::take(&mut self.outer).route(&path, route);
            }
            own = own.route(&path, method_router);
        }
        let own = gate.router(own);
        self.gated.insert(version, own.merge(self.neutral.clone()));
    }

    /// `into_service`, a finished router: nested under `/v<N>` when the URI
    /// is a source, and a router of its own (with the neutral routes).
    fn nested_in_front(&mut self, gate: &VersionGate, router: Router) {
        debug_assert_eq!(self.target, Target::Service);
        let version = gate.version;
        self.nested.push(version);
        let own = gate.router(router);
        if self.uri_is_source {
            self.outer = std::mem::take(&mut self.outer).nest(&format!("/{version}"), own.clone());
        }
        self.gated.insert(version, own.merge(self.neutral.clone()));
    }

    /// `into_router`, routes registered one by one: under `/v<N>` when the
    /// URI is the first source (the response then does not vary by the
    /// other sources), each unprefixed path kept for its selector, and the
    /// version's router for the dispatch.
    fn flat_inside(&mut self, gate: &VersionGate, list: Vec<FlatRoute>) {
        debug_assert_eq!(self.target, Target::Router);
        let version = gate.version;
        let mut dispatch = Router::new();
        for FlatRoute {
            path,
            method_router,
        } in list
        {
            if self.uri_first {
                let prefixed = format!("/{version}{path}");
                let route = gate.method(method_router.clone());
                self.outer = std::mem::take(&mut self.outer).route(&prefixed, route);
            }
            self.by_path.entry(path.clone()).or_default().insert(
                version,
                VersionHandler {
                    // `with_state` turns the handlers into routes once, not
                    // on every request.
                    handler: method_router.clone().with_state(()),
                    gate: gate.layer(self.vary.as_ref()),
                },
            );
            dispatch = dispatch.route(&path, method_router);
        }
        self.gated
            .insert(version, dispatch.layer(gate.layer(self.vary.as_ref())));
    }

    /// `into_router`, a finished router: nested under `/v<N>` when the URI
    /// is the first source, and the version's router for the dispatch.
    fn nested_inside(&mut self, gate: &VersionGate, router: Router) {
        debug_assert_eq!(self.target, Target::Router);
        let version = gate.version;
        if self.uri_first {
            let nested = gate.router(router.clone());
            self.outer = std::mem::take(&mut self.outer).nest(&format!("/{version}"), nested);
        }
        self.gated
            .insert(version, router.layer(gate.layer(self.vary.as_ref())));
    }
}

/// `into_router`: a path of `VersionRoutes` without a version segment is
/// one axum route whose service picks the version's handler (one match, no
/// second router). The default version's handler is the route itself (plain
/// axum routing); a request that names another version is handed to the
/// selector by a layer that only reads the sources.
fn selectors(
    mut outer: Router,
    by_path: BTreeMap<String, BTreeMap<Version, VersionHandler>>,
    shared: &Arc<Shared>,
) -> Router {
    for (path, versions) in by_path {
        let selector = Selector {
            shared: shared.clone(),
            versions: versions
                .iter()
                .map(|(v, h)| PathHandler {
                    version: *v,
                    handler: Mutex::new(h.handler.clone()),
                    gate: h.gate.clone(),
                })
                .collect(),
        };
        let default = shared
            .default
            .and_then(|d| versions.get(&d).map(|h| (d, h)));
        outer = match default {
            Some((version, h)) => outer.route(
                &path,
                h.handler.clone().layer(DefaultLayer {
                    shared: Arc::new(DefaultShared {
                        version,
                        gate: h.gate.clone(),
                        selector,
                    }),
                }),
            ),
            None => outer.route_service(&path, selector),
        };
    }
    outer
}
