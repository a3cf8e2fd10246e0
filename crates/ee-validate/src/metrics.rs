//! `ee_validate_rejections_total{route,keyword}`: every refused request,
//! counted once per failed keyword (`required`, `minimum`, …) or per
//! pre-schema check (`content-type`, `size`, `syntax`, `depth`, `deserialize`).

/// The counter's name.
pub const REJECTIONS: &str = "ee_validate_rejections_total";

/// The route label when the route template is unknown.
pub const UNMATCHED: &str = "unmatched";

pub(crate) fn reject(route: &str, keyword: &str) {
    metrics::counter!(REJECTIONS, "route" => route.to_owned(), "keyword" => keyword.to_owned())
        .increment(1);
}
