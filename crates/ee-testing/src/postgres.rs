//! A real PostgreSQL for tests, one schema per test so tests run in parallel.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio_postgres::{Client, Config, NoTls};

/// The server tests use when `EE_DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

const HOW_TO_GET_POSTGRES: &str = "start PostgreSQL on 127.0.0.1:5432 with a database `test` that user `postgres` \
     can reach without a password (Debian: `sudo apt-get install postgresql`, then `./scripts/test` \
     configures and starts it), or point EE_DATABASE_URL at a server of your own";

/// A connection to a real PostgreSQL, in a schema of its own that is dropped
/// (with everything in it) when this value is dropped.
///
/// ```no_run
/// # async fn demo() {
/// let pg = ee_testing::Postgres::connect().await;
/// pg.client().batch_execute("CREATE TABLE t (id int)").await.unwrap(); // in this test's schema
/// let url = pg.url(); // the same schema, for a pool under test
/// # }
/// ```
pub struct Postgres {
    client: Option<Client>,
    schema: String,
    base: Config,
    url: String,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// Connects to `EE_DATABASE_URL` (or [`DEFAULT_DATABASE_URL`]) and creates a
    /// fresh schema, set as the session's `search_path`. Panics, saying how to get
    /// PostgreSQL, when the server cannot be reached.
    pub async fn connect() -> Self {
        let base_url =
            std::env::var("EE_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
        let base: Config = base_url
            .parse()
            .unwrap_or_else(|e| panic!("EE_DATABASE_URL `{base_url}` is not a valid URL: {e}"));
        let client = open(&base).await.unwrap_or_else(|e| {
            panic!("cannot connect to PostgreSQL at {base_url}: {e}. To fix: {HOW_TO_GET_POSTGRES}")
        });

        static N: AtomicU64 = AtomicU64::new(0);
        // The wall clock tells apart runs that reuse a process id.
        let unix_ms = ee_core::unix_ms();
        let schema = format!(
            "ee_test_{}_{}_{unix_ms}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        client
            .batch_execute(&format!(
                "CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\""
            ))
            .await
            .unwrap_or_else(|e| panic!("cannot create test schema {schema}: {e}"));

        let url = with_search_path(&base_url, &schema);
        Self {
            client: Some(client),
            schema,
            base,
            url,
        }
    }

    /// The connection, with this test's schema as its `search_path`.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }

    /// This test's schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A connection URL whose sessions use this test's schema, for a pool or a
    /// service under test.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connection configuration whose sessions use this test's schema.
    pub fn config(&self) -> Config {
        let mut config = self.base.clone();
        config.options(format!("-csearch_path={}", self.schema));
        config
    }
}

fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}

async fn open(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        // Ends when the client is dropped or the server goes away.
        let _ = connection.await;
    });
    Ok(client)
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Close our session first: an open transaction of it would hold locks
        // the DROP waits for.
        drop(self.client.take());
        // Drop runs inside the test's runtime, which cannot be blocked on: clean
        // up from a thread with a small runtime of its own, bounded by a lock
        // timeout so a session some test leaked cannot hang the drop.
        let base = self.base.clone();
        let schema = std::mem::take(&mut self.schema);
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for schema clean-up");
            runtime.block_on(async move {
                if let Ok(client) = open(&base).await {
                    let _ = client
                        .batch_execute(&format!(
                            "SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                        ))
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
