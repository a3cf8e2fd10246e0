//! `cargo bench -p ee-db`: checkout + `SELECT 1` and a typed 100-row query
//! at 1, 10 and 50 concurrent tasks, ours beside raw bb8-postgres,
//! deadpool-postgres and sqlx's `PgPool` (each a pool of 10 on the same
//! server); and an SQLite point read, ours beside raw rusqlite.

#![allow(missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ee_db::{Database, DbConfig, params};
use ee_testing::spread_over_tasks;

const POOL: u32 = 10;

mod support;
use support::{Item, ONE, SQLITE_ITEMS, raw_read};

const HUNDRED: &str = "SELECT id, name, price FROM bench_items ORDER BY id";

fn postgres(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pg = rt.block_on(ee_testing::Postgres::connect());
    rt.block_on(pg.client().batch_execute(
        "CREATE TABLE bench_items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, price BIGINT NOT NULL);
         INSERT INTO bench_items SELECT i, 'item ' || i, i * 100 FROM generate_series(1, 100) i;",
    ))
    .unwrap();
    let url = pg.url().to_owned();

    let ours = rt
        .block_on(Database::connect(DbConfig {
            max_size: POOL,
            ..DbConfig::new(url.clone())
        }))
        .unwrap();
    let bb8 = rt.block_on(async {
        let manager =
            bb8_postgres::PostgresConnectionManager::new(pg.config(), tokio_postgres::NoTls);
        // Tuned: no ping on checkout, one round trip per query (query_typed).
        bb8::Pool::builder()
            .max_size(POOL)
            .test_on_check_out(false)
            .build(manager)
            .await
            .unwrap()
    });
    let deadpool = {
        let mgr = deadpool_postgres::Manager::from_config(
            pg.config(),
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        deadpool_postgres::Pool::builder(mgr)
            .max_size(POOL as usize)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .unwrap()
    };
    let sqlx = rt.block_on(async {
        let opts: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(POOL)
            .connect_with(opts)
            .await
            .unwrap()
    });

    for (label, sql) in [("select_1", "SELECT 1"), ("typed_100_rows", HUNDRED)] {
        let mut group = c.benchmark_group(format!("postgres_{label}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1));
        let hundred = label != "select_1";
        for tasks in [1u64, 10, 50] {
            let db = ours.clone();
            group.bench_with_input(BenchmarkId::new("ee_db", tasks), &tasks, |b, &tasks| {
                b.iter_custom(|iters| {
                    let db = db.clone();
                    spread_over_tasks(&rt, tasks, iters, move |_| {
                        let db = db.clone();
                        async move {
                            if hundred {
                                let items: Vec<Item> = db.query_as(sql, params![]).await.unwrap();
                                assert_eq!(items.len(), 100);
                            } else {
                                db.query_one(sql, params![]).await.unwrap();
                            }
                        }
                    })
                })
            });
            let pool = bb8.clone();
            group.bench_with_input(
                BenchmarkId::new("bb8_postgres", tasks),
                &tasks,
                |b, &tasks| {
                    b.iter_custom(|iters| {
                        let pool = pool.clone();
                        spread_over_tasks(&rt, tasks, iters, move |_| {
                            let pool = pool.clone();
                            async move {
                                let conn = pool.get().await.unwrap();
                                let rows = conn.query_typed(sql, &[]).await.unwrap();
                                if hundred {
                                    let items: Vec<Item> = rows
                                        .iter()
                                        .map(|r| Item {
                                            id: r.get(0),
                                            name: r.get(1),
                                            price: r.get(2),
                                        })
                                        .collect();
                                    assert_eq!(items.len(), 100);
                                }
                            }
                        })
                    })
                },
            );
            let pool = deadpool.clone();
            group.bench_with_input(
                BenchmarkId::new("deadpool_postgres", tasks),
                &tasks,
                |b, &tasks| {
                    b.iter_custom(|iters| {
                        let pool = pool.clone();
                        spread_over_tasks(&rt, tasks, iters, move |_| {
                            let pool = pool.clone();
                            async move {
                                let client = pool.get().await.unwrap();
                                let stmt = client.prepare_cached(sql).await.unwrap();
                                let rows = client.query(&stmt, &[]).await.unwrap();
                                if hundred {
                                    let items: Vec<Item> = rows
                                        .iter()
                                        .map(|r| Item {
                                            id: r.get(0),
                                            name: r.get(1),
                                            price: r.get(2),
                                        })
                                        .collect();
                                    assert_eq!(items.len(), 100);
                                }
                            }
                        })
                    })
                },
            );
            let pool = sqlx.clone();
            group.bench_with_input(BenchmarkId::new("sqlx", tasks), &tasks, |b, &tasks| {
                b.iter_custom(|iters| {
                    let pool = pool.clone();
                    spread_over_tasks(&rt, tasks, iters, move |_| {
                        let pool = pool.clone();
                        async move {
                            if hundred {
                                let rows: Vec<(i64, String, i64)> =
                                    sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
                                let items: Vec<Item> = rows
                                    .into_iter()
                                    .map(|(id, name, price)| Item { id, name, price })
                                    .collect();
                                assert_eq!(items.len(), 100);
                            } else {
                                let _: (i32,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
                            }
                        }
                    })
                })
            });
        }
        group.finish();
    }
    drop(pg);
}

fn sqlite(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("ee-db-bench-{}", std::process::id()));
    let path = dir.join("bench.db");
    let db = rt
        .block_on(Database::open(&format!("sqlite://{}", path.display())))
        .unwrap();
    rt.block_on(db.batch(SQLITE_ITEMS)).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .unwrap();

    let mut group = c.benchmark_group("sqlite_point_read");
    let mut id = 0i64;
    // Both called from an async fn, as a service calls them.
    group.bench_function("rusqlite", |b| {
        b.iter(|| {
            id = id % 1000 + 1;
            rt.block_on(async { raw_read(&raw, id) })
        })
    });
    group.bench_function("ee_db", |b| {
        b.iter(|| {
            id = id % 1000 + 1;
            rt.block_on(db.query_one_as::<Item>(ONE, params![id]))
                .unwrap()
        })
    });
    group.finish();
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, postgres, sqlite);
criterion_main!(benches);
