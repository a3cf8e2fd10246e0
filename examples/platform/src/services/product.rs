//! The product service: the catalogue and its stock.
//!
//! - `GET /v1/products?page=&per_page=` → a page of products.
//! - `GET /v1/products/{sku}` → one product, read through ee-cache
//!   (single-flight; in memory, or L1 + Redis with cross-instance
//!   invalidation in distributed mode); every stock change drops its entry.
//! - `POST /v1/reservations` `{"order_id", "lines": [{"sku", "quantity"}]}`
//!   (internal, called by the order service) → 201 the priced lines, taken
//!   from stock in one transaction; 409 problem when a line is out of stock
//!   (nothing is taken), 422 for an unknown SKU. Repeating it for the same
//!   order returns the first reservation (200), or 410 once that was
//!   released.
//! - `POST /v1/products` (admin) `{"sku", "name", "description",
//!   "price_minor", "currency", "stock"}` → 201 the product; a SKU taken →
//!   409 problem. `PATCH /v1/products/{sku}` (admin) with any of `name`,
//!   `description`, `price_minor`, `stock` → the product. Anyone else: 401
//!   without a token, 403 with one.
//! - The reservations are the order service's alone (its service token;
//!   anyone else 401/403).
//! - `DELETE /v1/reservations/{order_id}` (internal) → 204, the stock put
//!   back; repeating it is harmless. A released reservation stays on record
//!   with nothing in it, so reserving for that order again takes nothing (a
//!   late retry of a declined order cannot take its stock a second time).

use ee_core::WithProblem;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use ee_cache::{AnyStore, Cache, MemoryStore, RedisStore, TieredStore};
use ee_core::Problem;
use ee_db::{DbError, params};
use ee_serialize::FastJson;
use ee_validate::Valid;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Deps, problem};

/// A product.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct Product {
    /// Stock-keeping unit, the product's id.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Price in minor units (cents).
    pub price_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// Units in stock.
    pub stock: i64,
}

/// A page of products.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ProductPage {
    /// 1-based page number.
    pub page: u32,
    /// Page size.
    pub per_page: u32,
    /// The products, by SKU.
    pub products: Vec<Product>,
}

/// `?page=&per_page=`
#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<u32>,
    per_page: Option<u32>,
}

/// The body of `POST /v1/products`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// The SKU (letters, digits, `-` and `_`).
    #[schemars(length(min = 1, max = 64), regex(pattern = "^[A-Za-z0-9_-]+$"))]
    pub sku: String,
    /// Name.
    #[schemars(length(min = 1, max = 200))]
    pub name: String,
    /// Description.
    #[schemars(length(max = 2000))]
    pub description: String,
    /// Price in minor units.
    #[schemars(range(min = 0, max = 100_000_000))]
    pub price_minor: i64,
    /// ISO 4217 currency.
    #[schemars(regex(pattern = "^[A-Z]{3}$"))]
    pub currency: String,
    /// Units in stock.
    #[schemars(range(min = 0, max = 1_000_000_000))]
    pub stock: i64,
}

/// The body of `PATCH /v1/products/{sku}`: the fields to change.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductChange {
    /// Name.
    #[schemars(length(min = 1, max = 200))]
    pub name: Option<String>,
    /// Description.
    #[schemars(length(max = 2000))]
    pub description: Option<String>,
    /// Price in minor units.
    #[schemars(range(min = 0, max = 100_000_000))]
    pub price_minor: Option<i64>,
    /// Units in stock.
    #[schemars(range(min = 0, max = 1_000_000_000))]
    pub stock: Option<i64>,
}

/// A line to reserve.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    /// The product.
    #[schemars(length(min = 1, max = 64))]
    pub sku: String,
    /// How many.
    #[schemars(range(min = 1, max = 1000))]
    pub quantity: u32,
}

/// The body of `POST /v1/reservations`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reserve {
    /// The order the stock is for.
    #[schemars(length(min = 1, max = 64))]
    pub order_id: String,
    /// What to take.
    #[schemars(length(min = 1, max = 50))]
    pub lines: Vec<LineRequest>,
}

/// A reserved, priced line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct PricedLine {
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: i64,
    /// Unit price in minor units.
    pub price_minor: i64,
}

