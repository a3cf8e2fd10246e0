//! A small axum service on ee-db: migrations at start-up, reads through the
//! pool, a transfer in one request-scoped transaction.
//!
//! `cargo run -p ee-db --example bank` (SQLite in `data/`), or
//! `EE_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run -p ee-db --example bank`.
//! Then: `curl localhost:3010/accounts/1` and
//! `curl -XPOST localhost:3010/transfers -H 'content-type: application/json' -d '{"from":1,"to":2,"amount_minor":2500}'`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use ee_db::{Database, DbError, DbLayer, DbTx, params};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Account {
    id: i64,
    owner: String,
    balance_minor: i64,
}

#[derive(Deserialize)]
struct Transfer {
    from: i64,
    to: i64,
    amount_minor: i64,
}

async fn account(
    State(db): State<Database>,
    Path(id): Path<i64>,
) -> Result<Json<Account>, DbError> {
    Ok(Json(
        db.query_one_as("SELECT * FROM accounts WHERE id = $1", params![id])
            .await?,
    ))
}

/// Both updates commit together when this answers 2xx; an overdraft (the
/// CHECK constraint) or a missing account rolls the first one back.
async fn transfer(tx: DbTx, Json(t): Json<Transfer>) -> Result<StatusCode, DbError> {
    let debited = tx
        .execute(
            "UPDATE accounts SET balance_minor = balance_minor - $2 WHERE id = $1",
            params![t.from, t.amount_minor],
        )
        .await?;
    let credited = tx
        .execute(
            "UPDATE accounts SET balance_minor = balance_minor + $2 WHERE id = $1",
            params![t.to, t.amount_minor],
        )
        .await?;
    if debited != 1 || credited != 1 {
        return Err(DbError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The service's routes (the test drives these over HTTP).
pub fn app(db: Database) -> Router {
    Router::new()
        .route("/accounts/{id}", get(account))
        .route("/transfers", post(transfer))
        .layer(DbLayer::new(db.clone()))
        .with_state(db)
}

/// The embedded migrations.
pub fn migrations() -> ee_db::Migrations {
    ee_db::embed_migrations!("examples/migrations/0001_accounts.sql").expect("numbered files")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("EE_DATABASE_URL").unwrap_or_else(|_| "sqlite://data/bank.db".into());
    let db = Database::open(&url).await?;
    let report = db.migrate(&migrations()).await?;
    println!("migrations applied: {:?}", report.applied);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3010").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(db)).await?;
    Ok(())
}
