//! `DbLayer` over real HTTP: one transaction per request, committed on 2xx,
//! rolled back otherwise; a database outage mid-request is a 503 problem.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use ee_db::{Database, DbConfig, DbError, DbLayer, DbTx, params};
use ee_testing::{Postgres, TcpProxy, exchange, raw_request, serve};

async fn place(Path(fail): Path<String>, tx: DbTx) -> Result<StatusCode, DbError> {
    tx.execute(
        "INSERT INTO orders (note) VALUES ($1)",
        params![fail.clone()],
    )
    .await?;
    tx.execute("UPDATE stock SET qty = qty - 1", params![])
        .await?;
    if fail == "fail" {
        // The handler answers an error after writing: nothing may stay.
        return Ok(StatusCode::UNPROCESSABLE_ENTITY);
    }
    Ok(StatusCode::CREATED)
}

async fn count(db: Database) -> (i64, i64) {
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM orders), (SELECT qty FROM stock)",
            params![],
        )
        .await
        .unwrap();
    (row.get(0).unwrap(), row.get(1).unwrap())
}

fn app(db: Database) -> Router {
    let reader = db.clone();
    Router::new()
        .route("/orders/{fail}", post(place))
        .route(
            "/stock",
            get(move || {
                let db = reader.clone();
                async move {
                    let row = db.query_one("SELECT qty FROM stock", params![]).await?;
                    Ok::<_, DbError>(row.get::<i64>(0)?.to_string())
                }
            }),
        )
        .layer(DbLayer::new(db))
}

#[tokio::test]
async fn commits_on_2xx_and_rolls_back_otherwise() {
    let pg = Postgres::connect().await;
    let db = Database::open(pg.url()).await.unwrap();
    db.batch("CREATE TABLE orders (note TEXT); CREATE TABLE stock (qty BIGINT); INSERT INTO stock VALUES (10)")
        .await
        .unwrap();
    let addr = serve(app(db.clone())).await;

    let ok = exchange(addr, &raw_request("POST", "/orders/ok", &[], b"")).await;
    assert_eq!(ok.status, 201);
    assert_eq!(count(db.clone()).await, (1, 9));

    let failed = exchange(addr, &raw_request("POST", "/orders/fail", &[], b"")).await;
    assert_eq!(failed.status, 422);
    assert_eq!(count(db.clone()).await, (1, 9), "rolled back");

    // A route without the layer gets a problem, not a panic.
    let bare = Router::new().route("/x", post(|_tx: DbTx| async { "never" }));
    let addr2 = serve(bare).await;
    let r = exchange(addr2, &raw_request("POST", "/x", &[], b"")).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    // A set-up error: the detail says how to fix it.
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["type"], "https://ee.rs/problems/db/no-layer");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("DbLayer::new(db)"),
        "{body}"
    );
}

#[tokio::test]
async fn sqlite_requests_commit_and_roll_back_the_same_way() {
    let db = Database::open("sqlite::memory:").await.unwrap();
    db.batch("CREATE TABLE orders (note TEXT); CREATE TABLE stock (qty BIGINT); INSERT INTO stock VALUES (10)")
        .await
        .unwrap();
    let addr = serve(app(db.clone())).await;
    assert_eq!(
        exchange(addr, &raw_request("POST", "/orders/ok", &[], b""))
            .await
            .status,
        201
    );
    assert_eq!(
        exchange(addr, &raw_request("POST", "/orders/fail", &[], b""))
            .await
            .status,
        422
    );
    assert_eq!(count(db).await, (1, 9));
}

#[tokio::test]
async fn a_database_outage_mid_request_is_a_503_problem_and_recovers() {
    let pg = Postgres::connect().await;
    pg.client()
        .batch_execute("CREATE TABLE orders (note TEXT); CREATE TABLE stock (qty BIGINT); INSERT INTO stock VALUES (10)")
        .await
        .unwrap();
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = pg
        .url()
        .replace("127.0.0.1:5432", &proxy.addr().to_string());
    let db = Database::connect(DbConfig {
        connect_timeout_ms: 500,
        ..DbConfig::new(url)
    })
    .await
    .unwrap();
    let addr = serve(app(db)).await;
    let r = exchange(addr, &raw_request("GET", "/stock", &[], b"")).await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"10"[..]));

    proxy.cut();
    for path in ["/stock", "/stock"] {
        let r = exchange(addr, &raw_request("GET", path, &[], b"")).await;
        assert_eq!(r.status, 503, "{:?}", r.body);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert_eq!(r.headers["retry-after"], "1");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["type"], "https://ee.rs/problems/db/unavailable");
    }
    let r = exchange(addr, &raw_request("POST", "/orders/ok", &[], b"")).await;
    assert_eq!(r.status, 503);

    proxy.restore();
    let r = exchange(addr, &raw_request("GET", "/stock", &[], b"")).await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"10"[..]));
}