/// A reservation: what was taken and what it costs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reservation {
    /// The order.
    pub order_id: String,
    /// The lines, by SKU.
    pub lines: Vec<PricedLine>,
    /// Sum of quantity × price.
    pub total_minor: i64,
    /// The currency of every line.
    pub currency: String,
}

/// Product detail reads: in memory, or an L1 in front of Redis (one cache
/// type either way).
#[derive(Clone)]
struct Products(Cache<str, Product, AnyStore<Product>>);

impl Products {
    async fn get(&self, db: &ee_db::Database, sku: &str) -> Result<Option<Product>, Problem> {
        let db = db.clone();
        let owned = sku.to_owned();
        let load = move || async move {
            match db
                .query_one_as::<Product>(
                    "SELECT sku, name, description, price_minor, currency, stock FROM products WHERE sku = $1",
                    params![owned],
                )
                .await
            {
                Ok(p) => Ok(Some(p)),
                Err(DbError::NotFound) => Ok(None),
                Err(e) => Err(e),
            }
        };
        self.0
            .get_or_load(sku, load)
            .await
            .map_err(|e| Problem::from(&*e))
    }

    async fn forget(&self, sku: &str) {
        if let Err(e) = self.0.delete(sku).await {
            tracing::warn!(sku, error = %e, "could not drop a cached product");
        }
    }
}

#[derive(Clone)]
struct ProductState {
    deps: Deps,
    products: Products,
}

/// The service's API (mounted under `/v1`).
///
/// # Errors
/// The cache could not be set up (Redis pub/sub unreachable).
pub async fn api(deps: Deps) -> Result<Router, ee_cache::CacheError> {
    let builder = Cache::builder("products").ttl(Duration::from_secs(60));
    let store: AnyStore<Product> = match &deps.redis {
        None => MemoryStore::new().into(),
        Some(redis) => TieredStore::connect(
            MemoryStore::new(),
            RedisStore::new(redis.conn.clone()),
            &redis.config,
        )
        .await?
        .into(),
    };
    let products = Products(builder.build(store)?);
    let catalogue = Router::new()
        .route("/products", post(create))
        .route("/products/{sku}", patch(update))
        .route_layer(ee_auth::require(deps.auth.rbac().clone(), "product:write"));
    let reservations = Router::new()
        .route("/reservations", post(reserve))
        .route("/reservations/{order_id}", delete(release))
        .route_layer(ee_auth::RequireServiceLayer::new(["order"]));
    Ok(Router::new()
        .route("/products", get(list))
        .route("/products/{sku}", get(detail))
        .merge(catalogue)
        .merge(reservations)
        .with_state(ProductState { deps, products }))
}

async fn list(
    State(s): State<ProductState>,
    WithProblem(Query(q)): WithProblem<Query<PageQuery>>,
) -> Result<FastJson<ProductPage>, Problem> {
    let page = q.page.unwrap_or(1).max(1);
    let per_page = q.per_page.unwrap_or(20).clamp(1, 100);
    let products = s
        .deps
        .db
        .query_as::<Product>(
            "SELECT sku, name, description, price_minor, currency, stock FROM products ORDER BY sku LIMIT $1 OFFSET $2",
            // In i64: `(page - 1) * per_page` overflows u32 for a page near u32::MAX.
            params![
                i64::from(per_page),
                (i64::from(page) - 1) * i64::from(per_page)
            ],
        )
        .await?;
    Ok(FastJson(ProductPage {
        page,
        per_page,
        products,
    }))
}

async fn detail(
    State(s): State<ProductState>,
    WithProblem(Path(sku)): WithProblem<Path<String>>,
) -> Result<FastJson<Product>, Problem> {
    match s.products.get(&s.deps.db, &sku).await? {
        Some(p) => Ok(FastJson(p)),
        None => Err(problem(
            StatusCode::NOT_FOUND,
            "product-not-found",
            "No such product",
            format!("there is no product {sku}"),
        )),
    }
}

const PRODUCT_COLUMNS: &str = "sku, name, description, price_minor, currency, stock";

