//! The `tracing` subscriber of an ee service, from configuration: JSON,
//! pretty or compact lines, an env filter, and a non-blocking writer whose
//! bounded buffer drops (and counts) lines rather than block a request.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, span fields included (production).
    #[default]
    Json,
    /// Multi-line, coloured, for a developer's terminal.
    Pretty,
    /// One short line per event.
    Compact,
}

/// Logging configuration (`[logging]` in `ee.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// An `EnvFilter` directive (`info`, `warn,ee_cache=debug`); `RUST_LOG`
    /// overrides it when set.
    pub filter: String,
    /// Lines buffered between the request path and the writer thread; past
    /// it, lines are dropped and counted, never waited for.
    pub buffer_lines: usize,
    /// Field names (any case, at any depth of a JSON line: event fields and
    /// span fields) whose values are written as `"[redacted]"`. JSON format
    /// only: the pretty and compact formats are for development.
    pub redact_fields: Vec<String>,
    /// OpenTelemetry export over OTLP/HTTP (needs the `otlp` feature);
    /// `None` exports nothing.
    pub otlp: Option<OtlpConfig>,
}

/// Where and how much to export (`[logging.otlp]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP base URL; `/v1/traces` is appended.
    pub endpoint: String,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// The share of new traces exported, 0.0 to 1.0 (a caller's sampled
    /// flag decides for continued traces).
    pub sample_ratio: f64,
    /// Timeout of one export call.
    pub timeout_ms: u64,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:4318".into(),
            service_name: "ee-service".into(),
            sample_ratio: 1.0,
            timeout_ms: 5_000,
        }
    }
}

/// A built subscriber and, with OTLP export, its exporter.
pub struct Logging {
    /// Install it (`tracing::subscriber::set_global_default`, or
    /// `set_default` in a test).
    pub subscriber: Box<dyn tracing::Subscriber + Send + Sync + 'static>,
    /// The exporter, when [`LogConfig::otlp`] is set.
    #[cfg(feature = "otlp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
    pub telemetry: Option<crate::otel::Telemetry>,
}

impl std::fmt::Debug for Logging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logging").finish_non_exhaustive()
    }
}

/// Field names redacted by default.
pub const DEFAULT_REDACTED_FIELDS: &[&str] = &[
    "password",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "authorization",
    "cookie",
];

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            filter: "info".into(),
            buffer_lines: 128_000,
            redact_fields: DEFAULT_REDACTED_FIELDS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            otlp: None,
        }
    }
}

/// What can go wrong setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The filter directive does not parse.
    #[error("bad log filter `{filter}`: {reason}")]
    Filter {
        /// The directive.
        filter: String,
        /// Why.
        reason: String,
    },
    /// The OTLP exporter could not be built or could not export (from
    /// `Telemetry::flush`), or OTLP export is configured in a build without
    /// the `otlp` feature.
    #[error("OpenTelemetry export: {0}")]
    Otlp(String),
    /// A global subscriber is set already.
    #[error("a tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
}

/// Keep it alive for the life of the process: dropping it flushes the
/// buffered lines. Says how many lines the full buffer dropped.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _worker: tracing_appender::non_blocking::WorkerGuard,
    dropped: tracing_appender::non_blocking::ErrorCounter,
    #[cfg(feature = "otlp")]
    telemetry: Option<crate::otel::Telemetry>,
}

#[cfg(feature = "otlp")]
impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(t) = &self.telemetry {
            let _ = t.flush();
        }
    }
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard")
            .field("dropped_lines", &self.dropped_lines())
            .finish()
    }
}

impl LogGuard {
    /// Lines dropped because the buffer was full (the writer fell behind).
    pub fn dropped_lines(&self) -> usize {
        self.dropped.dropped_lines()
    }
}

impl LogConfig {
    fn filter(&self) -> Result<EnvFilter, LogError> {
        let directive = std::env::var("RUST_LOG").unwrap_or_else(|_| self.filter.clone());
        EnvFilter::try_new(&directive).map_err(|e| LogError::Filter {
            filter: directive,
            reason: e.to_string(),
        })
    }

    /// Installs the global subscriber writing to standard output through a
    /// non-blocking, bounded buffer.
    ///
    /// # Errors
    /// [`LogError::Filter`] for a bad directive, [`LogError::AlreadyInstalled`]
    /// when a subscriber is set.
    pub fn init(&self) -> Result<LogGuard, LogError> {
        self.init_with(std::io::stdout())
    }

