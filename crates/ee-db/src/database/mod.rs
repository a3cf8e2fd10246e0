//! `Database`: a pool (plus optional read replicas) with a small API that
//! runs the same on PostgreSQL and SQLite.
//!
//! One part per file:
//!
//! - `connect`: opening the pools a [`DbConfig`](crate::DbConfig) describes,
//!   checked once at start-up, and the pool gauges' publisher;
//! - `pool`: the engine's pool and checked-out connection ([`Pool`], [`Conn`]),
//!   checkout and SQLite's writer permit;
//! - `routing`: replica routing (which pool a statement goes to) and tenant
//!   schemas;
//! - `scope`: read-your-writes ([`request_scope`]);
//! - `query`: statements outside a transaction;
//! - `tx`: transactions ([`Tx`], [`Database::transaction`] with retry).
//!
//! Metrics are in [`crate::metrics`]; URL redaction and the retry backoff
//! come from ee-core.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use crate::metrics::Meters;

mod connect;
mod pool;
mod query;
mod routing;
mod scope;
mod tx;

pub(crate) use pool::{Conn, Pool};
pub use scope::request_scope;
pub use tx::Tx;

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
    /// Metric handles, registered when the pool is opened.
    meters: Meters,
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

impl Database {
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

    pub(crate) fn primary(&self) -> &Pool {
        &self.inner.primary
    }
}
