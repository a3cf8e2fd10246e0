//! SQLite connections and their pool: WAL, a busy timeout, `$N` placeholders bound
//! like PostgreSQL's.
//!
//! Statements run on the calling task's thread: an embedded database
//! answers reads in microseconds, and a write that finds the file locked
//! waits up to the busy timeout (5 s) there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::row::RowInner;
use crate::{DbError, Row, Value};

/// Where the connections open.
pub(crate) struct SqliteManager {
    target: String,
    statement_cache: usize,
    /// Bumped by DDL through any connection of the pool: each connection
    /// drops its cached statement shapes when it sees a new value.
    schema_epoch: Arc<std::sync::atomic::AtomicU64>,
    memory: bool,
}

type Shapes = std::collections::HashMap<(usize, usize), Box<Shape>, foldhash::fast::RandomState>;

/// A pooled SQLite connection.
pub(crate) struct SqliteConn {
    pub(crate) conn: Connection,
    pub(crate) in_tx: bool,
    schema_epoch: Arc<std::sync::atomic::AtomicU64>,
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

/// What a statement looks like, worked out once per statement text:
/// its column names, and which parameter each placeholder takes (`$N` /
/// `?N` / `?` bound by number, as PostgreSQL does; SQLite alone would
/// number `$N` by first appearance).
pub(crate) struct Shape {
    text: Box<str>,
    columns: Arc<[String]>,
    /// For placeholder `i + 1`, the index into the parameters.
    slots: Box<[usize]>,
    /// How many parameters the statement takes.
    arity: usize,
    /// The serde field list (by address) known to match the columns in
    /// order, so rows decode positionally.
    positional: std::sync::atomic::AtomicUsize,
}

impl Shape {
    fn of(stmt: &rusqlite::Statement<'_>, text: &str) -> Result<Self, DbError> {
        let mut slots = Vec::with_capacity(stmt.parameter_count());
        for i in 1..=stmt.parameter_count() {
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
            slots.push(n - 1);
        }
        Ok(Self {
            text: text.into(),
            columns: stmt.column_names().into_iter().map(str::to_owned).collect(),
            arity: slots.iter().map(|n| n + 1).max().unwrap_or(0),
            slots: slots.into(),
            positional: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn bind(&self, stmt: &mut rusqlite::Statement<'_>, params: &[Value]) -> Result<(), DbError> {
        if self.arity != params.len() {
            return Err(arity(self.arity, params.len()));
        }
        for (i, n) in self.slots.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, &params[*n])?;
        }
        Ok(())
    }

    /// Whether `fields` are the columns, in order.
    pub(crate) fn positional(&self, fields: &'static [&'static str]) -> bool {
        let key = fields.as_ptr() as usize;
        if self.positional.load(Ordering::Relaxed) == key {
            return true;
        }
        let same = fields.len() == self.columns.len()
            && fields.iter().zip(self.columns.iter()).all(|(f, c)| f == c);
        if same {
            self.positional.store(key, Ordering::Relaxed);
        }
        same
    }
}

/// `CREATE`, `ALTER` or `DROP`: a statement that may change a table's shape.
fn is_ddl(sql: &str) -> bool {
    let head = sql.as_bytes().trim_ascii_start();
    [&b"create"[..], b"alter", b"drop"]
        .iter()
        .any(|k| head.len() >= k.len() && head[..k.len()].eq_ignore_ascii_case(k))
}

/// How many statement shapes (and, on a reader, prepared statements) a
/// connection keeps; past that the cache starts afresh.
const MAX_SHAPES: usize = 256;

/// A connection that prepares a statement and binds its parameters: a
/// pooled connection (rusqlite's statement cache) or a thread's reader
/// (statements of its own).
pub(crate) trait Prepare {
    /// Runs `f` on `sql` prepared, with `params` bound.
    fn with_bound<R>(
        &mut self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&mut rusqlite::Statement<'_>, &Shape) -> Result<R, DbError>,
    ) -> Result<R, DbError>;

    /// Up to `limit` rows, copied out of the statement.
    fn query(&mut self, sql: &str, params: &[Value], limit: usize) -> Result<Vec<Row>, DbError> {
        self.with_bound(sql, params, |stmt, shape| copy_rows(stmt, shape, limit))
    }

    /// Up to `limit` rows decoded straight from the statement into `T` (no
    /// copies of text or blobs on the way).
    fn query_as<T: serde::de::DeserializeOwned>(
        &mut self,
        sql: &str,
        params: &[Value],
        limit: usize,
    ) -> Result<Vec<T>, DbError> {
        let mut out = Vec::new();
        self.with_bound(sql, params, |stmt, shape| {
            each(stmt, shape, limit, |t| out.push(t))
        })?;
        Ok(out)
    }

