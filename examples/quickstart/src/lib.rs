//! The quickstart service: what ee has today, composed in one axum app.
//!
//! - `GET /` lists the endpoints.
//! - `GET /whoami` answers the client IP as seen through trusted proxies
//!   (`ee_core::key::ClientIp`), the TCP peer, and the `x-api-key` header if sent.
//! - `POST /visits` counts a visit per client IP and returns the count, in memory
//!   by default or in Redis when `EE_REDIS_URL` is set (`ee_core::redis`).
//! - Every error, including unknown routes, is an RFC 9457 problem.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use ee_core::key::{ClientIp, HeaderKey, KeyError, KeyExtractor, PeerIp};
use ee_core::redis::{KeySpace, RedisConn, Script};
use ee_core::{Key, Problem, RequestHead};
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
}

impl AppState {
    /// State from a client IP extractor and a visit store.
    pub fn new(client_ip: ClientIp, visits: Visits) -> Self {
        Self { client_ip, visits }
    }
}

/// The router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`
/// so the peer address is known.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/whoami", get(whoami))
        .route("/visits", post(visit))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn index() -> Json<Value> {
    Json(json!({
        "service": "ee quickstart",
        "endpoints": {
            "GET /whoami": "your IP through trusted proxies, and x-api-key if sent",
            "POST /visits": "count a visit for your IP",
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
    Problem::new(StatusCode::METHOD_NOT_ALLOWED)
        .with_detail(format!(
            "{} is not allowed on {}",
            req.method(),
            req.uri().path()
        ))
        .with_instance(req.uri().path().to_owned())
}

async fn not_found(req: Request) -> Problem {
    Problem::new(StatusCode::NOT_FOUND)
        .with_detail(format!(
            "no route for {} {}",
            req.method(),
            req.uri().path()
        ))
        .with_instance(req.uri().path().to_owned())
}
