//! N SQLite point reads through raw rusqlite or ee-db, for instruction
//! counts under callgrind (a profiling harness, not a criterion benchmark):
//!
//! ```text
//! cargo bench -p ee-db --bench sqlite_profile --no-run   # prints the binary's path
//! valgrind --tool=callgrind target/release/deps/sqlite_profile-<hash> <raw|ours> N
//! ```
//!
//! `cargo bench -p ee-db --bench sqlite_profile -- <raw|ours> N` runs it
//! without callgrind (cargo's own `--bench` flag is ignored).

#![allow(missing_docs)]

use ee_db::{Database, params};

mod support;
use support::{Item, ONE, SQLITE_ITEMS, raw_read};

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
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
