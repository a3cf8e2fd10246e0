//! Pool settings, serde-deserialisable (an `[db]` section of `ee.toml`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a [`Database`](crate::Database) is opened. `Default` is an embedded
/// SQLite file `data/ee.db` with safe pool settings.
///
/// ```toml
/// [db]
/// url = "postgres://app@db.internal/shop"
/// replicas = ["postgres://app@replica-1.internal/shop"]
/// max_size = 20
/// connect_timeout_ms = 2000
/// ```
///
/// `Debug` shows the URLs without their passwords.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbConfig {
    /// `postgres://…` / `postgresql://…`, or `sqlite://path/to/file.db`
    /// (`sqlite::memory:` for a private in-memory database).
    pub url: String,
    /// Read replicas (PostgreSQL): reads go here unless inside a
    /// transaction or just after a write in the same request.
    pub replicas: Vec<String>,
    /// Most connections per pool.
    pub max_size: u32,
    /// Idle connections kept open (none when unset).
    pub min_idle: Option<u32>,
    /// How long a checkout waits for a connection before failing with
    /// [`DbError::PoolTimeout`](crate::DbError::PoolTimeout) (a 503).
    pub connect_timeout_ms: u64,
    /// Connections older than this are closed (none when unset).
    pub max_lifetime_ms: Option<u64>,
    /// Idle connections beyond `min_idle` are closed after this long.
    pub idle_timeout_ms: Option<u64>,
    /// How a connection is checked when it leaves the pool: `closed` (is
    /// the socket still open; free) or `ping` (a round trip).
    pub checkout_test: CheckoutTest,
    /// Prepared statements kept per connection.
    pub statement_cache: usize,
    /// Statements slower than this are logged at WARN and counted.
    pub slow_query_ms: u64,
    /// After a write in a request, that request's reads go to the primary
    /// for this long (read-your-writes).
    pub read_your_writes_ms: u64,
    /// Transaction attempts on a serialization failure or deadlock.
    pub max_attempts: u32,
    /// The pool's name in metrics (`pool` label).
    pub name: String,
}

impl std::fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let replicas: Vec<_> = self
            .replicas
            .iter()
            .map(|u| ee_core::redact_url(u))
            .collect();
        f.debug_struct("DbConfig")
            .field("url", &ee_core::redact_url(&self.url))
            .field("replicas", &replicas)
            .field("max_size", &self.max_size)
            .field("min_idle", &self.min_idle)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("max_lifetime_ms", &self.max_lifetime_ms)
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .field("checkout_test", &self.checkout_test)
            .field("statement_cache", &self.statement_cache)
            .field("slow_query_ms", &self.slow_query_ms)
            .field("read_your_writes_ms", &self.read_your_writes_ms)
            .field("max_attempts", &self.max_attempts)
            .field("name", &self.name)
            .finish()
    }
}

/// What a checkout verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckoutTest {
    /// That the connection has not been closed (no round trip). A connection
    /// the server killed since is noticed on first use, and the statement is
    /// retried once on a fresh one when it had not been sent.
    Closed,
    /// A round trip (`SELECT 1` / an empty statement) before every checkout.
    Ping,
}

impl Default for DbConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/ee.db".into(),
            replicas: Vec::new(),
            max_size: 10,
            min_idle: None,
            connect_timeout_ms: 5_000,
            max_lifetime_ms: Some(30 * 60 * 1000),
            idle_timeout_ms: Some(10 * 60 * 1000),
            checkout_test: CheckoutTest::Closed,
            statement_cache: 256,
            slow_query_ms: 500,
            read_your_writes_ms: 2_000,
            max_attempts: 5,
            name: "default".into(),
        }
    }
}

impl DbConfig {
    /// The defaults with this URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Values that cannot work, all reported at once.
    pub(crate) fn check(&self) -> Result<(), crate::DbError> {
        let mut bad = Vec::new();
        if self.connect_timeout_ms == 0 {
            bad.push("connect_timeout_ms must be above 0".to_owned());
        }
        if self.max_size == 0 {
            bad.push("max_size must be at least 1".to_owned());
        }
        if let Some(min) = self.min_idle
            && min > self.max_size
        {
            bad.push(format!(
                "min_idle ({min}) is above max_size ({})",
                self.max_size
            ));
        }
        if self.max_lifetime_ms == Some(0) {
            bad.push("max_lifetime_ms must be above 0 (or unset)".to_owned());
        }
        if self.idle_timeout_ms == Some(0) {
            bad.push("idle_timeout_ms must be above 0 (or unset)".to_owned());
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(crate::DbError::BadConfig(bad.join("; ")))
        }
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::DbConfig;

    #[test]
    fn debug_output_hides_passwords() {
        let config = DbConfig {
            url: "postgres://app:s3cret@primary/shop".into(),
            replicas: vec!["postgres://app:s3cret@replica/shop".into()],
            ..DbConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://app:***@primary/shop"), "{shown}");
        assert!(shown.contains("postgres://app:***@replica/shop"), "{shown}");
    }
}
