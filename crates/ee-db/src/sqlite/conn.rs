//! Where connections open ([`SqliteManager`]: WAL, a busy timeout) and the
//! pooled connection ([`SqliteConn`]): statements through rusqlite's cache,
//! DDL noticed so every connection prepares afresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OpenFlags};

use crate::{DbError, Row, Value};

use super::shape::{Prepare, Shape};
use super::{MAX_SHAPES, refresh_schema};

/// Where the connections open.
pub(crate) struct SqliteManager {
    target: String,
    statement_cache: usize,
    /// Bumped by DDL through any connection of the pool: each connection
    /// drops its cached statement shapes when it sees a new value.
    schema_epoch: Arc<std::sync::atomic::AtomicU64>,
    pub(super) memory: bool,
}

type Shapes = std::collections::HashMap<(usize, usize), Box<Shape>, foldhash::fast::RandomState>;

/// A pooled SQLite connection.
pub(crate) struct SqliteConn {
    pub(crate) conn: Connection,
    pub(crate) in_tx: bool,
    pub(super) schema_epoch: Arc<std::sync::atomic::AtomicU64>,
    seen_epoch: u64,
    /// DDL ran in the open transaction: the epoch moves again when it
    /// ends, once other connections can see the change.
    ddl_in_tx: bool,
    /// Column names and placeholder maps per statement text.
    shapes: Shapes,
}

impl SqliteManager {
    /// `sqlite://path` (the parent directory is created), or
    /// `sqlite::memory:` for one in-memory database shared by the pool.
    pub(crate) fn new(url: &str, statement_cache: usize) -> Result<Self, DbError> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                DbError::Unavailable(format!(
                    "`{}` is not an sqlite:// URL",
                    ee_core::redact_url(url)
                ))
            })?;
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
            memory: target.starts_with("file:ee-db-memory-"),
            target,
            statement_cache,
            schema_epoch: Arc::new(std::sync::atomic::AtomicU64::new(0)),
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
        if !self.memory {
            // Checkpoints run on the pool's own thread (`checkpointer`), not
            // inside whichever commit crosses the WAL threshold: that commit
            // runs on an async runtime thread, and a checkpoint writes and
            // syncs the database file.
            conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
        }
        conn.set_prepared_statement_cache_capacity(self.statement_cache);
        Ok(SqliteConn {
            conn,
            in_tx: false,
            ddl_in_tx: false,
            shapes: std::collections::HashMap::default(),
            schema_epoch: self.schema_epoch.clone(),
            seen_epoch: self.schema_epoch.load(Ordering::Acquire),
        })
    }
}

/// `CREATE`, `ALTER` or `DROP`: a statement that may change a table's shape.
fn is_ddl(sql: &str) -> bool {
    let head = sql.as_bytes().trim_ascii_start();
    [&b"create"[..], b"alter", b"drop"]
        .iter()
        .any(|k| head.len() >= k.len() && head[..k.len()].eq_ignore_ascii_case(k))
}

impl Prepare for SqliteConn {
    fn with_bound<R>(
        &mut self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&mut rusqlite::Statement<'_>, &Shape) -> Result<R, DbError>,
    ) -> Result<R, DbError> {
        let (mut stmt, shape) = self.bound(sql, params)?;
        f(&mut stmt, shape)
    }
}

impl SqliteConn {
    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &[Value],
        limit: usize,
    ) -> Result<Vec<Row>, DbError> {
        Prepare::query(self, sql, params, limit)
    }

    /// Rows decoded straight from the statement into `T` (no copies of
    /// text or blobs on the way).
    pub(crate) fn query_as<T: serde::de::DeserializeOwned>(
        &mut self,
        sql: &str,
        params: &[Value],
        limit: usize,
    ) -> Result<Vec<T>, DbError> {
        Prepare::query_as(self, sql, params, limit)
    }

    /// `sql` prepared (from rusqlite's cache) with `params` bound, and its
    /// shape.
    fn bound(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<(rusqlite::CachedStatement<'_>, &Shape), DbError> {
        let shape = Self::shape(
            &self.conn,
            &mut self.shapes,
            (&self.schema_epoch, &mut self.seen_epoch),
            sql,
        )?;
        let mut stmt = self.conn.prepare_cached(sql)?;
        shape.bind(&mut stmt, params)?;
        Ok((stmt, shape))
    }

    /// The shape of `sql`, cached per statement. Keyed by the text's address
    /// and length (statements are mostly string literals, so this skips
    /// hashing the SQL) and checked by content.
    fn shape<'a>(
        conn: &Connection,
        shapes: &'a mut Shapes,
        epoch: (&std::sync::atomic::AtomicU64, &mut u64),
        sql: &str,
    ) -> Result<&'a Shape, DbError> {
        let now = epoch.0.load(Ordering::Acquire);
        if now != *epoch.1 {
            // A cached statement still reports its old columns until it is
            // stepped: prepare afresh.
            conn.flush_prepared_statement_cache();
            shapes.clear();
            refresh_schema(conn)?;
            *epoch.1 = now;
        }
        let key = (sql.as_ptr() as usize, sql.len());
        let hit = shapes.get(&key).is_some_and(|s| *s.text == *sql);
        if !hit {
            let stmt = conn.prepare_cached(sql)?;
            let shape = Shape::of(&stmt, sql)?;
            drop(stmt);
            if shapes.len() >= MAX_SHAPES {
                shapes.clear();
            }
            shapes.insert(key, Box::new(shape));
        }
        Ok(&shapes[&key])
    }

    pub(crate) fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let ddl = is_ddl(sql);
        if ddl {
            self.schema_moved();
        }
        let result = self.execute_inner(sql, params);
        if ddl {
            // Again once it has run: a statement prepared elsewhere in
            // between saw the old schema.
            self.schema_moved();
        }
        result
    }

    fn execute_inner(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let (mut stmt, _) = self.bound(sql, params)?;
        // `raw_execute` refuses statements that return rows; step through them.
        if stmt.column_count() > 0 {
            let mut rows = stmt.raw_query();
            while rows.next()?.is_some() {}
            drop(rows);
            drop(stmt);
            return Ok(self.conn.changes());
        }
        Ok(stmt.raw_execute()? as u64)
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        let control = matches!(sql, "BEGIN IMMEDIATE" | "COMMIT" | "ROLLBACK");
        let result = self.conn.execute_batch(sql);
        if !control {
            // Set-up and migrations: tables may have changed shape.
            self.schema_moved();
        } else if sql != "BEGIN IMMEDIATE" && self.ddl_in_tx {
            // The transaction's DDL is now visible (or undone) everywhere.
            self.ddl_in_tx = false;
            self.schema_epoch.fetch_add(1, Ordering::AcqRel);
        }
        Ok(result?)
    }

    /// Every connection and reader of the pool prepares afresh; inside a
    /// transaction, once more when it ends.
    fn schema_moved(&mut self) {
        self.schema_epoch.fetch_add(1, Ordering::AcqRel);
        if self.in_tx {
            self.ddl_in_tx = true;
        }
    }
}
