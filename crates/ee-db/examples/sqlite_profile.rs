//! N SQLite point reads through raw rusqlite or ee-db, for instruction
//! counts under callgrind:
//! `valgrind --tool=callgrind target/release/examples/sqlite_profile <raw|ours> N`.

use ee_db::{Database, params};

#[path = "../benches/support/mod.rs"]
mod support;
use support::{Item, ONE, SQLITE_ITEMS, raw_read};

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
    rt.block_on(db.batch(SQLITE_ITEMS)).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    let mut total = 0i64;
    for i in 0..n {
        let id = i % 1000 + 1;
        let item: Item = if variant == "raw" {
            rt.block_on(async { raw_read(&raw, id) })
        } else {
            rt.block_on(db.query_one_as(ONE, params![id])).unwrap()
        };
        total += item.price;
    }
    assert!(total > 0);
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
}
