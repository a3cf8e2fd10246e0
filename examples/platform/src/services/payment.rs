//! The payment service: charges through a simulated provider.
//!
//! - `POST /v1/payments` `{"order_id", "amount_minor", "currency", "token"}`
//!   (internal, called by the order service; `Idempotency-Key` required) →
//!   201 the payment, `status` `captured` or `declined`. The provider takes
//!   `payment.latency_ms` and declines `payment.failure_rate` of charges at
//!   random, and always the test token `tok_declined`. One payment per
//!   order: a second charge of the same order returns the first, when its
//!   amount and currency are the same (or it is `void`, below); otherwise
//!   409 problem (a payment made for another amount never stands for this
//!   one). Only the order service may charge (its service token; anyone
//!   else 401/403).
//! - `GET /v1/payments?order_id=` (internal) → the order's payment, as a
//!   list of none or one.
//! - `POST /v1/payments/void` `{"order_id", "reason"}` (internal, the order
//!   service's reconciler) → 201 a `void` payment: the order will not be
//!   paid, and a later charge of it returns that void payment instead of
//!   charging; 200 the payment the order already has (it won the race).
//! - `GET /v1/payments/{id}` → the payment, for the order service or an
//!   admin (anyone else: 404).

use ee_core::WithProblem;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use ee_core::Problem;
use ee_db::{DbError, params};
use ee_serialize::FastJson;
use ee_validate::Valid;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::is_service;
use crate::common::{Deps, found, new_id, now_ms, requiring_idempotency_key};
use crate::services::provider::ProviderClock;

/// The token the simulated provider always declines.
pub const DECLINED_TOKEN: &str = "tok_declined";

/// The body of `POST /v1/payments`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Charge {
    /// The order paid for.
    #[schemars(length(min = 1, max = 64))]
    pub order_id: String,
    /// Amount in minor units.
    #[schemars(range(min = 1))]
    pub amount_minor: i64,
    /// ISO 4217 currency.
    #[schemars(regex(pattern = "^[A-Z]{3}$"))]
    pub currency: String,
    /// The card token from the client.
    #[schemars(length(min = 1, max = 64))]
    pub token: String,
}

/// A payment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct Payment {
    /// `pay_…`
    pub id: String,
    /// The order.
    pub order_id: String,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// `captured`, `declined`, or `void` (never to be paid: see
    /// `POST /v1/payments/void`).
    pub status: String,
    /// Why it was declined.
    pub reason: Option<String>,
    /// When, ms since the Unix epoch.
    pub created_ms: i64,
}

/// The body of `POST /v1/payments/void`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Void {
    /// The order that will not be paid.
    #[schemars(length(min = 1, max = 64))]
    pub order_id: String,
    /// Why (kept as the void payment's `reason`).
    #[schemars(length(min = 1, max = 200))]
    pub reason: String,
}

/// `?order_id=`
#[derive(Debug, Deserialize)]
struct ByOrder {
    order_id: String,
}

#[derive(Clone)]
struct PaymentState {
    deps: Deps,
    provider: ProviderClock,
}

impl FromRef<PaymentState> for Deps {
    fn from_ref(s: &PaymentState) -> Self {
        s.deps.clone()
    }
}

/// The service's API (mounted under `/v1`).
pub fn api(deps: Deps) -> Router {
    let charges = requiring_idempotency_key(
        Router::new().route("/payments", post(charge)),
        deps.redis.as_ref(),
        "payment",
    );
    let internal = charges
        .route("/payments", get(list))
        .route("/payments/void", post(void))
        // Outside the idempotency layer: a refused caller leaves no record.
        .route_layer(ee_auth::RequireServiceLayer::new(["order"]));
    internal
        .route("/payments/{id}", get(find))
        .with_state(PaymentState {
            deps,
            provider: ProviderClock::start(),
        })
}

const COLUMNS: &str = "id, order_id, amount_minor, currency, status, reason, created_ms";

async fn charge(
    State(PaymentState { deps, provider }): State<PaymentState>,
    Valid(body): Valid<Charge>,
) -> Result<(StatusCode, FastJson<Payment>), Problem> {
    if let Some(first) = by_order(&deps, &body.order_id).await? {
        return same_charge(first, &body).map(|p| (StatusCode::OK, FastJson(p)));
    }
    let settings = &deps.config.payment;
    provider
        .wait(Duration::from_millis(settings.latency_ms))
        .await;
    let reason = if body.token == DECLINED_TOKEN {
        Some("card declined (test token)".to_owned())
    } else if rand::random::<f64>() < settings.failure_rate {
        Some("card declined by the issuer".to_owned())
    } else {
        None
    };
    let payment = Payment {
        id: new_id("pay"),
        order_id: body.order_id,
        amount_minor: body.amount_minor,
        currency: body.currency,
        status: if reason.is_some() {
            "declined"
        } else {
            "captured"
        }
        .to_owned(),
        reason,
        created_ms: now_ms(),
    };
    first_of_order(&deps, payment).await
}

