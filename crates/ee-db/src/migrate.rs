//! SQL migrations embedded at compile time, applied once each, in order,
//! under a lock, with checksums.

use sha2::{Digest, Sha256};

use crate::database::{Conn, Pool};
use crate::{Database, DbError, Value};

/// One migration: `0003_add_orders.sql` is version 3.
#[derive(Debug, Clone)]
pub struct Migration {
    /// The number the file name starts with.
    pub version: i64,
    /// The file name.
    pub name: String,
    /// The SQL (several statements allowed).
    pub sql: &'static str,
    checksum: String,
}

/// Migrations in version order. Build with [`embed_migrations!`](crate::embed_migrations).
#[derive(Debug, Clone)]
pub struct Migrations {
    list: Vec<Migration>,
}

/// Embeds SQL files (paths relative to the crate's `Cargo.toml`) at compile
/// time: `ee_db::embed_migrations!("migrations/0001_init.sql", "migrations/0002_orders.sql")`.
/// Each file name must start with its version number.
#[macro_export]
macro_rules! embed_migrations {
    ($($file:literal),+ $(,)?) => {
        $crate::Migrations::new(&[$(
            ($file, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $file))),
        )+])
    };
}

/// What [`Database::migrate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this call.
    pub applied: Vec<i64>,
    /// Versions that were already applied.
    pub skipped: Vec<i64>,
}

impl Migrations {
    /// `(file name, sql)` pairs; fails on a name without a leading number or
    /// two files with one number.
    pub fn new(files: &[(&str, &'static str)]) -> Result<Self, DbError> {
        let mut list = Vec::with_capacity(files.len());
        for (path, sql) in files {
            let name = path.rsplit('/').next().unwrap_or(path).to_owned();
            let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
            let version = digits.parse::<i64>().map_err(|_| {
                DbError::BadMigration(format!("`{name}` does not start with a version number"))
            })?;
            let checksum = hex(&Sha256::digest(sql.as_bytes()));
            list.push(Migration {
                version,
                name,
                sql,
                checksum,
            });
        }
        list.sort_by_key(|m| m.version);
        if let Some(w) = list.windows(2).find(|w| w[0].version == w[1].version) {
            return Err(DbError::BadMigration(format!(
                "`{}` and `{}` have the same version",
                w[0].name, w[1].name
            )));
        }
        Ok(Self { list })
    }

    /// The migrations, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Migration> {
        self.list.iter()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const TABLE: &str = "CREATE TABLE IF NOT EXISTS ee_db_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

impl Database {
    /// Applies the migrations not applied yet, each in its own transaction,
    /// recorded in `ee_db_migrations` (in the session's schema). Many
    /// instances may call this at once: a lock (PostgreSQL: an advisory lock
    /// per schema; SQLite: the write lock) lets one apply while the others
    /// wait and then find nothing to do. Refuses to run, changing nothing,
    /// when an applied migration's file has changed.
    pub async fn migrate(&self, migrations: &Migrations) -> Result<MigrationReport, DbError> {
        let _writer = self.write_permit().await?;
        let mut conn = self.checkout(self.primary()).await?;
        match &mut conn {
            #[cfg(feature = "postgres")]
            Conn::Pg(_) => {
                // Session lock, keyed by the schema so tests (and tenants) in
                // other schemas do not wait on each other.
                let key =
                    "SELECT pg_advisory_lock(hashtext('ee_db_migrations.' || current_schema()))";
                // Until the lock is released and no transaction is open, the
                // session must not go back to the pool: a cancelled or failed
                // run closes it (which releases the lock and rolls back).
                conn.set_session_dirty();
                conn.batch(key).await?;
                let result = self.apply(&mut conn, migrations).await;
                let unlock = conn
                    .batch("SELECT pg_advisory_unlock(hashtext('ee_db_migrations.' || current_schema()))")
                    .await;
                let report = result?;
                unlock?;
                conn.set_session_clean();
                Ok(report)
            }
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => self.apply(&mut conn, migrations).await,
        }
    }

    async fn apply(
        &self,
        conn: &mut Conn,
        migrations: &Migrations,
    ) -> Result<MigrationReport, DbError> {
        conn.batch(TABLE).await?;
        let applied = conn
            .query(
                "SELECT version, name, checksum FROM ee_db_migrations ORDER BY version",
                &[],
                usize::MAX,
            )
            .await?;
        let mut done = std::collections::HashMap::new();
        for row in &applied {
            let (version, name, checksum): (i64, String, String) = row.decode()?;
            done.insert(version, (name, checksum));
        }
        // Check every applied file before changing anything.
        for m in &migrations.list {
            if let Some((_, checksum)) = done.get(&m.version)
                && *checksum != m.checksum
            {
                return Err(DbError::MigrationChanged {
                    version: m.version,
                    name: m.name.clone(),
                });
            }
        }
        let mut report = MigrationReport::default();
        let sqlite = is_sqlite(self.primary());
        for m in &migrations.list {
            if sqlite {
                // The write lock first, then look again: another process may
                // have applied it while this one waited.
                conn.batch("BEGIN IMMEDIATE").await?;
            } else {
                conn.batch("BEGIN").await?;
            }
            let again = conn
                .query(
                    "SELECT 1 FROM ee_db_migrations WHERE version = $1",
                    &[Value::Int(m.version)],
                    1,
                )
                .await;
            let step = match again {
                Ok(rows) if !rows.is_empty() => Ok(false),
                Ok(_) => async {
                    conn.batch(m.sql).await?;
                    conn.execute(
                        "INSERT INTO ee_db_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)",
                        &[
                            Value::Int(m.version),
                            Value::Text(m.name.clone()),
                            Value::Text(m.checksum.clone()),
                            Value::Text(applied_at_now()),
                        ],
                    )
                    .await?;
                    Ok(true)
                }
                .await,
                Err(e) => Err(e),
            };
            match step {
                Ok(ran) => {
                    conn.batch("COMMIT").await?;
                    if ran {
                        tracing::info!(version = m.version, name = %m.name, "migration applied");
                        report.applied.push(m.version);
                    } else {
                        report.skipped.push(m.version);
                    }
                }
                Err(e) => {
                    let _ = conn.batch("ROLLBACK").await;
                    return Err(match e {
                        DbError::Query { code, message } => DbError::Query {
                            code,
                            message: format!("migration {} ({}): {message}", m.version, m.name),
                        },
                        other => other,
                    });
                }
            }
        }
        Ok(report)
    }
}

fn is_sqlite(pool: &Pool) -> bool {
    match pool {
        #[cfg(feature = "sqlite")]
        Pool::Sqlite(_) => true,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// When a migration was applied, as stored: `@` and Unix seconds.
fn applied_at_now() -> String {
    format!("@{}", ee_core::unix_ms() / 1000)
}
