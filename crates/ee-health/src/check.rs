//! What a health check is, and the checks ee ships.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::HealthError;

/// A check's verdict (`application/health+json` statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy.
    Pass,
    /// Healthy with a concern (a non-critical check failing, little disk left).
    Warn,
    /// Unhealthy.
    Fail,
}

/// What one check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The verdict.
    pub status: Status,
    /// Why, when not `pass` (an error message; never a secret).
    pub output: Option<String>,
    /// A measurement (free bytes, available memory), with its unit.
    pub observed: Option<Observed>,
}

/// A check's measurement: `observedValue` and `observedUnit` in the report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observed {
    /// The value (`1.2e9`).
    pub value: f64,
    /// Its unit (`bytes`).
    pub unit: &'static str,
}

impl Outcome {
    /// Healthy.
    pub fn pass() -> Self {
        Self {
            status: Status::Pass,
            output: None,
            observed: None,
        }
    }

    /// Unhealthy, because of `why`.
    pub fn fail(why: impl Into<String>) -> Self {
        Self {
            status: Status::Fail,
            output: Some(why.into()),
            observed: None,
        }
    }

    /// Healthy with a concern.
    pub fn warn(why: impl Into<String>) -> Self {
        Self {
            status: Status::Warn,
            output: Some(why.into()),
            observed: None,
        }
    }

    /// Adds a measurement.
    #[must_use]
    pub fn observed(mut self, value: f64, unit: &'static str) -> Self {
        self.observed = Some(Observed { value, unit });
        self
    }
}

/// A boxed check future.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// A dependency or resource a service's health depends on.
pub trait HealthCheck: Send + Sync + 'static {
    /// Runs the check once (the registry bounds it with a timeout).
    fn check(&self) -> CheckFuture<'_>;
}

/// A check from a closure returning `Result<(), E>`: `Err` fails with its
/// message.
pub fn check_fn<F, Fut, E>(f: F) -> impl HealthCheck
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    FnCheck(f)
}

struct FnCheck<F>(F);

impl<F, Fut, E> HealthCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    fn check(&self) -> CheckFuture<'_> {
        let fut = (self.0)();
        Box::pin(async move {
            match fut.await {
                Ok(()) => Outcome::pass(),
                Err(e) => Outcome::fail(e.to_string()),
            }
        })
    }
}

/// Redis (standalone or Cluster, through ee-core's connection): `PING`.
#[cfg(feature = "redis")]
#[derive(Clone)]
pub struct RedisCheck(pub ee_core::RedisConn);

#[cfg(feature = "redis")]
impl HealthCheck for RedisCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            match self.0.query::<String>(&redis::cmd("PING")).await {
                Ok(reply) if reply == "PONG" => Outcome::pass(),
                Ok(other) => Outcome::fail(format!("PING answered {other:?}")),
                Err(e) => Outcome::fail(e.to_string()),
            }
        })
    }
}

/// PostgreSQL: opens a connection and runs `SELECT 1`.
#[cfg(feature = "postgres")]
#[derive(Clone)]
pub struct PostgresCheck(pub tokio_postgres::Config);

#[cfg(feature = "postgres")]
impl HealthCheck for PostgresCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let (client, connection) = match self.0.connect(tokio_postgres::NoTls).await {
                Ok(pair) => pair,
                Err(e) => return Outcome::fail(e.to_string()),
            };
            let driver = tokio::spawn(connection);
            let outcome = match client.simple_query("SELECT 1").await {
                Ok(_) => Outcome::pass(),
                Err(e) => Outcome::fail(e.to_string()),
            };
            drop(client);
            let _ = driver.await;
            outcome
        })
    }
}

/// Free space on the file system of `path`: fails under `min_free` bytes,
/// warns under twice that.
#[derive(Debug, Clone)]
pub struct DiskCheck {
    path: std::path::PathBuf,
    min_free: u64,
}

impl DiskCheck {
    /// A check of the file system holding `path`.
    pub fn new(path: impl Into<std::path::PathBuf>, min_free_bytes: u64) -> Self {
        Self {
            path: path.into(),
            min_free: min_free_bytes,
        }
    }
}

impl HealthCheck for DiskCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            match fs4::available_space(&self.path) {
                Ok(free) => {
                    let outcome = if free < self.min_free {
                        Outcome::fail(format!("{free} bytes free, under {}", self.min_free))
                    } else if free < self.min_free.saturating_mul(2) {
                        Outcome::warn(format!("{free} bytes free, near {}", self.min_free))
                    } else {
                        Outcome::pass()
                    };
                    outcome.observed(free as f64, "bytes")
                }
                Err(e) => Outcome::fail(format!("{}: {e}", self.path.display())),
            }
        })
    }
}

/// Available memory (Linux `MemAvailable`): fails under `min_available`
/// bytes; on other systems it warns that it cannot tell.
#[derive(Debug, Clone, Copy)]
pub struct MemoryCheck {
    min_available: u64,
}

impl MemoryCheck {
    /// A check that fails under `min_available_bytes`.
    pub fn new(min_available_bytes: u64) -> Self {
        Self {
            min_available: min_available_bytes,
        }
    }
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl HealthCheck for MemoryCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            match mem_available() {
                Some(bytes) if bytes < self.min_available => Outcome::fail(format!(
                    "{bytes} bytes available, under {}",
                    self.min_available
                ))
                .observed(bytes as f64, "bytes"),
                Some(bytes) => Outcome::pass().observed(bytes as f64, "bytes"),
                None => Outcome::warn("available memory is unknown on this system"),
            }
        })
    }
}

/// An HTTP dependency: `GET` of a plain `http://host:port/path` URL (no
/// TLS), passing on a 2xx answer.
#[derive(Debug, Clone)]
pub struct HttpCheck {
    authority: String,
    path: String,
}

impl HttpCheck {
    /// A check of `url` (`http://` only).
    ///
    /// # Errors
    /// [`HealthError::Url`] when `url` is not an `http://` URL with a host.
    pub fn new(url: &str) -> Result<Self, HealthError> {
        let bad = |reason| HealthError::Url {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs are checked"))?;
        let (authority, path) = rest
            .split_once('/')
            .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self { authority, path })
    }
}

impl HealthCheck for HttpCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = match tokio::net::TcpStream::connect(&self.authority).await {
                Ok(s) => s,
                Err(e) => return Outcome::fail(format!("{}: {e}", self.authority)),
            };
            let host = self
                .authority
                .rsplit_once(':')
                .map_or(self.authority.as_str(), |(h, _)| h);
            let request = format!(
                "GET {} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n",
                self.path
            );
            if let Err(e) = stream.write_all(request.as_bytes()).await {
                return Outcome::fail(e.to_string());
            }
            let mut head = [0u8; 12];
            match stream.read_exact(&mut head).await {
                Ok(_) => match std::str::from_utf8(&head[9..12])
                    .ok()
                    .and_then(|s| s.parse::<u16>().ok())
                {
                    Some(code) if (200..300).contains(&code) => Outcome::pass(),
                    Some(code) => Outcome::fail(format!("answered {code}")),
                    None => Outcome::fail("not an HTTP/1.1 answer"),
                },
                Err(e) => Outcome::fail(e.to_string()),
            }
        })
    }
}

/// One registered check.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) name: Arc<str>,
    pub(crate) check: Arc<dyn HealthCheck>,
    pub(crate) critical: bool,
    pub(crate) timeout: Duration,
}
