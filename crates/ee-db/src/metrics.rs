//! The pool's metrics, each labelled `pool` (the [`DbConfig::name`]):
//!
//! | name | kind | unit |
//! |---|---|---|
//! | [`METRIC_POOL_CONNECTIONS`] (`state` = `idle`, `in_use`, `reader`) | gauge | count |
//! | [`METRIC_POOL_WAIT_SECONDS`] | histogram | seconds |
//! | [`METRIC_POOL_TIMEOUTS_TOTAL`] | counter | count |
//! | [`METRIC_QUERY_DURATION_SECONDS`] | histogram | seconds |
//! | [`METRIC_SLOW_QUERIES_TOTAL`] | counter | count |
//! | [`METRIC_TRANSACTION_RETRIES_TOTAL`] | counter | count |
//!
//! A [`Database`](crate::Database) calls [`describe`] and registers its
//! handles when it is opened (so install the recorder first); no metric is
//! looked up per statement. The gauges are published once a second.
//!
//! [`DbConfig::name`]: crate::DbConfig::name

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::PoolState;

/// Gauge: the pool's connections by `state`: `idle`, `in_use`, and
/// `reader` (SQLite read connections threads keep outside the pool).
pub const METRIC_POOL_CONNECTIONS: &str = "ee_db_pool_connections";
/// Histogram: how long a checkout waited for a connection, in seconds.
pub const METRIC_POOL_WAIT_SECONDS: &str = "ee_db_pool_wait_seconds";
/// Counter: checkouts that found no connection within `connect_timeout_ms`.
pub const METRIC_POOL_TIMEOUTS_TOTAL: &str = "ee_db_pool_timeouts_total";
/// Histogram: how long a statement took, in seconds.
pub const METRIC_QUERY_DURATION_SECONDS: &str = "ee_db_query_duration_seconds";
/// Counter: statements slower than `slow_query_ms`.
pub const METRIC_SLOW_QUERIES_TOTAL: &str = "ee_db_slow_queries_total";
/// Counter: transactions run again after a serialization failure, a
/// deadlock or SQLite's busy.
pub const METRIC_TRANSACTION_RETRIES_TOTAL: &str = "ee_db_transaction_retries_total";

/// Describes every ee-db metric (help text and unit) to the installed
/// recorder. [`Database`](crate::Database) calls it when it is opened;
/// calling it again is harmless.
pub fn describe_metrics() {
    metrics::describe_gauge!(
        METRIC_POOL_CONNECTIONS,
        Unit::Count,
        "Database pool connections by state (idle, in_use, reader)"
    );
    metrics::describe_histogram!(
        METRIC_POOL_WAIT_SECONDS,
        Unit::Seconds,
        "Time a checkout waited for a database connection"
    );
    metrics::describe_counter!(
        METRIC_POOL_TIMEOUTS_TOTAL,
        Unit::Count,
        "Checkouts that found no database connection within the timeout"
    );
    metrics::describe_histogram!(
        METRIC_QUERY_DURATION_SECONDS,
        Unit::Seconds,
        "Time a database statement took"
    );
    metrics::describe_counter!(
        METRIC_SLOW_QUERIES_TOTAL,
        Unit::Count,
        "Database statements slower than slow_query_ms"
    );
    metrics::describe_counter!(
        METRIC_TRANSACTION_RETRIES_TOTAL,
        Unit::Count,
        "Transactions run again after a serialization failure, deadlock or busy database"
    );
}

/// One pool's handles, registered when it is opened and reused: no key is
/// built per statement.
pub(crate) struct Meters {
    pub(crate) wait: Histogram,
    pub(crate) timeouts: Counter,
    pub(crate) query: Histogram,
    pub(crate) slow: Counter,
    pub(crate) retries: Counter,
}

impl Meters {
    pub(crate) fn new(pool: &Arc<str>) -> Self {
        describe_metrics();
        Self {
            wait: metrics::histogram!(METRIC_POOL_WAIT_SECONDS, "pool" => pool.clone()),
            timeouts: metrics::counter!(METRIC_POOL_TIMEOUTS_TOTAL, "pool" => pool.clone()),
            query: metrics::histogram!(METRIC_QUERY_DURATION_SECONDS, "pool" => pool.clone()),
            slow: metrics::counter!(METRIC_SLOW_QUERIES_TOTAL, "pool" => pool.clone()),
            retries: metrics::counter!(METRIC_TRANSACTION_RETRIES_TOTAL, "pool" => pool.clone()),
        }
    }
}

/// One pool's connection gauges.
pub(crate) struct PoolGauges {
    idle: Gauge,
    in_use: Gauge,
    reader: Gauge,
}

impl PoolGauges {
    pub(crate) fn new(pool: &Arc<str>) -> Self {
        let gauge = |state: &'static str| metrics::gauge!(METRIC_POOL_CONNECTIONS, "pool" => pool.clone(), "state" => state);
        Self {
            idle: gauge("idle"),
            in_use: gauge("in_use"),
            reader: gauge("reader"),
        }
    }

    pub(crate) fn set(&self, s: PoolState) {
        self.idle.set(f64::from(s.idle));
        self.in_use.set(f64::from(s.connections - s.idle));
        self.reader.set(f64::from(s.readers));
    }
}
