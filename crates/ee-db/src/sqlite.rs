//! SQLite connections and their pool: WAL, a busy timeout, `$N` placeholders bound
//! like PostgreSQL's.
//!
//! Statements run on the calling task's thread: an embedded database
//! answers reads in microseconds, and a write that finds the file locked
//! waits up to the busy timeout (5 s) there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::row::RowInner;
use crate::{DbError, Row, Value};

/// Where the connections open.
pub(crate) struct SqliteManager {
    target: String,
    statement_cache: usize,
}

/// A pooled SQLite connection.
pub(crate) struct SqliteConn {
    pub(crate) conn: Connection,
    pub(crate) in_tx: bool,
    /// Column names per statement text.
    columns: std::collections::HashMap<Box<str>, Arc<[String]>>,
}

impl SqliteManager {
    /// `sqlite://path` (the parent directory is created), or
    /// `sqlite::memory:` for one in-memory database shared by the pool.
    pub(crate) fn new(url: &str, statement_cache: usize) -> Result<Self, DbError> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| DbError::Unavailable(format!("`{url}` is not an sqlite:// URL")))?;
        let target = if rest == ":memory:" || rest.is_empty() {
            static N: AtomicU64 = AtomicU64::new(0);
            format!(
                "file:ee-db-memory-{}-{}?mode=memory&cache=shared",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            )
        } else {
            let path = std::path::Path::new(rest);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    DbError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            rest.to_owned()
        };
        Ok(Self {
            target,
            statement_cache,
        })
    }

    pub(crate) fn open(&self) -> Result<SqliteConn, DbError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.target, flags)
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: readers never wait for the writer. (An in-memory database
        // stays in its own journal mode.)
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
        conn.set_prepared_statement_cache_capacity(self.statement_cache);
        Ok(SqliteConn {
            conn,
            in_tx: false,
            columns: std::collections::HashMap::new(),
        })
    }
}

/// Binds `$N` / `?N` / `?` placeholders to `params` by number, as
/// PostgreSQL does (SQLite alone would number `$N` by first appearance).
fn bind(stmt: &mut rusqlite::Statement<'_>, params: &[Value]) -> Result<(), DbError> {
    let count = stmt.parameter_count();
    let mut highest = 0;
    for i in 1..=count {
        let n = match stmt.parameter_name(i) {
            None => Some(i),
            Some(name) => name
                .strip_prefix(['$', '?'])
                .and_then(|d| d.parse::<usize>().ok()),
        };
        let Some(n) = n.filter(|n| *n >= 1) else {
            return Err(DbError::Query {
                code: Some("SQLITE_RANGE".into()),
                message: format!(
                    "placeholder `{}` is not positional; use $1, $2, …",
                    stmt.parameter_name(i).unwrap_or("?")
                ),
            });
        };
        highest = highest.max(n);
        let value = params
            .get(n - 1)
            .ok_or_else(|| arity(highest, params.len()))?;
        stmt.raw_bind_parameter(i, value)?;
    }
    if highest != params.len() {
        return Err(arity(highest, params.len()));
    }
    Ok(())
}

fn arity(expected: usize, given: usize) -> DbError {
    DbError::Query {
        code: Some("SQLITE_RANGE".into()),
        message: format!("the statement takes {expected} parameters, {given} given"),
    }
}

impl SqliteConn {
    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &[Value],
        limit: usize,
    ) -> Result<Vec<Row>, DbError> {
        let columns = self.columns(sql)?;
        let mut stmt = self.conn.prepare_cached(sql)?;
        bind(&mut stmt, params)?;
        let width = columns.len();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(row) = rows.next()? else { break };
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(match row.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::Int(n),
                    ValueRef::Real(f) => Value::Float(f),
                    ValueRef::Text(t) => Value::Text(
                        std::str::from_utf8(t)
                            .map_err(|e| DbError::Decode(format!("column {i}: {e}")))?
                            .to_owned(),
                    ),
                    ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
                });
            }
            out.push(Row(RowInner::Sqlite {
                columns: columns.clone(),
                values,
            }));
        }
        Ok(out)
    }

    /// Rows decoded straight from the statement into `T` (no copies of
    /// text or blobs on the way).
    pub(crate) fn query_as<T: serde::de::DeserializeOwned>(
        &mut self,
        sql: &str,
        params: &[Value],
        limit: usize,
    ) -> Result<Vec<T>, DbError> {
        let columns = self.columns(sql)?;
        let mut stmt = self.conn.prepare_cached(sql)?;
        bind(&mut stmt, params)?;
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(row) = rows.next()? else { break };
            out.push(crate::row::decode(&Borrowed {
                row,
                columns: &columns,
            })?);
        }
        Ok(out)
    }

    /// The column names of `sql`, cached per statement text.
    fn columns(&mut self, sql: &str) -> Result<Arc<[String]>, DbError> {
        if let Some(c) = self.columns.get(sql) {
            return Ok(c.clone());
        }
        let stmt = self.conn.prepare_cached(sql)?;
        let names: Arc<[String]> = stmt.column_names().into_iter().map(str::to_owned).collect();
        drop(stmt);
        if self.columns.len() >= 256 {
            self.columns.clear();
        }
        self.columns.insert(sql.into(), names.clone());
        Ok(names)
    }

    pub(crate) fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        bind(&mut stmt, params)?;
        // `raw_execute` refuses statements that return rows; step through them.
        if stmt.column_count() > 0 {
            let mut rows = stmt.raw_query();
            while rows.next()?.is_some() {}
            drop(rows);
            return Ok(self.conn.changes());
        }
        Ok(stmt.raw_execute()? as u64)
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        Ok(self.conn.execute_batch(sql)?)
    }
}

