//! The reconciler: settles orders left `pending` with nothing to settle
//! them.
//!
//! An order is settled by its charge job. When that job is gone (embedded
//! mode stopped with the job in memory, a queue that lost it) or failed
//! for good (50 attempts over about 45 minutes, a payload a new version
//! cannot read), the order would stay `pending` with its stock reserved
//! until the client sent the same request again. Every
//! `orders.reconcile_every_ms` the order service looks at up to
//! `orders.reconcile_batch` orders `pending` for longer than
//! `orders.reconcile_after_ms`, skips those whose charge job is alive
//! (waiting, delayed or running: it settles them), and settles the others
//! by what the payment service knows, asked through
//! `POST /v1/payments/void`: the order's payment, or, when it has none, a
//! `void` one recorded in its place, so a charge arriving later (a job
//! revived by a retried request) gets that and charges nothing.
//!
//! - captured, for the order's amount and currency → `confirmed` and the
//!   confirmation handed to the notification queue (as the job does);
//! - declined → the stock released, `payment_failed`;
//! - void (no payment) → the stock released, `failed`, "abandoned: not
//!   paid within …";
//! - captured for another amount → the stock released, `failed`, the
//!   payment named for a refund (and logged as an error).
//!
//! Each step is safe to repeat (releasing, the void, writing a `pending`
//! order), so a pass cut short is finished by the next. With Redis, one
//! instance at a time reconciles: a lock key (`ee:platform:reconciler`,
//! its TTL one and a half periods) held by whichever instance set it
//! first, renewed by it each period; two passes at once would only repeat
//! each other's work. Without Redis there is one process.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use ee_core::{KeySpace, Problem, Script};
use ee_db::params;
use ee_queue::{JobState, Queue};
use metrics::{Counter, Unit};
use serde::{Deserialize, Serialize};

use crate::common::{Deps, now_ms, problem};
use crate::services::notification::Notifier;
use crate::services::order::{Order, conclude, find_order, recorded, release};
use crate::services::payment::Payment;
use crate::services::product::Reservation;

/// The order service's settings (`[orders]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderSettings {
    /// How long an order may stay `pending` before the reconciler looks at
    /// it, in ms (default 600 000, 10 minutes). It bounds how long stock
    /// stays reserved for an order nobody settles. An order whose charge
    /// job is alive is never touched, so this has nothing to wait for in
    /// the job's 45 minutes of retries; it must only exceed the time an
    /// order is pending before its job exists: reserving (an upstream
    /// timeout), a `Prefer: wait` (up to 60 s) and the settling after it,
    /// about two minutes at worst. Reconciling earlier is still safe
    /// (nothing is charged for a voided order), but would abandon an order
    /// that was about to be paid.
    pub reconcile_after_ms: u64,
    /// How often the reconciler runs, in ms (default 60 000; at least
    /// 100); 0 turns it off.
    pub reconcile_every_ms: u64,
    /// The most orders one pass looks at (default 100, at least 1); the
    /// next pass goes on after the last one.
    pub reconcile_batch: u32,
}

impl Default for OrderSettings {
    fn default() -> Self {
        Self {
            reconcile_after_ms: 600_000,
            reconcile_every_ms: 60_000,
            reconcile_batch: 100,
        }
    }
}

/// `ee_platform_orders_reconciled_total{outcome}`: orders the reconciler
/// settled, by outcome (`confirmed`, `payment_failed`, `abandoned`,
/// `mismatch`).
pub const METRIC_RECONCILED_TOTAL: &str = "ee_platform_orders_reconciled_total";

/// Describes the reconciler's metrics to the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        METRIC_RECONCILED_TOTAL,
        Unit::Count,
        "Orders left pending without a live charge job that the reconciler settled, by outcome"
    );
}

/// How the reconciler settled an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Confirmed,
    PaymentFailed,
    Abandoned,
    Mismatch,
}

