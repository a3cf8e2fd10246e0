//! `Health`: the checks of a service, their cached report, the probe
//! endpoints, and graceful shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::check::{HealthCheck, Outcome, Registered, Status};
use crate::error::HealthError;

/// `application/health+json`.
pub const HEALTH_JSON: &str = "application/health+json";

/// One run of every check.
#[derive(Debug, Clone)]
pub struct Report {
    /// Every check (critical and not).
    pub status: Status,
    /// Critical checks only (what `/readyz` answers).
    pub ready: Status,
    /// Each check's result.
    pub checks: Vec<CheckResult>,
    pub(crate) health_body: Bytes,
    pub(crate) ready_body: Bytes,
}

/// One check's run in a [`Report`].
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// The check's name.
    pub name: Arc<str>,
    /// What it found.
    pub outcome: Outcome,
    /// How long it took.
    pub took: Duration,
    /// Whether it is critical (its failure fails readiness).
    pub critical: bool,
}

/// The health of a service: cheap to clone, shared by the probe router, the
/// shutdown signal and your code.
///
/// ```
/// use ee_health::{Health, MemoryCheck, check_fn};
/// use std::time::Duration;
///
/// let health = Health::builder()
///     .critical("database", check_fn(|| async { Ok::<(), std::io::Error>(()) }))
///     .non_critical("memory", MemoryCheck::new(64 << 20))
///     .timeout(Duration::from_millis(500))
///     .cache_for(Duration::from_secs(2))
///     .build();
/// let app: axum::Router = axum::Router::new().merge(health.router());
/// ```
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field(
                "checks",
                &self
                    .inner
                    .checks
                    .iter()
                    .map(|c| &*c.name)
                    .collect::<Vec<_>>(),
            )
            .field("shutting_down", &self.is_shutting_down())
            .finish_non_exhaustive()
    }
}

struct Inner {
    checks: Vec<Registered>,
    cache_for: Duration,
    pre_stop: Duration,
    cached: RwLock<Option<(Instant, Arc<Report>)>>,
    refresh: tokio::sync::Mutex<()>,
    shutting_down: AtomicBool,
    started: AtomicBool,
    shutdown: tokio::sync::watch::Sender<bool>,
}

/// The settings of a [`Health`] a service puts in its configuration file
/// (serde; an `[health]` section of `ee.toml` through ee-config).
///
/// ```
/// let config: ee_health::HealthConfig =
///     serde_json::from_str(r#"{ "timeout_ms": 500, "drain_ms": 20000 }"#).unwrap();
/// assert_eq!(config.cache_ms, 1000); // the default
/// let health = ee_health::Health::builder().config(&config)?.build();
/// # drop(health);
/// # Ok::<(), ee_health::HealthError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Each check's timeout, in ms (default 2 000).
    pub timeout_ms: u64,
    /// How long a report is reused, in ms (default 1 000).
    pub cache_ms: u64,
    /// How long [`Health::serve`] lets in-flight requests finish after it
    /// stops accepting, in ms (default 30 000): pass [`HealthConfig::drain`]
    /// to it.
    pub drain_ms: u64,
    /// How long it keeps accepting, readiness failing, after the shutdown
    /// begins, in ms (default 0; see [`HealthBuilder::pre_stop`]).
    pub pre_stop_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 2_000,
            cache_ms: 1_000,
            drain_ms: 30_000,
            pre_stop_ms: 0,
        }
    }
}

impl HealthConfig {
    /// The drain deadline for [`Health::serve`].
    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_ms)
    }
}

/// Builds a [`Health`].
#[must_use]
pub struct HealthBuilder {
    checks: Vec<Registered>,
    timeout: Duration,
    cache_for: Duration,
    pre_stop: Duration,
    startup: bool,
}

impl std::fmt::Debug for HealthBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthBuilder")
            .field("checks", &self.checks.len())
            .finish_non_exhaustive()
    }
}

impl HealthBuilder {
    fn add(mut self, name: &str, check: impl HealthCheck, critical: bool) -> Self {
        self.checks.push(Registered {
            name: Arc::from(name),
            check: Arc::new(check),
            critical,
            timeout: self.timeout,
        });
        self
    }