/// An SQLite row inside its statement.
struct Borrowed<'a, 'r> {
    row: &'a rusqlite::Row<'r>,
    columns: &'a [String],
}

impl crate::row::Cells for Borrowed<'_, '_> {
    fn width(&self) -> usize {
        self.columns.len()
    }
    fn column(&self, i: usize) -> &str {
        &self.columns[i]
    }
    fn at(&self, i: usize) -> Result<crate::row::Cell<'_>, DbError> {
        use crate::row::Cell;
        Ok(match self.row.get_ref(i)? {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(n) => Cell::Int(n),
            ValueRef::Real(f) => Cell::Float(f),
            ValueRef::Text(t) => Cell::Text(
                std::str::from_utf8(t)
                    .map_err(|e| DbError::Decode(format!("column `{}`: {e}", self.columns[i])))?,
            ),
            ValueRef::Blob(b) => Cell::Bytes(b),
        })
    }
}

/// The SQLite pool: connections on a stack behind a mutex, bounded by a
/// semaphore. Not bb8: a checkout here is two uncontended atomics and a
/// mutex, where bb8's arms a timer per checkout, which cost more than the
/// point read itself (`docs/benchmarks.md`). A file connection does not go
/// stale, so there is no lifetime or idle reaping to do.
pub(crate) struct SqlitePool {
    manager: SqliteManager,
    idle: std::sync::Mutex<Vec<SqliteConn>>,
    permits: Arc<tokio::sync::Semaphore>,
    open: std::sync::atomic::AtomicU32,
    timeout: std::time::Duration,
}

/// A checked-out SQLite connection; back on the stack when dropped (or
/// closed, when a transaction was left open on it).
pub(crate) struct SqliteGuard {
    conn: Option<SqliteConn>,
    pool: Arc<SqlitePool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl SqlitePool {
    pub(crate) fn new(
        manager: SqliteManager,
        max_size: u32,
        timeout: std::time::Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            manager,
            idle: std::sync::Mutex::new(Vec::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(max_size.max(1) as usize)),
            open: std::sync::atomic::AtomicU32::new(0),
            timeout,
        })
    }

    pub(crate) async fn get(self: &Arc<Self>) -> Result<SqliteGuard, bb8::RunError<DbError>> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => tokio::time::timeout(self.timeout, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| bb8::RunError::TimedOut)?
                .expect("the semaphore is never closed"),
        };
        let conn = self.idle.lock().expect("not poisoned").pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = self.manager.open().map_err(bb8::RunError::User)?;
                self.open.fetch_add(1, Ordering::Relaxed);
                c
            }
        };
        Ok(SqliteGuard {
            conn: Some(conn),
            pool: self.clone(),
            _permit: permit,
        })
    }

    pub(crate) fn state(&self) -> (u32, u32) {
        let idle = self.idle.lock().expect("not poisoned").len() as u32;
        (self.open.load(Ordering::Relaxed), idle)
    }
}

impl std::ops::Deref for SqliteGuard {
    type Target = SqliteConn;
    fn deref(&self) -> &SqliteConn {
        self.conn.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for SqliteGuard {
    fn deref_mut(&mut self) -> &mut SqliteConn {
        self.conn.as_mut().expect("present until drop")
    }
}

impl Drop for SqliteGuard {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if conn.in_tx || !conn.conn.is_autocommit() {
            // Closing the connection rolls the transaction back.
            self.pool.open.fetch_sub(1, Ordering::Relaxed);
            drop(conn);
            return;
        }
        self.pool.idle.lock().expect("not poisoned").push(conn);
    }
}
