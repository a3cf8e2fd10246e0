//! The quickstart service: what ee has today, composed in one axum app.
//!
//! - `GET /` lists the endpoints.
//! - `GET /whoami` answers the client IP as seen through trusted proxies
//!   (`ee_core::ClientIp`), the TCP peer, and the `x-api-key` header if sent.
//! - `POST /visits` counts a visit per client IP and returns the count, in memory
//!   by default or in Redis when `EE_REDIS_URL` is set (`ee_core::redis`).
//! - `POST /orders` places an order; it requires an `Idempotency-Key`, so a
//!   retry gets the first answer back instead of a second order (`ee-idempotency`).
//! - Every route is rate limited per client IP (`ee-ratelimit`), with the IETF
//!   `RateLimit` headers.
//! - Every error, including unknown routes, is an RFC 9457 problem.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use ee_core::{ClientIp, HeaderKey, KeyError, KeyExtractor, PeerIp};
use ee_core::{Key, Problem, RequestHead};
use ee_core::{KeySpace, RedisConn, Script};
use ee_idempotency::{IdempotencyConfig, IdempotencyLayer};
use ee_ratelimit::{Policy, RateLimitLayer, Rule};
use serde_json::{Value, json};

/// Where visit counts live.
#[derive(Clone)]
pub enum Visits {
    /// In this process (the embedded default).
    Memory(Arc<Mutex<HashMap<Key, u64>>>),
    /// In Redis, shared by every instance.
    Redis {
        /// The connection.
        conn: RedisConn,
        /// The key names.
        keys: KeySpace,
        /// `INCR` + `PEXPIRE` in one round trip.
        script: Arc<Script>,
    },
}

impl Visits {
    /// In-memory counts.
    pub fn memory() -> Self {
        Visits::Memory(Arc::default())
    }

    /// Counts in Redis, each key expiring a day after its last visit.
    pub fn redis(conn: RedisConn) -> Self {
        Visits::Redis {
            conn,
            keys: KeySpace::new("quickstart"),
            script: Arc::new(Script::new(
                "local n = redis.call('INCR', KEYS[1]); redis.call('PEXPIRE', KEYS[1], ARGV[1]); return n",
            )),
        }
    }

    async fn record(&self, key: &Key) -> Result<u64, Problem> {
        match self {
            Visits::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                let n = map.entry(key.clone()).or_default();
                *n += 1;
                Ok(*n)
            }
            Visits::Redis { conn, keys, script } => {
                let redis_key = keys.key(&["visits", &key.to_string()]);
                conn.invoke(script.key(redis_key).arg(86_400_000))
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, "visit counter unavailable");
                        Problem::ee(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "quickstart",
                            "store-unavailable",
                        )
                        .with_title("Visit counter unavailable")
                        .with_detail("the visit store did not answer; try again shortly")
                    })
            }
        }
    }
}

/// Shared state of the app.
#[derive(Clone)]
pub struct AppState {
    client_ip: ClientIp,
    visits: Visits,
    orders: Arc<AtomicU64>,
    rate_limit: Rule,
}

impl AppState {
    /// State from a client IP extractor and a visit store; 20 requests per
    /// second per client, bursts of 40.
    pub fn new(client_ip: ClientIp, visits: Visits) -> Self {
        Self {
            client_ip,
            visits,
            orders: Arc::default(),
            rate_limit: Rule::gcra(20, std::time::Duration::from_secs(1), 40),
        }
    }

    /// Another rate limit per client.
    pub fn with_rate_limit(mut self, rule: Rule) -> Self {
        self.rate_limit = rule;
        self
    }
}

/// The router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`
/// so the peer address is known. Rate limits and idempotency records live
/// where the visits do: in memory, or in Redis shared by every instance.
pub fn app(state: AppState) -> Router {
    let orders = Router::new().route("/orders", post(place_order));
    let idempotency = IdempotencyConfig {
        required: true,
        ..IdempotencyConfig::default()
    };
    let policy = Policy::new("per-client", state.rate_limit).key(state.client_ip.clone());
    let routes = Router::new()
        .route("/", get(index))
        .route("/whoami", get(whoami))
        .route("/visits", post(visit))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // One store type per crate, chosen at run time: no branching on types.
    let (idempotency_store, limit_store): (ee_idempotency::AnyStore, ee_ratelimit::AnyStore) =
        match &state.visits {
            Visits::Memory(_) => (
                ee_idempotency::MemoryStore::new().into(),
                ee_ratelimit::MemoryStore::new().into(),
            ),
            Visits::Redis { conn, .. } => (
                ee_idempotency::RedisStore::new(conn.clone()).into(),
                ee_ratelimit::RedisStore::new(conn.clone()).into(),
            ),
        };
    let orders = orders.layer(
        IdempotencyLayer::new(idempotency_store)
            .config(&idempotency)
            .expect("a valid idempotency config"),
    );
    let limits = RateLimitLayer::builder(limit_store).policy(policy);
    let built = routes
        .merge(orders)
        .layer(limits.build().expect("a valid policy"));
    built.with_state(state)
}

async fn place_order(State(state): State<AppState>, body: String) -> (StatusCode, Json<Value>) {
    let number = state.orders.fetch_add(1, Ordering::SeqCst) + 1;
    (
        StatusCode::CREATED,
        Json(json!({ "order": number, "request": body })),
    )
}

async fn index() -> Json<Value> {
    Json(json!({
        "service": "ee quickstart",
        "endpoints": {
            "GET /whoami": "your IP through trusted proxies, and x-api-key if sent",
            "POST /visits": "count a visit for your IP",
            "POST /orders": "place an order (Idempotency-Key required; retries are replayed)",
        }
    }))
}

async fn whoami(State(state): State<AppState>, req: Request) -> Result<Json<Value>, Problem> {
    let head = RequestHead::from(&req);
    let client = state.client_ip.extract(&head)?;
    let peer = PeerIp.extract(&head)?;
    let api_key = match HeaderKey::new(HeaderName::from_static("x-api-key")).extract(&head) {
        Ok(key) => Some(key.to_string()),
        Err(KeyError::MissingHeader(_)) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(Json(json!({
        "client_ip": client.to_string(),
        "peer_ip": peer.to_string(),
        "api_key": api_key,
    })))
}

async fn visit(State(state): State<AppState>, req: Request) -> Result<Json<Value>, Problem> {
    let client = state.client_ip.extract(&RequestHead::from(&req))?;
    let visits = state.visits.record(&client).await?;
    Ok(Json(
        json!({ "client_ip": client.to_string(), "visits": visits }),
    ))
}

async fn method_not_allowed(req: Request) -> Problem {
    Problem::method_not_allowed(&req)
}

async fn not_found(req: Request) -> Problem {
    Problem::no_route(&req)
}
