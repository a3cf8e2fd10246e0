//! The engine's pool and a checked-out connection, one enum each over
//! PostgreSQL and SQLite; checkout (timed, with the tenant's schema set) and
//! SQLite's writer permit.

#[cfg(feature = "sqlite")]
use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;

use crate::row::RowInner;
use crate::{Database, DbError, PoolState, Row, Value};

/// A pool of the engine's connections.
#[derive(Clone)]
pub(crate) enum Pool {
    #[cfg(feature = "postgres")]
    Pg(bb8::Pool<crate::pg::PgManager>),
    #[cfg(feature = "sqlite")]
    Sqlite(Arc<crate::sqlite::SqlitePool>),
}

/// A checked-out connection.
// One lives for a statement or a transaction; boxing the larger variant
// would add an allocation to every checkout.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Conn {
    #[cfg(feature = "postgres")]
    Pg(bb8::PooledConnection<'static, crate::pg::PgManager>),
    #[cfg(feature = "sqlite")]
    Sqlite(crate::sqlite::SqliteGuard),
}

impl Database {
    /// A connection from `pool` (the wait timed; a timeout counted), with
    /// this handle's tenant schema set on PostgreSQL.
    pub(crate) async fn checkout(&self, pool: &Pool) -> Result<Conn, DbError> {
        let start = Instant::now();
        let got = pool.get().await;
        let waited = start.elapsed();
        self.inner.meters.wait.record(waited.as_secs_f64());
        let mut conn = match got {
            Ok(conn) => conn,
            Err(bb8::RunError::TimedOut) => {
                self.inner.meters.timeouts.increment(1);
                return Err(DbError::PoolTimeout(self.inner.connect_timeout));
            }
            Err(bb8::RunError::User(e)) => return Err(e),
        };
        #[cfg(feature = "postgres")]
        if let Conn::Pg(c) = &mut conn {
            c.use_schema(self.schema.as_ref()).await?;
        }
        Ok(conn)
    }

    /// SQLite: the pool's writer permit, awaited (up to the checkout
    /// timeout) so writers in this process queue asynchronously instead of
    /// sleeping in SQLite's busy handler. `None` on PostgreSQL.
    pub(crate) async fn write_permit(
        &self,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, DbError> {
        #[cfg(feature = "sqlite")]
        if let Pool::Sqlite(p) = &self.inner.primary {
            let wait =
                tokio::time::timeout(self.inner.connect_timeout, p.writer.clone().acquire_owned());
            return match wait.await {
                Ok(permit) => Ok(Some(permit.expect("the writer semaphore is never closed"))),
                Err(_) => {
                    self.inner.meters.timeouts.increment(1);
                    Err(DbError::PoolTimeout(self.inner.connect_timeout))
                }
            };
        }
        Ok(None)
    }
}

impl Pool {
    pub(crate) fn state(&self) -> PoolState {
        match self {
            #[cfg(feature = "postgres")]
            Pool::Pg(p) => {
                let s = p.state();
                PoolState {
                    connections: s.connections,
                    idle: s.idle_connections,
                    readers: 0,
                }
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => {
                let (connections, idle) = p.state();
                PoolState {
                    connections,
                    idle,
                    readers: p.readers(),
                }
            }
        }
    }

    pub(crate) async fn get(&self) -> Result<Conn, bb8::RunError<DbError>> {
        Ok(match self {
            #[cfg(feature = "postgres")]
            Pool::Pg(p) => Conn::Pg(p.get_owned().await?),
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => Conn::Sqlite(p.get().await?),
        })
    }
}

impl Conn {
    pub(crate) async fn query(
        &mut self,
        sql: &str,
        params: &[Value],
        limit: usize,
    ) -> Result<Vec<Row>, DbError> {
        match self {
            #[cfg(feature = "postgres")]
            Conn::Pg(c) => {
                if limit == 1 {
                    Ok(c.query_opt(sql, params)
                        .await?
                        .map(|r| Row(RowInner::Pg(r)))
                        .into_iter()
                        .collect())
                } else {
                    Ok(c.query(sql, params)
                        .await?
                        .into_iter()
                        .map(|r| Row(RowInner::Pg(r)))
                        .collect())
                }
            }
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => c.query(sql, params, limit),
        }
    }

    pub(crate) async fn query_as<T: DeserializeOwned>(
        &mut self,
        sql: &str,
        params: &[Value],
        limit: usize,
    ) -> Result<Vec<T>, DbError> {
        match self {
            #[cfg(feature = "postgres")]
            Conn::Pg(_) => self
                .query(sql, params, limit)
                .await?
                .iter()
                .map(Row::decode)
                .collect(),
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => c.query_as(sql, params, limit),
        }
    }

    pub(crate) async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        match self {
            #[cfg(feature = "postgres")]
            Conn::Pg(c) => c.execute(sql, params).await,
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => c.execute(sql, params),
        }
    }

    pub(crate) async fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        match self {
            #[cfg(feature = "postgres")]
            Conn::Pg(c) => c.batch(sql).await,
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => c.batch(sql),
        }
    }

    pub(super) fn set_in_tx(&mut self, on: bool) {
        match self {
            #[cfg(feature = "postgres")]
            Conn::Pg(c) => c.in_tx = on,
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => c.in_tx = on,
        }
    }

    /// PostgreSQL: closes this connection on return (its session state is
    /// unknown). SQLite keeps no such state beyond a transaction, which
    /// the pool checks on return.
    pub(crate) fn set_session_dirty(&mut self) {
        #[cfg(feature = "postgres")]
        if let Conn::Pg(c) = self {
            c.broken = true;
        }
    }

    /// Back to reusable after [`set_session_dirty`](Self::set_session_dirty),
    /// once the session is known to be clean again.
    pub(crate) fn set_session_clean(&mut self) {
        #[cfg(feature = "postgres")]
        if let Conn::Pg(c) = self {
            c.broken = false;
        }
    }

    /// Closes this connection on return instead of reusing it.
    pub(crate) fn set_broken(&mut self) {
        match self {
            #[cfg(feature = "postgres")]
            Conn::Pg(c) => c.broken = true,
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => c.in_tx = true,
        }
    }
}