struct Meters {
    confirmed: Counter,
    payment_failed: Counter,
    abandoned: Counter,
    mismatch: Counter,
}

impl Meters {
    fn new() -> Self {
        describe_metrics();
        let c = |outcome: &'static str| metrics::counter!(METRIC_RECONCILED_TOTAL, "outcome" => outcome);
        Self {
            confirmed: c("confirmed"),
            payment_failed: c("payment_failed"),
            abandoned: c("abandoned"),
            mismatch: c("mismatch"),
        }
    }

    fn count(&self, outcome: Outcome) {
        match outcome {
            Outcome::Confirmed => &self.confirmed,
            Outcome::PaymentFailed => &self.payment_failed,
            Outcome::Abandoned => &self.abandoned,
            Outcome::Mismatch => &self.mismatch,
        }
        .increment(1);
    }
}

/// The running reconciler: it stops when the last clone is dropped (the
/// order service's router holds one).
#[derive(Clone, Debug)]
pub struct Reconciler {
    _running: Arc<Running>,
}

#[derive(Debug)]
struct Running(tokio::task::JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the reconciler of the order service (`None` when
/// `orders.reconcile_every_ms` is 0): its first pass one period from now.
pub fn start(deps: Deps, notifier: Notifier, charges: Queue) -> Option<Reconciler> {
    let settings = deps.config.orders.clone();
    if settings.reconcile_every_ms == 0 {
        return None;
    }
    let every = Duration::from_millis(settings.reconcile_every_ms.max(100));
    let mut pass = Pass {
        lock: deps.redis.as_ref().map(|r| Lock::new(r.conn.clone())),
        deps,
        notifier,
        charges,
        meters: Meters::new(),
        after_ms: settings.reconcile_after_ms,
        batch: settings.reconcile_batch.max(1),
        cursor: None,
    };
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let result = match pass.my_turn(every).await {
                Ok(true) => pass.run().await,
                Ok(false) => Ok(()),
                Err(p) => Err(p),
            };
            match result {
                Ok(()) => failing = false,
                Err(p) => {
                    // Once per outage; the next pass tries again.
                    if !failing {
                        tracing::warn!(
                            detail = p.detail().unwrap_or(""),
                            "a reconciler pass stopped"
                        );
                    }
                    failing = true;
                }
            }
        }
    });
    Some(Reconciler {
        _running: Arc::new(Running(task)),
    })
}

/// Sets the lock for this instance (or renews it when this instance holds
/// it): 1 if it is this instance's, 0 if another's. KEYS: the lock. ARGV:
/// this instance's token, the TTL in ms.
static LOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

/// A pending order as the scan sees it.
#[derive(Deserialize)]
struct Stranded {
    id: String,
    created_ms: i64,
}

/// The reconciler's state between passes.
struct Pass {
    deps: Deps,
    notifier: Notifier,
    charges: Queue,
    meters: Meters,
    after_ms: u64,
    batch: u32,
    /// Where the next pass goes on (the last order looked at), so orders
    /// whose jobs are alive do not hide the ones behind them.
    cursor: Option<(i64, String)>,
    /// The lock shared with the other instances (with Redis).
    lock: Option<Lock>,
}

/// Which instance reconciles: the one holding `ee:platform:reconciler`.
struct Lock {
    conn: ee_core::RedisConn,
    /// This instance's value of the key.
    token: String,
}

impl Lock {
    fn new(conn: ee_core::RedisConn) -> Self {
        Self {
            conn,
            token: crate::common::new_id("rec"),
        }
    }

    /// Whether this instance holds the lock for the next `every` and a
    /// half: set now, or renewed because it held it already.
    async fn take(&self, every: Duration) -> Result<bool, Problem> {
        let key = KeySpace::new("platform").key(&["reconciler"]);
        let ttl = u64::try_from(every.as_millis() * 3 / 2).unwrap_or(u64::MAX);
        let mut call = LOCK.call();
        call.key(key).arg(&self.token).arg(ttl);
        let mine: i64 = self.conn.invoke(&call).await.map_err(|e| {
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "reconciler-lock",
                "Reconciler lock unavailable",
                format!("the reconciler's lock could not be taken: {e}"),
            )
        })?;
        Ok(mine == 1)
    }
}

