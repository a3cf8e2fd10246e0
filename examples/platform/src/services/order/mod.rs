//! The order service: places orders and reports their status.
//!
//! - `POST /v1/orders` (a user's token) `{"lines": [{"sku", "quantity"}],
//!   "payment_token"}` with an `Idempotency-Key` (required; a retry gets the
//!   first answer back, `Idempotent-Replayed: true`). The order is the
//!   token's user's: no body field can name another.
//!   1. the user is looked up (user service, cached; unknown → 422 problem);
//!   2. the order is recorded `pending`, under an id derived from the user
//!      and the `Idempotency-Key`, with its owner (ReBAC tuple
//!      `order:<id>#owner@user:<id>`) and its card token (in the order
//!      service's database until the order is settled: the charge job's
//!      payload carries no card token);
//!   3. the stock is reserved (product service; not enough → 409 problem,
//!      the order `rejected`);
//!   4. **202 Accepted** with the priced, `pending` order and its
//!      `Location` (or how it ended, 201 `confirmed`, when the job below was
//!      quicker than the answer); a job on the `orders` queue settles it: the payment is
//!      charged (payment service, with the order as its idempotency key);
//!      declined → the stock released, the order `payment_failed`; captured
//!      → `confirmed` and a confirmation handed to the notification queue;
//!      the charge refused outright (4xx) → the stock released, `failed`.
//!      `GET /v1/orders/{id}` shows which. A job whose step failed is
//!      retried with backoff (250 ms doubling to a minute, 50 attempts).
//!
//!   With `Prefer: wait=N` (RFC 7240; N from 1 to 60 s) the request settles
//!   the order itself and answers with the outcome, 201 `confirmed` or 402
//!   problem when the payment was declined (the stock released), plus
//!   `Preference-Applied: wait=N`; its latency then includes the payment
//!   provider's. When that takes longer than N seconds, or a step's outcome
//!   is unknown (a service timed out, failed or was unreachable after the
//!   request may have reached it), the charge job takes over and the answer
//!   is the 202. Nothing is undone on a guess. The settling tasks of such
//!   waits, which outlive their requests, are at most `max_in_flight` at
//!   once: past that a wait is not honoured (202, no `Preference-Applied`).
//!
//!   A retry with the same key gets the first answer (ee-idempotency). Once
//!   that record is gone it resumes the same order (same id; a 503 asks for
//!   exactly that when the order could not be recorded or queued), and
//!   every step is safe to repeat: the reservation and the payment are kept
//!   once per order (a released reservation stays released), the charge and
//!   confirmation jobs once per order, and a charge job that ran out of
//!   attempts starts again. An order changes only while it is `pending`;
//!   a retry that finds it settled meanwhile answers with how it ended
//!   (putting back what it reserved again). A card is never charged twice
//!   for one key.
//! - `GET /v1/orders/{id}` → the order and its status, for its owner (ReBAC)
//!   or an admin; anyone else gets the same 404 as for an id that does not
//!   exist.

use std::ops::ControlFlow;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ee_auth::{
    AuthError, DbTuples, Identity, ObjectRef, Rebac, RebacModel, RelationTuple, Resource, TupleUser,
};
use ee_cache::{Cache, MemoryStore};
use ee_core::Problem;
use ee_core::WithProblem;
use ee_db::params;
use ee_queue::{Backoff, Job, JobOptions, Queue, Worker, WorkerConfig, WorkerHandle};
use ee_serialize::FastJson;
use ee_validate::Valid;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::StartError;
use crate::auth::is_service;
use crate::common::{Deps, found, now_ms, problem, requiring_idempotency_key, retry_failed};
use crate::services::notification::Notifier;

mod settle;

use self::settle::settle;
pub(crate) use self::settle::{conclude, recorded, release};
use crate::services::product::{LineRequest, PricedLine, Reservation};
use crate::services::reconcile::{self, Reconciler};
use crate::services::user::User;

/// The body of `POST /v1/orders` (the user is the token's).
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
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

