//! Realistic order payloads of three sizes, shared by the benchmarks and the
//! round-trip tests.

#![allow(dead_code, missing_docs)]

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub status: String,
    pub currency: String,
    pub created_at: String,
    pub customer: Customer,
    pub items: Vec<Item>,
    pub total_cents: u64,
    pub notes: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: u64,
    pub email: String,
    pub name: String,
    pub address: Address,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub line1: String,
    pub city: String,
    pub postcode: String,
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price_cents: u64,
    pub discount: f64,
    pub tags: Vec<String>,
    pub gift: bool,
}

/// An order with `items` line items: 1 item is ~400 B of JSON, 14 ~3 KB,
/// 1 500 ~300 KB.
pub fn order(items: usize) -> Order {
    Order {
        id: "ord_01HZX3K9Q2W7M5V8B4N6C1D0EF".into(),
        status: "pending_payment".into(),
        currency: "EUR".into(),
        created_at: "2026-11-25T18:30:00.123Z".into(),
        customer: Customer {
            id: 4_200_017,
            email: "ada.lovelace@example.com".into(),
            name: "Ada Lovelace".into(),
            address: Address {
                line1: "12 Analytical Engine Street".into(),
                city: "London".into(),
                postcode: "NW1 6XE".into(),
                country: "GB".into(),
            },
        },
        items: (0..items)
            .map(|i| Item {
                sku: format!("SKU-{:06}", 100_000 + i * 37),
                name: format!("Stainless steel water bottle, 750 ml, colour {}", i % 12),
                quantity: (i % 5 + 1) as u32,
                unit_price_cents: 1_299 + (i as u64 * 113) % 9_000,
                discount: (i % 4) as f64 * 0.05,
                tags: vec!["outdoor".into(), "kitchen".into()],
                gift: i % 3 == 0,
            })
            .collect(),
        total_cents: 1_299 * items as u64,
        notes: Some("Leave the parcel with the neighbour at number 14 if nobody is home.".into()),
    }
}

/// The three sizes the issue names, as (label, items).
pub const SIZES: [(&str, usize); 3] = [("small", 1), ("medium", 14), ("large", 1_500)];

/// A product listing of `n` products as JSON (100 products ≈ 38 KB).
pub fn listing(n: usize) -> Vec<u8> {
    let products: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "id": 10_000 + i,
                "sku": format!("SKU-{:06}", 100_000 + i * 37),
                "name": format!("Stainless steel water bottle, 750 ml, colour {}", i % 12),
                "description": "Double-walled, keeps drinks cold for 24 hours and hot for 12. Dishwasher safe lid.",
                "price": {"amount_cents": 1_299 + (i * 113) % 9_000, "currency": "EUR"},
                "stock": (i * 7) % 140,
                "rating": 3.5 + (i % 3) as f64 * 0.5,
                "tags": ["outdoor", "kitchen", "gift"],
                "images": [format!("https://cdn.shop.example/p/{}/front.webp", 10_000 + i)],
                "updated_at": "2026-11-25T18:30:00Z"
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"products": products, "page": 1, "per_page": n}))
        .unwrap()
}

/// `n` small product documents (~300 B each), for dictionary training and
/// the dictionary ratio benchmark.
pub fn small_docs(n: usize, seed: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|k| {
            let i = k * 7919 + seed;
            serde_json::to_vec(&serde_json::json!({
                "id": 10_000 + i,
                "sku": format!("SKU-{:06}", (100_000 + i * 37) % 1_000_000),
                "name": format!("Water bottle {} ml, colour {}", 250 * (1 + i % 4), i % 12),
                "price": {"amount_cents": 1_299 + (i * 113) % 9_000, "currency": "EUR"},
                "stock": (i * 7) % 140,
                "in_stock": !i.is_multiple_of(5),
                "tags": ["outdoor", "kitchen"],
                "updated_at": format!("2026-11-{:02}T18:{:02}:00Z", 1 + i % 28, i % 60)
            }))
            .unwrap()
        })
        .collect()
}
