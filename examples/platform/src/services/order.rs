//! The order service: places orders and reports their status.
//!
//! - `POST /v1/orders` `{"user_id", "lines": [{"sku", "quantity"}],
//!   "payment_token"}` with an `Idempotency-Key` (required; a retry gets the
//!   first answer back, `Idempotent-Replayed: true`):
//!   1. the user is looked up (user service; unknown → 422 problem);
//!   2. the stock is reserved (product service; not enough → 409 problem,
//!      the order `rejected`);
//!   3. the payment is charged (payment service, with the order as its
//!      idempotency key; declined → 402 problem, the stock released, the
//!      order `payment_failed`; payment unreachable → the stock released,
//!      the order `failed`, 503 problem);
//!   4. a confirmation is handed to the notification service (ee-queue);
//!   5. 201 the order, `confirmed`.
//! - `GET /v1/orders/{id}` → the order and its status.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use ee_cache::{Cache, MemoryStore};
use ee_core::Problem;
use ee_db::{DbError, params};
use ee_idempotency::{IdempotencyConfig, IdempotencyLayer};
use ee_serialize::FastJson;
use ee_validate::Valid;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Deps, new_id, now_ms, problem};
use crate::services::notification::{Confirmation, Notifier};
use crate::services::payment::Payment;
use crate::services::product::{LineRequest, PricedLine, Reservation};
use crate::services::user::User;

/// The body of `POST /v1/orders`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// Who orders.
    #[schemars(length(min = 1, max = 64))]
    pub user_id: String,
    /// What.
    #[schemars(length(min = 1, max = 50))]
    pub lines: Vec<LineRequest>,
    /// A card token (`tok_declined` is always declined).
    #[schemars(length(min = 1, max = 64))]
    pub payment_token: String,
}

/// An order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct Order {
    /// `ord_…`
    pub id: String,
    /// Who ordered.
    pub user_id: String,
    /// `pending`, `confirmed`, `rejected`, `payment_failed` or `failed`.
    pub status: String,
    /// The priced lines (the requested ones until stock is reserved).
    pub lines: Vec<PricedLine>,
    /// Sum of the lines, minor units.
    pub total_minor: i64,
    /// Currency.
    pub currency: String,
    /// The payment, once charged.
    pub payment_id: Option<String>,
    /// Why it did not go through.
    pub failure: Option<String>,
    /// Created, ms since the Unix epoch.
    pub created_ms: i64,
    /// Last changed.
    pub updated_ms: i64,
}

#[derive(Deserialize)]
struct OrderRow {
    id: String,
    user_id: String,
    status: String,
    lines: String,
    total_minor: i64,
    currency: String,
    payment_id: Option<String>,
    failure: Option<String>,
    created_ms: i64,
    updated_ms: i64,
}

#[derive(Clone)]
struct OrderState {
    deps: Deps,
    notifier: Notifier,
    /// Users as the user service answered them (users do not change; a
    /// minute bounds how long a deleted one could still order).
    users: Cache<str, User>,
}

/// The service's API (mounted under `/v1`).
pub fn api(deps: Deps, notifier: Notifier) -> Router {
    let idempotency = IdempotencyConfig {
        required: true,
        ..IdempotencyConfig::default()
    };
    let place = Router::new().route("/orders", post(place));
    let place = match &deps.redis {
        None => place.layer(IdempotencyLayer::with_config(
            ee_idempotency::MemoryStore::new(),
            idempotency,
        )),
        Some(redis) => place.layer(IdempotencyLayer::with_config(
            ee_idempotency::RedisStore::new(redis.conn.clone()),
            idempotency,
        )),
    };
    let users = Cache::builder("order-users")
        .ttl(std::time::Duration::from_secs(60))
        .build(MemoryStore::new())
        .expect("a valid cache");
    place
        .route("/orders/{id}", get(find))
        .with_state(OrderState {
            deps,
            notifier,
            users,
        })
}

