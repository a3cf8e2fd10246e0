//! The ee reference e-commerce platform: user, product, order, payment and
//! notification services and an API gateway, each an axum app built from ee
//! crates. See `docs/platform.md` for the architecture.
//!
//! - [`Platform::start`] runs all six in one process (embedded mode: SQLite
//!   in `data_dir`, in-memory rate limits, idempotency records and caches),
//!   or on Redis and PostgreSQL when `redis_url` / `database_url` are set.
//! - [`serve`] runs one service per process (distributed mode); the gateway
//!   reaches the instances listed in `upstreams`.

pub mod auth;
pub mod common;
pub mod edge;
pub mod gateway;
pub mod openapi;
pub mod services;
pub mod upstream;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{AuthSettings, KeyMode, PlatformAuth};
use crate::common::{Deps, Ops, Redis, db_check, deploy};
use crate::edge::{EdgeSettings, serve_on};
use crate::gateway::RateLimitSettings;
use crate::services::notification::{self, Notifier};
use crate::services::reconcile::OrderSettings;
use crate::services::{order, payment, product, user};
use crate::upstream::{UpstreamTable, Upstreams};

/// The services, in start order (the gateway last).
pub const SERVICES: [&str; 6] = [
    "user",
    "product",
    "payment",
    "notification",
    "order",
    "gateway",
];

/// The simulated payment provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentSettings {
    /// How long a charge takes, in ms (default 5).
    pub latency_ms: u64,
    /// The share of charges declined at random, 0.0-1.0 (default 0).
    pub failure_rate: f64,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            latency_ms: 5,
            failure_rate: 0.0,
        }
    }
}

/// The platform's configuration (`platform.toml`, then `EE_*` variables:
/// `EE_DATABASE_URL`, `EE_REDIS_URL`, `EE_LISTEN`, `EE_PAYMENT__FAILURE_RATE`).
/// Its `Debug` shows the URLs without their passwords.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformConfig {
    /// Where the gateway listens (embedded mode), or the service being
    /// served (distributed mode). Default `127.0.0.1:8080`.
    pub listen: String,
    /// The SQLite file's directory when `database_url` is empty (default `data`).
    pub data_dir: PathBuf,
    /// PostgreSQL (`postgres://…`) or SQLite (`sqlite://…`); empty: SQLite in `data_dir`.
    pub database_url: String,
    /// Redis for rate limits, idempotency records, the product cache's L2 and
    /// the notification queue; empty: all in this process's memory (embedded
    /// mode only).
    pub redis_url: String,
    /// Distributed mode: each service's instances (`http://host:port`).
    pub upstreams: UpstreamTable,
    /// How long a call to a service may take, in ms (default 5 000).
    pub upstream_timeout_ms: u64,
    /// Per service, instead of `upstream_timeout_ms` (`payment = 2000`).
    pub upstream_timeouts_ms: HashMap<String, u64>,
    /// The gateway's per-client rate limit.
    pub rate_limit: RateLimitSettings,
    /// Requests one service instance runs at once; past it, 429 (default 1 024).
    pub max_in_flight: u32,
    /// The simulated payment provider.
    pub payment: PaymentSettings,
    /// The order service (its reconciler).
    pub orders: OrderSettings,
    /// Add the demo catalogue to an empty database (default true).
    pub seed: bool,
    /// Units of each demo product in stock (default 100).
    pub seed_stock: i64,
    /// How long in-flight requests may finish at shutdown, in ms (default 10 000).
    pub drain_ms: u64,
    /// Logging (ee-logging).
    pub logging: ee_logging::LogConfig,
    /// Tokens: who signs, who verifies, who is an admin.
    pub auth: AuthSettings,
    /// What faces clients: trusted proxies, slow-client timeouts, the size
    /// of answers relayed, a client's `traceparent`.
    pub edge: EdgeSettings,
}