/// The queue of charges: placed orders waiting for their payment.
pub const QUEUE: &str = "orders";

/// A charge job: a reserved, priced order. References only: the card
/// token waits in the order service's database, the email in the user
/// service's, so a failed job kept by the queue (and shown by its admin
/// API) holds neither.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settle {
    /// The order, `pending`, with its reserved lines and total.
    pub order: Order,
}

/// Who owns what: `order:<id>#owner@user:<id>`; `viewer` is the owner.
const MODEL: &str = "model
  schema 1.1
type user
type order
  relations
    define owner: [user]
    define viewer: owner
";

#[derive(Clone)]
struct OrderState {
    deps: Deps,
    notifier: Notifier,
    charges: Queue,
    /// Users as the user service answered them (users do not change; a
    /// minute bounds how long a deleted one could still order).
    users: Cache<str, User>,
    /// Who owns which order (ReBAC, tuples in the order service's database).
    owners: Rebac<DbTuples>,
    /// One permit per `Prefer: wait` settling task, held until the task
    /// ends (it outlives its request when the wait runs out first): the
    /// in-flight limit does not see those tasks, so this bounds them, as
    /// many as `max_in_flight`.
    waits: Arc<Semaphore>,
    /// The reconciler of stranded orders, held here so that it stops with
    /// the service (`None` when turned off).
    _reconciler: Option<Reconciler>,
}

/// The service's API (mounted under `/v1`); `charges` is the `orders`
/// queue, which [`start_worker`] works through. The reconciler of orders
/// left pending (`services::reconcile`) runs as long as the router lives.
///
/// # Errors
/// The ownership tuples' table cannot be created.
pub async fn api(deps: Deps, notifier: Notifier, charges: Queue) -> Result<Router, StartError> {
    let place = requiring_idempotency_key(
        Router::new().route("/orders", post(place)),
        deps.redis.as_ref(),
        "order",
    );
    let model = RebacModel::parse(MODEL).map_err(|e| StartError(format!("order owners: {e}")))?;
    let tuples = DbTuples::open(deps.db.clone(), "order_owners")
        .await
        .map_err(|e| StartError(format!("order owners: {e}")))?;
    let owners = Rebac::new(model, tuples);
    let users = Cache::builder("order-users")
        .ttl(std::time::Duration::from_secs(60))
        .build(MemoryStore::new())
        .expect("a valid cache");
    let waits = Arc::new(Semaphore::new(deps.config.max_in_flight.max(1) as usize));
    let reconciler = reconcile::start(deps.clone(), notifier.clone(), charges.clone());
    Ok(place
        .route("/orders/{id}", get(find))
        .with_state(OrderState {
            deps,
            notifier,
            charges,
            users,
            owners,
            waits,
            _reconciler: reconciler,
        }))
}

/// The charge worker's settings: 64 jobs at once, and a job may stall
/// (its worker died holding it: a crash, a SIGKILL, a lost node) 3 times
/// and still run; the 4th stall fails it for good. ee-queue's default
/// (`max_stalled` 1) fails it at its 2nd stall. A charge
/// whose worker died mid-charge is the one the retries are there for: run
/// again, it asks the payment service, which answers with the payment
/// made (one per order) or charges now. A stall does not use up one of
/// its 50 attempts, and failing it for good would leave the order to the
/// reconciler for a reason unrelated to the payment; more than 3 stalls
/// points at the job itself killing its workers.
pub fn charge_worker_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 64,
        max_stalled: 3,
        ..WorkerConfig::default()
    }
}

/// Starts the worker that settles placed orders (charge, then confirm or
/// release), as [`charge_worker_config`] says. A job whose outcome is
/// unknown fails and is retried with backoff.
pub fn start_worker(deps: Deps, notifier: Notifier, charges: &Queue) -> WorkerHandle {
    let service = tower::service_fn(move |job: Job<Settle>| {
        let deps = deps.clone();
        let notifier = notifier.clone();
        async move {
            match settle(&deps, &notifier, job.data).await {
                Ok(order) => Ok(order.status),
                Err(p) => Err(p
                    .detail()
                    .unwrap_or("the order could not be settled")
                    .to_owned()),
            }
        }
    });
    Worker::new(charges.clone(), service)
        .config(&charge_worker_config())
        .expect("the charge worker's settings apply")
        .start()
}

