//! The SQLite pool: idle connections on a stack behind a mutex, one writer
//! at a time, and a thread that checkpoints the WAL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rusqlite::Connection;

use crate::DbError;

use super::reader::POOLS_DROPPED;
use super::{SqliteConn, SqliteManager};

/// The SQLite pool: idle connections on a stack behind a mutex. Not bb8: a
/// checkout here is one uncontended lock and never awaits when a
/// connection is free, where bb8 arms a timer on every checkout, which
/// cost more than the point read itself (`docs/benchmarks.md`). A file
/// connection does not go stale, so there is no lifetime or idle reaping.
pub(crate) struct SqlitePool {
    pub(super) manager: SqliteManager,
    /// `sqlite::memory:` lives while one connection to it is open: this one
    /// never leaves the pool, so closing a used connection loses nothing.
    _anchor: Option<std::sync::Mutex<Connection>>,
    /// One writer at a time within this process, awaited asynchronously, so
    /// a writer never sleeps in SQLite's busy handler on a runtime thread
    /// waiting for another of ours.
    pub(crate) writer: Arc<tokio::sync::Semaphore>,
    state: std::sync::Mutex<Slots>,
    pub(super) max: u32,
    available: tokio::sync::Notify,
    /// Tasks in `get` waiting for a connection (a return notifies only then).
    waiting: std::sync::atomic::AtomicUsize,
    timeout: std::time::Duration,
    /// The checkpoint thread (file databases) and its stop flag, set and
    /// the thread woken on drop.
    checkpointer: Option<(std::thread::Thread, Arc<std::sync::atomic::AtomicBool>)>,
    /// Tells this pool's readers apart in a thread's list.
    pub(super) id: u64,
    /// Readers open on threads (file databases; at most `max`). The
    /// readers hold it weakly: once the pool is gone, each thread closes
    /// its reader on its next SQLite read (or when it exits).
    pub(super) readers: Arc<AtomicU32>,
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
