//! What every service shares: its dependencies, the deployed shape of its
//! router, ids and time.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use ee_core::Problem;
use ee_core::RedisConn;
use ee_db::Database;

use crate::auth::PlatformAuth;
use crate::upstream::Upstreams;
use crate::{PlatformConfig, StartError};

/// A service's dependencies.
#[derive(Clone, Debug)]
pub struct Deps {
    /// Its database (one SQLite file in embedded mode, PostgreSQL otherwise).
    pub db: Database,
    /// The other services.
    pub upstreams: Upstreams,
    /// Redis, in distributed mode (or when `redis_url` is set).
    pub redis: Option<Redis>,
    /// Embedded mode without Redis: the process's own job queues (the
    /// notifications and the orders' charges, `ee_queue::Queue::memory`),
    /// shared by its services.
    pub local_queues: Vec<ee_queue::Queue>,
    /// The platform's configuration.
    pub config: Arc<PlatformConfig>,
    /// Token verification, signing and roles (ee-auth).
    pub auth: PlatformAuth,
}

/// A Redis connection and the configuration it came from (pub/sub and
/// queues open their own connections).
#[derive(Clone)]
pub struct Redis {
    /// The shared multiplexed connection.
    pub conn: RedisConn,
    /// Where it points.
    pub config: ee_core::RedisConfig,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &ee_core::redact_url(&self.config.url))
            .finish_non_exhaustive()
    }
}

/// Starts job `id` of `queue` again if it failed for good (ran out of
/// attempts): whether it did.
///
/// # Errors
/// The queue is unavailable (a problem, 503).
pub async fn retry_failed(queue: &ee_queue::Queue, id: &str) -> Result<bool, Problem> {
    let failed = queue
        .job(id)
        .await?
        .is_some_and(|j| j.state == ee_queue::JobState::Failed);
    if !failed {
        return Ok(false);
    }
    match queue.retry(id).await {
        Ok(()) => Ok(true),
        // Retried or removed by someone else in between: not ours to do.
        Err(ee_queue::QueueError::WrongState { .. } | ee_queue::QueueError::NotFound(_)) => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// The platform's problem types: `https://ee.rs/problems/platform/<kind>`.
pub fn problem(
    status: StatusCode,
    kind: &str,
    title: &'static str,
    detail: impl Into<std::borrow::Cow<'static, str>>,
) -> Problem {
    Problem::ee(status, "platform", kind)
        .with_title(title)
        .with_detail(detail)
}

/// A new id: `<prefix>_` and 16 hex digits of randomness.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{:016x}", rand::random::<u64>())
}

/// Milliseconds since the Unix epoch (ee-core's wall clock), as the
/// platform's rows store them.
pub fn now_ms() -> i64 {
    i64::try_from(ee_core::unix_ms()).unwrap_or(i64::MAX)
}

/// A service as deployed: `api` under `/v1` (ee-versioning; other versions
/// answer 400 listing the supported one), unknown routes a 404 problem, a
/// JSON log line and RED metrics per request, and every request's bearer
/// token verified (ee-auth; each route says whether it needs one).
///
/// Version-neutral: `public` (the user service's JWKS), `/livez`, `/readyz` and `/startupz` for anyone, saying
/// nothing about dependencies; the operators' endpoints (`/healthz` with
/// its details, `/metrics`, the queue admin API and board under
/// `/admin/queues` for `queues`) only for an `admin` token.
///
/// Each instance also sheds load: past `max_in_flight` requests at once
/// (ee-ratelimit's concurrency limit) it answers 429 with `Retry-After`
/// rather than queueing without bound.
///
/// # Errors
/// The authentication layer cannot be built.
pub fn deploy(
    service: &str,
    api: Router,
    public: Router,
    deps: &Deps,
    ops: Ops<'_>,
) -> Result<Router, StartError> {
    let shed = ee_ratelimit::RateLimitLayer::builder(ee_ratelimit::MemoryStore::new())
        .policy(
            ee_ratelimit::Policy::new(
                "in-flight",
                ee_ratelimit::Rule::concurrency(deps.config.max_in_flight),
            )
            .key(ee_core::key_fn(|_| Ok(ee_core::Key::text("instance")))),
        )
        .build()
        .expect("a valid policy");
    let neutral = ops
        .health
        .probes_router()
        .merge(public)
        .merge(ops.router(&deps.auth));
    Ok(ee_versioning::VersionedRouter::new()
        .version(1, api.fallback(not_found).layer(shed))
        .neutral(neutral)
        .into_router()
        .layer(deps.auth.layer(service)?)
        .layer(ee_logging::RequestLogLayer::new())
        .layer(ee_metrics::MetricsLayer::new()))
}

/// What operators reach on a service: its health details, the process's
/// metrics and its job queues.
#[derive(Clone, Copy)]
pub struct Ops<'a> {
    /// The service's checks.
    pub health: &'a ee_health::Health,
    /// The process's metrics, when they are recorded.
    pub prometheus: Option<&'a ee_metrics::Prometheus>,
    /// The queues the service works on (the admin API and board).
    pub queues: &'a [ee_queue::Queue],
}

