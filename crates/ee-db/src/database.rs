//! `Database`: a pool (plus optional read replicas) with a small API that
//! runs the same on PostgreSQL and SQLite.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;

use crate::config::{CheckoutTest, DbConfig};
use crate::row::RowInner;
use crate::{DbError, Row, Value};

pub(crate) const POOL_CONNECTIONS: &str = "ee_db_pool_connections";
pub(crate) const POOL_WAIT: &str = "ee_db_pool_wait_seconds";
pub(crate) const POOL_TIMEOUTS: &str = "ee_db_pool_timeouts_total";
pub(crate) const QUERY_DURATION: &str = "ee_db_query_duration_seconds";
pub(crate) const SLOW_QUERIES: &str = "ee_db_slow_queries_total";
pub(crate) const TX_RETRIES: &str = "ee_db_transaction_retries_total";

/// A connection pool to PostgreSQL or SQLite, cheap to clone (share it
/// across handlers).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ee_db::DbError> {
/// use ee_db::{Database, params};
///
/// let db = Database::open("sqlite::memory:").await?;
/// db.batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)").await?;
/// db.execute("INSERT INTO users (id, name) VALUES ($1, $2)", params![1, "ada"]).await?;
///
/// #[derive(serde::Deserialize)]
/// struct User { id: i64, name: String }
/// let users: Vec<User> = db.query_as("SELECT id, name FROM users", params![]).await?;
/// assert_eq!(users[0].name, "ada");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
    /// The tenant schema this handle's sessions use (PostgreSQL).
    schema: Option<Arc<str>>,
    /// Reads stay on the primary (see [`Database::on_primary`]).
    primary_only: bool,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("pool", &self.inner.name)
            .field("engine", &self.engine())
            .field("replicas", &self.inner.replicas.len())
            .field("schema", &self.schema)
            .finish()
    }
}

struct Inner {
    primary: Pool,
    replicas: Vec<Pool>,
    next: AtomicUsize,
    name: Arc<str>,
    connect_timeout: Duration,
    slow: Duration,
    read_your_writes: Duration,
    max_attempts: u32,
    /// Metric handles, registered on first use (so with the recorder the
    /// service installed at start-up) and reused: no key built per query.
    meters: std::sync::OnceLock<Meters>,
}

struct Meters {
    wait: metrics::Histogram,
    timeouts: metrics::Counter,
    query: metrics::Histogram,
    slow: metrics::Counter,
    retries: metrics::Counter,
}

impl Inner {
    fn meters(&self) -> &Meters {
        self.meters.get_or_init(|| {
            let pool = self.name.clone();
            Meters {
                wait: metrics::histogram!(POOL_WAIT, "pool" => pool.clone()),
                timeouts: metrics::counter!(POOL_TIMEOUTS, "pool" => pool.clone()),
                query: metrics::histogram!(QUERY_DURATION, "pool" => pool.clone()),
                slow: metrics::counter!(SLOW_QUERIES, "pool" => pool.clone()),
                retries: metrics::counter!(TX_RETRIES, "pool" => pool),
            }
        })
    }
}

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

/// Which engine a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// Embedded SQLite.
    Sqlite,
}

/// Connections of a pool right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Open connections.
    pub connections: u32,
    /// Of which idle in the pool.
    pub idle: u32,
    /// SQLite file databases: read connections kept by threads, outside the
    /// pool and not counted in `connections` (at most `max_size`). Always 0
    /// on PostgreSQL and for `sqlite::memory:`.
    pub readers: u32,
}

/// Transaction isolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// The engine's default (PostgreSQL: READ COMMITTED; SQLite: the
    /// database is locked for writing from `BEGIN IMMEDIATE`).
    #[default]
    Default,
    /// PostgreSQL's REPEATABLE READ.
    RepeatableRead,
    /// SERIALIZABLE (SQLite transactions always are).
    Serializable,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Per-request state: when this request last wrote.
struct Scope {
    last_write: std::cell::Cell<Option<Instant>>,
}

/// Runs `fut` as one request for read-your-writes: after a write in it,
/// its reads go to the primary for `read_your_writes_ms`. [`DbLayer`]
/// does this for every request.
///
/// [`DbLayer`]: crate::DbLayer
pub async fn request_scope<F: Future>(fut: F) -> F::Output {
    SCOPE
        .scope(
            Scope {
                last_write: std::cell::Cell::new(None),
            },
            fut,
        )
        .await
}

fn mark_write() {
    let _ = SCOPE.try_with(|s| s.last_write.set(Some(Instant::now())));
}

fn pg_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn is_select(sql: &str) -> bool {
    let head = sql.as_bytes().trim_ascii_start();
    // ASCII letters only: setting bit 5 lowercases them.
    head.len() >= 6 && head[..6].iter().zip(b"select").all(|(a, b)| a | 0x20 == *b)
}

/// `SELECT … FOR UPDATE / FOR SHARE` (and the key variants) lock rows: a
/// replica refuses them.
fn locks_rows(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.contains(" for update")
        || lower.contains(" for share")
        || lower.contains(" for no key update")
        || lower.contains(" for key share")
}

fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
        // The system's own schemas are never a tenant's.
        && !name.to_ascii_lowercase().starts_with("pg_")
        && !matches!(name.to_ascii_lowercase().as_str(), "public" | "information_schema")
}

impl Database {
    /// Opens a pool on `url` with default settings (see [`DbConfig`]).
    pub async fn open(url: &str) -> Result<Self, DbError> {
        Self::connect(DbConfig::new(url)).await
    }

    /// Opens the pools `config` describes and checks one connection, so a
    /// wrong URL or an unreachable server fails at start-up.
    pub async fn connect(config: DbConfig) -> Result<Self, DbError> {
        config.check()?;
        #[cfg(feature = "postgres")]
        if pg_url(&config.url) {
            return Self::postgres_with_tls(config, tokio_postgres::NoTls).await;
        }
        if config.url.starts_with("sqlite:") {
            if !config.replicas.is_empty() {
                return Err(DbError::BadConfig(
                    "replicas need PostgreSQL; an SQLite database has none".into(),
                ));
            }
            #[cfg(feature = "sqlite")]
            {
                let manager =
                    crate::sqlite::SqliteManager::new(&config.url, config.statement_cache)?;
                let pool = crate::sqlite::SqlitePool::new(
                    manager,
                    config.max_size,
                    config.min_idle.unwrap_or(0),
                    config.connect_timeout(),
                )?;
                return Self::finish(config, Pool::Sqlite(pool), Vec::new()).await;
            }
            #[cfg(not(feature = "sqlite"))]
            return Err(DbError::Unavailable(
                "sqlite URLs need ee-db's `sqlite` feature".into(),
            ));
        }
        if pg_url(&config.url) {
            return Err(DbError::Unavailable(
                "postgres URLs need ee-db's `postgres` feature".into(),
            ));
        }
        Err(DbError::Unavailable(format!(
            "`{}` is neither a postgres:// nor an sqlite:// URL",
            redact(&config.url)
        )))
    }

    /// A PostgreSQL pool whose connections use `tls` (any
    /// `MakeTlsConnect`, e.g. `tokio-postgres-rustls` or
    /// `postgres-native-tls`); replicas use it too.
    #[cfg(feature = "postgres")]
    pub async fn postgres_with_tls<T>(config: DbConfig, tls: T) -> Result<Self, DbError>
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>
            + Clone
            + Send
            + Sync
            + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
    {
        let pool = |url: &str| -> Result<Pool, DbError> {
            let pg: tokio_postgres::Config = url
                .parse()
                .map_err(|e| DbError::Unavailable(format!("`{}`: {e}", redact(url))))?;
            let tls = tls.clone();
            let connect: Arc<
                dyn Fn()
                        -> BoxFuture<'static, Result<tokio_postgres::Client, tokio_postgres::Error>>
                    + Send
                    + Sync,
            > = Arc::new(move || {
                let pg = pg.clone();
                let tls = tls.clone();
                Box::pin(async move {
                    let (client, connection) = pg.connect(tls).await?;
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "postgres connection ended");
                        }
                    });
                    Ok(client)
                })
            });
            let manager = crate::pg::PgManager {
                connect,
                ping: config.checkout_test == CheckoutTest::Ping,
                statement_cache: config.statement_cache,
            };
            Ok(Pool::Pg(builder(&config).build_unchecked(manager)))
        };
        let primary = pool(&config.url)?;
        let replicas = config
            .replicas
            .iter()
            .map(|u| pool(u))
            .collect::<Result<Vec<_>, _>>()?;
        Self::finish(config, primary, replicas).await
    }

    async fn finish(config: DbConfig, primary: Pool, replicas: Vec<Pool>) -> Result<Self, DbError> {
        let inner = Arc::new(Inner {
            primary,
            replicas,
            next: AtomicUsize::new(0),
            name: Arc::from(config.name.as_str()),
            connect_timeout: config.connect_timeout(),
            slow: Duration::from_millis(config.slow_query_ms),
            read_your_writes: Duration::from_millis(config.read_your_writes_ms),
            max_attempts: config.max_attempts.max(1),
            meters: std::sync::OnceLock::new(),
        });
        let db = Database {
            inner,
            schema: None,
            primary_only: false,
        };
        // Fail now, with the reason, rather than on the first request.
        drop(db.checkout(&db.inner.primary).await?);
        spawn_gauges(Arc::downgrade(&db.inner));
        Ok(db)
    }

    /// The engine behind this pool.
    pub fn engine(&self) -> Engine {
        match &self.inner.primary {
            #[cfg(feature = "postgres")]
            Pool::Pg(_) => Engine::Postgres,
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => Engine::Sqlite,
        }
    }

    /// The primary pool's connections.
    pub fn state(&self) -> PoolState {
        self.inner.primary.state()
    }

    /// A handle whose sessions use the PostgreSQL schema `name` as their
    /// `search_path` (schema-per-tenant). The path is set when a connection
    /// is checked out for this handle and put back when the next checkout is
    /// for another schema or none, so one tenant's path never reaches
    /// another's statement. `name` must be a plain identifier.
    pub fn with_schema(&self, name: &str) -> Result<Database, DbError> {
        if !valid_schema(name) {
            return Err(DbError::BadTenant(name.to_owned()));
        }
        if self.engine() != Engine::Postgres {
            return Err(DbError::Unsupported("schema-per-tenant needs PostgreSQL"));
        }
        Ok(Database {
            inner: self.inner.clone(),
            schema: Some(Arc::from(name)),
            primary_only: self.primary_only,
        })
    }

    /// A handle whose reads all go to the primary: for a `SELECT` that
    /// writes (`nextval`, a function with side effects) or must see the
    /// latest data.
    pub fn on_primary(&self) -> Database {
        Database {
            primary_only: true,
            ..self.clone()
        }
    }

    fn pick(&self, sql: &str) -> &Pool {
        let inner = &*self.inner;
        if inner.replicas.is_empty() || self.primary_only || !is_select(sql) || locks_rows(sql) {
            return &inner.primary;
        }
        let recent_write = SCOPE
            .try_with(|s| {
                s.last_write
                    .get()
                    .is_some_and(|t| t.elapsed() < inner.read_your_writes)
            })
            .unwrap_or(false);
        if recent_write {
            return &inner.primary;
        }
        let i = inner.next.fetch_add(1, Ordering::Relaxed) % inner.replicas.len();
        &inner.replicas[i]
    }

    pub(crate) async fn checkout(&self, pool: &Pool) -> Result<Conn, DbError> {
        let start = Instant::now();
        let got = pool.get().await;
        let waited = start.elapsed();
        self.inner.meters().wait.record(waited.as_secs_f64());
        let mut conn = match got {
            Ok(conn) => conn,
            Err(bb8::RunError::TimedOut) => {
                self.inner.meters().timeouts.increment(1);
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
                    self.inner.meters().timeouts.increment(1);
                    Err(DbError::PoolTimeout(self.inner.connect_timeout))
                }
            };
        }
        Ok(None)
    }

    /// Times a statement: the duration histogram and the slow-query log.
    fn timed(&self, sql: &str, start: Instant) {
        let took = start.elapsed();
        let meters = self.inner.meters();
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
                self.inner.meters().wait.record(0.0);
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
    /// jittered exponential backoff from 10 ms, at most 1 s) when the
    /// database reports a serialization failure (40001), a deadlock (40P01)
    /// or SQLite's busy.
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
                    self.inner.meters().retries.increment(1);
                    tracing::debug!(attempt, error = %e, "transaction retried");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    pub(crate) fn primary(&self) -> &Pool {
        &self.inner.primary
    }
}