impl std::fmt::Debug for PlatformConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &ee_core::redact_url(&self.database_url))
            .field("redis_url", &ee_core::redact_url(&self.redis_url))
            .field("upstreams", &self.upstreams)
            .field("upstream_timeout_ms", &self.upstream_timeout_ms)
            .field("upstream_timeouts_ms", &self.upstream_timeouts_ms)
            .field("rate_limit", &self.rate_limit)
            .field("max_in_flight", &self.max_in_flight)
            .field("payment", &self.payment)
            .field("orders", &self.orders)
            .field("seed", &self.seed)
            .field("seed_stock", &self.seed_stock)
            .field("drain_ms", &self.drain_ms)
            .field("logging", &self.logging)
            .field("auth", &self.auth)
            .field("edge", &self.edge)
            .finish()
    }
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            data_dir: PathBuf::from("data"),
            database_url: String::new(),
            redis_url: String::new(),
            upstreams: HashMap::new(),
            upstream_timeout_ms: 5_000,
            upstream_timeouts_ms: HashMap::new(),
            rate_limit: RateLimitSettings::default(),
            max_in_flight: 1_024,
            payment: PaymentSettings::default(),
            orders: OrderSettings::default(),
            seed: true,
            seed_stock: 100,
            drain_ms: 10_000,
            logging: ee_logging::LogConfig::default(),
            auth: AuthSettings::default(),
            edge: EdgeSettings::default(),
        }
    }
}

/// Why the platform could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// The database and Redis named by `config`, migrated (and seeded).
async fn open_stores(
    config: &PlatformConfig,
) -> Result<(ee_db::Database, Option<Redis>), StartError> {
    let url = if config.database_url.is_empty() {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError(format!("data dir {}: {e}", config.data_dir.display())))?;
        format!("sqlite://{}/platform.db", config.data_dir.display())
    } else {
        config.database_url.clone()
    };
    let db = ee_db::Database::open(&url)
        .await
        .map_err(|e| StartError(format!("database {}: {e}", ee_core::redact_url(&url))))?;
    let migrations = ee_db::embed_migrations!(
        "migrations/0001_platform.sql",
        "migrations/0002_auth.sql",
        "migrations/0003_pending_orders.sql"
    )
    .map_err(|e| StartError(format!("migrations: {e}")))?;
    db.migrate(&migrations)
        .await
        .map_err(|e| StartError(format!("migrations: {e}")))?;
    if config.seed {
        product::seed(&db, config.seed_stock)
            .await
            .map_err(|e| StartError(format!("seeding the catalogue: {e}")))?;
    }
    let redis = if config.redis_url.is_empty() {
        None
    } else {
        let rc = ee_core::RedisConfig::standalone(config.redis_url.clone());
        let conn = ee_core::RedisConn::connect(&rc).await.map_err(|e| {
            StartError(format!(
                "redis {}: {e}",
                ee_core::redact_url(&config.redis_url)
            ))
        })?;
        Some(Redis { conn, config: rc })
    };
    Ok((db, redis))
}

/// The job queue `name`: on Redis, or the process's own (embedded mode).
async fn jobs(deps: &Deps, name: &str) -> Result<ee_queue::Queue, StartError> {
    if let Some(r) = &deps.redis {
        return ee_queue::Queue::connect(r.config.clone(), name)
            .await
            .map_err(|e| StartError(format!("{name} queue: {e}")));
    }
    deps.local_queues
        .iter()
        .find(|q| q.name() == name)
        .cloned()
        .ok_or_else(|| {
            StartError(format!(
                "a service per process needs Redis for the {name} queue: set redis_url (EE_REDIS_URL)"
            ))
        })
}

/// One service's router and what runs beside it.
struct Built {
    router: Router,
    worker: Option<ee_queue::WorkerHandle>,
    /// Told first at shutdown, so readiness fails while requests drain.
    health: ee_health::Health,
}

