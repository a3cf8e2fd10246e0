//! The `bank` example over HTTP, on SQLite and on PostgreSQL.

#[path = "../examples/bank.rs"]
#[allow(dead_code)]
mod bank;

use ee_db::Database;
use ee_testing::{exchange, raw_request, serve};

async fn balances(addr: std::net::SocketAddr) -> (i64, i64) {
    let mut out = [0; 2];
    for (i, id) in [1, 2].into_iter().enumerate() {
        let r = exchange(
            addr,
            &raw_request("GET", &format!("/accounts/{id}"), &[], b""),
        )
        .await;
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        out[i] = v["balance_minor"].as_i64().unwrap();
    }
    (out[0], out[1])
}

async fn transfer(addr: std::net::SocketAddr, body: &str) -> ee_testing::TestResponse {
    exchange(
        addr,
        &raw_request(
            "POST",
            "/transfers",
            &[("content-type", b"application/json")],
            body.as_bytes(),
        ),
    )
    .await
}

async fn check(db: Database) {
    db.migrate(&bank::migrations()).await.unwrap();
    let addr = serve(bank::app(db)).await;
    assert_eq!(balances(addr).await, (10_000, 5_000));
    assert_eq!(
        transfer(addr, r#"{"from":1,"to":2,"amount_minor":2500}"#)
            .await
            .status,
        204
    );
    assert_eq!(balances(addr).await, (7_500, 7_500));

    // An overdraft breaks the CHECK: 409 problem, nothing moved.
    let r = transfer(addr, r#"{"from":2,"to":1,"amount_minor":99999}"#).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(balances(addr).await, (7_500, 7_500));
    // The debit ran, the credit found no account: rolled back, 404.
    let r = transfer(addr, r#"{"from":1,"to":42,"amount_minor":100}"#).await;
    assert_eq!(r.status, 404);
    assert_eq!(balances(addr).await, (7_500, 7_500));
    assert_eq!(
        exchange(addr, &raw_request("GET", "/accounts/42", &[], b""))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn the_bank_example_on_sqlite() {
    check(Database::open("sqlite::memory:").await.unwrap()).await;
}

#[tokio::test]
async fn the_bank_example_on_postgres() {
    let pg = ee_testing::Postgres::connect().await;
    check(Database::open(pg.url()).await.unwrap()).await;
}
