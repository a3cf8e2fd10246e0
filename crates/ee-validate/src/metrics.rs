//! The crate's metric: `ee_validate_rejections_total{route,keyword}`, every
//! refused request counted once per failed keyword (`required`, `minimum`, …)
//! or per pre-schema check (`content-type`, `size`, `body`, `syntax`,
//! `depth`, `deserialize`).
//!
//! The handles live in the [`SchemaRegistry`](crate::SchemaRegistry) (which
//! describes the metric when it is built): each `(route, keyword)` pair is
//! registered with the recorder on its first rejection and kept, so no
//! `counter!` lookup runs per request.

use std::collections::HashMap;
use std::sync::RwLock;

use metrics::{Counter, Unit, counter, describe_counter};

/// `ee_validate_rejections_total{route,keyword}`: refused requests, per
/// route template and failed keyword.
pub const METRIC_REJECTIONS_TOTAL: &str = "ee_validate_rejections_total";

/// The route label when the route template is unknown.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Describes this crate's metric (help text and unit in `/metrics`); every
/// [`SchemaRegistry`](crate::SchemaRegistry) calls it when it is built.
pub fn describe_metrics() {
    describe_counter!(
        METRIC_REJECTIONS_TOTAL,
        Unit::Count,
        "Requests refused by schema validation, per route template and failed keyword or pre-schema check"
    );
}

/// The rejection counters met so far, by route and keyword.
#[derive(Default)]
pub(crate) struct Rejections {
    by_route: RwLock<HashMap<String, HashMap<String, Counter>>>,
}

impl std::fmt::Debug for Rejections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rejections").finish_non_exhaustive()
    }
}

impl Rejections {
    /// Counts one rejection of `route` for `keyword`.
    pub(crate) fn count(&self, route: &str, keyword: &str) {
        let known = self.by_route.read().expect("not poisoned");
        if let Some(counter) = known.get(route).and_then(|k| k.get(keyword)) {
            counter.increment(1);
            return;
        }
        drop(known);
        let mut known = self.by_route.write().expect("not poisoned");
        known
            .entry(route.to_owned())
            .or_default()
            .entry(keyword.to_owned())
            .or_insert_with(|| {
                counter!(METRIC_REJECTIONS_TOTAL, "route" => route.to_owned(), "keyword" => keyword.to_owned())
            })
            .increment(1);
    }
}

/// The rejections of one request: its route label and where to count.
#[derive(Clone, Copy)]
pub(crate) struct Rejecter<'a> {
    pub(crate) rejections: &'a Rejections,
    pub(crate) route: &'a str,
}

impl Rejecter<'_> {
    /// Counts one rejection for `keyword`.
    pub(crate) fn reject(self, keyword: &str) {
        self.rejections.count(self.route, keyword);
    }
}