impl Ops<'_> {
    /// `/healthz`, `/metrics` and `/admin/queues/…`, each for an `admin`
    /// token only (401 without a token, 403 with another's).
    pub fn router(&self, auth: &PlatformAuth) -> Router {
        let mut ops = self.health.details_router();
        if let Some(p) = self.prometheus {
            ops = ops.merge(p.router());
        }
        if !self.queues.is_empty() {
            ops = ops.nest(
                "/admin/queues",
                ee_queue::admin_router(self.queues.iter().cloned()),
            );
        }
        ops.route_layer(ee_auth::require(auth.rbac().clone(), "ops:read"))
    }
}

/// 404 for a path no route matches.
pub async fn not_found(req: Request) -> Problem {
    Problem::no_route(&req)
}

/// A readiness check of the database: one `SELECT 1`.
pub fn db_check(db: Database) -> impl ee_health::HealthCheck {
    ee_health::check_fn(move || {
        let db = db.clone();
        async move { db.query_one("SELECT 1", &[]).await.map(|_| ()) }
    })
}

/// `router` behind ee-idempotency with a required `Idempotency-Key`: records
/// in Redis when there is one (shared by every instance), in memory
/// otherwise.
///
/// A key is scoped by `service`, the method, the path and the caller's
/// verified subject (a user, or `service:order`), and a request without a
/// verified caller is refused before it can hold a key: a client cannot
/// reach another client's record, another service's, or a service's
/// internal keys (`order-<id>` at payment belongs to `service:order` alone).
pub fn requiring_idempotency_key<S>(
    router: Router<S>,
    redis: Option<&Redis>,
    service: &'static str,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let config = ee_idempotency::IdempotencyConfig {
        required: true,
        ..ee_idempotency::IdempotencyConfig::default()
    };
    let store: ee_idempotency::AnyStore = redis.map_or_else(
        || ee_idempotency::MemoryStore::new().into(),
        |r| ee_idempotency::RedisStore::new(r.conn.clone()).into(),
    );
    let scope = ee_core::key_fn(move |head| {
        let subject = head
            .extensions
            .get::<ee_core::Subject>()
            .ok_or(ee_core::KeyError::Unauthenticated)?;
        Ok(ee_core::Key::text(format!(
            "{service}:{}:{}:{}",
            head.method,
            head.uri.path(),
            subject.0
        )))
    });
    router.layer(
        ee_idempotency::IdempotencyLayer::new(store)
            .config(&config)
            .expect("a valid idempotency config")
            .scope(scope),
    )
}

/// A lookup's result, with "no such row" as a 404 problem of `kind`.
#[allow(
    clippy::result_large_err,
    reason = "the problem is the handler's answer, returned as is"
)]
pub fn found<T>(
    result: Result<T, ee_db::DbError>,
    kind: &str,
    title: &'static str,
    detail: impl FnOnce() -> String,
) -> Result<T, Problem> {
    match result {
        Ok(v) => Ok(v),
        Err(ee_db::DbError::NotFound) => Err(problem(StatusCode::NOT_FOUND, kind, title, detail())),
        Err(e) => Err(Problem::from(e)),
    }
}
