//! The pool's metrics, each labelled `pool` (the [`DbConfig::name`]):
//!
//! | name | kind | unit |
//! |---|---|---|
//! | [`POOL_CONNECTIONS`] (`state` = `idle`, `in_use`, `reader`) | gauge | count |
//! | [`POOL_WAIT`] | histogram | seconds |
//! | [`POOL_TIMEOUTS`] | counter | count |
//! | [`QUERY_DURATION`] | histogram | seconds |
//! | [`SLOW_QUERIES`] | counter | count |
//! | [`TX_RETRIES`] | counter | count |
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
pub const POOL_CONNECTIONS: &str = "ee_db_pool_connections";
/// Histogram: how long a checkout waited for a connection, in seconds.
pub const POOL_WAIT: &str = "ee_db_pool_wait_seconds";
/// Counter: checkouts that found no connection within `connect_timeout_ms`.
pub const POOL_TIMEOUTS: &str = "ee_db_pool_timeouts_total";
/// Histogram: how long a statement took, in seconds.
pub const QUERY_DURATION: &str = "ee_db_query_duration_seconds";
/// Counter: statements slower than `slow_query_ms`.
pub const SLOW_QUERIES: &str = "ee_db_slow_queries_total";
/// Counter: transactions run again after a serialization failure, a
/// deadlock or SQLite's busy.
pub const TX_RETRIES: &str = "ee_db_transaction_retries_total";

/// Describes every ee-db metric (help text and unit) to the installed
/// recorder. [`Database`](crate::Database) calls it when it is opened;
/// calling it again is harmless.
pub fn describe() {
    metrics::describe_gauge!(
        POOL_CONNECTIONS,
        Unit::Count,
        "Database pool connections by state (idle, in_use, reader)"
    );
    metrics::describe_histogram!(
        POOL_WAIT,
        Unit::Seconds,
        "Time a checkout waited for a database connection"
    );
    metrics::describe_counter!(
        POOL_TIMEOUTS,
        Unit::Count,
        "Checkouts that found no database connection within the timeout"
    );
    metrics::describe_histogram!(
        QUERY_DURATION,
        Unit::Seconds,
        "Time a database statement took"
    );
    metrics::describe_counter!(
        SLOW_QUERIES,
        Unit::Count,
        "Database statements slower than slow_query_ms"
    );
    metrics::describe_counter!(
        TX_RETRIES,
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
        describe();
        Self {
            wait: metrics::histogram!(POOL_WAIT, "pool" => pool.clone()),
            timeouts: metrics::counter!(POOL_TIMEOUTS, "pool" => pool.clone()),
            query: metrics::histogram!(QUERY_DURATION, "pool" => pool.clone()),
            slow: metrics::counter!(SLOW_QUERIES, "pool" => pool.clone()),
            retries: metrics::counter!(TX_RETRIES, "pool" => pool.clone()),
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
        let gauge = |state: &'static str| metrics::gauge!(POOL_CONNECTIONS, "pool" => pool.clone(), "state" => state);
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
