//! SQLite, embedded: the same API as PostgreSQL, in a temp directory.

mod common;

use common::{Product, migrations};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use ee_db::{Database, DbError, Engine, Migrations, params};
use serde::Deserialize;

fn temp_db(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!(
        "ee-db-test-{}-{name}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    format!("sqlite://{}/test.db", dir.display())
}

#[tokio::test]
async fn rows_come_back_typed_and_parameters_stay_data() {
    let db = Database::open(&temp_db("typed")).await.unwrap();
    assert_eq!(db.engine(), Engine::Sqlite);
    common::parameters_stay_data(&db).await;

    // `$N` binds by number, whatever order the placeholders appear in.
    let row = db
        .query_one("SELECT $2 AS b, $1 AS a", params!["first", "second"])
        .await
        .unwrap();
    assert_eq!(row.get::<String>("a").unwrap(), "first");
    assert_eq!(row.get::<String>("b").unwrap(), "second");
    assert_eq!(row.columns(), ["b", "a"]);

    // Booleans and JSON kept as SQLite stores them.
    #[derive(Deserialize)]
    struct Flags {
        enabled: bool,
        meta: std::collections::BTreeMap<String, i64>,
        missing: Option<String>,
    }
    let f: Flags = db
        .query_one_as(
            "SELECT 1 AS enabled, '{\"n\": 3}' AS meta, NULL AS missing",
            params![],
        )
        .await
        .unwrap();
    assert!(f.enabled);
    assert_eq!(f.meta["n"], 3);
    assert_eq!(f.missing, None);
}

#[tokio::test]
async fn bad_statements_are_errors_with_codes() {
    let db = Database::open("sqlite::memory:").await.unwrap();
    db.migrate(&migrations()).await.unwrap();
    let e = db.query("SELECT $1, $2", params![1]).await.unwrap_err();
    assert!(e.to_string().contains("takes 2 parameters, 1 given"), "{e}");
    let e = db.query("SELECT :name", params![1]).await.unwrap_err();
    assert!(e.to_string().contains("not positional"), "{e}");
    let e = db.query("SELEC 1", params![]).await.unwrap_err();
    assert_eq!(e.status(), 500);
    let dup = db
        .execute(
            "INSERT INTO products (sku, name, price_minor) VALUES ('A-1', 'again', 1)",
            params![],
        )
        .await
        .unwrap_err();
    assert_eq!(dup.status(), 409, "{dup}");
    assert!(matches!(
        db.query_one("SELECT * FROM products WHERE sku = 'nope'", params![])
            .await,
        Err(DbError::NotFound)
    ));
    let wrong: Result<Product, _> = db.query_one_as("SELECT sku FROM products", params![]).await;
    assert!(matches!(wrong, Err(DbError::Decode(_))), "{wrong:?}");
    assert!(matches!(
        db.with_schema("tenant_a"),
        Err(DbError::Unsupported(_))
    ));
}

#[tokio::test]
async fn transactions_commit_roll_back_and_drop_safely() {
    let db = Database::open(&temp_db("tx")).await.unwrap();
    db.migrate(&migrations()).await.unwrap();
    let stock = |db: Database| async move {
        common::scalar::<i64>(&db, "SELECT stock FROM products WHERE sku = 'A-1'").await
    };

    db.transaction(|tx| {
        Box::pin(async move {
            tx.execute(
                "UPDATE products SET stock = stock - 1 WHERE sku = $1",
                params!["A-1"],
            )
            .await?;
            tx.execute(
                "INSERT INTO orders (id, sku, qty) VALUES (1, 'A-1', 1)",
                params![],
            )
            .await
        })
    })
    .await
    .unwrap();
    assert_eq!(stock(db.clone()).await, 9);

    let failed: Result<(), DbError> = db
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute("UPDATE products SET stock = 0", params![])
                    .await?;
                Err(DbError::abort("payment declined"))
            })
        })
        .await;
    assert_eq!(failed.unwrap_err().to_string(), "payment declined");
    assert_eq!(stock(db.clone()).await, 9, "rolled back");

    let mut tx = db.begin().await.unwrap();
    tx.execute("UPDATE products SET stock = 0", params![])
        .await
        .unwrap();
    drop(tx);
    assert_eq!(
        stock(db.clone()).await,
        9,
        "a dropped transaction is rolled back"
    );

    // A statement that failed inside a transaction makes its commit fail.
    let mut tx = db.begin().await.unwrap();
    tx.execute("UPDATE products SET stock = 1", params![])
        .await
        .unwrap();
    assert!(
        tx.execute("INSERT INTO nowhere VALUES (1)", params![])
            .await
            .is_err()
    );
    assert!(tx.commit().await.is_err());
    assert_eq!(stock(db.clone()).await, 9);
}

