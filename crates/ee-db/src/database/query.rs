//! Statements outside a transaction: routed, timed, and (a read that met a
//! connection the server had closed) run again once on a fresh one.

use std::time::Instant;

use serde::de::DeserializeOwned;

use crate::{Database, DbError, Row, Value};

use super::Pool;
use super::routing::is_select;
use super::scope::mark_write;

impl Database {
    /// Times a statement: the duration histogram and the slow-query log.
    pub(super) fn timed(&self, sql: &str, start: Instant) {
        let took = start.elapsed();
        let meters = &self.inner.meters;
        meters.query.record(took.as_secs_f64());
        if took >= self.inner.slow {
            meters.slow.increment(1);
            tracing::warn!(pool = %self.inner.name, took_ms = took.as_millis() as u64, sql, "slow query");
        }
    }

    /// Runs a statement and returns its rows. `SELECT`s go to a replica
    /// when there are replicas (unless this request wrote within
    /// `read_your_writes_ms`); everything else goes to the primary.
    pub async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        self.run(sql, params, usize::MAX).await
    }

    async fn run(&self, sql: &str, params: &[Value], limit: usize) -> Result<Vec<Row>, DbError> {
        let pool = self.pick(sql);
        if let Some(done) = self.sqlite_now(pool, sql, |c| c.query(sql, params, limit)) {
            return done;
        }
        // (`run_as_pooled` is this with decoding; one generic body would
        // need `T: Send + 'static` on every `query_as`.)
        let read = is_select(sql);
        let _writer = if read {
            None
        } else {
            mark_write();
            self.write_permit().await?
        };
        let mut conn = self.checkout(pool).await?;
        let start = Instant::now();
        let result = match conn.query(sql, params, limit).await {
            // The server closed this idle connection (restart, kill): a
            // read runs again once on a fresh one.
            Err(DbError::Unavailable(_)) if read => {
                conn.set_broken();
                drop(conn);
                let mut fresh = self.checkout(pool).await?;
                fresh.query(sql, params, limit).await
            }
            other => other,
        };
        self.timed(sql, start);
        result
    }

    /// The first row, or [`DbError::NotFound`].
    pub async fn query_one(&self, sql: &str, params: &[Value]) -> Result<Row, DbError> {
        self.query_opt(sql, params).await?.ok_or(DbError::NotFound)
    }

    /// The first row, if any.
    pub async fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, DbError> {
        Ok(self.run(sql, params, 1).await?.into_iter().next())
    }

    /// Every row, decoded into `T` with serde (fields by column name).
    pub async fn query_as<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<T>, DbError> {
        self.run_as(sql, params, usize::MAX).await
    }

    /// The first row decoded into `T`, or [`DbError::NotFound`].
    pub async fn query_one_as<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<T, DbError> {
        let pool = self.pick(sql);
        if let Some(done) = self.sqlite_now(pool, sql, |c| c.query_first(sql, params)) {
            return done?.ok_or(DbError::NotFound);
        }
        self.run_as(sql, params, 1)
            .await?
            .into_iter()
            .next()
            .ok_or(DbError::NotFound)
    }

    /// SQLite: runs the read `f` now, without an await, on this thread's
    /// reader or a free pooled connection. `None` when the pool is
    /// PostgreSQL, `sql` is not a `SELECT`, or no connection is to be had.
    #[allow(clippy::unused_self)]
    fn sqlite_now<R>(
        &self,
        pool: &Pool,
        sql: &str,
        f: impl FnOnce(crate::sqlite::ReadOn<'_>) -> Result<R, DbError>,
    ) -> Option<Result<R, DbError>> {
        #[cfg(feature = "sqlite")]
        if let Pool::Sqlite(p) = pool
            && is_select(sql)
        {
            // Writes take the pooled path: they wait for the writer permit.
            return p.read_now(|conn| {
                self.inner.meters.wait.record(0.0);
                let start = Instant::now();
                let result = f(conn);
                self.timed(sql, start);
                result
            });
        }
        None
    }

    async fn run_as<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[Value],
        limit: usize,
    ) -> Result<Vec<T>, DbError> {
        let pool = self.pick(sql);
        if let Some(done) = self.sqlite_now(pool, sql, |c| c.query_as(sql, params, limit)) {
            return done;
        }
        // Boxed: the pooled path's future is large, and moving it around
        // would cost the SQLite fast path above more than the allocation
        // costs a network round trip.
        Box::pin(self.run_as_pooled(pool, sql, params, limit)).await
    }

    async fn run_as_pooled<T: DeserializeOwned>(
        &self,
        pool: &Pool,
        sql: &str,
        params: &[Value],
        limit: usize,
    ) -> Result<Vec<T>, DbError> {
        let read = is_select(sql);
        let _writer = if read {
            None
        } else {
            mark_write();
            self.write_permit().await?
        };
        let mut conn = self.checkout(pool).await?;
        let start = Instant::now();
        let result = match conn.query_as(sql, params, limit).await {
            Err(DbError::Unavailable(_)) if read => {
                conn.set_broken();
                drop(conn);
                let mut fresh = self.checkout(pool).await?;
                fresh.query_as(sql, params, limit).await
            }
            other => other,
        };
        self.timed(sql, start);
        result
    }

    /// Every row, built with [`FromRow`](crate::FromRow).
    pub async fn query_rows<T: crate::FromRow>(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<T>, DbError> {
        self.query(sql, params)
            .await?
            .iter()
            .map(T::from_row)
            .collect()
    }

    /// Runs a statement on the primary; returns the rows it changed.
    pub async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        mark_write();
        let _writer = self.write_permit().await?;
        let mut conn = self.checkout(&self.inner.primary).await?;
        let start = Instant::now();
        let result = conn.execute(sql, params).await;
        self.timed(sql, start);
        if let Err(DbError::Unavailable(_)) = &result {
            // Not retried: the write may have reached the server.
            conn.set_broken();
        }
        result
    }

    /// Runs several `;`-separated statements without parameters on the
    /// primary (DDL, set-up).
    pub async fn batch(&self, sql: &str) -> Result<(), DbError> {
        mark_write();
        let _writer = self.write_permit().await?;
        let mut conn = self.checkout(&self.inner.primary).await?;
        // Whatever the statements leave on the session (a `SET`, an open or
        // failed transaction) must not reach the next user: on PostgreSQL
        // this connection is closed afterwards; SQLite closes one left in a
        // transaction.
        conn.set_session_dirty();
        conn.batch(sql).await
    }
}