async fn create(
    State(s): State<ProductState>,
    Valid(body): Valid<NewProduct>,
) -> Result<(StatusCode, FastJson<Product>), Problem> {
    let product = Product {
        sku: body.sku,
        name: body.name,
        description: body.description,
        price_minor: body.price_minor,
        currency: body.currency,
        stock: body.stock,
    };
    let inserted = s
        .deps
        .db
        .execute(
            &format!("INSERT INTO products ({PRODUCT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            params![
                product.sku.clone(),
                product.name.clone(),
                product.description.clone(),
                product.price_minor,
                product.currency.clone(),
                product.stock
            ],
        )
        .await;
    match inserted {
        Ok(_) => {
            // A miss cached before it existed goes.
            s.products.forget(&product.sku).await;
            Ok((StatusCode::CREATED, FastJson(product)))
        }
        Err(e) if e.status() == StatusCode::CONFLICT => Err(problem(
            StatusCode::CONFLICT,
            "sku-taken",
            "SKU taken",
            format!("there is a product {} already", product.sku),
        )),
        Err(e) => Err(e.into()),
    }
}

async fn update(
    State(s): State<ProductState>,
    WithProblem(Path(sku)): WithProblem<Path<String>>,
    Valid(change): Valid<ProductChange>,
) -> Result<FastJson<Product>, Problem> {
    let updated = s
        .deps
        .db
        .query_opt(
            &format!(
                "UPDATE products SET name = COALESCE($2, name), description = COALESCE($3, description), price_minor = COALESCE($4, price_minor), stock = COALESCE($5, stock) WHERE sku = $1 RETURNING {PRODUCT_COLUMNS}"
            ),
            params![
                sku.clone(),
                change.name,
                change.description,
                change.price_minor,
                change.stock
            ],
        )
        .await?;
    s.products.forget(&sku).await;
    match updated {
        Some(row) => Ok(FastJson(Product {
            sku: row.get("sku")?,
            name: row.get("name")?,
            description: row.get("description")?,
            price_minor: row.get("price_minor")?,
            currency: row.get("currency")?,
            stock: row.get("stock")?,
        })),
        None => Err(problem(
            StatusCode::NOT_FOUND,
            "product-not-found",
            "No such product",
            format!("there is no product {sku}"),
        )),
    }
}

async fn reserve(
    State(s): State<ProductState>,
    Valid(body): Valid<Reserve>,
) -> Result<(StatusCode, FastJson<Reservation>), Problem> {
    let db = &s.deps.db;
    // One line per SKU, taken in SKU order so two orders never wait on each
    // other's rows (no deadlock on PostgreSQL).
    let mut lines: Vec<(String, i64)> = Vec::new();
    for l in &body.lines {
        match lines.iter_mut().find(|(sku, _)| *sku == l.sku) {
            Some(line) => line.1 += i64::from(l.quantity),
            None => lines.push((l.sku.clone(), i64::from(l.quantity))),
        }
    }
    lines.sort();
    if let [(sku, quantity)] = lines.as_slice()
        && db.engine() == ee_db::Engine::Postgres
    {
        return reserve_one(&s, body.order_id, sku, *quantity).await;
    }
    let mut tx = db.begin().await?;
    match take(&mut tx, &body.order_id, &lines).await {
        Ok(Some((priced_lines, currency))) => {
            tx.commit().await?;
            for (sku, _) in &lines {
                s.products.forget(sku).await;
            }
            Ok((
                StatusCode::CREATED,
                FastJson(priced(body.order_id, priced_lines, &currency)),
            ))
        }
        Ok(None) => {
            // Rolled back explicitly: a dropped transaction costs PostgreSQL
            // its connection.
            let _ = tx.rollback().await;
            first_reservation(db, body.order_id).await
        }
        Err(p) => {
            let _ = tx.rollback().await;
            Err(p)
        }
    }
}

/// One line on PostgreSQL in one statement, one round trip: the
/// reservation's row is claimed and the stock taken together (a
/// data-modifying `WITH`, which SQLite lacks), and the stock's
/// `CHECK (stock >= 0)` refuses to go below zero, which undoes the claim.
/// No row back: a repeat (the claim was there) or an unknown product.
const TAKE_ONE: &str = "WITH claim AS (INSERT INTO reservations (order_id, sku, quantity) SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM products WHERE sku = $2) ON CONFLICT DO NOTHING RETURNING sku, quantity) UPDATE products p SET stock = p.stock - c.quantity FROM claim c WHERE p.sku = c.sku RETURNING p.price_minor, p.currency";

