//! The cache's metrics: names, descriptions, and the handles a cache
//! registers once when it is built (no label allocation per request).

use std::time::Duration;

use metrics::{Counter, Histogram, Unit, counter, describe_counter, describe_histogram, histogram};

use crate::store::Level;

/// `ee_cache_requests_total{cache,level,result}`: lookups; `level` is `l1`
/// or `l2` (where the entry was found, or the deepest level asked on a
/// miss), `result` is `hit`, `stale`, `miss` or `error`.
pub const METRIC_REQUESTS_TOTAL: &str = "ee_cache_requests_total";
/// `ee_cache_loads_total{cache,result}`: loader calls, by outcome (`value`,
/// `none`, `error`).
pub const METRIC_LOADS_TOTAL: &str = "ee_cache_loads_total";
/// `ee_cache_load_duration_seconds{cache}`: how long loader calls took.
pub const METRIC_LOAD_DURATION_SECONDS: &str = "ee_cache_load_duration_seconds";
/// `ee_cache_dropped_writes_total{cache}`: writes, deletes and tag
/// invalidations lost to a failing store.
pub const METRIC_DROPPED_WRITES_TOTAL: &str = "ee_cache_dropped_writes_total";
/// `ee_cache_evictions_total{cache,cause}` (`size`, `expired`): entries a
/// [`MemoryStore`](crate::MemoryStore) built with a
/// [`name`](crate::MemoryStoreBuilder::name) evicted.
pub const METRIC_EVICTIONS_TOTAL: &str = "ee_cache_evictions_total";

/// Describes the cache's metrics to the installed recorder (help text and
/// unit in `/metrics`). [`CacheBuilder::build`](crate::CacheBuilder::build)
/// and [`MemoryStoreBuilder::name`](crate::MemoryStoreBuilder::name) call it;
/// calling it again is harmless.
pub fn describe_metrics() {
    describe_counter!(
        METRIC_REQUESTS_TOTAL,
        Unit::Count,
        "Cache lookups, by cache, level that answered (or the deepest asked on a miss) and result (hit, stale, miss, error)"
    );
    describe_counter!(
        METRIC_LOADS_TOTAL,
        Unit::Count,
        "Loader calls on a cache miss, by cache and result (value, none, error)"
    );
    describe_histogram!(
        METRIC_LOAD_DURATION_SECONDS,
        Unit::Seconds,
        "Time the loader took on a cache miss, by cache"
    );
    describe_counter!(
        METRIC_DROPPED_WRITES_TOTAL,
        Unit::Count,
        "Cache writes, deletes and tag invalidations lost to a failing store, by cache"
    );
    describe_counter!(
        METRIC_EVICTIONS_TOTAL,
        Unit::Count,
        "Entries evicted from a named in-memory cache store, by cache and cause (size, expired)"
    );
}

pub(crate) struct CacheMetrics {
    hit: [Counter; 2],
    stale: [Counter; 2],
    miss: [Counter; 2],
    error: [Counter; 2],
    load_value: Counter,
    load_none: Counter,
    load_error: Counter,
    load_duration: Histogram,
    dropped_writes: Counter,
}

fn index(level: Level) -> usize {
    match level {
        Level::L1 => 0,
        Level::L2 => 1,
    }
}

impl CacheMetrics {
    pub(crate) fn new(cache: &str) -> Self {
        let requests = |level: &'static str, result: &'static str| {
            counter!(
                METRIC_REQUESTS_TOTAL,
                "cache" => cache.to_owned(),
                "level" => level,
                "result" => result
            )
        };
        let both = |result: &'static str| [requests("l1", result), requests("l2", result)];
        let load = |result: &'static str| counter!(METRIC_LOADS_TOTAL, "cache" => cache.to_owned(), "result" => result);
        Self {
            hit: both("hit"),
            stale: both("stale"),
            miss: both("miss"),
            error: both("error"),
            load_value: load("value"),
            load_none: load("none"),
            load_error: load("error"),
            load_duration: histogram!(METRIC_LOAD_DURATION_SECONDS, "cache" => cache.to_owned()),
            dropped_writes: counter!(METRIC_DROPPED_WRITES_TOTAL, "cache" => cache.to_owned()),
        }
    }

    #[inline]
    pub(crate) fn hit(&self, level: Level) {
        self.hit[index(level)].increment(1);
    }

    pub(crate) fn stale(&self, level: Level) {
        self.stale[index(level)].increment(1);
    }

    pub(crate) fn miss(&self, level: Level) {
        self.miss[index(level)].increment(1);
    }

    pub(crate) fn error(&self, level: Level) {
        self.error[index(level)].increment(1);
    }

    pub(crate) fn dropped_write(&self) {
        self.dropped_writes.increment(1);
    }

    pub(crate) fn loaded<V>(&self, took: Duration, value: Option<&Option<V>>) {
        self.load_duration.record(took.as_secs_f64());
        match value {
            Some(Some(_)) => self.load_value.increment(1),
            Some(None) => self.load_none.increment(1),
            None => self.load_error.increment(1),
        }
    }
}

/// Counts evictions of a named memory store.
pub(crate) fn eviction_counter(
    cache: &str,
) -> impl Fn(moka::notification::RemovalCause) + Send + Sync + 'static {
    let size = counter!(METRIC_EVICTIONS_TOTAL, "cache" => cache.to_owned(), "cause" => "size");
    let expired =
        counter!(METRIC_EVICTIONS_TOTAL, "cache" => cache.to_owned(), "cause" => "expired");
    move |cause| match cause {
        moka::notification::RemovalCause::Size => size.increment(1),
        moka::notification::RemovalCause::Expired => expired.increment(1),
        _ => {}
    }
}