impl Pass {
    /// Whether this instance reconciles this period: always without Redis
    /// (one process), else when it holds the lock.
    async fn my_turn(&self, every: Duration) -> Result<bool, Problem> {
        match &self.lock {
            None => Ok(true),
            Some(lock) => lock.take(every).await,
        }
    }

    /// One pass: up to `batch` pending orders past the deadline, each
    /// settled unless its job is alive. Stops at the first order whose
    /// settling failed (the services it needs are likely down); the next
    /// pass goes on from there.
    async fn run(&mut self) -> Result<(), Problem> {
        let deadline = now_ms().saturating_sub(i64::try_from(self.after_ms).unwrap_or(i64::MAX));
        let (from_ms, from_id) = self.cursor.clone().unwrap_or((i64::MIN, String::new()));
        let found = self
            .deps
            .db
            .query_as::<Stranded>(
                "SELECT id, created_ms FROM orders WHERE status = 'pending' AND created_ms < $1 AND (created_ms > $2 OR (created_ms = $2 AND id > $3)) ORDER BY created_ms, id LIMIT $4",
                params![deadline, from_ms, from_id, i64::from(self.batch)],
            )
            .await
            .map_err(Problem::from)?;
        // A short page is the end: the next pass starts from the oldest.
        let wrapped = found.len() < self.batch as usize;
        for order in found {
            self.cursor = Some((order.created_ms, order.id.clone()));
            match self.reconcile(&order.id).await {
                Ok(Some(outcome)) => self.meters.count(outcome),
                Ok(None) => {}
                Err(p) => {
                    return Err(p.with_extension("order_id", order.id));
                }
            }
        }
        if wrapped {
            self.cursor = None;
        }
        Ok(())
    }

    /// Settles order `id` unless its charge job is alive or it is no
    /// longer pending: how, or `None` when it was left alone.
    async fn reconcile(&self, id: &str) -> Result<Option<Outcome>, Problem> {
        let job = self.charges.job(&format!("charge-{id}")).await?;
        if job.is_some_and(|j| !matches!(j.state, JobState::Completed | JobState::Failed)) {
            return Ok(None);
        }
        let order = find_order(&self.deps, id).await?;
        if order.status != "pending" {
            return Ok(None);
        }
        let reason = format!("abandoned: not paid within {}", span(self.after_ms));
        let payment = self.void(&order, &reason).await?;
        let outcome = match payment.status.as_str() {
            "captured" => self.paid(order, payment).await?,
            "void" => {
                self.fail(order, payment.reason.unwrap_or(reason)).await?;
                Outcome::Abandoned
            }
            _ => {
                conclude(&self.deps, &self.notifier, order, payment).await?;
                Outcome::PaymentFailed
            }
        };
        tracing::info!(order = id, outcome = ?outcome, "a stranded order was reconciled");
        Ok(Some(outcome))
    }

    /// The order's payment, or a void one recorded in its place.
    async fn void(&self, order: &Order, reason: &str) -> Result<Payment, Problem> {
        let body = serde_json::json!({ "order_id": order.id, "reason": reason });
        let (_, payment) = self
            .deps
            .upstreams
            .call::<_, Payment>(
                "payment",
                Method::POST,
                "/v1/payments/void",
                Some(&body),
                &[],
            )
            .await?;
        Ok(payment)
    }

