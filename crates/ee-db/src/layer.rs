//! `DbLayer`: one transaction per request (begun when a handler first asks
//! for it; committed on 2xx, rolled back otherwise) and the request scope
//! for read-your-writes.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::Request;
use http::request::Parts;
use serde::de::DeserializeOwned;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use crate::{Database, DbError, Row, Tx, Value, request_scope};

/// Wraps a service: every request runs in a [request scope](crate::request_scope)
/// and may use a [`DbTx`].
///
/// ```
/// use axum::{Router, routing::post};
/// use ee_db::{Database, DbLayer, DbTx, DbError, params};
///
/// async fn place(tx: DbTx) -> Result<&'static str, DbError> {
///     tx.execute("UPDATE stock SET qty = qty - 1 WHERE sku = $1", params!["A-1"]).await?;
///     tx.execute("INSERT INTO orders (sku) VALUES ($1)", params!["A-1"]).await?;
///     Ok("placed") // 2xx: both statements commit together
/// }
///
/// fn app(db: Database) -> Router {
///     Router::new().route("/orders", post(place)).layer(DbLayer::new(db))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct DbLayer {
    db: Database,
}

impl DbLayer {
    /// Transactions of `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

impl<S> tower::Layer<S> for DbLayer {
    type Service = DbService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DbService {
            inner,
            db: self.db.clone(),
        }
    }
}

/// The service [`DbLayer`] builds.
#[derive(Debug, Clone)]
pub struct DbService<S> {
    inner: S,
    db: Database,
}

struct Slot {
    db: Database,
    tx: Mutex<Option<Tx>>,
}

impl<S, B> tower::Service<Request<B>> for DbService<S>
where
    S: tower::Service<Request<B>, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let slot = Arc::new(Slot {
            db: self.db.clone(),
            tx: Mutex::new(None),
        });
        req.extensions_mut().insert(DbTx(slot.clone()));
        let fut = self.inner.call(req);
        Box::pin(request_scope(async move {
            let response = fut.await?;
            let tx = slot.tx.lock().await.take();
            let Some(tx) = tx else { return Ok(response) };
            if response.status().is_success() {
                if let Err(e) = tx.commit().await {
                    tracing::error!(error = %e, "request transaction failed to commit");
                    return Ok(e.into_response());
                }
            } else if let Err(e) = tx.rollback().await {
                // The connection is closed instead of reused; the server
                // rolls back.
                tracing::warn!(error = %e, "request transaction rollback failed");
            }
            Ok(response)
        }))
    }
}

/// The request's transaction (needs [`DbLayer`]). Begun on first use;
/// committed when the handler answers 2xx, rolled back otherwise.
#[derive(Clone)]
pub struct DbTx(Arc<Slot>);

impl std::fmt::Debug for DbTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTx").finish_non_exhaustive()
    }
}

impl<St: Send + Sync> FromRequestParts<St> for DbTx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Response> {
        parts.extensions.get::<DbTx>().cloned().ok_or_else(no_layer)
    }
}

/// The 500 a `DbTx` answers on a route without [`DbLayer`]: a set-up
/// error, so the detail is the fix, and it is logged once.
fn no_layer() -> Response {
    const FIX: &str = "this route takes a DbTx but has no DbLayer: add `.layer(ee_db::DbLayer::new(db))` to the router";
    static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::error!("ee-db: server set-up error (logged once): {FIX}");
    }
    ee_core::Problem::ee(http::StatusCode::INTERNAL_SERVER_ERROR, "db", "no-layer")
        .with_title("Server misconfigured")
        .with_detail(FIX)
        .into_response()
}

impl DbTx {
    /// The transaction itself (begun now if not yet), locked for this
    /// request's use.
    pub async fn tx(&self) -> Result<MappedMutexGuard<'_, Tx>, DbError> {
        let mut guard = self.0.tx.lock().await;
        if guard.is_none() {
            *guard = Some(self.0.db.begin().await?);
        }
        Ok(MutexGuard::map(guard, |t| t.as_mut().expect("just begun")))
    }

    /// [`Tx::query`] on the request's transaction.
    pub async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        self.tx().await?.query(sql, params).await
    }

    /// [`Tx::query_one`] on the request's transaction.
    pub async fn query_one(&self, sql: &str, params: &[Value]) -> Result<Row, DbError> {
        self.tx().await?.query_one(sql, params).await
    }

    /// [`Tx::query_as`] on the request's transaction.
    pub async fn query_as<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<T>, DbError> {
        self.tx().await?.query_as(sql, params).await
    }

    /// [`Tx::query_one_as`] on the request's transaction.
    pub async fn query_one_as<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<T, DbError> {
        self.tx().await?.query_one_as(sql, params).await
    }

    /// [`Tx::execute`] on the request's transaction.
    pub async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        self.tx().await?.execute(sql, params).await
    }
}