/// The longest `Prefer: wait` honoured, in seconds.
const MAX_WAIT_SECS: u64 = 60;

/// How long the gateway waits for this service (its `upstream_timeouts_ms`
/// entry for `order`, or `upstream_timeout_ms`): a wait must end before.
fn gateway_timeout(deps: &Deps) -> std::time::Duration {
    let c = &deps.config;
    std::time::Duration::from_millis(
        c.upstream_timeouts_ms
            .get("order")
            .copied()
            .unwrap_or(c.upstream_timeout_ms),
    )
}

/// `Prefer: wait=N` (RFC 7240), N > 0: the client will wait up to N
/// seconds (at most [`MAX_WAIT_SECS`]) for the outcome. Returns how long,
/// capped half a second short of `gateway` (past it the gateway would
/// answer 504 instead of the 202), and the `Preference-Applied` value.
fn wait_preference(
    headers: &HeaderMap,
    gateway: std::time::Duration,
) -> Option<(std::time::Duration, HeaderValue)> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        // A preference's own parameters (`wait=10; x=y`) are not ours.
        .filter_map(|p| p.split(';').next())
        .find_map(|p| {
            let (name, value) = p.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            let secs: u64 = value.trim().trim_matches('"').parse().ok()?;
            let secs = secs.min(MAX_WAIT_SECS);
            let within = std::time::Duration::from_secs(secs)
                .min(gateway.saturating_sub(std::time::Duration::from_millis(500)));
            (!within.is_zero()).then(|| {
                (
                    within,
                    HeaderValue::from_str(&format!("wait={secs}")).expect("a valid header value"),
                )
            })
        })
}

/// The order's id: the same for every retry of one request (the user and
/// its `Idempotency-Key`), so a retry resumes the order instead of placing
/// another.
fn order_id(user: &str, key: &[u8]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(user.as_bytes());
    h.update([0]);
    h.update(key);
    let digest = h.finalize();
    let mut id = String::from("ord_");
    for b in &digest[..12] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// 503: the step's outcome is not known; the same request again resumes.
fn retry_later(order: &Order, what: &str, why: Option<&str>) -> Problem {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "order-incomplete",
        "Order not finished",
        format!(
            "{what} did not answer clearly ({}); the order is kept pending and nothing is undone: send the same request with the same Idempotency-Key again",
            why.unwrap_or("no detail")
        ),
    )
    .with_extension("order_id", order.id.clone())
    .with_retry_after(std::time::Duration::from_secs(1))
}

/// The answer for an order that already ended without being confirmed.
fn ended(order: &Order) -> Problem {
    let (status, kind, title) = match order.status.as_str() {
        "payment_failed" => (
            StatusCode::PAYMENT_REQUIRED,
            "payment-declined",
            "Payment declined",
        ),
        "failed" => (StatusCode::CONFLICT, "order-failed", "Order failed"),
        _ => (StatusCode::CONFLICT, "order-rejected", "Order rejected"),
    };
    problem(
        status,
        kind,
        title,
        order.failure.clone().unwrap_or_default(),
    )
    .with_extension("order_id", order.id.clone())
}