/// 10 ms · 2^(attempt-1), at most 1 s, with ±50 % jitter so two
/// conflicting transactions do not collide again.
fn backoff(attempt: u32) -> Duration {
    let base = 10u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(7))
        .min(1_000);
    let jitter = rand::random_range(base / 2..=base + base / 2);
    Duration::from_millis(jitter)
}

fn builder<M: bb8::ManageConnection>(config: &DbConfig) -> bb8::Builder<M> {
    bb8::Pool::builder()
        .max_size(config.max_size.max(1))
        .min_idle(config.min_idle)
        .connection_timeout(config.connect_timeout())
        .max_lifetime(config.max_lifetime_ms.map(Duration::from_millis))
        .idle_timeout(config.idle_timeout_ms.map(Duration::from_millis))
        // `is_valid` is cheap unless the config asks for a ping.
        .test_on_check_out(true)
}

/// Publishes the pool gauges once a second while the database lives.
fn spawn_gauges(inner: std::sync::Weak<Inner>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            let s = inner.primary.state();
            let name = inner.name.clone();
            metrics::gauge!(POOL_CONNECTIONS, "pool" => name.clone(), "state" => "idle")
                .set(f64::from(s.idle));
            metrics::gauge!(POOL_CONNECTIONS, "pool" => name.clone(), "state" => "in_use")
                .set(f64::from(s.connections - s.idle));
            metrics::gauge!(POOL_CONNECTIONS, "pool" => name, "state" => "reader")
                .set(f64::from(s.readers));
        }
    });
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
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

    fn set_in_tx(&mut self, on: bool) {
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
    use super::*;

    #[test]
    fn selects_are_recognised() {
        assert!(is_select("SELECT 1"));
        assert!(is_select("  select * from t"));
        assert!(!is_select("INSERT INTO t VALUES (1) RETURNING id"));
        assert!(!is_select(
            "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x"
        ));
        assert!(!is_select("sel"));
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema("tenant_42"));
        for bad in ["", "1abc", "a\"; DROP SCHEMA x; --", "a-b", &"x".repeat(64)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt).as_millis();
            assert!(d <= 1_500, "{attempt}: {d}");
        }
        assert!(backoff(1).as_millis() <= 15);
        assert!(backoff(5).as_millis() >= 80);
    }
}
