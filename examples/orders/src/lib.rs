//! An order intake API built from ee-validate and ee-serialize (run it with
//! `cargo run -p ee-example-orders`; the integration test drives it over TCP).
//!
//! - `POST /orders`: a `Valid<CreateOrder>` body (derived schema: every
//!   violation in one 422), answered `201` with `FastJson`;
//! - `GET /products?page=&per_page=&tag=`: the query checked by
//!   `ValidateLayer` against a hand-written schema, a listing large enough to
//!   be compressed (zstd, br or gzip by `Accept-Encoding`);
//! - with [`deployed_app`]: the API under `/v1` (also the default version),
//!   `GET /metrics`, the health probes, a JSON log line per request;
//! - every request body may be sent compressed (`Content-Encoding: zstd`,
//!   `br`, `gzip`, `deflate`) and may inflate to 256 KiB at most.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use ee_serialize::{DecompressionLayer, FastJson, compression};
use ee_validate::{SchemaRegistry, Valid, ValidateLayer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The body of `POST /orders`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    /// Who to send the confirmation to.
    #[schemars(email)]
    pub email: String,
    /// ISO 4217 currency code.
    #[schemars(regex(pattern = "^[A-Z]{3}$"))]
    pub currency: String,
    /// What is ordered.
    #[schemars(length(min = 1, max = 50))]
    pub lines: Vec<Line>,
}

/// One line of an order.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// The product's SKU.
    #[schemars(regex(pattern = "^SKU-[0-9]{6}$"))]
    pub sku: String,
    /// How many.
    #[schemars(range(min = 1, max = 100))]
    pub quantity: u32,
}

/// The answer to `POST /orders`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct OrderCreated {
    /// The new order's id.
    pub id: u64,
    /// Lines accepted.
    pub lines: usize,
    /// Items accepted, over all lines.
    pub items: u32,
}

/// The query of `GET /products`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// 1-based page.
    pub page: Option<u32>,
    /// Products per page.
    pub per_page: Option<u32>,
}

/// The query schema of `GET /products` (a hand-written schema in the registry).
pub const LIST_QUERY: &str = "https://shop.example/schemas/list-products-query";

/// The schemas of the service.
pub fn registry() -> SchemaRegistry {
    SchemaRegistry::builder()
        .schema(
            LIST_QUERY,
            json!({
                "type": "object",
                "properties": {
                    "page": {"type": "integer", "minimum": 1},
                    "per_page": {"type": "integer", "minimum": 1, "maximum": 200},
                    "tag": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 5}
                },
                "additionalProperties": false
            }),
        )
        .build()
        .expect("the service's schemas compile")
}

#[derive(Clone, Default)]
struct Orders {
    next: Arc<AtomicU64>,
}

async fn create(
    State(orders): State<Orders>,
    Valid(order): Valid<CreateOrder>,
) -> (StatusCode, FastJson<OrderCreated>) {
    let id = orders.next.fetch_add(1, Ordering::Relaxed) + 1;
    let created = OrderCreated {
        id,
        lines: order.lines.len(),
        items: order.lines.iter().map(|l| l.quantity).sum(),
    };
    (StatusCode::CREATED, FastJson(created))
}

async fn list(Query(q): Query<ListQuery>) -> FastJson<serde_json::Value> {
    let (page, per_page) = (q.page.unwrap_or(1), q.per_page.unwrap_or(50));
    let first = (page - 1) * per_page;
    let products: Vec<_> = (first..first + per_page)
        .map(|i| {
            json!({
                "sku": format!("SKU-{:06}", 100_000 + i),
                "name": format!("Stainless steel water bottle, 750 ml, colour {}", i % 12),
                "price": {"amount_cents": 1_299 + (i * 113) % 9_000, "currency": "EUR"},
                "stock": (i * 7) % 140
            })
        })
        .collect();
    FastJson(json!({"page": page, "per_page": per_page, "products": products}))
}

/// The service as deployed: the API at `/v1` (and at `/` as the default
/// version, or with `Api-Version: 1`), the health probes version-neutral,
/// RED metrics, a JSON log line per request and `GET /metrics`.
pub fn deployed_app(prometheus: &ee_metrics::Prometheus, health: &ee_health::Health) -> Router {
    ee_versioning::VersionedRouter::new()
        .version(1, app())
        .default_version(1)
        .neutral(health.router().merge(prometheus.router()))
        .into_router()
        .layer(ee_logging::RequestLogLayer::new())
        .layer(ee_metrics::MetricsLayer::new())
}

/// The service.
pub fn app() -> Router {
    let registry = registry();
    let query_check = ValidateLayer::new(&registry)
        .query(LIST_QUERY)
        .expect("registered above");
    Router::new()
        .route("/orders", post(create))
        .route("/products", get(list).layer(query_check))
        .with_state(Orders::default())
        .layer(Extension(registry))
        .layer(DecompressionLayer::new().max_decoded(256 * 1024))
        .layer(compression())
}