async fn place(
    State(s): State<OrderState>,
    identity: Identity,
    headers: HeaderMap,
    Valid(body): Valid<PlaceOrder>,
) -> Result<Response, Problem> {
    if identity.is_service() {
        return Err(AuthError::Forbidden("orders are placed by users".into()).into());
    }
    let user = known_user(&s, identity.id()).await?;
    // The idempotency layer has already refused a request without a key.
    let key = headers
        .get("idempotency-key")
        .map_or(&[][..], |v| v.as_bytes());
    let (mut order, attempt) = record(&s, order_id(&user.id, key), &user, &body).await?;
    if order.status != "pending" {
        return outcome(order, None);
    }
    let reservation = match reserve(&s, &mut order, &body).await {
        ControlFlow::Continue(reservation) => reservation,
        ControlFlow::Break(answer) => return answer,
    };
    order.lines = reservation.lines;
    order.total_minor = reservation.total_minor;
    order.currency = reservation.currency;
    let job = Settle { order };
    // A wait takes a permit for its settling task; with none left it is not
    // honoured: the job settles the order and the answer is the 202.
    let wait = wait_preference(&headers, gateway_timeout(&s.deps)).and_then(|(within, applied)| {
        let permit = s.waits.clone().try_acquire_owned().ok()?;
        Some((within, applied, permit))
    });
    let mut applied = None;
    if let Some((within, preference, permit)) = wait {
        if let Some(answer) = settle_within(&s, &job, attempt, within, &preference, permit).await {
            return answer;
        }
        applied = Some(preference);
    }
    hand_over(&s, job, attempt, applied).await
}

/// Whether a request places its order for the first time or resumes the
/// one an earlier attempt with the same `Idempotency-Key` recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    First,
    Resumed,
}

/// The ordering user, through the cache of users (a 422 problem pointing
/// at `/user_id` when there is none).
async fn known_user(s: &OrderState, user_id: &str) -> Result<User, Problem> {
    let lookup = {
        let up = s.deps.upstreams.clone();
        let id = user_id.to_owned();
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
    match s.users.get_or_load(user_id, lookup).await {
        Ok(Some(u)) => Ok(u),
        // A valid token of a user since deleted.
        Ok(None) => Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-user",
            "Unknown user",
            "the token's user no longer exists",
        )),
        Err(p) => Err((*p).clone()),
    }
}