    /// A captured payment: `confirmed` when it paid for the order as
    /// reserved, otherwise a mismatch, `failed`.
    async fn paid(&self, mut order: Order, payment: Payment) -> Result<Outcome, Problem> {
        if order.currency.is_empty() {
            // Charged, but the priced order was never recorded (a `Prefer:
            // wait` whose process stopped after the charge): the price is
            // the reservation's, which reserving again returns.
            if let Some(r) = self.reservation(&order).await? {
                order.lines = r.lines;
                order.total_minor = r.total_minor;
                order.currency = r.currency;
            }
        }
        if payment.amount_minor != order.total_minor || payment.currency != order.currency {
            tracing::error!(order = %order.id, payment = %payment.id, "a captured payment does not match its order; it is to be refunded");
            let why = format!(
                "payment {} captured {} {} but the order totals {} {}: to be refunded",
                payment.id,
                payment.amount_minor,
                payment.currency,
                order.total_minor,
                order.currency
            );
            order.payment_id = Some(payment.id);
            self.fail(order, why).await?;
            return Ok(Outcome::Mismatch);
        }
        conclude(&self.deps, &self.notifier, order, payment).await?;
        Ok(Outcome::Confirmed)
    }

    /// The stock released and `order` recorded `failed`, with `failure`.
    async fn fail(&self, mut order: Order, failure: String) -> Result<(), Problem> {
        release(&self.deps, &order).await?;
        order.status = "failed".to_owned();
        order.failure = Some(failure);
        order.updated_ms = now_ms();
        recorded(&self.deps, order).await.map(drop)
    }

    /// The order's reservation, as the product service keeps it (reserving
    /// again for the same order returns it); `None` once it was released.
    async fn reservation(&self, order: &Order) -> Result<Option<Reservation>, Problem> {
        let lines: Vec<_> = order
            .lines
            .iter()
            .map(|l| serde_json::json!({ "sku": l.sku, "quantity": l.quantity }))
            .collect();
        let body = serde_json::json!({ "order_id": order.id, "lines": lines });
        match self
            .deps
            .upstreams
            .call::<_, Reservation>(
                "product",
                Method::POST,
                "/v1/reservations",
                Some(&body),
                &[],
            )
            .await
        {
            Ok((_, r)) => Ok(Some(r)),
            Err(p) if p.status() == StatusCode::GONE => Ok(None),
            Err(p) => Err(p),
        }
    }
}

/// `ms` for a person: "10 min", "90 s", "250 ms".
fn span(ms: u64) -> String {
    if ms >= 60_000 && ms.is_multiple_of(60_000) {
        format!("{} min", ms / 60_000)
    } else if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_a_person_would_write_them() {
        assert_eq!(span(600_000), "10 min");
        assert_eq!(span(90_000), "90 s");
        assert_eq!(span(1_500), "1500 ms");
        assert_eq!(span(0), "0 ms");
    }

    #[tokio::test]
    async fn one_instance_at_a_time_holds_the_lock_until_it_stops_renewing_it() {
        let redis = ee_testing::RedisServer::start();
        let config = ee_core::RedisConfig::standalone(redis.url());
        let conn = ee_core::RedisConn::connect(&config).await.unwrap();
        let (a, b) = (Lock::new(conn.clone()), Lock::new(conn));
        let every = Duration::from_millis(200);
        assert!(a.take(every).await.unwrap());
        assert!(!b.take(every).await.unwrap());
        // Its holder renews it each period; the other keeps missing it.
        tokio::time::sleep(every).await;
        assert!(a.take(every).await.unwrap());
        assert!(!b.take(every).await.unwrap());
        // Its holder gone (no renewal), the other has it after the TTL.
        tokio::time::sleep(every * 2).await;
        assert!(b.take(every).await.unwrap());
        assert!(!a.take(every).await.unwrap());
    }

    #[test]
    fn settings_default_and_refuse_unknown_keys() {
        let s: OrderSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, OrderSettings::default());
        assert_eq!(s.reconcile_after_ms, 600_000);
        assert!(serde_json::from_str::<OrderSettings>(r#"{"reconcile_afer_ms": 1}"#).is_err());
    }
}