async fn reserve_one(
    s: &ProductState,
    order_id: String,
    sku: &str,
    quantity: i64,
) -> Result<(StatusCode, FastJson<Reservation>), Problem> {
    let db = &s.deps.db;
    let taken = db
        .query_opt(
            TAKE_ONE,
            params![order_id.clone(), sku.to_owned(), quantity],
        )
        .await;
    match taken {
        Ok(Some(row)) => {
            let price: i64 = row.get("price_minor")?;
            let currency: String = row.get("currency")?;
            s.products.forget(sku).await;
            let line = PricedLine {
                sku: sku.to_owned(),
                quantity,
                price_minor: price,
            };
            Ok((
                StatusCode::CREATED,
                FastJson(priced(order_id, vec![line], &currency)),
            ))
        }
        Ok(None) => match stock_of(db, sku).await? {
            None => Err(unknown_product(sku)),
            Some(_) => first_reservation(db, order_id).await,
        },
        Err(e) if e.code() == Some("23514") => {
            let stock = stock_of(db, sku).await?.unwrap_or(0);
            Err(out_of_stock(sku, quantity, stock))
        }
        Err(e) => Err(Problem::from(e)),
    }
}

async fn stock_of(db: &ee_db::Database, sku: &str) -> Result<Option<i64>, Problem> {
    match db
        .query_opt(
            "SELECT stock FROM products WHERE sku = $1",
            params![sku.to_owned()],
        )
        .await?
    {
        Some(row) => row.get("stock").map(Some).map_err(Problem::from),
        None => Ok(None),
    }
}

fn unknown_product(sku: &str) -> Problem {
    problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown-product",
        "Unknown product",
        format!("there is no product {sku}"),
    )
    .with_extension("sku", sku.to_owned())
}

fn out_of_stock(sku: &str, quantity: i64, stock: i64) -> Problem {
    problem(
        StatusCode::CONFLICT,
        "out-of-stock",
        "Out of stock",
        format!("{sku}: {quantity} wanted, {stock} in stock"),
    )
    .with_extension("sku", sku.to_owned())
    .with_extension("in_stock", stock)
}

/// Takes `lines` from stock for `order_id` in `tx`: the priced lines and
/// their currency, or `None` when the order has a reservation already (a
/// repeat: nothing is taken twice).
async fn take(
    tx: &mut ee_db::Tx,
    order_id: &str,
    lines: &[(String, i64)],
) -> Result<Option<(Vec<PricedLine>, String)>, Problem> {
    let mut priced_lines = Vec::with_capacity(lines.len());
    let mut currency: Option<String> = None;
    for (sku, quantity) in lines {
        // The reservation's row first: one for this order already means a
        // repeat (a concurrent first attempt is waited for on the row).
        let claimed = tx
            .execute(
                "INSERT INTO reservations (order_id, sku, quantity) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                params![order_id.to_owned(), sku.clone(), *quantity],
            )
            .await?;
        if claimed == 0 {
            return Ok(None);
        }
        // Taken and priced in one statement (both engines have RETURNING).
        let taken = tx
            .query_opt(
                "UPDATE products SET stock = stock - $1 WHERE sku = $2 AND stock >= $1 RETURNING price_minor, currency",
                params![*quantity, sku.clone()],
            )
            .await?;
        let Some(row) = taken else {
            // Not taken: out of stock, or no such product.
            let stock = tx
                .query_opt(
                    "SELECT stock FROM products WHERE sku = $1",
                    params![sku.clone()],
                )
                .await?;
            return Err(match stock {
                None => unknown_product(sku),
                Some(row) => {
                    let stock: i64 = row.get("stock")?;
                    out_of_stock(sku, *quantity, stock)
                }
            });
        };
        let price: i64 = row.get("price_minor")?;
        let cur: String = row.get("currency")?;
        if currency.get_or_insert_with(|| cur.clone()) != &cur {
            return Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "mixed-currencies",
                "Mixed currencies",
                "every line of an order must be in one currency",
            ));
        }
        priced_lines.push(PricedLine {
            sku: sku.clone(),
            quantity: *quantity,
            price_minor: price,
        });
    }
    Ok(Some((
        priced_lines,
        currency.unwrap_or_else(|| "EUR".to_owned()),
    )))
}

