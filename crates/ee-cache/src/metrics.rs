//! Metric handles, registered once per cache (no label allocation per request).
//!
//! - `ee_cache_requests_total{cache,level,result}`: lookups; `level` is `l1`
//!   or `l2` (where the entry was found, or the deepest level asked on a miss),
//!   `result` is `hit`, `stale`, `miss` or `error`.
//! - `ee_cache_loads_total{cache,result}` (`value`, `none`, `error`) and
//!   `ee_cache_load_duration_seconds{cache}`: loader calls.
//! - `ee_cache_dropped_writes_total{cache}`: writes lost to a failing store.
//! - `ee_cache_evictions_total{cache,cause}` (`size`, `expired`): from a
//!   [`MemoryStore`](crate::MemoryStore) built with a name.

use std::time::Duration;

use metrics::{Counter, Histogram, counter, histogram};

use crate::store::Level;

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
                "ee_cache_requests_total",
                "cache" => cache.to_owned(),
                "level" => level,
                "result" => result
            )
        };
        let both = |result: &'static str| [requests("l1", result), requests("l2", result)];
        let load = |result: &'static str| counter!("ee_cache_loads_total", "cache" => cache.to_owned(), "result" => result);
        Self {
            hit: both("hit"),
            stale: both("stale"),
            miss: both("miss"),
            error: both("error"),
            load_value: load("value"),
            load_none: load("none"),
            load_error: load("error"),
            load_duration: histogram!("ee_cache_load_duration_seconds", "cache" => cache.to_owned()),
            dropped_writes: counter!("ee_cache_dropped_writes_total", "cache" => cache.to_owned()),
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
    let size = counter!("ee_cache_evictions_total", "cache" => cache.to_owned(), "cause" => "size");
    let expired =
        counter!("ee_cache_evictions_total", "cache" => cache.to_owned(), "cause" => "expired");
    move |cause| match cause {
        moka::notification::RemovalCause::Size => size.increment(1),
        moka::notification::RemovalCause::Expired => expired.increment(1),
        _ => {}
    }
}
