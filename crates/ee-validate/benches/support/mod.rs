//! The order type and body shared by the benchmark and the profile example.

#![allow(dead_code, missing_docs)]

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
pub struct Line {
    #[schemars(length(min = 1, max = 32))]
    pub sku: String,
    #[schemars(range(min = 1, max = 100))]
    pub quantity: u32,
    pub unit_price_cents: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
pub struct CreateOrder {
    #[schemars(email)]
    pub email: String,
    pub currency: String,
    #[schemars(length(min = 1, max = 50))]
    pub lines: Vec<Line>,
    pub note: Option<String>,
}

/// A 10-line order, ~690 bytes of JSON.
pub fn body() -> bytes::Bytes {
    let lines: Vec<_> = (0..10)
        .map(|i| serde_json::json!({"sku": format!("SKU-{i:06}"), "quantity": 1 + i % 5, "unit_price_cents": 1299 + i}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "email": "ada@example.com", "currency": "EUR", "lines": lines,
        "note": "Leave the parcel with the neighbour."
    }))
    .unwrap()
    .into()
}
