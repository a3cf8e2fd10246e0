//! Opening a [`Database`]: the pools a [`DbConfig`] describes, checked once
//! at start-up.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

#[cfg(feature = "postgres")]
use futures_util::future::BoxFuture;

use crate::DbError;
#[cfg(feature = "postgres")]
use crate::config::CheckoutTest;
use crate::config::DbConfig;
use crate::metrics::{Meters, PoolGauges};

use super::{Database, Inner, Pool};

impl Database {
    /// Opens a pool on `url` with default settings (see [`DbConfig`]).
    pub async fn open(url: &str) -> Result<Self, DbError> {
        Self::connect(DbConfig::new(url)).await
    }

    /// Opens the pools `config` describes and checks one connection, so a
    /// wrong URL or an unreachable server fails at start-up.
    pub async fn connect(config: DbConfig) -> Result<Self, DbError> {
        config.check()?;
        #[cfg(feature = "postgres")]
        if pg_url(&config.url) {
            return Self::postgres_with_tls(config, tokio_postgres::NoTls).await;
        }
        if config.url.starts_with("sqlite:") {
            if !config.replicas.is_empty() {
                return Err(DbError::BadConfig(
                    "replicas need PostgreSQL; an SQLite database has none".into(),
                ));
            }
            #[cfg(feature = "sqlite")]
            {
                let manager =
                    crate::sqlite::SqliteManager::new(&config.url, config.statement_cache)?;
                let pool = crate::sqlite::SqlitePool::new(
                    manager,
                    config.max_size,
                    config.min_idle.unwrap_or(0),
                    config.connect_timeout(),
                )?;
                return Self::finish(config, Pool::Sqlite(pool), Vec::new()).await;
            }
            #[cfg(not(feature = "sqlite"))]
            return Err(DbError::Unavailable(
                "sqlite URLs need ee-db's `sqlite` feature".into(),
            ));
        }
        if pg_url(&config.url) {
            return Err(DbError::Unavailable(
                "postgres URLs need ee-db's `postgres` feature".into(),
            ));
        }
        Err(DbError::Unavailable(format!(
            "`{}` is neither a postgres:// nor an sqlite:// URL",
            ee_core::redact_url(&config.url)
        )))
    }

    /// A PostgreSQL pool whose connections use `tls` (any
    /// `MakeTlsConnect`, e.g. `tokio-postgres-rustls` or
    /// `postgres-native-tls`); replicas use it too.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn postgres_with_tls<T>(config: DbConfig, tls: T) -> Result<Self, DbError>
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>
            + Clone
            + Send
            + Sync
            + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
    {
        let pool = |url: &str| -> Result<Pool, DbError> {
            let pg: tokio_postgres::Config = url.parse().map_err(|e| {
                DbError::Unavailable(format!("`{}`: {e}", ee_core::redact_url(url)))
            })?;
            let tls = tls.clone();
            let connect: Arc<
                dyn Fn()
                        -> BoxFuture<'static, Result<tokio_postgres::Client, tokio_postgres::Error>>
                    + Send
                    + Sync,
            > = Arc::new(move || {
                let pg = pg.clone();
                let tls = tls.clone();
                Box::pin(async move {
                    let (client, connection) = pg.connect(tls).await?;
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "postgres connection ended");
                        }
                    });
                    Ok(client)
                })
            });
            let manager = crate::pg::PgManager {
                connect,
                ping: config.checkout_test == CheckoutTest::Ping,
                statement_cache: config.statement_cache,
            };
            Ok(Pool::Pg(builder(&config).build_unchecked(manager)))
        };
        let primary = pool(&config.url)?;
        let replicas = config
            .replicas
            .iter()
            .map(|u| pool(u))
            .collect::<Result<Vec<_>, _>>()?;
        Self::finish(config, primary, replicas).await
    }

    async fn finish(config: DbConfig, primary: Pool, replicas: Vec<Pool>) -> Result<Self, DbError> {
        let name: Arc<str> = Arc::from(config.name.as_str());
        let inner = Arc::new(Inner {
            primary,
            replicas,
            next: AtomicUsize::new(0),
            meters: Meters::new(&name),
            name,
            connect_timeout: config.connect_timeout(),
            slow: Duration::from_millis(config.slow_query_ms),
            read_your_writes: Duration::from_millis(config.read_your_writes_ms),
            max_attempts: config.max_attempts.max(1),
        });
        let db = Database {
            inner,
            schema: None,
            primary_only: false,
        };
        // Fail now, with the reason, rather than on the first request.
        drop(db.checkout(&db.inner.primary).await?);
        spawn_gauges(Arc::downgrade(&db.inner));
        Ok(db)
    }
}

fn pg_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn builder<M: bb8::ManageConnection>(config: &DbConfig) -> bb8::Builder<M> {
    bb8::Pool::builder()
        .max_size(config.max_size.max(1))
        .min_idle(config.min_idle)
        .connection_timeout(config.connect_timeout())
        .max_lifetime(config.max_lifetime_ms.map(Duration::from_millis))
        .idle_timeout(config.idle_timeout_ms.map(Duration::from_millis))
        // `is_valid` is cheap unless the config asks for a ping.
        .test_on_check_out(true)
}

/// Publishes the pool gauges once a second while the database lives.
fn spawn_gauges(inner: std::sync::Weak<Inner>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let Some(gauges) = inner.upgrade().map(|i| PoolGauges::new(&i.name)) else {
        return;
    };
    handle.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            gauges.set(inner.primary.state());
        }
    });
}

#[cfg(test)]
mod tests {
    use crate::{Database, DbConfig, DbError};

    /// URLs whose password must never reach an error (which reaches logs) or
    /// `Debug` output.
    const SECRET_URLS: [&str; 6] = [
        // Neither engine: refused by scheme.
        "mysql://app:secret@db/shop",
        "mysql://db/shop?user=app&password=secret",
        // PostgreSQL URLs that do not parse (a bad port).
        "postgres://app:secret@127.0.0.1:port/shop",
        "postgres://127.0.0.1:port/shop?user=app&password=secret",
        // Parsed, but nothing listens there.
        "postgres://app:secret@127.0.0.1:1/shop",
        "postgres://127.0.0.1:1/shop?user=app&password=secret",
    ];

    #[tokio::test]
    async fn connection_errors_never_show_the_password() {
        for url in SECRET_URLS {
            let e = Database::connect(DbConfig {
                connect_timeout_ms: 300,
                ..DbConfig::new(url)
            })
            .await
            .expect_err(url);
            for shown in [e.to_string(), format!("{e:?}")] {
                assert!(!shown.contains("secret"), "{url}: {shown}");
            }
            assert!(matches!(
                e,
                DbError::Unavailable(_) | DbError::PoolTimeout(_) | DbError::Query { .. }
            ));
        }
        // The refusals name the URL, redacted.
        let e = Database::open(SECRET_URLS[0]).await.unwrap_err();
        assert!(e.to_string().contains("mysql://app:***@db/shop"), "{e}");
        let e = Database::open(SECRET_URLS[3]).await.unwrap_err();
        assert!(e.to_string().contains("password=***"), "{e}");
    }

    #[test]
    fn config_debug_never_shows_the_password() {
        for url in SECRET_URLS {
            let config = DbConfig {
                replicas: vec![url.to_owned()],
                ..DbConfig::new(url)
            };
            let shown = format!("{config:?}");
            assert!(!shown.contains("secret"), "{shown}");
        }
    }
}