/// Records `payment` unless its order has one already: 201 it, or 200 the
/// one recorded first (one payment per order).
async fn first_of_order(
    deps: &Deps,
    payment: Payment,
) -> Result<(StatusCode, FastJson<Payment>), Problem> {
    let inserted = deps
        .db
        .execute(
            &format!("INSERT INTO payments ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
            params![
                payment.id.clone(),
                payment.order_id.clone(),
                payment.amount_minor,
                payment.currency.clone(),
                payment.status.clone(),
                payment.reason.clone(),
                payment.created_ms
            ],
        )
        .await;
    match inserted {
        Ok(_) => Ok((StatusCode::CREATED, FastJson(payment))),
        // Another charge of this order won the race: it is the payment.
        Err(e) if e.status() == StatusCode::CONFLICT => {
            match by_order(deps, &payment.order_id).await? {
                Some(first) => {
                    same_charge(first, &body_of(&payment)).map(|p| (StatusCode::OK, FastJson(p)))
                }
                None => Err(Problem::from(e)),
            }
        }
        Err(e) => Err(Problem::from(e)),
    }
}

/// `POST /v1/payments/void`: the order will not be paid. Its payment from
/// now on is a `void` one, unless it has one already (that one is the
/// answer): either way what the answer says is what every later charge of
/// the order gets.
async fn void(
    State(deps): State<Deps>,
    Valid(body): Valid<Void>,
) -> Result<(StatusCode, FastJson<Payment>), Problem> {
    if let Some(first) = by_order(&deps, &body.order_id).await? {
        return Ok((StatusCode::OK, FastJson(first)));
    }
    let payment = Payment {
        id: new_id("pay"),
        order_id: body.order_id,
        amount_minor: 0,
        currency: String::new(),
        status: "void".to_owned(),
        reason: Some(body.reason),
        created_ms: now_ms(),
    };
    first_of_order(&deps, payment).await
}

/// `GET /v1/payments?order_id=`: the order's payment, if any.
async fn list(
    State(deps): State<Deps>,
    WithProblem(Query(q)): WithProblem<Query<ByOrder>>,
) -> Result<FastJson<Vec<Payment>>, Problem> {
    Ok(FastJson(
        by_order(&deps, &q.order_id).await?.into_iter().collect(),
    ))
}

/// The order's payment on record, when it is for the amount and currency
/// asked; 409 problem otherwise.
#[allow(
    clippy::result_large_err,
    reason = "the problem is the handler's answer, returned as is"
)]
fn same_charge(first: Payment, asked: &Charge) -> Result<Payment, Problem> {
    // A void payment stands for any charge of its order: it charges nothing.
    if first.status == "void"
        || (first.amount_minor == asked.amount_minor && first.currency == asked.currency)
    {
        return Ok(first);
    }
    Err(crate::common::problem(
        StatusCode::CONFLICT,
        "payment-mismatch",
        "Payment does not match",
        format!(
            "order {} has a payment on record for another amount or currency",
            first.order_id
        ),
    ))
}

fn body_of(p: &Payment) -> Charge {
    Charge {
        order_id: p.order_id.clone(),
        amount_minor: p.amount_minor,
        currency: p.currency.clone(),
        token: String::new(),
    }
}

async fn by_order(deps: &Deps, order_id: &str) -> Result<Option<Payment>, Problem> {
    match deps
        .db
        .query_one_as::<Payment>(
            &format!("SELECT {COLUMNS} FROM payments WHERE order_id = $1"),
            params![order_id.to_owned()],
        )
        .await
    {
        Ok(p) => Ok(Some(p)),
        Err(DbError::NotFound) => Ok(None),
        Err(e) => Err(Problem::from(e)),
    }
}

async fn find(
    State(deps): State<Deps>,
    identity: ee_auth::Identity,
    WithProblem(Path(id)): WithProblem<Path<String>>,
) -> Result<FastJson<Payment>, Problem> {
    if !(is_service(&identity, &["order"]) || deps.auth.may(&identity, "payment:read")) {
        return Err(crate::common::problem(
            StatusCode::NOT_FOUND,
            "payment-not-found",
            "No such payment",
            format!("there is no payment {id}"),
        ));
    }
    let payment = deps
        .db
        .query_one_as::<Payment>(
            &format!("SELECT {COLUMNS} FROM payments WHERE id = $1"),
            params![id.clone()],
        )
        .await;
    found(payment, "payment-not-found", "No such payment", || {
        format!("there is no payment {id}")
    })
    .map(FastJson)
}
