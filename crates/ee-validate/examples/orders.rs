//! A JSON body checked against the schema derived from its type
//! (`Valid<T>`), and a query string checked against a hand-written schema
//! (`ValidateLayer`): every violation in one problem+json 422.
//!
//! ```sh
//! cargo run -p ee-validate --features axum --example orders
//! curl -i localhost:3005/orders -H 'content-type: application/json' \
//!   -d '{"sku": "SKU-1", "quantity": 2}'        # 200
//! curl -i localhost:3005/orders -H 'content-type: application/json' \
//!   -d '{"sku": "", "quantity": 0}'             # 422, both violations
//! curl -i 'localhost:3005/orders?page=0'        # 422: page below its minimum
//! ```

use axum::routing::{get, post};
use axum::{Extension, Router};
use ee_validate::{SchemaRegistry, Valid, ValidateLayer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

/// An order line as clients send it.
#[derive(Deserialize, JsonSchema)]
struct CreateOrder {
    #[schemars(length(min = 1, max = 32))]
    sku: String,
    #[schemars(range(min = 1, max = 100))]
    quantity: u32,
}

async fn create(Valid(order): Valid<CreateOrder>) -> String {
    format!("{} x {}\n", order.quantity, order.sku)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = SchemaRegistry::builder()
        .schema(
            "urn:orders:list",
            json!({
                "type": "object",
                "properties": {"page": {"type": "integer", "minimum": 1}},
                "additionalProperties": false
            }),
        )
        .deny_unknown_fields(true)
        .build()?;
    let list =
        get(|| async { "[]\n" }).layer(ValidateLayer::new(&registry).query("urn:orders:list")?);
    let app = Router::new()
        .route("/orders", post(create).merge(list))
        .layer(Extension(registry));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3005").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
