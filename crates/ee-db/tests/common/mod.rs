//! What the PostgreSQL and SQLite tests share: the migrations, the product
//! row, and the checks that read the same on both engines.

#![allow(dead_code)]

use ee_db::{Database, Migrations, params};
use serde::Deserialize;

pub fn migrations() -> Migrations {
    ee_db::embed_migrations!(
        "tests/migrations/0001_products.sql",
        "tests/migrations/0002_orders.sql"
    )
    .unwrap()
}

#[derive(Debug, Deserialize, PartialEq)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub price_minor: i64,
    pub stock: i64,
}

/// Migrates `db`, stores a hostile string through a parameter and reads it
/// back as data: the table is still there, with the seed row and this one.
pub async fn parameters_stay_data(db: &Database) {
    db.migrate(&migrations()).await.unwrap();
    let evil = "x'); DROP TABLE products; --";
    db.execute(
        "INSERT INTO products (sku, name, price_minor) VALUES ($1, $2, $3)",
        params![evil, "Robert", 5],
    )
    .await
    .unwrap();
    let p: Product = db
        .query_one_as("SELECT * FROM products WHERE sku = $1", params![evil])
        .await
        .unwrap();
    assert_eq!(p.name, "Robert");
    let all: Vec<Product> = db
        .query_as("SELECT * FROM products ORDER BY sku", params![])
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
}

/// The first column of the first row of `sql` (no parameters).
pub async fn scalar<T: serde::de::DeserializeOwned>(db: &Database, sql: &str) -> T {
    db.query_one(sql, params![]).await.unwrap().get(0).unwrap()
}
