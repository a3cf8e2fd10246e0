//! The notification service: sends order confirmations and records what it
//! "sent".
//!
//! - A worker of the `notifications` ee-queue queue runs each
//!   `order-confirmation` job: at least once, retried with backoff, recorded
//!   once per order (the row's key is the order and the kind). The queue is
//!   on Redis in distributed mode and in this process in embedded mode.
//!   The job carries the user's id, not their email: the worker asks the
//!   user service (with its service token) where to send it.
//! - `GET /v1/notifications?order_id=` (token) → what was sent for an
//!   order: the caller's own notifications (an admin: everyone's); another
//!   user's order lists nothing.

use ee_core::WithProblem;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use ee_core::Problem;
use ee_db::{Database, DbError, params};
use ee_queue::{Backoff, Job, JobOptions, Queue, Worker, WorkerHandle};
use ee_serialize::FastJson;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Deps, now_ms};

/// The queue's name.
pub const QUEUE: &str = "notifications";

/// An order confirmation to send.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// The order.
    #[schemars(length(min = 1, max = 64))]
    pub order_id: String,
    /// Who to send it to (the user service knows where).
    #[schemars(length(min = 1, max = 64))]
    pub user_id: String,
    /// The amount charged, in minor units.
    pub total_minor: i64,
    /// Its currency.
    #[schemars(length(min = 3, max = 3))]
    pub currency: String,
}

/// A sent notification.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct Notification {
    /// The order.
    pub order_id: String,
    /// `order-confirmation`.
    pub kind: String,
    /// Where it went.
    pub recipient: String,
    /// What it said.
    pub body: String,
    /// When, ms since the Unix epoch.
    pub sent_ms: i64,
}

#[derive(Debug, Deserialize)]
struct ByOrder {
    order_id: String,
}

/// How the order service hands a confirmation over: the `notifications`
/// queue, on Redis (distributed mode) or in this process (embedded mode).
#[derive(Clone, Debug)]
pub struct Notifier(pub Queue);

impl Notifier {
    /// Hands `c` over. The job id is the order's, so a retried order adds no
    /// second job.
    ///
    /// # Errors
    /// The queue is unavailable.
    pub async fn order_confirmed(&self, c: &Confirmation) -> Result<(), Problem> {
        let options = JobOptions::default()
            .job_id(format!("confirm-{}", c.order_id))
            .attempts(
                5,
                Backoff::exponential(Duration::from_millis(200)).with_jitter(0.2),
            );
        self.0.add("order-confirmation", c, options).await?;
        Ok(())
    }

    /// Starts the worker that sends confirmations (10 at once).
    pub fn start_worker(&self, deps: Deps) -> WorkerHandle {
        let service = tower::service_fn(move |job: Job<Confirmation>| {
            let deps = deps.clone();
            async move {
                let email = recipient(&deps, &job.data.user_id)
                    .await
                    .map_err(|p| p.detail().unwrap_or("no email").to_owned())?;
                send(&deps.db, &job.data, &email)
                    .await
                    .map_err(|e| e.to_string())
            }
        });
        Worker::new(self.0.clone(), service).concurrency(10).start()
    }
}

/// The service's API (mounted under `/v1`).
pub fn api(deps: Deps) -> Router {
    Router::new()
        .route("/notifications", get(list))
        .with_state(deps)
}

/// Where `user_id`'s mail goes: the user service's record of them.
async fn recipient(deps: &Deps, user_id: &str) -> Result<String, Problem> {
    let (_, user) = deps
        .upstreams
        .call::<(), crate::services::user::User>(
            "user",
            axum::http::Method::GET,
            &format!("/v1/users/{user_id}"),
            None,
            &[],
        )
        .await?;
    Ok(user.email)
}

/// "Sends" `c` to `email`: records it, once per order.
async fn send(db: &Database, c: &Confirmation, email: &str) -> Result<Notification, DbError> {
    let n = Notification {
        order_id: c.order_id.clone(),
        kind: "order-confirmation".to_owned(),
        recipient: email.to_owned(),
        body: format!(
            "Thank you for your order {}: {}.{:02} {} charged.",
            c.order_id,
            c.total_minor / 100,
            c.total_minor % 100,
            c.currency
        ),
        sent_ms: now_ms(),
    };
    db.execute(
        "INSERT INTO notifications (order_id, kind, recipient, body, sent_ms, user_id) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id, kind) DO NOTHING",
        params![n.order_id.clone(), n.kind.clone(), n.recipient.clone(), n.body.clone(), n.sent_ms, c.user_id.clone()],
    )
    .await?;
    Ok(n)
}

async fn list(
    State(deps): State<Deps>,
    identity: ee_auth::Identity,
    WithProblem(Query(q)): WithProblem<Query<ByOrder>>,
) -> Result<FastJson<Vec<Notification>>, Problem> {
    let found = if deps.auth.may(&identity, "notification:read") {
        deps.db
            .query_as::<Notification>(
                "SELECT order_id, kind, recipient, body, sent_ms FROM notifications WHERE order_id = $1 ORDER BY sent_ms",
                params![q.order_id],
            )
            .await
    } else {
        deps.db
            .query_as::<Notification>(
                "SELECT order_id, kind, recipient, body, sent_ms FROM notifications WHERE order_id = $1 AND user_id = $2 ORDER BY sent_ms",
                params![q.order_id, identity.id().to_owned()],
            )
            .await
    };
    found.map(FastJson).map_err(Problem::from)
}