    /// A check that makes the service not ready when it fails.
    pub fn critical(self, name: &str, check: impl HealthCheck) -> Self {
        self.add(name, check, true)
    }

    /// A check whose failure only warns (the service can work without it).
    pub fn non_critical(self, name: &str, check: impl HealthCheck) -> Self {
        self.add(name, check, false)
    }

    /// The timeout of each check added **after** this call (default 2 s): a
    /// check past it fails with "timed out".
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a report is reused (default 1 s): a storm of probes runs the
    /// checks once per interval.
    pub fn cache_for(mut self, interval: Duration) -> Self {
        self.cache_for = interval;
        self
    }

    /// The timeout, report interval and pre-stop delay of `config` (an
    /// `[health]` section of `ee.toml`, through ee-config); the timeout
    /// applies to the checks added after this call.
    ///
    /// # Errors
    /// [`HealthError::Config`] for a `timeout_ms` of 0 (every check that
    /// waits for anything would time out).
    pub fn config(self, config: &HealthConfig) -> Result<Self, HealthError> {
        if config.timeout_ms == 0 {
            return Err(HealthError::Config {
                field: "timeout_ms",
                reason: "0 ms times every check out; give each check time to answer".into(),
            });
        }
        Ok(self
            .timeout(Duration::from_millis(config.timeout_ms))
            .cache_for(Duration::from_millis(config.cache_ms))
            .pre_stop(Duration::from_millis(config.pre_stop_ms)))
    }

    /// How long [`Health::serve`] keeps accepting after the shutdown begins
    /// (default none): readiness fails at once, and a load balancer that
    /// polls it (a Kubernetes endpoint update takes seconds) stops sending
    /// before the listener closes, instead of meeting refused connections.
    pub fn pre_stop(mut self, delay: Duration) -> Self {
        self.pre_stop = delay;
        self
    }

    /// `/startupz` fails until [`Health::mark_started`] (default: started).
    pub fn startup_probe(mut self) -> Self {
        self.startup = true;
        self
    }

    /// The health.
    pub fn build(self) -> Health {
        Health {
            inner: Arc::new(Inner {
                checks: self.checks,
                cache_for: self.cache_for,
                pre_stop: self.pre_stop,
                cached: RwLock::new(None),
                refresh: tokio::sync::Mutex::new(()),
                shutting_down: AtomicBool::new(false),
                started: AtomicBool::new(!self.startup),
                shutdown: tokio::sync::watch::channel(false).0,
            }),
        }
    }
}

fn worst(a: Status, b: Status) -> Status {
    a.max(b)
}

