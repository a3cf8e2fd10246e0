//! PostgreSQL connections for bb8: a statement cache per connection and
//! the connection's current `search_path` (for schema-per-tenant).

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio_postgres::{Client, Statement};

use crate::{DbError, Value};

type Connect =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Client, tokio_postgres::Error>> + Send + Sync>;

/// Opens connections (any TLS) and checks them.
pub(crate) struct PgManager {
    pub(crate) connect: Connect,
    pub(crate) ping: bool,
    pub(crate) statement_cache: usize,
}

/// A pooled PostgreSQL connection.
pub(crate) struct PgConn {
    pub(crate) client: Client,
    statements: HashMap<Box<str>, Statement>,
    cap: usize,
    /// Inside `BEGIN` … `COMMIT`: a connection returned in this state is
    /// closed, never reused (the server rolls the transaction back), unless
    /// its `BEGIN` was never sent.
    pub(crate) in_tx: bool,
    /// The session failed (closed, terminated): closed on return.
    pub(crate) broken: bool,
    /// The tenant schema set on this session (`None`: the URL's default).
    pub(crate) search_path: Option<Arc<str>>,
    /// A `BEGIN` not sent yet: it goes out with the transaction's first
    /// statement, pipelined (one round trip for both), and a transaction
    /// that ends before any statement sends neither it nor its end. Cleared
    /// (with `in_tx`) when the connection comes back unused. Should the
    /// `BEGIN` itself fail, the statement sent with it has run on its own;
    /// the transaction reports the error and its commit fails.
    pub(crate) begin: Option<&'static str>,
}

impl bb8::ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = DbError;

    async fn connect(&self) -> Result<PgConn, DbError> {
        let client = (self.connect)()
            .await
            .map_err(|e| DbError::Unavailable(crate::error_text(&e)))?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            cap: self.statement_cache,
            in_tx: false,
            broken: false,
            search_path: None,
            begin: None,
        })
    }

    async fn is_valid(&self, conn: &mut PgConn) -> Result<(), DbError> {
        if conn.client.is_closed() {
            return Err(DbError::Unavailable("connection closed".into()));
        }
        if self.ping {
            conn.client.simple_query("").await?;
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        if conn.in_tx && conn.begin.take().is_some() {
            // Its `BEGIN` never left: there is no transaction, and nothing
            // may carry over to the next user.
            conn.in_tx = false;
        }
        conn.broken || conn.in_tx || conn.client.is_closed()
    }
}

impl PgConn {
    /// The prepared statement for `sql`, from the cache or prepared now.
    pub(crate) async fn statement(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let statement = self.client.prepare(sql).await?;
        if self.cap > 0 {
            if self.statements.len() >= self.cap {
                // Simple and bounded: start over rather than track recency.
                self.statements.clear();
            }
            self.statements.insert(sql.into(), statement.clone());
        }
        Ok(statement)
    }

    pub(crate) async fn query(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<tokio_postgres::Row>, DbError> {
        let statement = self.statement(sql).await?;
        check_arity(statement.params().len(), params.len())?;
        let params = as_dyn(params);
        let begin = self.begin.take();
        let result = after_begin(&self.client, begin, self.client.query(&statement, &params)).await;
        self.forget_stale(result.map_err(DbError::from))
    }

    /// The first row, if any (more rows are not an error, as on SQLite).
    pub(crate) async fn query_opt(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<Option<tokio_postgres::Row>, DbError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    pub(crate) async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let statement = self.statement(sql).await?;
        check_arity(statement.params().len(), params.len())?;
        let params = as_dyn(params);
        let begin = self.begin.take();
        let result = after_begin(
            &self.client,
            begin,
            self.client.execute(&statement, &params),
        )
        .await;
        self.forget_stale(result.map_err(DbError::from))
    }

    /// Statements as one simple query. A pending `BEGIN` goes in front of
    /// them; a `COMMIT` or `ROLLBACK` of a transaction that never began
    /// sends nothing.
    pub(crate) async fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        match self.begin.take() {
            None => Ok(self.client.batch_execute(sql).await?),
            Some(_) if sql == "COMMIT" || sql == "ROLLBACK" => Ok(()),
            Some(begin) => Ok(self
                .client
                .batch_execute(&format!("{begin}; {sql}"))
                .await?),
        }
    }

    /// After a schema change a prepared statement can fail with "cached
    /// plan must not change result type" (0A000): forget the cache so the
    /// next call prepares again.
    fn forget_stale<T>(&mut self, result: Result<T, DbError>) -> Result<T, DbError> {
        if let Err(DbError::Query {
            code: Some(code), ..
        }) = &result
            && code == "0A000"
        {
            self.statements.clear();
        }
        result
    }

    /// Puts the session on `schema` (or back on the URL's default).
    pub(crate) async fn use_schema(&mut self, schema: Option<&Arc<str>>) -> Result<(), DbError> {
        if self.search_path.as_deref() == schema.map(|s| &**s) {
            return Ok(());
        }
        // Until the server confirms, the session's path is unknown: if this
        // is cancelled half-way, the connection is closed, not reused.
        self.broken = true;
        match schema {
            Some(s) => {
                self.client
                    .batch_execute(&format!("SET search_path TO \"{s}\""))
                    .await?;
            }
            None => self.client.batch_execute("RESET search_path").await?,
        }
        // Cached plans name tables of the old path.
        self.statements.clear();
        self.search_path = schema.cloned();
        self.broken = false;
        Ok(())
    }
}

/// `statement` on `client`, after `begin` when one is pending: both in one
/// round trip. tokio-postgres sends requests in the order they are first
/// polled, and `join` polls the `BEGIN` first (the statement's future does
/// nothing until polled).
async fn after_begin<T>(
    client: &Client,
    begin: Option<&'static str>,
    statement: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, tokio_postgres::Error> {
    match begin {
        None => statement.await,
        Some(begin) => {
            let (began, result) =
                futures_util::future::join(client.batch_execute(begin), statement).await;
            began.and(result)
        }
    }
}

fn check_arity(expected: usize, given: usize) -> Result<(), DbError> {
    if expected == given {
        Ok(())
    } else {
        Err(DbError::Query {
            code: Some("08P01".into()),
            message: format!("the statement takes {expected} parameters, {given} given"),
        })
    }
}

fn as_dyn(params: &[Value]) -> smallvec_like::Params<'_> {
    smallvec_like::Params::new(params)
}

/// `&[&(dyn ToSql + Sync)]` without a heap allocation for the usual few parameters.
mod smallvec_like {
    use postgres_types::ToSql;

    use crate::Value;

    pub(crate) enum Params<'a> {
        Inline([&'a (dyn ToSql + Sync); 8], usize),
        Heap(Vec<&'a (dyn ToSql + Sync)>),
    }

    impl<'a> Params<'a> {
        pub(crate) fn new(values: &'a [Value]) -> Self {
            const NULL: &Value = &Value::Null;
            if values.len() <= 8 {
                let mut inline: [&'a (dyn ToSql + Sync); 8] = [NULL; 8];
                for (slot, v) in inline.iter_mut().zip(values) {
                    *slot = v;
                }
                Params::Inline(inline, values.len())
            } else {
                Params::Heap(values.iter().map(|v| v as &(dyn ToSql + Sync)).collect())
            }
        }
    }

    impl<'a> std::ops::Deref for Params<'a> {
        type Target = [&'a (dyn ToSql + Sync)];
        fn deref(&self) -> &Self::Target {
            match self {
                Params::Inline(a, n) => &a[..*n],
                Params::Heap(v) => v,
            }
        }
    }
}