/// Records the order as `pending`, unpriced, with its owner and its card
/// token; a retry finds the one its first attempt recorded and resumes it.
async fn record(
    s: &OrderState,
    id: String,
    user: &User,
    body: &PlaceOrder,
) -> Result<(Order, Attempt), Problem> {
    let deps = &s.deps;
    // The owner first: an order on record always has one (writing it again
    // is harmless).
    let owner = RelationTuple::new(
        ObjectRef::new("order", id.clone())?,
        "owner",
        TupleUser::object("user", user.id.clone())?,
    )?;
    s.owners.write(&[owner]).await?;
    deps.db
        .execute(
            "INSERT INTO order_payment_tokens (order_id, token) VALUES ($1, $2) ON CONFLICT (order_id) DO NOTHING",
            params![id.clone(), body.payment_token.clone()],
        )
        .await?;
    let now = now_ms();
    let fresh = Order {
        id,
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
    match insert(deps, &fresh).await {
        Ok(()) => Ok((fresh, Attempt::First)),
        // A retry: resume the order the first attempt recorded.
        Err(p) if p.status() == StatusCode::CONFLICT => {
            Ok((find_order(deps, &fresh.id).await?, Attempt::Resumed))
        }
        Err(p) => Err(p),
    }
}

/// Reserves the order's stock (the product service keeps one reservation
/// per order). `Break` carries the answer when there is nothing to reserve:
/// the stock was given back already, or a definite no.
async fn reserve(
    s: &OrderState,
    order: &mut Order,
    body: &PlaceOrder,
) -> ControlFlow<Result<Response, Problem>, Reservation> {
    let reserve = serde_json::json!({ "order_id": order.id, "lines": body.lines });
    let answer = s
        .deps
        .upstreams
        .call(
            "product",
            Method::POST,
            "/v1/reservations",
            Some(&reserve),
            &[],
        )
        .await;
    match answer {
        Ok((_, r)) => ControlFlow::Continue(r),
        // Its stock was taken and given back already (a retry of an order
        // that was declined, or whose job is settling it): the order is
        // as stored, and its job (added again if it ran out) settles it.
        Err(p) if p.status() == StatusCode::GONE => {
            ControlFlow::Break(resume_settled(s, &order.id).await)
        }
        // A definite no (out of stock, unknown product): nothing was taken.
        Err(p)
            if matches!(
                p.status(),
                StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY
            ) =>
        {
            order.status = "rejected".to_owned();
            order.failure = p.detail().map(str::to_owned);
            order.updated_ms = now_ms();
            ControlFlow::Break(match update(&s.deps, order).await {
                Ok(_) => Err(p.with_extension("order_id", order.id.clone())),
                Err(e) => Err(e),
            })
        }
        Err(p) => ControlFlow::Break(Err(retry_later(order, "the product service", p.detail()))),
    }
}

/// The answer for an order whose reservation was released already: as
/// stored, its charge job (re)added while it is still pending.
async fn resume_settled(s: &OrderState, id: &str) -> Result<Response, Problem> {
    let order = find_order(&s.deps, id).await?;
    if order.status == "pending" {
        let job = Settle {
            order: order.clone(),
        };
        charge_job(&s.charges, &job, Attempt::Resumed)
            .await
            .map_err(|p| retry_later(&order, "the order queue", p.detail()))?;
    }
    outcome(order, None)
}

/// The client waits (`Prefer: wait=N`): settles here, for up to `within`.
/// On a task of its own, so that past N seconds it goes on rather than
/// being cut off half way (a payment request cut off keeps its idempotency
/// key taken until its lease ends); the task holds `permit` until it ends.
/// `None`: not settled in time, or the outcome is unknown; the charge job
/// takes over.
async fn settle_within(
    s: &OrderState,
    job: &Settle,
    attempt: Attempt,
    within: std::time::Duration,
    applied: &HeaderValue,
    permit: OwnedSemaphorePermit,
) -> Option<Result<Response, Problem>> {
    let (deps, notifier, charges, settling) = (
        s.deps.clone(),
        s.notifier.clone(),
        s.charges.clone(),
        job.clone(),
    );
    let mut task = tokio::spawn(async move {
        let _permit = permit;
        let settled = settle(&deps, &notifier, settling.clone()).await;
        if settled.is_err() {
            // Unknown outcome: the job settles it, even when this request
            // is gone (the client or the gateway gave up).
            if let Err(p) = charge_job(&charges, &settling, attempt).await {
                tracing::warn!(order = %settling.order.id, detail = p.detail().unwrap_or(""), "charge job not added; a retry of the request adds it");
            }
        }
        settled
    });
    match tokio::time::timeout(within, &mut task).await {
        Ok(Ok(Ok(order))) => return Some(outcome(order, Some(applied.clone()))),
        // The outcome is unknown, or not there within N seconds: the charge
        // job takes over (settling again is safe) and the answer is 202, as
        // without the preference.
        Ok(Ok(Err(p))) => {
            tracing::info!(order = %job.order.id, detail = p.detail().unwrap_or(""), "settling in the request did not finish; the charge job takes over");
        }
        Ok(Err(e)) => {
            tracing::error!(order = %job.order.id, error = %e, "settling in the request failed; the charge job takes over");
        }
        Err(_) => {
            tracing::info!(order = %job.order.id, "not settled within the client's wait; the charge job takes over");
        }
    }
    None
}

/// Records the priced order and hands its charge to the worker, together.
/// The job id is the order's: a retry adds no second charge (and revives
/// one that ran out of attempts).
async fn hand_over(
    s: &OrderState,
    job: Settle,
    attempt: Attempt,
    applied: Option<HeaderValue>,
) -> Result<Response, Problem> {
    let (updated, queued) = tokio::join!(
        update(&s.deps, &job.order),
        charge_job(&s.charges, &job, attempt)
    );
    if let Err(p) = queued {
        return Err(retry_later(&job.order, "the order queue", p.detail()));
    }
    match updated {
        Ok(0) => {
            // No longer pending: settled meanwhile (by this order's job,
            // quicker than this answer, or an earlier attempt's). Answer
            // with what it is; stock this attempt reserved again for an
            // order that ended is put back.
            let order = find_order(&s.deps, &job.order.id).await?;
            if order.status != "confirmed" && order.status != "pending" {
                release(&s.deps, &order).await?;
            }
            outcome(order, applied)
        }
        Ok(_) => outcome(job.order, applied),
        Err(p) => Err(retry_later(&job.order, "recording the order", p.detail())),
    }
}

/// `Location` of an order (its ids are `ord_` and hex digits).
fn location(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("/v1/orders/{id}"))
        .unwrap_or_else(|_| HeaderValue::from_static("/v1/orders"))
}

