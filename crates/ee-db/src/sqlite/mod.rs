//! SQLite connections and their pool: WAL, a busy timeout, `$N` placeholders bound
//! like PostgreSQL's.
//!
//! Statements run on the calling task's thread: an embedded database
//! answers reads in microseconds, and a write that finds the file locked
//! waits up to the busy timeout (5 s) there.
//!
//! One part per file: `conn` (opening connections; the pooled connection),
//! `shape` (a statement's columns and placeholders; reading rows), `reader`
//! (the read connections threads keep) and `pool` (the pool itself).

use rusqlite::Connection;

use crate::DbError;

mod conn;
mod pool;
mod reader;
mod shape;

pub(crate) use conn::{SqliteConn, SqliteManager};
pub(crate) use pool::{SqliteGuard, SqlitePool};
pub(crate) use reader::ReadOn;

/// How many statement shapes (and, on a reader, prepared statements) a
/// connection keeps; past that the cache starts afresh.
const MAX_SHAPES: usize = 256;

/// Makes `conn` load the schema another connection changed: a statement
/// prepared on a stale copy reports the old columns until it is stepped
/// (its shape would then be wrong), and stepping any read checks the
/// schema's cookie and drops the stale copy.
fn refresh_schema(conn: &Connection) -> Result<(), DbError> {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
    Ok(())
}
