//! Transactions: [`Tx`] on one connection, and [`Database::transaction`],
//! which runs a closure again after a serialization failure or deadlock.

use std::time::{Duration, Instant};

use ee_core::Backoff;
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;

use crate::{Database, DbError, Isolation, Row, Value};

use super::Conn;
use super::scope::mark_write;

impl Database {
    /// Starts a transaction on the primary. Commit it with
    /// [`Tx::commit`]; dropped without one, it is rolled back (its
    /// connection is closed rather than reused; prefer [`Tx::rollback`]).
    ///
    /// On PostgreSQL the `BEGIN` is sent with the transaction's first
    /// statement, in one round trip; a transaction that ends before any
    /// statement sends nothing and keeps its connection.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        self.begin_with(Isolation::Default).await
    }

    /// [`begin`](Self::begin) with an isolation level.
    pub async fn begin_with(&self, isolation: Isolation) -> Result<Tx, DbError> {
        mark_write();
        let writer = self.write_permit().await?;
        let mut conn = self.checkout(&self.inner.primary).await?;
        let sql = match (&conn, isolation) {
            #[cfg(feature = "sqlite")]
            (Conn::Sqlite(_), _) => "BEGIN IMMEDIATE",
            #[allow(unreachable_patterns)]
            (_, Isolation::Default) => "BEGIN",
            (_, Isolation::RepeatableRead) => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            (_, Isolation::Serializable) => "BEGIN ISOLATION LEVEL SERIALIZABLE",
        };
        // Marked first: a `BEGIN` cancelled in flight may still open the
        // transaction, and such a connection must not be reused.
        conn.set_in_tx(true);
        match &mut conn {
            // Sent with the first statement (one round trip fewer).
            #[cfg(feature = "postgres")]
            Conn::Pg(c) => c.begin = Some(sql),
            #[allow(unreachable_patterns)]
            _ => conn.batch(sql).await?,
        }
        Ok(Tx {
            conn,
            db: self.clone(),
            failed: false,
            _writer: writer,
        })
    }

    /// Runs `f` in a transaction: commits when it returns `Ok`, rolls back
    /// when it returns `Err`, and runs it again (up to `max_attempts`, with
    /// a jittered exponential backoff: 5-15 ms before the second attempt,
    /// doubling, at most 0.5-1.5 s) when the database reports a
    /// serialization failure (40001), a deadlock (40P01) or SQLite's busy.
    ///
    /// ```
    /// # async fn demo(db: ee_db::Database) -> Result<(), ee_db::DbError> {
    /// use ee_db::params;
    /// let moved = db
    ///     .transaction(|tx| Box::pin(async move {
    ///         tx.execute("UPDATE stock SET qty = qty - 1 WHERE sku = $1", params!["A-1"]).await?;
    ///         tx.execute("INSERT INTO reservations (sku) VALUES ($1)", params!["A-1"]).await
    ///     }))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T, DbError>>,
    {
        self.transaction_with(Isolation::Default, f).await
    }

    /// [`transaction`](Self::transaction) with an isolation level.
    pub async fn transaction_with<T, F>(&self, isolation: Isolation, mut f: F) -> Result<T, DbError>
    where
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T, DbError>>,
    {
        let mut attempt = 1;
        loop {
            // `BEGIN` itself can meet a busy database (SQLite): retried too.
            let result = match self.begin_with(isolation).await {
                Ok(mut tx) => match f(&mut tx).await {
                    Ok(value) => tx.commit().await.map(|()| value),
                    Err(e) => {
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                },
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_retryable() && attempt < self.inner.max_attempts => {
                    self.inner.meters.retries.increment(1);
                    tracing::debug!(attempt, error = %e, "transaction retried");
                    tokio::time::sleep(retry_backoff().delay(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// The wait before a transaction runs again: 15 ms doubling up to 1.5 s,
/// each delay with up to two thirds taken off at random, so 5-15 ms before
/// the second attempt and 0.5-1.5 s at most, spread evenly, so two
/// conflicting transactions do not collide again.
fn retry_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(15), Duration::from_millis(1_500)).with_jitter(2.0 / 3.0)
}

/// An open transaction (from [`Database::begin`] or
/// [`Database::transaction`]). Statements run on its one connection.
pub struct Tx {
    conn: Conn,
    db: Database,
    failed: bool,
    /// SQLite: held until the transaction ends (declared last: released
    /// after the connection is back in the pool).
    _writer: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Tx {
    /// Before a statement: counted as failed until it returns, so one
    /// cancelled in flight (which the server may still run and fail) makes
    /// the commit roll back instead of reporting success.
    fn pending(&mut self) -> bool {
        std::mem::replace(&mut self.failed, true)
    }

    fn note<T>(&mut self, failed_before: bool, r: Result<T, DbError>) -> Result<T, DbError> {
        self.failed = failed_before || r.is_err();
        r
    }

    /// The rows of a statement.
    pub async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let before = self.pending();
        let start = Instant::now();
        let r = self.conn.query(sql, params, usize::MAX).await;
        self.db.timed(sql, start);
        self.note(before, r)
    }

    /// The first row, or [`DbError::NotFound`].
    pub async fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Row, DbError> {
        self.query_opt(sql, params).await?.ok_or(DbError::NotFound)
    }

    /// The first row, if any.
    pub async fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, DbError> {
        let before = self.pending();
        let start = Instant::now();
        let r = self.conn.query(sql, params, 1).await;
        self.db.timed(sql, start);
        Ok(self.note(before, r)?.into_iter().next())
    }

    /// Every row decoded into `T` with serde.
    pub async fn query_as<T: DeserializeOwned>(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<T>, DbError> {
        let before = self.pending();
        let start = Instant::now();
        let r = self.conn.query_as(sql, params, usize::MAX).await;
        self.db.timed(sql, start);
        self.note(before, r)
    }

    /// The first row decoded into `T`, or [`DbError::NotFound`].
    pub async fn query_one_as<T: DeserializeOwned>(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<T, DbError> {
        let before = self.pending();
        let start = Instant::now();
        let r = self.conn.query_as(sql, params, 1).await;
        self.db.timed(sql, start);
        self.note(before, r)?
            .into_iter()
            .next()
            .ok_or(DbError::NotFound)
    }

    /// Runs a statement; returns the rows it changed.
    pub async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let before = self.pending();
        let start = Instant::now();
        let r = self.conn.execute(sql, params).await;
        self.db.timed(sql, start);
        self.note(before, r)
    }

    /// Runs `;`-separated statements without parameters. On PostgreSQL
    /// the connection is closed when the transaction ends (a plain `SET`
    /// would outlive it); prefer `SET LOCAL`.
    pub async fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        let before = self.pending();
        self.conn.set_session_dirty();
        let r = self.conn.batch(sql).await;
        self.note(before, r)
    }

    /// Row-level security: sets `ee.tenant_id` for the rest of this
    /// transaction only (`SET LOCAL`), for policies such as
    /// `USING (tenant_id = current_setting('ee.tenant_id'))`.
    pub async fn set_tenant(&mut self, tenant: &str) -> Result<(), DbError> {
        match &self.conn {
            #[cfg(feature = "postgres")]
            Conn::Pg(_) => self
                .query(
                    "SELECT set_config('ee.tenant_id', $1, true)",
                    &[Value::Text(tenant.to_owned())],
                )
                .await
                .map(drop),
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => Err(DbError::Unsupported("row-level security needs PostgreSQL")),
        }
    }

    /// Commits. A transaction in which a statement failed is rolled back
    /// instead, and the commit fails.
    pub async fn commit(mut self) -> Result<(), DbError> {
        if self.failed {
            self.rollback_inner().await?;
            return Err(DbError::Query {
                code: Some("25P02".into()),
                message: "a statement in this transaction failed; it was rolled back".into(),
            });
        }
        match self.conn.batch("COMMIT").await {
            Ok(()) => {
                self.conn.set_in_tx(false);
                Ok(())
            }
            // The connection stays marked: it is closed on return, which
            // ends whatever is left of the transaction.
            Err(e) => Err(e),
        }
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<(), DbError> {
        self.rollback_inner().await
    }

    async fn rollback_inner(&mut self) -> Result<(), DbError> {
        self.conn.batch("ROLLBACK").await?;
        self.conn.set_in_tx(false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::retry_backoff;

    /// The spread ee-db had before `ee_core::Backoff`: 10 ms · 2^(n-1), at
    /// most 1 s, ±50 %.
    #[test]
    fn retries_wait_10_ms_doubling_to_1_s_give_or_take_half() {
        let b = retry_backoff();
        let ms = |attempt, random| b.delay_with(attempt, random).as_secs_f64() * 1000.0;
        for (attempt, centre) in [(1, 10.0), (2, 20.0), (5, 160.0), (7, 640.0), (8, 1000.0)] {
            assert!((ms(attempt, 1.0) - centre * 0.5).abs() < 1e-3, "{attempt}");
            assert!((ms(attempt, 0.5) - centre).abs() < 1e-3, "{attempt}");
            assert!((ms(attempt, 0.0) - centre * 1.5).abs() < 1e-3, "{attempt}");
        }
        for attempt in [9, 20, u32::MAX] {
            assert!(b.delay(attempt) <= Duration::from_millis(1_500));
            assert!(b.delay(attempt) >= Duration::from_millis(499));
        }
    }
}