async fn place(
    State(s): State<OrderState>,
    Valid(body): Valid<PlaceOrder>,
) -> Result<(StatusCode, FastJson<Order>), Problem> {
    let up = &s.deps.upstreams;
    let lookup = {
        let up = up.clone();
        let id = body.user_id.clone();
        move || async move {
            match up
                .call::<(), User>("user", Method::GET, &format!("/v1/users/{id}"), None, &[])
                .await
            {
                Ok((_, u)) => Ok(Some(u)),
                Err(p) if p.status() == StatusCode::NOT_FOUND => Ok(None),
                Err(p) => Err(p),
            }
        }
    };
    let user: User = match s.users.get_or_load(&body.user_id, lookup).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-user",
                "Unknown user",
                format!("there is no user {}", body.user_id),
            )
            .with_extension("pointer", "/user_id"));
        }
        Err(p) => return Err((*p).clone()),
    };
    let now = now_ms();
    let mut order = Order {
        id: new_id("ord"),
        user_id: user.id.clone(),
        status: "pending".to_owned(),
        lines: body
            .lines
            .iter()
            .map(|l| PricedLine {
                sku: l.sku.clone(),
                quantity: i64::from(l.quantity),
                price_minor: 0,
            })
            .collect(),
        total_minor: 0,
        currency: String::new(),
        payment_id: None,
        failure: None,
        created_ms: now,
        updated_ms: now,
    };
    insert(&s.deps, &order).await?;

    let reserve = serde_json::json!({ "order_id": order.id, "lines": body.lines });
    let reservation: Reservation = match up
        .call(
            "product",
            Method::POST,
            "/v1/reservations",
            Some(&reserve),
            &[],
        )
        .await
    {
        Ok((_, r)) => r,
        Err(p) => {
            order.status = "rejected".to_owned();
            order.failure = p.detail().map(str::to_owned);
            update(&s.deps, &order).await?;
            return Err(p.with_extension("order_id", order.id.clone()));
        }
    };
    order.lines = reservation.lines;
    order.total_minor = reservation.total_minor;
    order.currency = reservation.currency;

    let charge = serde_json::json!({
        "order_id": order.id,
        "amount_minor": order.total_minor,
        "currency": order.currency,
        "token": body.payment_token,
    });
    let key = format!("\"order-{}\"", order.id);
    let paid = up
        .call::<_, Payment>(
            "payment",
            Method::POST,
            "/v1/payments",
            Some(&charge),
            &[("idempotency-key", key)],
        )
        .await;
    let failed = match paid {
        Ok((_, payment)) if payment.status == "captured" => {
            order.payment_id = Some(payment.id);
            None
        }
        Ok((_, payment)) => {
            order.payment_id = Some(payment.id);
            let why = payment.reason.unwrap_or_else(|| "declined".to_owned());
            Some((
                "payment_failed",
                problem(
                    StatusCode::PAYMENT_REQUIRED,
                    "payment-declined",
                    "Payment declined",
                    why,
                ),
            ))
        }
        Err(p) => Some((
            "failed",
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "payment-unavailable",
                "Payment unavailable",
                format!(
                    "the payment could not be made ({}); nothing was charged, try again",
                    p.detail().unwrap_or_default()
                ),
            ),
        )),
    };
    if let Some((status, p)) = failed {
        // The stock goes back before the order says it failed.
        up.call::<(), serde_json::Value>(
            "product",
            Method::DELETE,
            &format!("/v1/reservations/{}", order.id),
            None,
            &[],
        )
        .await?;
        order.status = status.to_owned();
        order.failure = p.detail().map(str::to_owned);
        order.updated_ms = now_ms();
        update(&s.deps, &order).await?;
        return Err(p.with_extension("order_id", order.id));
    }

    order.status = "confirmed".to_owned();
    order.updated_ms = now_ms();
    let confirmation = Confirmation {
        order_id: order.id.clone(),
        email: user.email,
        total_minor: order.total_minor,
        currency: order.currency.clone(),
    };
    // The order is paid: its record and its confirmation go together.
    let (updated, handed) = tokio::join!(
        update(&s.deps, &order),
        s.notifier.order_confirmed(&confirmation)
    );
    updated?;
    if let Err(p) = handed {
        // The order stands; the confirmation is logged as not handed over.
        tracing::error!(order = %order.id, problem = ?p.detail(), "order confirmation not enqueued");
    }
    Ok((StatusCode::CREATED, FastJson(order)))
}

async fn insert(deps: &Deps, o: &Order) -> Result<(), Problem> {
    deps.db
        .execute(
            "INSERT INTO orders (id, user_id, status, lines, total_minor, currency, payment_id, failure, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            params![
                o.id.clone(),
                o.user_id.clone(),
                o.status.clone(),
                serde_json::to_string(&o.lines).expect("lines serialize"),
                o.total_minor,
                o.currency.clone(),
                o.payment_id.clone(),
                o.failure.clone(),
                o.created_ms,
                o.updated_ms
            ],
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_problem())
}

async fn update(deps: &Deps, o: &Order) -> Result<(), Problem> {
    deps.db
        .execute(
            "UPDATE orders SET status = $2, lines = $3, total_minor = $4, currency = $5, payment_id = $6, failure = $7, updated_ms = $8 WHERE id = $1",
            params![
                o.id.clone(),
                o.status.clone(),
                serde_json::to_string(&o.lines).expect("lines serialize"),
                o.total_minor,
                o.currency.clone(),
                o.payment_id.clone(),
                o.failure.clone(),
                o.updated_ms
            ],
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_problem())
}

async fn find(
    State(s): State<OrderState>,
    Path(id): Path<String>,
) -> Result<FastJson<Order>, Problem> {
    let row = match s
        .deps
        .db
        .query_one_as::<OrderRow>(
            "SELECT id, user_id, status, lines, total_minor, currency, payment_id, failure, created_ms, updated_ms FROM orders WHERE id = $1",
            params![id.clone()],
        )
        .await
    {
        Ok(r) => r,
        Err(DbError::NotFound) => {
            return Err(problem(
                StatusCode::NOT_FOUND,
                "order-not-found",
                "No such order",
                format!("there is no order {id}"),
            ));
        }
        Err(e) => return Err(e.to_problem()),
    };
    Ok(FastJson(Order {
        lines: serde_json::from_str(&row.lines).unwrap_or_default(),
        id: row.id,
        user_id: row.user_id,
        status: row.status,
        total_minor: row.total_minor,
        currency: row.currency,
        payment_id: row.payment_id,
        failure: row.failure,
        created_ms: row.created_ms,
        updated_ms: row.updated_ms,
    }))
}