async fn build(
    name: &str,
    deps: &Deps,
    prometheus: Option<&ee_metrics::Prometheus>,
) -> Result<Built, StartError> {
    // Calls to other services carry this service's tokens.
    let deps = &Deps {
        upstreams: deps
            .upstreams
            .clone()
            .calling_as(deps.auth.service_tokens(name)),
        ..deps.clone()
    };
    let mut health = ee_health::Health::builder()
        .timeout(Duration::from_secs(2))
        .cache_for(Duration::from_secs(1));
    if name != "gateway" {
        health = health.critical("database", db_check(deps.db.clone()));
    }
    if let Some(r) = &deps.redis {
        health = health.critical("redis", ee_health::RedisCheck(r.conn.clone()));
    }
    let health = health.build();
    let mut worker = None;
    let mut queues = Vec::new();
    let mut public = Router::new();
    let api = match name {
        "user" => {
            let (api, jwks) = user::api(deps.clone())?;
            public = jwks;
            api
        }
        "product" => product::api(deps.clone())
            .await
            .map_err(|e| StartError(format!("product cache: {e}")))?,
        "payment" => payment::api(deps.clone()),
        "notification" => {
            let queue = jobs(deps, notification::QUEUE).await?;
            let notifier = Notifier(queue.clone());
            worker = Some(notifier.start_worker(deps.clone()));
            queues.push(queue);
            notification::api(deps.clone())
        }
        "order" => {
            let notifier = Notifier(jobs(deps, notification::QUEUE).await?);
            let charges = jobs(deps, order::QUEUE).await?;
            worker = Some(order::start_worker(
                deps.clone(),
                notifier.clone(),
                &charges,
            ));
            queues.push(charges.clone());
            order::api(deps.clone(), notifier, charges).await?
        }
        "gateway" => {
            let ops = Ops {
                health: &health,
                prometheus,
                queues: &[],
            };
            let router = gateway::app(
                deps.upstreams.clone(),
                &deps.config.rate_limit,
                deps.redis.as_ref(),
                &deps.auth,
                ops,
                &deps.config.edge,
            )?;
            return Ok(Built {
                router,
                worker,
                health,
            });
        }
        other => {
            return Err(StartError(format!(
                "unknown service {other:?}; one of {}",
                SERVICES.join(", ")
            )));
        }
    };
    let ops = Ops {
        health: &health,
        prometheus,
        queues: &queues,
    };
    Ok(Built {
        router: deploy(name, api, public, deps, ops)?,
        worker,
        health,
    })
}

/// A running platform (embedded mode).
pub struct Platform {
    /// The gateway's base URL.
    pub gateway: String,
    /// Each service's base URL (loopback, ephemeral ports).
    pub services: HashMap<String, String>,
    /// Per service: its stop signal and its server task.
    servers: Vec<(&'static str, watch::Sender<bool>, JoinHandle<()>)>,
    /// Per service: the worker running beside it.
    workers: Vec<(&'static str, ee_queue::WorkerHandle)>,
    /// The in-process job queues (without Redis).
    queues: Vec<ee_queue::Queue>,
    health: Vec<ee_health::Health>,
}

/// Shutdown order: the entry point first, then the service that calls the
/// others (its requests, then its charge jobs), then the rest, so no request
/// or job in flight finds a service it calls already gone.
const STOP_ORDER: [&[&str]; 3] = [
    &["gateway"],
    &["order"],
    &["user", "product", "payment", "notification"],
];

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("gateway", &self.gateway)
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

impl Platform {
    /// Starts the five services and the gateway in this process: each
    /// service on a loopback port of its own, the gateway on
    /// `config.listen`, all calls between them over HTTP as in distributed
    /// mode.
    ///
    /// # Errors
    /// A store that cannot be opened, a port that cannot be bound.
    pub async fn start(
        config: PlatformConfig,
        prometheus: Option<&ee_metrics::Prometheus>,
    ) -> Result<Self, StartError> {
        config.edge.check()?;
        let (db, redis) = open_stores(&config).await?;
        let mut listeners = Vec::new();
        let mut services = HashMap::new();
        let mut table = UpstreamTable::new();
        for name in SERVICES {
            let addr = if name == "gateway" {
                config.listen.as_str()
            } else {
                "127.0.0.1:0"
            };
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| StartError(format!("{name}: cannot listen on {addr}: {e}")))?;
            let url = format!(
                "http://{}",
                listener
                    .local_addr()
                    .map_err(|e| StartError(e.to_string()))?
            );
            if name != "gateway" {
                table.insert(name.to_owned(), vec![url.clone()]);
            }
            services.insert(name.to_owned(), url);
            listeners.push((name, listener));
        }
        let upstreams = Upstreams::new(&table, Duration::from_millis(config.upstream_timeout_ms))
            .and_then(|u| u.with_timeouts(&config.upstream_timeouts_ms))
            .map(|u| u.with_edge(&config.edge))
            .map_err(|e| StartError(e.to_string()))?;
        let local_queues = if redis.is_none() {
            [notification::QUEUE, order::QUEUE]
                .into_iter()
                .map(ee_queue::Queue::memory)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StartError(format!("job queues: {e}")))?
        } else {
            Vec::new()
        };
        let queues = local_queues.clone();
        let auth =
            PlatformAuth::start(&config.auth, KeyMode::Embedded, redis.as_ref(), &[]).await?;
        let deps = Deps {
            db,
            upstreams,
            redis,
            local_queues,
            config: Arc::new(config),
            auth,
        };
        let mut built: Vec<(&str, TcpListener, Built)> = Vec::new();
        for (name, listener) in listeners {
            match build(name, &deps, prometheus).await {
                Ok(b) => built.push((name, listener, b)),
                Err(e) => {
                    for (_, _, b) in built {
                        if let Some(w) = b.worker {
                            w.abort();
                        }
                    }
                    return Err(e);
                }
            }
        }
        // Nothing is served until every service is built: a failed start
        // leaves nothing running.
        let mut servers = Vec::new();
        let mut workers = Vec::new();
        let mut health = Vec::new();
        for (name, listener, b) in built {
            let (stop, stopped) = watch::channel(false);
            workers.extend(b.worker.map(|w| (name, w)));
            health.push(b.health);
            let task = serve_on(listener, b.router, stopped, &deps.config.edge);
            servers.push((name, stop, task));
        }
        Ok(Self {
            gateway: services["gateway"].clone(),
            services,
            servers,
            workers,
            queues,
            health,
        })
    }