/// 200 with the reservation an earlier request made for `order_id`.
async fn first_reservation(
    db: &ee_db::Database,
    order_id: String,
) -> Result<(StatusCode, FastJson<Reservation>), Problem> {
    let existing = db
        .query_as::<(String, i64, i64, String)>(
            "SELECT r.sku, r.quantity, p.price_minor, p.currency FROM reservations r JOIN products p ON p.sku = r.sku WHERE r.order_id = $1 ORDER BY r.sku",
            params![order_id.clone()],
        )
        .await?;
    if !existing.is_empty() && existing.iter().all(|(_, quantity, _, _)| *quantity == 0) {
        return Err(problem(
            StatusCode::GONE,
            "reservation-released",
            "Reservation released",
            format!(
                "the stock reserved for order {order_id} was given back; it is not taken again"
            ),
        )
        .with_extension("order_id", order_id));
    }
    let currency = existing
        .first()
        .map_or_else(|| "EUR".to_owned(), |(_, _, _, c)| c.clone());
    let lines = existing
        .into_iter()
        .map(|(sku, quantity, price_minor, _)| PricedLine {
            sku,
            quantity,
            price_minor,
        })
        .collect();
    Ok((StatusCode::OK, FastJson(priced(order_id, lines, &currency))))
}

fn priced(order_id: String, lines: Vec<PricedLine>, currency: &str) -> Reservation {
    Reservation {
        order_id,
        total_minor: lines.iter().map(|l| l.quantity * l.price_minor).sum(),
        lines,
        currency: currency.to_owned(),
    }
}

async fn release(
    State(s): State<ProductState>,
    WithProblem(Path(order_id)): WithProblem<Path<String>>,
) -> Result<StatusCode, Problem> {
    let mut tx = s.deps.db.begin().await?;
    // The order's rows locked first: a concurrent release of the same order
    // waits here, then reads them emptied (each statement of a PostgreSQL
    // read-committed transaction sees what committed before it; SQLite
    // runs one writer at a time anyway).
    tx.execute(
        "UPDATE reservations SET quantity = quantity WHERE order_id = $1",
        params![order_id.clone()],
    )
    .await?;
    let lines = tx
        .query_as::<(String, i64)>(
            "SELECT sku, quantity FROM reservations WHERE order_id = $1 AND quantity > 0 ORDER BY sku",
            params![order_id.clone()],
        )
        .await?;
    for (sku, quantity) in &lines {
        tx.execute(
            "UPDATE products SET stock = stock + $1 WHERE sku = $2",
            params![*quantity, sku.clone()],
        )
        .await?;
    }
    // Kept, emptied: a later reservation for this order is a repeat.
    tx.execute(
        "UPDATE reservations SET quantity = 0 WHERE order_id = $1",
        params![order_id],
    )
    .await?;
    tx.commit().await?;
    for (sku, _) in &lines {
        s.products.forget(sku).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Demo data: 50 products, `stock` of each, unless the catalogue has
/// products already. Instances starting together may all run it: a
/// product another one added is left alone.
///
/// # Errors
/// The database's.
pub async fn seed(db: &ee_db::Database, stock: i64) -> Result<u64, DbError> {
    let have: i64 = db
        .query_one("SELECT COUNT(*) FROM products", &[])
        .await?
        .get(0)?;
    if have > 0 {
        return Ok(0);
    }
    const KINDS: [&str; 10] = [
        "Water bottle",
        "Coffee mug",
        "Notebook",
        "Backpack",
        "Desk lamp",
        "Headphones",
        "Keyboard",
        "Plant pot",
        "Tea towel",
        "Umbrella",
    ];
    let mut tx = db.begin().await?;
    for i in 0..50_i64 {
        let kind = KINDS[usize::try_from(i).unwrap_or(0) % KINDS.len()];
        tx.execute(
            "INSERT INTO products (sku, name, description, price_minor, currency, stock) VALUES ($1, $2, $3, $4, 'EUR', $5) ON CONFLICT (sku) DO NOTHING",
            params![
                format!("SKU-{:04}", i + 1),
                format!("{kind} no. {}", i / 10 + 1),
                format!("A {} for the demo shop.", kind.to_ascii_lowercase()),
                499 + (i * 137) % 9_000,
                stock,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(50)
}
