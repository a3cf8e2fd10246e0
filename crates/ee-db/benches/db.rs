//! `cargo bench -p ee-db`: checkout + `SELECT 1` and a typed 100-row query
//! at 1, 10 and 50 concurrent tasks, ours beside raw bb8-postgres,
//! deadpool-postgres and sqlx's `PgPool` (each a pool of 10 on the same
//! server); and an SQLite point read, ours beside raw rusqlite.

#![allow(missing_docs)]

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use ee_db::{Database, DbConfig, params};
use ee_testing::spread_over_tasks;
use tokio::runtime::Runtime;

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
    let pools = Contenders::connect(&rt, &pg);

    for (label, sql) in [("select_1", "SELECT 1"), ("typed_100_rows", HUNDRED)] {
        let mut group = c.benchmark_group(format!("postgres_{label}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1));
        let hundred = label != "select_1";
        for tasks in [1u64, 10, 50] {
            let db = pools.ours.clone();
            bench(&mut group, &rt, "ee_db", tasks, move |_| {
                ee_db_read(db.clone(), sql, hundred)
            });
            let pool = pools.bb8.clone();
            bench(&mut group, &rt, "bb8_postgres", tasks, move |_| {
                bb8_read(pool.clone(), sql, hundred)
            });
            let pool = pools.deadpool.clone();
            bench(&mut group, &rt, "deadpool_postgres", tasks, move |_| {
                deadpool_read(pool.clone(), sql, hundred)
            });
            let pool = pools.sqlx.clone();
            bench(&mut group, &rt, "sqlx", tasks, move |_| {
                sqlx_read(pool.clone(), sql, hundred)
            });
        }
        group.finish();
    }
    drop(pg);
}

/// The four pools, `POOL` connections each, on the same server.
struct Contenders {
    ours: Database,
    bb8: Bb8Pool,
    deadpool: deadpool_postgres::Pool,
    sqlx: sqlx::PgPool,
}

type Bb8Pool = bb8::Pool<bb8_postgres::PostgresConnectionManager<tokio_postgres::NoTls>>;

impl Contenders {
    fn connect(rt: &Runtime, pg: &ee_testing::Postgres) -> Self {
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
        Self {
            ours,
            bb8,
            deadpool,
            sqlx,
        }
    }
}

/// One contender at `tasks` concurrent tasks: `read` called `iters` times
/// spread over them.
fn bench<F, Fut>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    tasks: u64,
    read: F,
) where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    group.bench_with_input(BenchmarkId::new(name, tasks), &tasks, |b, &tasks| {
        b.iter_custom(|iters| spread_over_tasks(rt, tasks, iters, read.clone()))
    });
}

async fn ee_db_read(db: Database, sql: &'static str, hundred: bool) {
    if hundred {
        let items: Vec<Item> = db.query_as(sql, params![]).await.unwrap();
        assert_eq!(items.len(), 100);
    } else {
        db.query_one(sql, params![]).await.unwrap();
    }
}

async fn bb8_read(pool: Bb8Pool, sql: &'static str, hundred: bool) {
    let conn = pool.get().await.unwrap();
    let rows = conn.query_typed(sql, &[]).await.unwrap();
    if hundred {
        assert_eq!(items(&rows).len(), 100);
    }
}

async fn deadpool_read(pool: deadpool_postgres::Pool, sql: &'static str, hundred: bool) {
    let client = pool.get().await.unwrap();
    let stmt = client.prepare_cached(sql).await.unwrap();
    let rows = client.query(&stmt, &[]).await.unwrap();
    if hundred {
        assert_eq!(items(&rows).len(), 100);
    }
}

async fn sqlx_read(pool: sqlx::PgPool, sql: &'static str, hundred: bool) {
    if hundred {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
        let items: Vec<Item> = rows
            .into_iter()
            .map(|(id, name, price)| Item { id, name, price })
            .collect();
        assert_eq!(items.len(), 100);
    } else {
        let _: (i32,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
    }
}

/// tokio-postgres rows decoded by index, as a hand-written service would.
fn items(rows: &[tokio_postgres::Row]) -> Vec<Item> {
    rows.iter()
        .map(|r| Item {
            id: r.get(0),
            name: r.get(1),
            price: r.get(2),
        })
        .collect()
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