#[tokio::test]
async fn ten_instances_migrate_one_file_once() {
    let url = temp_db("migrate");
    let applied = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let url = url.clone();
        let applied = applied.clone();
        tasks.push(tokio::spawn(async move {
            let db = Database::open(&url).await.unwrap();
            let report = db.migrate(&migrations()).await.unwrap();
            applied.fetch_add(report.applied.len() as u32, Ordering::SeqCst);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        applied.load(Ordering::SeqCst),
        2,
        "each migration applied by exactly one instance"
    );
    let db = Database::open(&url).await.unwrap();
    let n: i64 = common::scalar(&db, "SELECT count(*) FROM products").await;
    assert_eq!(n, 1, "the seed row went in once");

    // A changed file is refused before anything runs.
    let changed = Migrations::new(&[
        ("0001_products.sql", "CREATE TABLE products (sku TEXT)"),
        ("0003_more.sql", "CREATE TABLE more (x INT)"),
    ])
    .unwrap();
    let e = db.migrate(&changed).await.unwrap_err();
    assert!(
        matches!(e, DbError::MigrationChanged { version: 1, .. }),
        "{e}"
    );
    assert!(
        db.query("SELECT * FROM more", params![]).await.is_err(),
        "0003 not applied"
    );

    assert!(Migrations::new(&[("init.sql", "")]).is_err());
    assert!(Migrations::new(&[("1_a.sql", ""), ("001_b.sql", "")]).is_err());
}

#[tokio::test]
async fn the_pool_times_out_with_503_and_hands_a_returned_connection_to_a_waiter() {
    let db = Database::connect(ee_db::DbConfig {
        max_size: 1,
        connect_timeout_ms: 150,
        ..ee_db::DbConfig::new(temp_db("pool"))
    })
    .await
    .unwrap();
    db.migrate(&migrations()).await.unwrap();
    let warm = Database::connect(ee_db::DbConfig {
        max_size: 4,
        min_idle: Some(3),
        ..ee_db::DbConfig::new(temp_db("warm"))
    })
    .await
    .unwrap();
    assert_eq!(
        warm.state(),
        ee_db::PoolState {
            connections: 3,
            idle: 3,
            readers: 0
        },
        "min_idle opened at start-up"
    );
    let held = db.begin().await.unwrap();
    // Reads do not wait behind the transaction: they run on this thread's
    // reader, outside the pool.
    let n: i64 = common::scalar(&db, "SELECT stock FROM products").await;
    assert_eq!(n, 10);
    assert_eq!(db.state().readers, 1);
    // Another thread finds the one reader (`max_size` 1) taken and the pool
    // empty: it times out with 503 instead of hanging.
    let e = on_another_thread(&db, |db| async move {
        db.query("SELECT 1", params![]).await.map(|_| 0)
    })
    .join()
    .unwrap()
    .unwrap_err();
    assert!(matches!(e, DbError::PoolTimeout(_)), "{e}");
    assert_eq!(e.status(), 503);
    assert_eq!(db.state().connections, 1);
    // So does a write on this thread (the writer is taken too).
    let e = db
        .execute("UPDATE products SET stock = stock", params![])
        .await
        .unwrap_err();
    assert!(matches!(e, DbError::PoolTimeout(_)), "{e}");

    // A waiter gets the connection as soon as it comes back.
    let waiter = on_another_thread(&db, |db| async move {
        db.query_one("SELECT stock FROM products", params![])
            .await
            .map(|r| r.get::<i64>(0).unwrap())
    });
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    held.commit().await.unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), 10);
    assert_eq!(db.state().idle, 1);
}

/// Runs `f` on a thread (and runtime) of its own: it has no reader yet.
fn on_another_thread<F, Fut>(db: &Database, f: F) -> std::thread::JoinHandle<Result<i64, DbError>>
where
    F: FnOnce(Database) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<i64, DbError>>,
{
    let db = db.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f(db))
    })
}