    /// The in-process job queue `name` (`orders`: the charges, or
    /// `notifications`), when the platform runs without Redis: to see what
    /// is queued, running or failed.
    pub fn queue(&self, name: &str) -> Option<&ee_queue::Queue> {
        self.queues.iter().find(|q| q.name() == name)
    }

    /// Stops accepting, lets in-flight requests and jobs finish (up to
    /// `drain`), and returns.
    pub async fn shutdown(self, drain: Duration) {
        for h in &self.health {
            h.begin_shutdown();
        }
        let deadline = tokio::time::Instant::now() + drain;
        let mut servers = self.servers;
        let mut workers = self.workers;
        for group in STOP_ORDER {
            let (stopping, rest): (Vec<_>, Vec<_>) = servers
                .into_iter()
                .partition(|(name, ..)| group.contains(name));
            servers = rest;
            for (_, stop, _) in &stopping {
                let _ = stop.send(true);
            }
            let _ = tokio::time::timeout_at(deadline, async {
                for (_, _, task) in stopping {
                    let _ = task.await;
                }
            })
            .await;
            // The group's workers finish what they run (the orders' charges
            // still reach payment and product), with half of what is left
            // when later groups have workers too: a charge job retrying
            // through an outage does not take the notifications' time.
            let (finishing, rest): (Vec<_>, Vec<_>) = workers
                .into_iter()
                .partition(|(name, _)| group.contains(name));
            workers = rest;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let budget = if workers.is_empty() { left } else { left / 2 };
            for (_, w) in finishing {
                w.shutdown(budget).await;
            }
        }
    }
}