    /// The first row decoded into `T`, if any.
    fn query_first<T: serde::de::DeserializeOwned>(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<Option<T>, DbError> {
        let mut first = None;
        self.with_bound(sql, params, |stmt, shape| {
            each(stmt, shape, 1, |t| first = Some(t))
        })?;
        Ok(first)
    }
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

/// Up to `limit` rows of a bound statement, copied into [`Row`]s.
fn copy_rows(
    stmt: &mut rusqlite::Statement<'_>,
    shape: &Shape,
    limit: usize,
) -> Result<Vec<Row>, DbError> {
    let columns = shape.columns.clone();
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

/// Decodes up to `limit` rows of a bound statement into `T` and hands each
/// to `sink`.
fn each<T: serde::de::DeserializeOwned>(
    stmt: &mut rusqlite::Statement<'_>,
    shape: &Shape,
    limit: usize,
    mut sink: impl FnMut(T),
) -> Result<(), DbError> {
    let mut rows = stmt.raw_query();
    let mut n = 0;
    while n < limit {
        let Some(row) = rows.next()? else { break };
        sink(crate::row::decode(&Borrowed { row, shape })?);
        n += 1;
    }
    Ok(())
}

/// Where a thread's reader keeps its connection.
pub(crate) struct ReaderConn {
    conn: Connection,
    schema_epoch: Arc<AtomicU64>,
}

/// A reader's prepared statements, by the text's address and length.
pub(crate) struct Prepared<'c> {
    seen_epoch: u64,
    statements:
        std::collections::HashMap<(usize, usize), Box<Kept<'c>>, foldhash::fast::RandomState>,
}

/// One statement a reader keeps prepared, and its shape.
pub(crate) struct Kept<'c> {
    shape: Shape,
    statement: rusqlite::Statement<'c>,
}

self_cell::self_cell!(
    /// A read connection one thread keeps (outside the pool), with its
    /// statements prepared once and held: no pool lock, and no trip through
    /// rusqlite's LRU statement cache (which hashes the SQL on the way out
    /// and again on the way back) per read. Opened `PRAGMA query_only`.
    pub(crate) struct Reader {
        owner: ReaderConn,
        #[covariant]
        dependent: Prepared,
    }
);

impl Prepare for Reader {
    fn with_bound<R>(
        &mut self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&mut rusqlite::Statement<'_>, &Shape) -> Result<R, DbError>,
    ) -> Result<R, DbError> {
        self.with_dependent_mut(|owner, prepared| {
            let now = owner.schema_epoch.load(Ordering::Acquire);
            if now != prepared.seen_epoch {
                // A kept statement reports its old columns until stepped.
                prepared.statements.clear();
                refresh_schema(&owner.conn)?;
                prepared.seen_epoch = now;
            }
            let key = (sql.as_ptr() as usize, sql.len());
            let hit = prepared
                .statements
                .get(&key)
                .is_some_and(|k| *k.shape.text == *sql);
            if !hit {
                // The same text at another address (SQL built with
                // `format!`): kept already, filed under this address now.
                let elsewhere = prepared
                    .statements
                    .iter()
                    .find(|(_, k)| *k.shape.text == *sql)
                    .map(|(at, _)| *at);
                let kept = match elsewhere.and_then(|at| prepared.statements.remove(&at)) {
                    Some(kept) => kept,
                    None => {
                        let statement = owner.conn.prepare(sql)?;
                        let shape = Shape::of(&statement, sql)?;
                        Box::new(Kept { shape, statement })
                    }
                };
                if prepared.statements.len() >= MAX_SHAPES {
                    prepared.statements.clear();
                }
                prepared.statements.insert(key, kept);
            }
            let kept = prepared.statements.get_mut(&key).expect("inserted above");
            kept.shape.bind(&mut kept.statement, params)?;
            f(&mut kept.statement, &kept.shape)
        })
    }
}

/// A read on SQLite that runs now: on this thread's reader, or on a free
/// pooled connection.
pub(crate) enum ReadOn<'a> {
    Local(&'a mut Reader),
    Pooled(&'a mut SqliteConn),
}

impl ReadOn<'_> {
    pub(crate) fn query(
        self,
        sql: &str,
        params: &[Value],
        limit: usize,
    ) -> Result<Vec<Row>, DbError> {
        match self {
            ReadOn::Local(r) => Prepare::query(r, sql, params, limit),
            ReadOn::Pooled(c) => Prepare::query(c, sql, params, limit),
        }
    }

    pub(crate) fn query_as<T: serde::de::DeserializeOwned>(
        self,
        sql: &str,
        params: &[Value],
        limit: usize,
    ) -> Result<Vec<T>, DbError> {
        match self {
            ReadOn::Local(r) => Prepare::query_as(r, sql, params, limit),
            ReadOn::Pooled(c) => Prepare::query_as(c, sql, params, limit),
        }
    }

    pub(crate) fn query_first<T: serde::de::DeserializeOwned>(
        self,
        sql: &str,
        params: &[Value],
    ) -> Result<Option<T>, DbError> {
        match self {
            ReadOn::Local(r) => Prepare::query_first(r, sql, params),
            ReadOn::Pooled(c) => Prepare::query_first(c, sql, params),
        }
    }
}

/// A thread's reader for one pool.
struct LocalReader {
    pool: u64,
    /// Dead once the pool is dropped: the reader is closed on this thread's
    /// next SQLite read after that (or when the thread exits).
    alive: std::sync::Weak<AtomicU32>,
    reader: Reader,
}

impl Drop for LocalReader {
    fn drop(&mut self) {
        if let Some(count) = self.alive.upgrade() {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// This thread's readers, and how many pools had been dropped when it last
/// closed the readers of dropped ones.
struct Readers {
    seen_drops: u64,
    list: Vec<LocalReader>,
}

/// SQLite pools dropped in this process: a thread that sees it move closes
/// its readers of dropped pools on its next read.
static POOLS_DROPPED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's readers, one per SQLite file pool it has read from.
    static READERS: std::cell::RefCell<Readers> = const {
        std::cell::RefCell::new(Readers { seen_drops: 0, list: Vec::new() })
    };
}

/// Makes `conn` load the schema another connection changed: a statement
/// prepared on a stale copy reports the old columns until it is stepped
/// (its shape would then be wrong), and stepping any read checks the
/// schema's cookie and drops the stale copy.
fn refresh_schema(conn: &Connection) -> Result<(), DbError> {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
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

/// An SQLite row inside its statement.
struct Borrowed<'a, 'r> {
    row: &'a rusqlite::Row<'r>,
    shape: &'a Shape,
}

impl crate::row::Cells for Borrowed<'_, '_> {
    fn width(&self) -> usize {
        self.shape.columns.len()
    }
    fn column(&self, i: usize) -> &str {
        &self.shape.columns[i]
    }
    fn positional(&self, fields: &'static [&'static str]) -> bool {
        self.shape.positional(fields)
    }
    fn at(&self, i: usize) -> Result<crate::row::Cell<'_>, DbError> {
        use crate::row::Cell;
        Ok(match self.row.get_ref(i)? {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(n) => Cell::Int(n),
            ValueRef::Real(f) => Cell::Float(f),
            ValueRef::Text(t) => Cell::Text(
                std::str::from_utf8(t)
                    .map_err(|e| DbError::Decode(format!("column `{}`: {e}", self.column(i))))?,
            ),
            ValueRef::Blob(b) => Cell::Bytes(b),
        })
    }
}

/// The SQLite pool: idle connections on a stack behind a mutex. Not bb8: a
/// checkout here is one uncontended lock and never awaits when a
/// connection is free, where bb8 arms a timer on every checkout, which
/// cost more than the point read itself (`docs/benchmarks.md`). A file
/// connection does not go stale, so there is no lifetime or idle reaping.
pub(crate) struct SqlitePool {
    manager: SqliteManager,
    /// `sqlite::memory:` lives while one connection to it is open: this one
    /// never leaves the pool, so closing a used connection loses nothing.
    _anchor: Option<std::sync::Mutex<Connection>>,
    /// One writer at a time within this process, awaited asynchronously, so
    /// a writer never sleeps in SQLite's busy handler on a runtime thread
    /// waiting for another of ours.
    pub(crate) writer: Arc<tokio::sync::Semaphore>,
    state: std::sync::Mutex<Slots>,
    max: u32,
    available: tokio::sync::Notify,
    /// Tasks in `get` waiting for a connection (a return notifies only then).
    waiting: std::sync::atomic::AtomicUsize,
    timeout: std::time::Duration,
    /// The checkpoint thread (file databases) and its stop flag, set and
    /// the thread woken on drop.
    checkpointer: Option<(std::thread::Thread, Arc<std::sync::atomic::AtomicBool>)>,
    /// Tells this pool's readers apart in a thread's list.
    id: u64,
    /// Readers open on threads (file databases; at most `max`). The
    /// readers hold it weakly: once the pool is gone, each thread closes
    /// its reader on its next SQLite read (or when it exits).
    readers: Arc<AtomicU32>,
}

impl Drop for SqlitePool {
    fn drop(&mut self) {
        if let Some((t, stop)) = &self.checkpointer {
            stop.store(true, Ordering::Release);
            t.unpark();
        }
        // The readers' handle goes first, then the word to close them: a
        // thread that sees the count move finds this pool dead.
        drop(std::mem::take(&mut self.readers));
        POOLS_DROPPED.fetch_add(1, Ordering::Release);
    }
}

/// How often the checkpoint thread copies the WAL into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs `PRAGMA wal_checkpoint(PASSIVE)` (never waits for readers or the
/// writer) every [`CHECKPOINT_EVERY`] on a connection of its own, until the
/// pool is dropped.
fn checkpointer(conn: Connection, stop: &std::sync::atomic::AtomicBool) {
    loop {
        std::thread::park_timeout(CHECKPOINT_EVERY);
        if stop.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "SQLite checkpoint failed; retrying");
        }
    }
}

struct Slots {
    /// Boxed: a connection moves in and out on every checkout, and moving
    /// a pointer measured cheaper than moving the connection.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<SqliteConn>>,
    open: u32,
}

/// A checked-out SQLite connection; back on the stack when dropped (or
/// closed, when a transaction was left open on it).
pub(crate) struct SqliteGuard {
    conn: Option<Box<SqliteConn>>,
    pool: Arc<SqlitePool>,
}

impl SqlitePool {
    /// A pool of at most `max_size`, with `min_idle` opened now (so a bad
    /// path fails at start-up).
    pub(crate) fn new(
        manager: SqliteManager,
        max_size: u32,
        min_idle: u32,
        timeout: std::time::Duration,
    ) -> Result<Arc<Self>, DbError> {
        let max = max_size.max(1);
        let mut idle = Vec::with_capacity(max as usize);
        for _ in 0..min_idle.min(max) {
            idle.push(Box::new(manager.open()?));
        }
        let anchor = if manager.memory {
            Some(std::sync::Mutex::new(manager.open()?.conn))
        } else {
            None
        };
        let spare = if manager.memory {
            None
        } else {
            Some(manager.open()?.conn)
        };
        let checkpointer = match spare {
            None => None,
            Some(conn) => {
                let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let flag = stop.clone();
                // Without it every connection has auto-checkpoints off and
                // the WAL would grow without bound: fail the pool instead.
                let thread = std::thread::Builder::new()
                    .name("ee-db-checkpoint".into())
                    .spawn(move || checkpointer(conn, &flag))
                    .map_err(|e| {
                        DbError::Unavailable(format!(
                            "cannot start the SQLite checkpoint thread: {e}"
                        ))
                    })?;
                Some((thread.thread().clone(), stop))
            }
        };
        let pool = Arc::new(Self {
            _anchor: anchor,
            writer: Arc::new(tokio::sync::Semaphore::new(1)),
            manager,
            state: std::sync::Mutex::new(Slots {
                open: idle.len() as u32,
                idle,
            }),
            max,
            available: tokio::sync::Notify::new(),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            timeout,
            checkpointer,
            id: {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
            readers: Arc::new(AtomicU32::new(0)),
        });
        Ok(pool)
    }

    /// A connection now (idle, or newly opened under `max_size`), or `None`
    /// when all are in use.
    pub(crate) fn try_get(self: &Arc<Self>) -> Option<Result<SqliteGuard, DbError>> {
        Some(self.take()?.map(|conn| self.guard(conn)))
    }

    /// Runs a read now, without an await: on this thread's reader (file
    /// databases), else on a free pooled connection; `None` when neither is
    /// to be had.
    pub(crate) fn read_now<R>(
        &self,
        f: impl FnOnce(ReadOn<'_>) -> Result<R, DbError>,
    ) -> Option<Result<R, DbError>> {
        let mut f = Some(f);
        if !self.manager.memory {
            let done = READERS.try_with(|readers| {
                // Taken already: a read from inside a read (a `Deserialize`
                // that blocks on another runtime); use the pool.
                let mut readers = readers.try_borrow_mut().ok()?;
                let drops = POOLS_DROPPED.load(Ordering::Acquire);
                if drops != readers.seen_drops {
                    // Readers of dropped pools are closed.
                    readers.seen_drops = drops;
                    readers.list.retain(|l| l.alive.strong_count() > 0);
                }
                let list = &mut readers.list;
                let at = match list.iter().position(|l| l.pool == self.id) {
                    Some(at) => at,
                    None => {
                        list.push(self.open_reader()?);
                        list.len() - 1
                    }
                };
                let f = f.take().expect("called once");
                Some(f(ReadOn::Local(&mut list[at].reader)))
            });
            if let Ok(Some(done)) = done {
                return Some(done);
            }
        }
        let f = f.take().expect("not called yet");
        self.with_free(|conn| f(ReadOn::Pooled(conn)))
    }

    /// A reader for this thread, unless `max` are open already (or it does
    /// not open; the pool then answers, and reports the error if it too
    /// cannot open one).
    fn open_reader(&self) -> Option<LocalReader> {
        let open = self.readers.fetch_add(1, Ordering::AcqRel);
        let reader = (open < self.max)
            .then(|| self.manager.open().ok())
            .flatten()
            .and_then(|c| {
                c.conn.execute_batch("PRAGMA query_only = ON;").ok()?;
                Some(c)
            });
        let Some(c) = reader else {
            self.readers.fetch_sub(1, Ordering::AcqRel);
            return None;
        };
        let owner = ReaderConn {
            conn: c.conn,
            schema_epoch: c.schema_epoch,
        };
        Some(LocalReader {
            pool: self.id,
            alive: Arc::downgrade(&self.readers),
            reader: Reader::new(owner, |owner| Prepared {
                seen_epoch: owner.schema_epoch.load(Ordering::Acquire),
                statements: std::collections::HashMap::default(),
            }),
        })
    }

    /// Readers open on threads.
    pub(crate) fn readers(&self) -> u32 {
        self.readers.load(Ordering::Acquire)
    }

    /// Runs `f` on a free connection without handing out a guard (no
    /// reference count touched); `None` when all are in use.
    pub(crate) fn with_free<R>(
        &self,
        f: impl FnOnce(&mut SqliteConn) -> Result<R, DbError>,
    ) -> Option<Result<R, DbError>> {
        let conn = match self.take()? {
            Ok(conn) => conn,
            Err(e) => return Some(Err(e)),
        };
        // Given back on drop, so also if `f` panics (a user `Deserialize`).
        let mut lent = Lent {
            pool: self,
            conn: Some(conn),
        };
        Some(f(lent.conn.as_mut().expect("lent")))
    }

    fn take(&self) -> Option<Result<Box<SqliteConn>, DbError>> {
        let mut slots = self.state.lock().expect("not poisoned");
        if let Some(conn) = slots.idle.pop() {
            return Some(Ok(conn));
        }
        if slots.open >= self.max {
            return None;
        }
        slots.open += 1;
        drop(slots);
        Some(self.manager.open().map(Box::new).inspect_err(|_| {
            self.state.lock().expect("not poisoned").open -= 1;
        }))
    }

    /// Back on the stack, or closed when a transaction was left open on it
    /// (closing rolls it back).
    fn give_back(&self, conn: Box<SqliteConn>) {
        let mut slots = self.state.lock().expect("not poisoned");
        if conn.in_tx || !conn.conn.is_autocommit() {
            slots.open -= 1;
            drop(slots);
            drop(conn);
        } else {
            slots.idle.push(conn);
            drop(slots);
        }
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.available.notify_one();
        }
    }

    fn guard(self: &Arc<Self>, conn: Box<SqliteConn>) -> SqliteGuard {
        SqliteGuard {
            conn: Some(conn),
            pool: self.clone(),
        }
    }

    /// A connection, waiting up to the pool's timeout for one.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<SqliteGuard, bb8::RunError<DbError>> {
        if let Some(got) = self.try_get() {
            return got.map_err(bb8::RunError::User);
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // Counted down on drop, so also when the caller gives up.
        let _waiting = Waiting(&self.waiting);
        self.wait().await
    }

    async fn wait(self: &Arc<Self>) -> Result<SqliteGuard, bb8::RunError<DbError>> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let notified = self.available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(got) = self.try_get() {
                return got.map_err(bb8::RunError::User);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(bb8::RunError::TimedOut);
            }
        }
    }

    pub(crate) fn state(&self) -> (u32, u32) {
        let slots = self.state.lock().expect("not poisoned");
        (slots.open, slots.idle.len() as u32)
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
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn);
        }
    }
}

/// A connection lent to a closure; back in the pool when dropped.
struct Lent<'a> {
    pool: &'a SqlitePool,
    conn: Option<Box<SqliteConn>>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn);
        }
    }
}

/// One task waiting in [`SqlitePool::get`].
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