fn body(status: Status, checks: &[CheckResult], critical_only: bool) -> Bytes {
    let mut map = Map::new();
    for CheckResult {
        name,
        outcome,
        took,
        critical,
    } in checks
    {
        if critical_only && !critical {
            continue;
        }
        let mut entry = json!({
            "status": outcome.status,
            "componentType": "component",
            "latencyMs": (took.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            "critical": critical,
        });
        if let Some(output) = &outcome.output {
            entry["output"] = Value::String(output.clone());
        }
        if let Some(observed) = outcome.observed {
            entry["observedValue"] = json!(observed.value);
            entry["observedUnit"] = Value::String(observed.unit.to_owned());
        }
        map.insert(name.to_string(), Value::Array(vec![entry]));
    }
    Bytes::from(
        serde_json::to_vec(&json!({"status": status, "checks": map})).expect("a report serialises"),
    )
}

impl Health {
    /// A builder with no checks.
    pub fn builder() -> HealthBuilder {
        HealthBuilder {
            checks: Vec::new(),
            timeout: Duration::from_secs(2),
            cache_for: Duration::from_secs(1),
            pre_stop: Duration::ZERO,
            startup: false,
        }
    }

    /// The latest report: cached for the interval; past it, one caller runs
    /// the checks (concurrently, each within its timeout) while the others
    /// wait for that run.
    pub async fn report(&self) -> Arc<Report> {
        if let Some(fresh) = self.fresh() {
            return fresh;
        }
        let _running = self.inner.refresh.lock().await;
        if let Some(fresh) = self.fresh() {
            return fresh;
        }
        let runs = self.inner.checks.iter().map(|c| async move {
            let start = Instant::now();
            let outcome = match tokio::time::timeout(c.timeout, c.check.check()).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::fail(format!("timed out after {} ms", c.timeout.as_millis())),
            };
            CheckResult {
                name: c.name.clone(),
                outcome,
                took: start.elapsed(),
                critical: c.critical,
            }
        });
        let checks = futures_util::future::join_all(runs).await;
        let mut status = Status::Pass;
        let mut ready = Status::Pass;
        for check in &checks {
            let found = check.outcome.status;
            if check.critical {
                ready = worst(ready, found);
                status = worst(status, found);
            } else {
                // A non-critical failure is a warning for the whole.
                status = worst(status, found.min(Status::Warn));
            }
        }
        let report = Arc::new(Report {
            health_body: body(status, &checks, false),
            ready_body: body(ready, &checks, true),
            status,
            ready,
            checks,
        });
        *self.inner.cached.write().expect("not poisoned") = Some((Instant::now(), report.clone()));
        report
    }

    fn fresh(&self) -> Option<Arc<Report>> {
        let cached = self.inner.cached.read().expect("not poisoned");
        cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.inner.cache_for)
            .map(|(_, r)| r.clone())
    }

    /// Starts the shutdown: readiness fails from now on, and
    /// [`shutdown_signal`](Self::shutdown_signal) resolves.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.inner.shutdown.send_replace(true);
    }

    /// Whether the shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// Marks the start-up done (`/startupz` passes from now on).
    pub fn mark_started(&self) {
        self.inner.started.store(true, Ordering::SeqCst);
    }

    /// Whether the start-up is done.
    pub fn is_started(&self) -> bool {
        self.inner.started.load(Ordering::SeqCst)
    }

    /// Resolves when the shutdown begins: on SIGTERM or Ctrl-C (which begin
    /// it), or on [`begin_shutdown`](Self::begin_shutdown).
    pub async fn shutdown_signal(self) {
        let mut changed = self.inner.shutdown.subscribe();
        let signals = async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                match signal(SignalKind::terminate()) {
                    Ok(mut term) => {
                        tokio::select! {
                            _ = term.recv() => {}
                            _ = tokio::signal::ctrl_c() => {}
                        }
                    }
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
            }
        };
        tokio::select! {
            () = signals => self.begin_shutdown(),
            _ = changed.wait_for(|down| *down) => {}
        }
    }

    /// Serves `app` on `listener` until the shutdown begins (and the
    /// [`pre_stop`](HealthBuilder::pre_stop) delay after it, readiness
    /// failing), then stops accepting, lets in-flight requests finish for at
    /// most `drain`, and returns (the process can exit). Accepted
    /// connections get `TCP_NODELAY`.
    ///
    /// # Errors
    /// The listener's I/O error.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        app: axum::Router,
        drain: Duration,
    ) -> std::io::Result<()> {
        use axum::serve::ListenerExt;
        let pre_stop = self.inner.pre_stop;
        let signal = self.clone().shutdown_signal();
        let (begun_tx, begun_rx) = tokio::sync::oneshot::channel::<()>();
        // TCP_NODELAY: a response written in two segments (head, then a
        // streamed body) must not wait for the client's delayed ACK.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
        });
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            signal.await;
            if !pre_stop.is_zero() {
                tracing::info!(
                    pre_stop_ms = pre_stop.as_millis() as u64,
                    "shutting down: not ready, still accepting"
                );
                tokio::time::sleep(pre_stop).await;
            }
            let _ = begun_tx.send(());
        });
        let deadline = async move {
            if begun_rx.await.is_ok() {
                tokio::time::sleep(drain).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = server.into_future() => result,
            () = deadline => {
                tracing::warn!(drain_ms = drain.as_millis() as u64, "requests still in flight at the drain deadline were dropped");
                Ok(())
            }
        }
    }
}
