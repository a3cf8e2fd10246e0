//! The readers threads keep: for a read outside a transaction on a file
//! database, a `PRAGMA query_only` connection per thread and pool, with its
//! statements prepared once and held (no pool lock, no statement-cache
//! lookup per read). [`ReadOn`] is where such a read runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rusqlite::Connection;

use crate::{DbError, Row, Value};

use super::shape::{Prepare, Shape};
use super::{MAX_SHAPES, SqliteConn, SqlitePool, refresh_schema};

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
pub(super) static POOLS_DROPPED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's readers, one per SQLite file pool it has read from.
    static READERS: std::cell::RefCell<Readers> = const {
        std::cell::RefCell::new(Readers { seen_drops: 0, list: Vec::new() })
    };
}

impl SqlitePool {
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
}