    /// [`init`](Self::init) with another destination (a file, a pipe).
    ///
    /// # Errors
    /// As [`init`](Self::init).
    pub fn init_with<W: std::io::Write + Send + 'static>(
        &self,
        out: W,
    ) -> Result<LogGuard, LogError> {
        let (writer, worker) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(self.buffer_lines.max(1))
            .finish(out);
        let dropped = writer.error_counter();
        let logging = self.build(writer)?;
        logging
            .subscriber
            .try_init()
            .map_err(|e| LogError::AlreadyInstalled(e.to_string()))?;
        Ok(LogGuard {
            _worker: worker,
            dropped,
            #[cfg(feature = "otlp")]
            telemetry: logging.telemetry,
        })
    }

    /// The subscriber this configuration describes, writing to `writer`
    /// (for tests, or to install it yourself).
    ///
    /// # Errors
    /// [`LogError::Filter`] for a bad directive, [`LogError::Otlp`] when the
    /// exporter cannot be built.
    pub fn subscriber<W>(
        &self,
        writer: W,
    ) -> Result<Box<dyn tracing::Subscriber + Send + Sync + 'static>, LogError>
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        Ok(self.build(writer)?.subscriber)
    }

    /// [`subscriber`](Self::subscriber), with the OTLP exporter handle.
    ///
    /// # Errors
    /// As [`subscriber`](Self::subscriber).
    pub fn build<W>(&self, writer: W) -> Result<Logging, LogError>
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let filter = self.filter()?;
        #[cfg(feature = "otlp")]
        let provider = self.otlp.as_ref().map(crate::otel::provider).transpose()?;
        #[cfg(feature = "otlp")]
        let registry = {
            let base = tracing_subscriber::registry().with(filter);
            let otel = provider.as_ref().map(crate::otel::layer);
            base.with(otel)
        };
        #[cfg(not(feature = "otlp"))]
        let registry = {
            if self.otlp.is_some() {
                return Err(LogError::Otlp(
                    "`otlp` is configured but ee-logging was built without its `otlp` feature"
                        .into(),
                ));
            }
            tracing_subscriber::registry().with(filter)
        };
        let subscriber: Box<dyn tracing::Subscriber + Send + Sync + 'static> = match self.format {
            LogFormat::Json => Box::new(
                registry.with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(Redacting::new(writer, &self.redact_fields))
                        .json()
                        .flatten_event(true)
                        .with_current_span(true)
                        .with_span_list(false),
                ),
            ),
            LogFormat::Pretty => Box::new(
                registry.with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(writer)
                        .pretty(),
                ),
            ),
            LogFormat::Compact => Box::new(
                registry.with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(writer)
                        .compact(),
                ),
            ),
        };
        Ok(Logging {
            subscriber,
            #[cfg(feature = "otlp")]
            telemetry: provider.map(crate::otel::telemetry),
        })
    }
}

/// A `MakeWriter` that rewrites each JSON line with the values of the
/// redacted field names replaced. Lines without any of the names (checked on
/// the raw bytes first) pass through untouched.
struct Redacting<W> {
    inner: W,
    names: std::sync::Arc<[String]>,
}

impl<W> Redacting<W> {
    fn new(inner: W, names: &[String]) -> Self {
        Self {
            inner,
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for Redacting<W> {
    type Writer = RedactingWriter<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer(),
            names: self.names.clone(),
        }
    }
}

/// The writer of one formatted JSON event, with redacted fields replaced
/// (see [`LogConfig::redact_fields`]).
pub struct RedactingWriter<W> {
    inner: W,
    names: std::sync::Arc<[String]>,
}

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mentioned = mentions_key(buf, &self.names);
        if !mentioned {
            return self.inner.write_all(buf).map(|()| buf.len());
        }
        let mut out = Vec::with_capacity(buf.len());
        for line in buf.split_inclusive(|b| *b == b'\n') {
            let (body, newline) = match line.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (line, false),
            };
            match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(mut value) => {
                    redact(&mut value, &self.names);
                    serde_json::to_writer(&mut out, &value).map_err(std::io::Error::other)?;
                }
                // Not JSON (a partial write): keep nothing rather than leak.
                Err(_) => out.extend_from_slice(
                    b"{\"message\":\"[a log line was withheld: it could not be redacted]\"}",
                ),
            }
            if newline {
                out.push(b'\n');
            }
        }
        self.inner.write_all(&out).map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Whether a JSON text has a key (`"name":`) among `names`, in one pass: at
/// every `":`, the key is the text back to the previous quote.
fn mentions_key(buf: &[u8], names: &[String]) -> bool {
    let mut i = 1;
    while i < buf.len() {
        if buf[i] == b':' && buf[i - 1] == b'"' {
            let end = i - 1;
            if let Some(start) = buf[..end].iter().rposition(|b| *b == b'"') {
                let key = &buf[start + 1..end];
                if names.iter().any(|n| key.eq_ignore_ascii_case(n.as_bytes())) {
                    return true;
                }
            }
        }
        i += 1;
    }
    false
}

fn redact(value: &mut serde_json::Value, names: &[String]) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if names.iter().any(|n| key.eq_ignore_ascii_case(n)) {
                    *v = serde_json::Value::String("[redacted]".into());
                } else {
                    redact(v, names);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| redact(v, names)),
        _ => {}
    }
}
