//! N SQLite point reads through raw rusqlite or ee-db, for instruction
//! counts under callgrind:
//! `valgrind --tool=callgrind target/release/examples/sqlite_profile <raw|ours> N`.

use ee_db::{Database, params};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Item {
    id: i64,
    name: String,
    price: i64,
}

const ONE: &str = "SELECT id, name, price FROM items WHERE id = $1";

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "ours".into());
    let n: i64 = args.next().map_or(10_000, |s| s.parse().expect("a count"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("ee-db-profile-{}", std::process::id()));
    let path = dir.join("profile.db");
    let db = rt
        .block_on(Database::open(&format!("sqlite://{}", path.display())))
        .unwrap();
    rt.block_on(db.batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price INTEGER NOT NULL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
         INSERT INTO items SELECT i, 'item ' || i, i * 100 FROM n;",
    ))
    .unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    let mut total = 0i64;
    for i in 0..n {
        let id = i % 1000 + 1;
        let item: Item = if variant == "raw" {
            rt.block_on(async {
                let mut stmt = raw.prepare_cached(ONE).unwrap();
                stmt.query_row([id], |r| {
                    Ok(Item {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        price: r.get(2)?,
                    })
                })
                .unwrap()
            })
        } else {
            rt.block_on(db.query_one_as(ONE, params![id])).unwrap()
        };
        total += item.price;
    }
    assert!(total > 0);
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
}
