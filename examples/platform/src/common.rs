//! What every service shares: its dependencies, the deployed shape of its
//! router, ids and time.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use ee_core::Problem;
use ee_core::RedisConn;
use ee_db::Database;

use crate::PlatformConfig;
use crate::upstream::Upstreams;

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
            .field("url", &self.config.url)
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
/// answer 400 listing the supported one), the probes (`/livez`, `/readyz`,
/// `/healthz`) and `/metrics` version-neutral, unknown routes a 404 problem,
/// a JSON log line and RED metrics per request.
///
/// Each instance also sheds load: past `max_in_flight` requests at once
/// (ee-ratelimit's concurrency limit) it answers 429 with `Retry-After`
/// rather than queueing without bound.
pub fn deploy(
    api: Router,
    health: &ee_health::Health,
    prometheus: Option<&ee_metrics::Prometheus>,
    max_in_flight: u32,
) -> Router {
    let mut neutral = health.router();
    if let Some(p) = prometheus {
        neutral = neutral.merge(p.router());
    }
    let shed = ee_ratelimit::RateLimitLayer::builder(ee_ratelimit::MemoryStore::new())
        .policy(
            ee_ratelimit::Policy::new("in-flight", ee_ratelimit::Rule::concurrency(max_in_flight))
                .key(ee_core::key_fn(|_| Ok(ee_core::Key::text("instance")))),
        )
        .build()
        .expect("a valid policy");
    ee_versioning::VersionedRouter::new()
        .version(1, api.fallback(not_found).layer(shed))
        .neutral(neutral)
        .into_router()
        .layer(ee_logging::RequestLogLayer::new())
        .layer(ee_metrics::MetricsLayer::new())
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
pub fn requiring_idempotency_key<S>(router: Router<S>, redis: Option<&Redis>) -> Router<S>
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
    router.layer(
        ee_idempotency::IdempotencyLayer::new(store)
            .config(&config)
            .expect("a valid idempotency config"),
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
