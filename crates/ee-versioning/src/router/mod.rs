//! `VersionedRouter`: one axum `Router` per API version, the request's
//! version read from the URI, a header, the media type or the query, and the
//! lifecycle headers on every response.
//!
//! The parts, in the order a request meets them:
//!
//! - `builder`: [`VersionedRouter`], [`VersionRoutes`] and [`Routes`], what
//!   an application writes;
//! - `build`: the builder made into axum routers, for `into_router` (the
//!   versions picked inside axum's routing) or `into_service` (picked in
//!   front of it);
//! - `service`: [`VersionedService`] and its [`ResponseFuture`], the
//!   versions in front of axum's routing;
//! - `pick`: which version a request asks for (the sources in order, then
//!   the default);
//! - `selector`: `into_router`'s unprefixed paths, one route per path whose
//!   service calls the picked version's handler;
//! - `dispatch`: the fallback that picks the version and calls its router
//!   (the URI's version segment stripped);
//! - `gate`: around a version with a lifecycle, the sunset check (410), the
//!   deprecation count and the lifecycle headers.

mod build;
mod builder;
mod dispatch;
mod gate;
mod pick;
mod selector;
mod service;

pub use builder::{Routes, VersionRoutes, VersionedRouter};
pub use service::{ResponseFuture, VersionedService};
