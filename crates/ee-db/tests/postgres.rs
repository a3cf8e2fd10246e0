//! PostgreSQL: the machine's server, one schema per test.

mod common;

use common::migrations;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ee_db::{Database, DbConfig, DbError, Engine, Isolation, Migrations, params};
use ee_testing::Postgres;

fn config(pg: &Postgres) -> DbConfig {
    DbConfig {
        name: pg.schema().to_owned(),
        ..DbConfig::new(pg.url())
    }
}

/// The first column of the first row of `sql`, read in `tx`, as text.
async fn text_in(tx: &mut ee_db::Tx, sql: &str) -> String {
    tx.query_one(sql, params![]).await.unwrap().get(0).unwrap()
}

/// A pool of one connection: every statement of the test on one session.
async fn one_connection(pg: &Postgres) -> Database {
    Database::connect(DbConfig {
        max_size: 1,
        ..config(pg)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn rows_come_back_typed_and_parameters_stay_data() {
    let pg = Postgres::connect().await;
    let db = Database::connect(config(&pg)).await.unwrap();
    assert_eq!(db.engine(), Engine::Postgres);
    common::parameters_stay_data(&db).await;

    let row = db
        .query_one(
            "SELECT $2::text AS b, $1::int4 AS a, true AS t, '{\"n\": 3}'::jsonb AS j, NULL::text AS none, 2.5::float8 AS f",
            params![7, "second"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<i32>("a").unwrap(), 7);
    assert_eq!(row.get::<String>(0).unwrap(), "second");
    assert!(row.get::<bool>("t").unwrap());
    assert_eq!(row.get::<serde_json::Value>("j").unwrap()["n"], 3);
    assert_eq!(row.get::<Option<String>>("none").unwrap(), None);
    assert_eq!(row.get::<f64>("f").unwrap(), 2.5);

    // Out of range for the column's width: an error, not a wrapped number.
    let e = db
        .query("SELECT $1::int2", params![70_000])
        .await
        .unwrap_err();
    assert_eq!(e.status(), 500, "{e}");
    // A type ee-db does not decode says how to get it.
    let e = db
        .query_one("SELECT now() AS at", params![])
        .await
        .unwrap()
        .get::<String>("at")
        .unwrap_err();
    assert!(e.to_string().contains("at::text"), "{e}");
    let dup = db
        .execute(
            "INSERT INTO products (sku, name, price_minor) VALUES ('A-1', 'again', 1)",
            params![],
        )
        .await
        .unwrap_err();
    assert_eq!((dup.code(), dup.status().as_u16()), (Some("23505"), 409));
    let e = db.query("SELECT $1, $2", params![1]).await.unwrap_err();
    assert!(e.to_string().contains("parameters"), "{e}");
    // A value the server refuses (a data exception) is the client's: 400.
    let e = db
        .query("SELECT $1::text::int4", params!["forty-two"])
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.status().as_u16()), (Some("22P02"), 400), "{e}");
    // More than one row: `query_one` takes the first, as on SQLite.
    let first: i32 = common::scalar(&db, "SELECT * FROM generate_series(1, 3)").await;
    assert_eq!(first, 1);
}

#[tokio::test]
async fn session_state_never_reaches_the_next_user() {
    let pg = Postgres::connect().await;
    let db = one_connection(&pg).await;
    let other = format!("o_{}", pg.schema().trim_start_matches("ee_test_"));
    db.batch(&format!(
        "CREATE TABLE here (v TEXT); INSERT INTO here VALUES ('default');
         CREATE SCHEMA {other}; CREATE TABLE {other}.here (v TEXT); INSERT INTO {other}.here VALUES ('other');"
    ))
    .await
    .unwrap();
    let here =
        |db: Database| async move { common::scalar::<String>(&db, "SELECT v FROM here").await };
    // A session-wide SET through `batch` ends with its connection.
    db.batch(&format!("SET search_path TO {other}"))
        .await
        .unwrap();
    assert_eq!(here(db.clone()).await, "default");
    // A failed transaction in `batch` leaves no aborted session behind.
    assert!(db.batch("BEGIN; SELECT 1/0; COMMIT").await.is_err());
    assert_eq!(here(db.clone()).await, "default");

    // A statement cancelled inside a transaction makes the commit fail.
    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO here VALUES ('uncommitted')", params![])
        .await
        .unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(20),
        tx.execute("SELECT pg_sleep(0.5)", params![]),
    )
    .await;
    assert!(cancelled.is_err(), "timed out");
    assert!(tx.commit().await.is_err());
    let n: i64 = common::scalar(&db, "SELECT count(*) FROM here").await;
    assert_eq!(n, 1);
    db.batch(&format!("DROP SCHEMA {other} CASCADE"))
        .await
        .unwrap();
    assert!(matches!(
        db.with_schema("public"),
        Err(DbError::BadTenant(_))
    ));
    assert!(matches!(
        db.with_schema("pg_catalog"),
        Err(DbError::BadTenant(_))
    ));
}

#[tokio::test]
async fn an_exhausted_pool_times_out_with_503_then_recovers() {
    let pg = Postgres::connect().await;
    let db = Database::connect(DbConfig {
        max_size: 1,
        connect_timeout_ms: 200,
        ..config(&pg)
    })
    .await
    .unwrap();
    let held = db.begin().await.unwrap();
    let e = db.query("SELECT 1", params![]).await.unwrap_err();
    assert!(matches!(e, DbError::PoolTimeout(_)), "{e}");
    assert_eq!(e.status(), 503);
    let problem = ee_core::Problem::from(e);
    assert_eq!(problem.status(), 503);
    assert_eq!(
        problem.retry_after(),
        Some(std::time::Duration::from_secs(1))
    );
    held.rollback().await.unwrap();
    assert_eq!(db.query("SELECT 1", params![]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn statements_are_prepared_once_per_connection() {
    let pg = Postgres::connect().await;
    let db = one_connection(&pg).await;
    let prepared = |db: Database| async move {
        common::scalar::<i64>(&db, "SELECT count(*) FROM pg_prepared_statements").await
    };
    let before = prepared(db.clone()).await;
    for i in 0..5 {
        db.query("SELECT $1::int8 + 1", params![i]).await.unwrap();
    }
    // The count query and the addition: each prepared once on the one
    // connection, whatever the number of runs.
    assert_eq!(prepared(db.clone()).await, before + 1);
    for i in 0..5 {
        db.query("SELECT $1::int8 + 1", params![i]).await.unwrap();
    }
    assert_eq!(prepared(db).await, before + 1);
}

#[tokio::test]
async fn a_transaction_begins_with_its_first_statement() {
    let pg = Postgres::connect().await;
    let db = one_connection(&pg).await;
    db.batch("CREATE TABLE notes (body TEXT NOT NULL)")
        .await
        .unwrap();

    // `BEGIN` goes out with the first statement, which runs inside the
    // transaction: `now()` is the transaction's start for both reads.
    let mut tx = db.begin().await.unwrap();
    let first: String = text_in(&mut tx, "SELECT now()::text").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second: String = text_in(&mut tx, "SELECT now()::text").await;
    assert_eq!(first, second, "both reads in one transaction");
    tx.commit().await.unwrap();

    // A first write is rolled back with the rest.
    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO notes (body) VALUES ($1)", params!["gone"])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        common::scalar::<i64>(&db, "SELECT count(*) FROM notes").await,
        0
    );

    // A batch first: `BEGIN` in front of it, its `SET LOCAL` lasts to the
    // end of the transaction only.
    let mut tx = db.begin().await.unwrap();
    tx.batch("SET LOCAL statement_timeout = 1234")
        .await
        .unwrap();
    let inside: String = text_in(&mut tx, "SELECT current_setting('statement_timeout')").await;
    assert_eq!(inside, "1234ms");
    tx.commit().await.unwrap();

    // Transactions that end before any statement send nothing and keep
    // their connection (the same session serves every step here; a batch
    // had the one before closed).
    let pid: i32 = common::scalar(&db, "SELECT pg_backend_pid()").await;
    db.begin().await.unwrap().commit().await.unwrap();
    db.begin().await.unwrap().rollback().await.unwrap();
    drop(db.begin().await.unwrap());
    // Nothing of a dropped, unused transaction reaches the next user: a
    // plain write after it is committed on its own.
    db.execute("INSERT INTO notes (body) VALUES ($1)", params!["kept"])
        .await
        .unwrap();
    assert_eq!(
        common::scalar::<i64>(&db, "SELECT count(*) FROM notes").await,
        1
    );
    assert_eq!(
        common::scalar::<i32>(&db, "SELECT pg_backend_pid()").await,
        pid
    );
    let outside: String = common::scalar(&db, "SELECT current_setting('statement_timeout')").await;
    assert_ne!(outside, "1234ms");
}

#[tokio::test]
async fn a_killed_connection_is_discarded_and_the_next_checkout_works() {
    let pg = Postgres::connect().await;
    let db = one_connection(&pg).await;
    let pid: i32 = common::scalar(&db, "SELECT pg_backend_pid()").await;
    pg.client()
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    // Whether or not the pool has noticed yet, the next statements work.
    for _ in 0..3 {
        let now: i32 = common::scalar(&db, "SELECT pg_backend_pid()").await;
        assert_ne!(now, pid);
    }
}

#[tokio::test]
async fn ten_instances_migrate_once_and_changed_files_are_refused() {
    let pg = Postgres::connect().await;
    let applied = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let cfg = config(&pg);
        let applied = applied.clone();
        tasks.push(tokio::spawn(async move {
            let db = Database::connect(cfg).await.unwrap();
            let report = db.migrate(&migrations()).await.unwrap();
            applied.fetch_add(report.applied.len() as u32, Ordering::SeqCst);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(applied.load(Ordering::SeqCst), 2);
    let db = Database::connect(config(&pg)).await.unwrap();
    let n: i64 = common::scalar(&db, "SELECT count(*) FROM products").await;
    assert_eq!(n, 1);
    let changed = Migrations::new(&[("0002_orders.sql", "SELECT 1")]).unwrap();
    assert!(matches!(
        db.migrate(&changed).await,
        Err(DbError::MigrationChanged { version: 2, .. })
    ));
}

#[tokio::test]
async fn conflicting_serializable_transactions_are_retried() {
    let pg = Postgres::connect().await;
    let db = Database::connect(config(&pg)).await.unwrap();
    db.migrate(&migrations()).await.unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (db, runs, barrier) = (db.clone(), runs.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            db.transaction_with(Isolation::Serializable, move |tx| {
                let (runs, barrier) = (runs.clone(), barrier.clone());
                Box::pin(async move {
                    let first = runs.fetch_add(1, Ordering::SeqCst) < 2;
                    let stock: i64 = tx
                        .query_one("SELECT stock FROM products WHERE sku = 'A-1'", params![])
                        .await?
                        .get(0)?;
                    if first {
                        // Both have read before either writes: one must fail.
                        barrier.wait().await;
                    }
                    tx.execute(
                        "UPDATE products SET stock = $1 WHERE sku = 'A-1'",
                        params![stock - 1],
                    )
                    .await
                })
            })
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(
        runs.load(Ordering::SeqCst) >= 3,
        "one transaction ran again"
    );
    let stock: i64 = common::scalar(&db, "SELECT stock FROM products WHERE sku = 'A-1'").await;
    assert_eq!(stock, 8, "both decrements landed");
}

#[tokio::test]
async fn a_tenant_schema_never_leaks_to_another_checkout() {
    let pg = Postgres::connect().await;
    let db = one_connection(&pg).await; // reused by every handle
    let suffix = pg.schema().trim_start_matches("ee_test_").to_owned();
    let (a, b) = (format!("ta_{suffix}"), format!("tb_{suffix}"));
    for t in [&a, &b] {
        db.batch(&format!(
            "CREATE SCHEMA {t}; CREATE TABLE {t}.notes (body TEXT)"
        ))
        .await
        .unwrap();
    }
    db.batch("CREATE TABLE notes (body TEXT)").await.unwrap();
    let ta = db.with_schema(&a).unwrap();
    let tb = db.with_schema(&b).unwrap();
    ta.execute("INSERT INTO notes VALUES ('secret of a')", params![])
        .await
        .unwrap();
    assert!(
        tb.query("SELECT * FROM notes", params![])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        db.query("SELECT * FROM notes", params![])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ta.query("SELECT * FROM notes", params![])
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(
        db.with_schema("a\"; DROP SCHEMA x; --"),
        Err(DbError::BadTenant(_))
    ));
    for t in [&a, &b] {
        db.batch(&format!("DROP SCHEMA {t} CASCADE")).await.unwrap();
    }
}

#[tokio::test]
async fn row_level_security_keeps_tenant_a_out_of_b() {
    let pg = Postgres::connect().await;
    let db = Database::connect(config(&pg)).await.unwrap();
    let role = "ee_db_rls_app";
    // Superusers bypass RLS: the policy is checked as an ordinary role.
    let _ = pg
        .client()
        .batch_execute(&format!("CREATE ROLE {role} NOLOGIN"))
        .await;
    db.batch(&format!(
        "CREATE TABLE invoices (tenant_id TEXT NOT NULL, total BIGINT NOT NULL);
         ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
         CREATE POLICY by_tenant ON invoices USING (tenant_id = current_setting('ee.tenant_id', true));
         GRANT USAGE ON SCHEMA \"{s}\" TO {role};
         GRANT SELECT, INSERT ON invoices TO {role};
         INSERT INTO invoices VALUES ('a', 100), ('b', 200);",
        s = pg.schema()
    ))
    .await
    .unwrap();
    let seen = |tenant: &'static str| {
        let db = db.clone();
        async move {
            db.transaction(move |tx| {
                Box::pin(async move {
                    tx.batch(&format!("SET LOCAL ROLE {role}")).await?;
                    tx.set_tenant(tenant).await?;
                    tx.query_as::<(String, i64)>("SELECT tenant_id, total FROM invoices", params![])
                        .await
                })
            })
            .await
            .unwrap()
        }
    };
    assert_eq!(seen("a").await, vec![("a".to_owned(), 100)]);
    assert_eq!(seen("b").await, vec![("b".to_owned(), 200)]);
    // SET LOCAL: gone after the transaction.
    let after: Option<String> =
        common::scalar(&db, "SELECT current_setting('ee.tenant_id', true)").await;
    assert!(after.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn reads_go_to_replicas_except_right_after_a_write() {
    let primary = Postgres::connect().await;
    let replica = Postgres::connect().await;
    // Two schemas stand in for a primary and its (lagging) replica.
    primary
        .client()
        .batch_execute("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('primary')")
        .await
        .unwrap();
    replica
        .client()
        .batch_execute("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('replica')")
        .await
        .unwrap();
    let db = Database::connect(DbConfig {
        replicas: vec![replica.url().to_owned()],
        ..config(&primary)
    })
    .await
    .unwrap();
    let read = |db: Database| async move { common::scalar::<String>(&db, "SELECT v FROM t").await };
    assert_eq!(read(db.clone()).await, "replica");
    // Row locks and explicit primary reads stay on the primary.
    let locked: String = db
        .transaction(|tx| {
            Box::pin(async move {
                tx.query_one("SELECT v FROM t FOR UPDATE", params![])
                    .await?
                    .get(0)
            })
        })
        .await
        .unwrap();
    assert_eq!(locked, "primary");
    let plain_lock = db
        .query_one("SELECT v FROM t FOR UPDATE", params![])
        .await
        .unwrap();
    assert_eq!(plain_lock.get::<String>(0).unwrap(), "primary");
    assert_eq!(read(db.on_primary()).await, "primary");
    let in_tx: String = db
        .transaction(|tx| {
            Box::pin(async move { tx.query_one("SELECT v FROM t", params![]).await?.get(0) })
        })
        .await
        .unwrap();
    assert_eq!(in_tx, "primary", "transactions stay on the primary");

    let db2 = db.clone();
    let (before, after) = ee_db::request_scope(async move {
        let before = read(db2.clone()).await;
        db2.execute("UPDATE t SET v = 'primary, updated'", params![])
            .await
            .unwrap();
        (before, read(db2).await)
    })
    .await;
    assert_eq!(before, "replica");
    assert_eq!(
        after, "primary, updated",
        "read-your-writes within the request"
    );
    assert_eq!(
        read(db).await,
        "replica",
        "another request reads the replica again"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_start_up_error() {
    let e = Database::connect(DbConfig {
        connect_timeout_ms: 300,
        ..DbConfig::new("postgres://postgres@127.0.0.1:1/test")
    })
    .await
    .unwrap_err();
    assert_eq!(e.status(), 503, "{e}");
    let e = Database::open("mysql://x").await.unwrap_err();
    assert!(e.to_string().contains("neither"), "{e}");
}

#[test]
fn pool_timeouts_slow_queries_and_retries_are_counted() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pg = rt.block_on(Postgres::connect());
    let cfg = DbConfig {
        max_size: 1,
        connect_timeout_ms: 100,
        slow_query_ms: 0,
        ..config(&pg)
    };
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let db = Database::connect(cfg).await.unwrap();
            let held = db.begin().await.unwrap();
            assert!(db.query("SELECT 1", params![]).await.is_err());
            held.rollback().await.unwrap();
            db.query("SELECT 1", params![]).await.unwrap();
        })
    });
    let counters = ee_testing::counters(&snapshotter);
    let pool = pg.schema();
    assert_eq!(
        counters.get(&format!("ee_db_pool_timeouts_total{{pool={pool}}}")),
        Some(1),
        "{counters:?}"
    );
    assert!(
        counters
            .get(&format!("ee_db_slow_queries_total{{pool={pool}}}"))
            .is_some_and(|n| n >= 1),
        "{counters:?}"
    );
    // Each metric the pool registered is described, with a unit (a
    // snapshot resets the counters: this one comes after their check).
    let snapshot = snapshotter.snapshot().into_vec();
    for name in [
        ee_db::METRIC_POOL_WAIT_SECONDS,
        ee_db::METRIC_POOL_TIMEOUTS_TOTAL,
        ee_db::METRIC_QUERY_DURATION_SECONDS,
        ee_db::METRIC_SLOW_QUERIES_TOTAL,
        ee_db::METRIC_TRANSACTION_RETRIES_TOTAL,
        ee_db::METRIC_POOL_CONNECTIONS,
    ] {
        let (_, unit, help, _) = snapshot
            .iter()
            .find(|(key, ..)| key.key().name() == name)
            .unwrap_or_else(|| panic!("{name} not registered"));
        assert!(
            unit.is_some() && help.is_some(),
            "{name}: {unit:?} {help:?}"
        );
    }
    drop(rt);
}