/// The answer for an order as it stands: 202 pending, 201 confirmed, or
/// the problem of how it ended; with `Preference-Applied` when the client
/// waited for it.
#[allow(
    clippy::result_large_err,
    reason = "the problem is the handler's answer, returned as is"
)]
fn outcome(order: Order, applied: Option<HeaderValue>) -> Result<Response, Problem> {
    let status = match order.status.as_str() {
        "pending" => StatusCode::ACCEPTED,
        "confirmed" => StatusCode::CREATED,
        _ => {
            let p = ended(&order);
            return Err(match applied {
                Some(v) => p.with_header(HeaderName::from_static("preference-applied"), v),
                None => p,
            });
        }
    };
    let mut response = (
        status,
        [(header::LOCATION, location(&order.id))],
        FastJson(order),
    )
        .into_response();
    if let Some(v) = applied {
        response
            .headers_mut()
            .insert(HeaderName::from_static("preference-applied"), v);
    }
    Ok(response)
}

/// Hands `job`'s charge to the worker: added once per order. A resumed
/// order whose job ran out of attempts starts it again.
async fn charge_job(charges: &Queue, job: &Settle, attempt: Attempt) -> Result<(), Problem> {
    let id = format!("charge-{}", job.order.id);
    if attempt == Attempt::Resumed && retry_failed(charges, &id).await? {
        return Ok(());
    }
    // Retried for about 45 minutes: 250 ms, doubling up to a minute.
    let options = JobOptions::default().job_id(id).attempts(
        50,
        Backoff::Exponential {
            delay_ms: 250,
            jitter: 0.2,
            max_delay_ms: Some(60_000),
        },
    );
    charges.add("charge", job, options).await?;
    Ok(())
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
        .map_err(Problem::from)
}

/// Writes `o` over the stored order while that is still `pending`: the rows
/// changed (0 when it was settled already).
pub(crate) async fn update(deps: &Deps, o: &Order) -> Result<u64, Problem> {
    deps.db
        .execute(
            // Only a pending order changes: a late write of the priced,
            // pending order never undoes its settlement.
            "UPDATE orders SET status = $2, lines = $3, total_minor = $4, currency = $5, payment_id = $6, failure = $7, updated_ms = $8 WHERE id = $1 AND status = 'pending'",
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
        .map_err(Problem::from)
}

async fn find(
    State(s): State<OrderState>,
    identity: Identity,
    WithProblem(Path(id)): WithProblem<Path<String>>,
) -> Result<FastJson<Order>, Problem> {
    let may = s.deps.auth.may(&identity, "order:read")
        || is_service(&identity, &["order"])
        || ee_auth::authorize(&s.owners, &identity, "viewer", Resource::new("order", &id))
            .await
            .is_ok();
    if !may {
        // As for an order that does not exist: ids do not leak.
        return Err(no_order(&id));
    }
    find_order(&s.deps, &id).await.map(FastJson)
}

fn no_order(id: &str) -> Problem {
    problem(
        StatusCode::NOT_FOUND,
        "order-not-found",
        "No such order",
        format!("there is no order {id}"),
    )
}

pub(crate) async fn find_order(deps: &Deps, id: &str) -> Result<Order, Problem> {
    let row = deps
        .db
        .query_one_as::<OrderRow>(
            "SELECT id, user_id, status, lines, total_minor, currency, payment_id, failure, created_ms, updated_ms FROM orders WHERE id = $1",
            params![id.to_owned()],
        )
        .await;
    let row = found(row, "order-not-found", "No such order", || {
        format!("there is no order {id}")
    })?;
    Ok(Order {
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
    })
}
