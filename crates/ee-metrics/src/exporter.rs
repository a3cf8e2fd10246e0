//! The Prometheus exporter: one recorder for the process, histogram buckets
//! per metric, global labels, and process and tokio runtime gauges refreshed
//! at every scrape.

use std::sync::Arc;

use metrics::Gauge;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::metrics::{
    METRIC_TOKIO_ALIVE_TASKS, METRIC_TOKIO_GLOBAL_QUEUE_DEPTH, METRIC_TOKIO_WORKERS,
};

/// Latency buckets (seconds) for every `*_seconds` histogram unless set:
/// 1 ms to 10 s, dense where web requests live.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Size buckets (bytes) for every `*_bytes` histogram unless set: 64 B to 16 MiB.
pub const SIZE_BUCKETS: &[f64] = &[
    64.0,
    256.0,
    1024.0,
    4096.0,
    16_384.0,
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

/// What can go wrong installing the exporter.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A bucket list is empty or the exporter refused it.
    #[error("bad histogram buckets: {0}")]
    Buckets(String),
    /// Another recorder is installed already (one per process).
    #[error("a metrics recorder is already installed in this process: {0}")]
    AlreadyInstalled(String),
    /// The standalone listener failed.
    #[error("the /metrics listener failed: {0}")]
    Listener(String),
}

/// Configures and installs the Prometheus exporter.
///
/// ```no_run
/// let prometheus = ee_metrics::Prometheus::builder()
///     .global_label("service", "orders")
///     .global_label("version", env!("CARGO_PKG_VERSION"))
///     .buckets("ee_http_request_duration_seconds", &[0.005, 0.01, 0.05, 0.1, 0.5, 1.0])
///     .install()
///     .expect("the first recorder of the process");
/// let app: axum::Router = axum::Router::new().merge(prometheus.router());
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct PrometheusSetup {
    global_labels: Vec<(String, String)>,
    buckets: Vec<(String, Vec<f64>)>,
    process: bool,
    runtime: bool,
}

/// The installed exporter: renders the text exposition format.
#[derive(Clone)]
pub struct Prometheus {
    handle: PrometheusHandle,
    process: Option<Arc<metrics_process::Collector>>,
    runtime: Option<RuntimeGauges>,
}

/// The tokio runtime gauges, registered once at install.
#[derive(Clone)]
struct RuntimeGauges {
    workers: Gauge,
    alive_tasks: Gauge,
    global_queue_depth: Gauge,
}

impl RuntimeGauges {
    fn new() -> Self {
        Self {
            workers: metrics::gauge!(METRIC_TOKIO_WORKERS),
            alive_tasks: metrics::gauge!(METRIC_TOKIO_ALIVE_TASKS),
            global_queue_depth: metrics::gauge!(METRIC_TOKIO_GLOBAL_QUEUE_DEPTH),
        }
    }

    /// Reads the runtime the scrape runs on, if any.
    fn record(&self) {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let m = handle.metrics();
            self.workers.set(m.num_workers() as f64);
            self.alive_tasks.set(m.num_alive_tasks() as f64);
            self.global_queue_depth.set(m.global_queue_depth() as f64);
        }
    }
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("process", &self.process.is_some())
            .field("runtime", &self.runtime.is_some())
            .finish_non_exhaustive()
    }
}

impl Prometheus {
    /// A set-up with the default buckets, process and runtime metrics on.
    pub fn builder() -> PrometheusSetup {
        PrometheusSetup {
            global_labels: Vec::new(),
            buckets: Vec::new(),
            process: true,
            runtime: true,
        }
    }

    /// Refreshes the process and runtime gauges, then renders every metric
    /// in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        if let Some(process) = &self.process {
            process.collect();
        }
        if let Some(runtime) = &self.runtime {
            runtime.record();
        }
        self.handle.run_upkeep();
        self.handle.render()
    }

    /// An axum router serving `GET /metrics`.
    #[cfg(feature = "axum")]
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        let this = self.clone();
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let this = this.clone();
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        this.render(),
                    )
                }
            }),
        )
    }

    /// Serves `GET /metrics` on its own listener (an admin port the public
    /// one does not expose); runs until the task is dropped.
    ///
    /// ```no_run
    /// # async fn run(prometheus: ee_metrics::Prometheus) -> Result<(), Box<dyn std::error::Error>> {
    /// let admin = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
    /// tokio::spawn(prometheus.serve(admin));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`MetricsError::Listener`] when serving fails.
    #[cfg(feature = "axum")]
    pub async fn serve(self, listener: tokio::net::TcpListener) -> Result<(), MetricsError> {
        axum::serve(listener, self.router::<()>())
            .await
            .map_err(|e| MetricsError::Listener(e.to_string()))
    }
}

impl PrometheusSetup {
    /// A label on every series (`service`, `instance`, `version`).
    pub fn global_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.global_labels.push((name.into(), value.into()));
        self
    }

    /// Histogram buckets for the metric `name` (exact name).
    pub fn buckets(mut self, name: impl Into<String>, buckets: &[f64]) -> Self {
        self.buckets.push((name.into(), buckets.to_vec()));
        self
    }

    /// Whether to export process metrics (CPU seconds, resident memory, open
    /// and max file descriptors, threads, start time; default on).
    pub fn process_metrics(mut self, on: bool) -> Self {
        self.process = on;
        self
    }

    /// Whether to export tokio runtime gauges (`ee_tokio_workers`,
    /// `ee_tokio_alive_tasks`, `ee_tokio_global_queue_depth`; default on).
    pub fn runtime_metrics(mut self, on: bool) -> Self {
        self.runtime = on;
        self
    }

    fn builder(&self) -> Result<PrometheusBuilder, MetricsError> {
        let bad = |e: metrics_exporter_prometheus::BuildError| MetricsError::Buckets(e.to_string());
        let mut b = PrometheusBuilder::new();
        for (name, value) in &self.global_labels {
            b = b.add_global_label(name, value);
        }
        for (name, buckets) in &self.buckets {
            b = b
                .set_buckets_for_metric(Matcher::Full(name.clone()), buckets)
                .map_err(bad)?;
        }
        b = b
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .map_err(bad)?
            .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), SIZE_BUCKETS)
            .map_err(bad)?;
        Ok(b)
    }

    fn finish(&self, handle: PrometheusHandle) -> Prometheus {
        let process = self.process.then(|| {
            let c = metrics_process::Collector::default();
            c.describe();
            Arc::new(c)
        });
        crate::metrics::describe_metrics();
        Prometheus {
            handle,
            process,
            runtime: self.runtime.then(RuntimeGauges::new),
        }
    }

    /// Installs the exporter as the process's `metrics` recorder.
    ///
    /// # Errors
    /// [`MetricsError::AlreadyInstalled`] when a recorder is installed;
    /// [`MetricsError::Buckets`] for an empty bucket list.
    pub fn install(self) -> Result<Prometheus, MetricsError> {
        let handle = self
            .builder()?
            .install_recorder()
            .map_err(|e| MetricsError::AlreadyInstalled(e.to_string()))?;
        Ok(self.finish(handle))
    }
}