/// One running instance of one service (distributed mode).
pub struct Instance {
    /// The service.
    pub name: String,
    /// Its base URL.
    pub url: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    worker: Option<ee_queue::WorkerHandle>,
    health: ee_health::Health,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// Starts service `name` on `listener` with its own database pool and
    /// Redis connection, reaching the others through `config.upstreams`.
    ///
    /// # Errors
    /// An unknown service, a store that cannot be opened.
    pub async fn start(
        name: &str,
        config: PlatformConfig,
        listener: TcpListener,
        prometheus: Option<&ee_metrics::Prometheus>,
    ) -> Result<Self, StartError> {
        if !SERVICES.contains(&name) {
            return Err(StartError(format!(
                "unknown service {name:?}; one of {}",
                SERVICES.join(", ")
            )));
        }
        config.edge.check()?;
        let (db, redis) = open_stores(&config).await?;
        let upstreams = Upstreams::new(
            &config.upstreams,
            Duration::from_millis(config.upstream_timeout_ms),
        )
        .and_then(|u| u.with_timeouts(&config.upstream_timeouts_ms))
        .map(|u| u.with_edge(&config.edge))
        .map_err(|e| StartError(e.to_string()))?;
        let url = format!(
            "http://{}",
            listener
                .local_addr()
                .map_err(|e| StartError(e.to_string()))?
        );
        let mode = match name {
            "user" | "order" | "notification" => KeyMode::Signer,
            _ => KeyMode::Verifier,
        };
        let jwks: Vec<String> = upstreams
            .instances("user")
            .into_iter()
            .map(|base| format!("{base}{}", gateway::JWKS_PATH))
            .collect();
        let auth = PlatformAuth::start(&config.auth, mode, redis.as_ref(), &jwks).await?;
        let deps = Deps {
            db,
            upstreams,
            redis,
            local_queues: Vec::new(),
            config: Arc::new(config),
            auth,
        };
        let built = build(name, &deps, prometheus).await?;
        let (stop, stopped) = watch::channel(false);
        let task = serve_on(listener, built.router, stopped, &deps.config.edge);
        Ok(Self {
            name: name.to_owned(),
            url,
            stop,
            task,
            worker: built.worker,
            health: built.health,
        })
    }

    /// Stops accepting, lets in-flight requests and jobs finish (up to
    /// `drain`), and returns.
    pub async fn shutdown(self, drain: Duration) {
        self.health.begin_shutdown();
        let _ = self.stop.send(true);
        // Requests and jobs drain together, within the one deadline.
        let worker = async {
            if let Some(w) = self.worker {
                w.shutdown(drain).await;
            }
        };
        let server = async {
            let _ = tokio::time::timeout(drain, self.task).await;
        };
        tokio::join!(worker, server);
    }

    /// Stops at once, as a crashed process would: open connections are
    /// dropped, running jobs are left to the queue's stalled-job checker.
    pub fn kill(self) {
        self.task.abort();
        if let Some(w) = self.worker {
            w.abort();
        }
    }
}

/// Distributed mode: serves the one service `name` on `config.listen` until
/// SIGTERM or Ctrl-C, then lets in-flight requests and jobs finish (up to
/// `drain_ms`).
///
/// # Errors
/// As [`Instance::start`], or the address cannot be bound.
pub async fn serve(
    name: &str,
    config: PlatformConfig,
    prometheus: Option<&ee_metrics::Prometheus>,
) -> Result<(), StartError> {
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|e| StartError(format!("{name}: cannot listen on {}: {e}", config.listen)))?;
    let drain = Duration::from_millis(config.drain_ms);
    let instance = Instance::start(name, config, listener, prometheus).await?;
    eprintln!("{name}: listening on {}", instance.url);
    shutdown_signal().await;
    instance.shutdown(drain).await;
    Ok(())
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_debug_hides_passwords() {
        let config = PlatformConfig {
            database_url: "postgres://shop:s3cret@127.0.0.1:1/shop?password=s3cret".into(),
            redis_url: "redis://:s3cret@127.0.0.1:1".into(),
            ..PlatformConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://shop:***@127.0.0.1:1/shop"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn a_start_error_never_shows_a_password() {
        for (database_url, redis_url) in [
            ("postgres://shop:s3cret@127.0.0.1:1/shop", ""),
            ("postgres://127.0.0.1:1/shop?user=shop&password=s3cret", ""),
            ("", "redis://:s3cret@127.0.0.1:1"),
        ] {
            let dir = std::env::temp_dir().join(format!("ee-platform-{}", rand::random::<u64>()));
            let config = PlatformConfig {
                database_url: database_url.into(),
                redis_url: redis_url.into(),
                data_dir: dir.clone(),
                ..PlatformConfig::default()
            };
            let err = open_stores(&config)
                .await
                .expect_err("nothing listens on port 1");
            assert!(!err.0.contains("s3cret"), "{}", err.0);
            assert!(err.0.contains("***"), "{}", err.0);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
