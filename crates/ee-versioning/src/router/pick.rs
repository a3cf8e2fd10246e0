//! Which version a request asks for: the sources in order, then the
//! default.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::Request;

use crate::error::VersioningError;
use crate::version::{Found, Source, Version};

/// The version a request asked for, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Picked {
    /// Named by the URI's first segment (`/v2/orders`), which the path
    /// still holds.
    ByUri(Version),
    /// Named by a header, the media type or the query, or the default.
    Otherwise(Version),
}

impl Picked {
    /// The version, however it was named.
    pub(super) fn version(self) -> Version {
        match self {
            Picked::ByUri(v) | Picked::Otherwise(v) => v,
        }
    }
}

/// Whether to read the URI too, or skip it (the request already matched an
/// unprefixed route: its first segment is not a version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Uri {
    Read,
    Skip,
}

/// What picks versions, with each version's router: shared by every service
/// the router is built into.
pub(super) struct Shared {
    pub(super) sources: Vec<Source>,
    pub(super) default: Option<Version>,
    /// Each version's routes, behind its gate.
    pub(super) versions: BTreeMap<Version, Router>,
    /// The versions given as finished routers (nested under `/v<N>`).
    pub(super) nested: Vec<Version>,
    /// The versions served, for problems.
    pub(super) supported: Arc<[Version]>,
}

impl Shared {
    /// The version `req` asks for (reading the URI as `uri` says), or why
    /// it cannot be served.
    pub(super) fn pick(&self, req: &Request<Body>, uri: Uri) -> Result<Picked, VersioningError> {
        for source in &self.sources {
            if uri == Uri::Skip && matches!(source, Source::Uri) {
                continue;
            }
            match source.read(req) {
                Found::Absent => continue,
                Found::Malformed(text) => {
                    return Err(VersioningError::Malformed {
                        text,
                        supported: self.supported.to_vec(),
                    });
                }
                Found::Version(v) if *source == Source::Uri => return Ok(Picked::ByUri(v)),
                Found::Version(v) => return Ok(Picked::Otherwise(v)),
            }
        }
        self.default
            .map(Picked::Otherwise)
            .ok_or_else(|| VersioningError::Missing {
                supported: self.supported.to_vec(),
            })
    }

    /// `version`'s router, or the 400 of a version this API does not serve.
    pub(super) fn router(&self, version: Version) -> Result<&Router, VersioningError> {
        self.versions
            .get(&version)
            .ok_or_else(|| VersioningError::Unsupported {
                version,
                supported: self.supported.to_vec(),
            })
    }
}