#[tokio::test]
async fn an_in_memory_database_survives_a_closed_connection() {
    let db = Database::open("sqlite::memory:").await.unwrap();
    db.batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO t VALUES (2)", params![])
        .await
        .unwrap();
    drop(tx); // its connection is closed, not reused
    let n: i64 = common::scalar(&db, "SELECT count(*) FROM t").await;
    assert_eq!(n, 1, "the table and its committed row are still there");
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_writers_queue_instead_of_blocking_the_runtime() {
    let db = Database::open(&temp_db("writers")).await.unwrap();
    db.batch("CREATE TABLE counter (n INTEGER); INSERT INTO counter VALUES (0)")
        .await
        .unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                db.transaction(|tx| {
                    Box::pin(async move {
                        let n: i64 = tx
                            .query_one("SELECT n FROM counter", params![])
                            .await?
                            .get(0)?;
                        // Another task gets the runtime while this one holds the write lock.
                        tokio::task::yield_now().await;
                        tx.execute("UPDATE counter SET n = $1", params![n + 1])
                            .await
                    })
                })
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let n: i64 = common::scalar(&db, "SELECT n FROM counter").await;
    assert_eq!(n, 10);
}

#[tokio::test]
async fn a_table_recreated_with_other_columns_decodes_right() {
    // In memory (pooled connections) and in a file (per-thread readers
    // with statements kept prepared).
    recreated_table_decodes_right("sqlite::memory:").await;
    recreated_table_decodes_right(&temp_db("recreated")).await;
}

async fn recreated_table_decodes_right(url: &str) {
    #[derive(Deserialize, Debug, PartialEq)]
    struct Pair {
        a: i64,
        b: String,
    }
    let db = Database::open(url).await.unwrap();
    db.batch("CREATE TABLE p (a INTEGER, b TEXT); INSERT INTO p VALUES (1, 'x')")
        .await
        .unwrap();
    const ALL: &str = "SELECT * FROM p";
    let before: Pair = db.query_one_as(ALL, params![]).await.unwrap();
    assert_eq!(
        before,
        Pair {
            a: 1,
            b: "x".into()
        }
    );
    db.batch("DROP TABLE p; CREATE TABLE p (b TEXT, a INTEGER); INSERT INTO p VALUES ('y', 2)")
        .await
        .unwrap();
    let after: Pair = db.query_one_as(ALL, params![]).await.unwrap();
    assert_eq!(
        after,
        Pair {
            a: 2,
            b: "y".into()
        }
    );
    // And again, changed inside a transaction: seen once it commits.
    let mut tx = db.begin().await.unwrap();
    tx.execute("ALTER TABLE p RENAME COLUMN b TO c", params![])
        .await
        .unwrap();
    tx.execute(
        "ALTER TABLE p ADD COLUMN b TEXT NOT NULL DEFAULT 'z'",
        params![],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let last: Pair = db.query_one_as(ALL, params![]).await.unwrap();
    assert_eq!(
        last,
        Pair {
            a: 2,
            b: "z".into()
        }
    );
}

/// The file descriptors of this process open on `path`.
#[cfg(target_os = "linux")]
fn open_on(path: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target == path)
        .count()
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "current_thread")]
async fn a_dropped_pools_readers_close_on_the_threads_next_read() {
    let url_a = temp_db("readers-a");
    let path_a = std::path::PathBuf::from(url_a.strip_prefix("sqlite://").unwrap());
    let a = Database::open(&url_a).await.unwrap();
    let b = Database::open(&temp_db("readers-b")).await.unwrap();
    a.batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let x: i64 = common::scalar(&a, "SELECT x FROM t").await;
    assert_eq!(x, 1);
    let one: i64 = common::scalar(&b, "SELECT 1").await;
    assert_eq!(one, 1);
    assert_eq!(a.state().readers, 1, "this thread's reader of a");
    drop(a);
    // Still open on this thread until it reads from SQLite again…
    assert!(open_on(&path_a) >= 1);
    // … even from a pool whose reader it has already, which closes it.
    let one: i64 = common::scalar(&b, "SELECT 1").await;
    assert_eq!(one, 1);
    // (The pool's checkpoint thread closes its own connection as it
    // stops, on its own time.)
    for _ in 0..200 {
        if open_on(&path_a) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        open_on(&path_a),
        0,
        "no file of the dropped pool stays open"
    );
}

#[tokio::test]
async fn impossible_settings_are_reported_together() {
    let e = Database::connect(ee_db::DbConfig {
        connect_timeout_ms: 0,
        max_size: 2,
        min_idle: Some(5),
        ..ee_db::DbConfig::new("sqlite::memory:")
    })
    .await
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("connect_timeout_ms") && text.contains("min_idle (5)"),
        "{text}"
    );
    let e = Database::connect(ee_db::DbConfig {
        replicas: vec!["sqlite://elsewhere.db".into()],
        ..ee_db::DbConfig::new("sqlite::memory:")
    })
    .await
    .unwrap_err();
    assert!(matches!(e, DbError::BadConfig(_)), "{e}");
}

#[tokio::test]
async fn the_wal_is_checkpointed_off_the_runtime_threads() {
    let url = temp_db("checkpoint");
    let path = std::path::PathBuf::from(url.strip_prefix("sqlite://").unwrap());
    let db = Database::open(&url).await.unwrap();
    // Commits never checkpoint (that would write and sync the database file
    // on a runtime thread) …
    let auto: i64 = db
        .query_one("PRAGMA wal_autocheckpoint", params![])
        .await
        .unwrap()
        .get(0)
        .unwrap();
    assert_eq!(auto, 0);
    db.batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .await
        .unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    for i in 0..500_i64 {
        db.execute(
            "INSERT INTO t (id, body) VALUES ($1, $2)",
            params![i, "x".repeat(200)],
        )
        .await
        .unwrap();
    }
    // … the pool's own thread copies the WAL into the file within a second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::fs::metadata(&path).unwrap().len() < before + 100_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file did not grow: no checkpoint ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
