#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
// With one engine compiled out, engine matches have one arm and some
// helpers go unused.
#![cfg_attr(
    not(all(feature = "postgres", feature = "sqlite")),
    allow(
        unused_imports,
        unused_mut,
        unused_variables,
        unreachable_patterns,
        irrefutable_let_patterns,
        dead_code
    )
)]

#[cfg(not(any(feature = "postgres", feature = "sqlite")))]
compile_error!(
    "ee-db needs an engine: enable the `sqlite` feature, the `postgres` feature, or both"
);

mod config;
mod database;
mod error;
#[cfg(feature = "axum")]
mod layer;
mod metrics;
mod migrate;
#[cfg(feature = "postgres")]
mod pg;
mod row;
#[cfg(feature = "sqlite")]
mod sqlite;
/// Without SQLite compiled in, its connection type exists but has no values.
#[cfg(not(feature = "sqlite"))]
mod sqlite {
    use crate::{DbError, Value};

    pub(crate) enum SqliteConn {}

    /// Where an SQLite read runs now (never, without SQLite).
    pub(crate) type ReadOn<'a> = &'a mut SqliteConn;

    impl SqliteConn {
        pub(crate) fn query_as<T>(
            &mut self,
            _: &str,
            _: &[Value],
            _: usize,
        ) -> Result<Vec<T>, DbError> {
            match *self {}
        }
        pub(crate) fn query_first<T>(
            &mut self,
            _: &str,
            _: &[Value],
        ) -> Result<Option<T>, DbError> {
            match *self {}
        }
        pub(crate) fn query(
            &mut self,
            _: &str,
            _: &[Value],
            _: usize,
        ) -> Result<Vec<crate::Row>, DbError> {
            match *self {}
        }
    }
}
mod value;

pub use config::{CheckoutTest, DbConfig};
pub use database::{Database, Engine, Isolation, PoolState, Tx, request_scope};
pub use error::DbError;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use layer::{DbLayer, DbService, DbTx};
pub use metrics::{
    METRIC_POOL_CONNECTIONS, METRIC_POOL_TIMEOUTS_TOTAL, METRIC_POOL_WAIT_SECONDS,
    METRIC_QUERY_DURATION_SECONDS, METRIC_SLOW_QUERIES_TOTAL, METRIC_TRANSACTION_RETRIES_TOTAL,
    describe_metrics,
};
pub use migrate::{Migration, MigrationReport, Migrations};
pub use row::{ColumnIndex, FromRow, Row};
pub use value::Value;

/// Error text with its cause (tokio-postgres puts the reason in `source`).
pub(crate) fn error_text(e: &dyn std::error::Error) -> String {
    match e.source() {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}
