//! What the benchmark and the `sqlite_profile` harness share: the row type,
//! the point read, and the SQLite table both read.

#![allow(dead_code)]

use serde::Deserialize;

/// One row of `items` / `bench_items`.
#[derive(Debug, Deserialize)]
pub struct Item {
    pub id: i64,
    pub name: String,
    pub price: i64,
}

/// The SQLite point read.
pub const ONE: &str = "SELECT id, name, price FROM items WHERE id = $1";

/// 1 000 rows in `items`, created afresh.
pub const SQLITE_ITEMS: &str = "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price INTEGER NOT NULL);
     DELETE FROM items;
     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
     INSERT INTO items SELECT i, 'item ' || i, i * 100 FROM n;";

/// The raw read: `prepare_cached` + `query_row`, columns by index.
pub fn raw_read(conn: &rusqlite::Connection, id: i64) -> Item {
    let mut stmt = conn.prepare_cached(ONE).unwrap();
    stmt.query_row([id], |r| {
        Ok(Item {
            id: r.get(0)?,
            name: r.get(1)?,
            price: r.get(2)?,
        })
    })
    .unwrap()
}
